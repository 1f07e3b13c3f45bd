/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * lazy-restore: restore a VM's memory from a snapshot file lazily, the
 * pages served by a separate handler process (the "restore service"),
 * while the VMM runs the guest at once.
 *
 * Two processes:
 *  - the "VMM" maps the guest memory (anonymous, or hugetlb when huge pages
 *    are reserved), registers it for MISSING faults and sends the
 *    userfaultfd with the description of the range to the handler
 *    (libuffd_send), then runs the "guest": it touches its memory, its
 *    balloon inflates over part of it (MADV_DONTNEED), and it checks every
 *    byte;
 *  - the handler receives the descriptor (libuffd_recv, the peer's uid and
 *    pid checked) and serves the range from the snapshot file with a
 *    monitor (libuffd_monitor_add_received): each first touch is read from
 *    the file with its neighbours (the monitor's fault-around window), and
 *    the rest is read in the background (LIBUFFD_REGION_PREFETCH). It stops
 *    when the VMM goes away (libuffd_monitor_watch_peer: the VMM's death,
 *    or its end of the socket closed).
 *
 * The balloon: the guest gives pages back to the host with MADV_DONTNEED.
 * The handler's monitor gets a REMOVE event for them (the VMM's madvise
 * waits until it has been read) and, as a real balloon needs, from then on
 * serves those pages as zeros (LIBUFFD_ON_REMOVE_ZERO, the default): never
 * the snapshot's contents again, even if the background prefetch was about
 * to place them. The VMM checks that the balloon reads as zeros and every
 * other byte as the snapshot.
 *
 * Prints the restore time (from the userfaultfd's creation, the hand-off
 * and the handler's start included, until every page of the guest is in
 * place) against reading the same file with read() into a buffer of the
 * same size, in the same run (the file is in the page cache for both), and
 * the time to the guest's first page. (The read() buffer is anonymous
 * memory of 4 KiB pages, whatever the guest's; the restore reads an eighth
 * less of the file: the balloon's pages are zeros.)
 *
 * Usage: lazy-restore [anon|hugetlb] [MiB]  (default: hugetlb when enough
 * huge pages are free, else anon; 64 MiB). The snapshot file is created in
 * $TMPDIR (else /tmp) and removed at the end.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libuffd.h>

static void die(const char *who, const char *what, long err)
{
	fprintf(stderr, "lazy-restore (%s): %s: %s\n  %s\n", who, what,
		libuffd_strerror((int)err), libuffd_last_error());
	exit(EXIT_FAILURE);
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Free 2 MiB huge pages, from /proc/meminfo. */
static long free_huge_pages(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	long n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &n) == 1)
			break;
	fclose(f);
	return n;
}

/* The snapshot's contents: the 64-bit word at byte offset off. Every page
 * differs from every other, and none is all zeros. */
static uint64_t word_at(uint64_t off)
{
	return (off + 8) * 0x9e3779b97f4a7c15ULL;
}

/* Write the snapshot file: len bytes of word_at(). */
static void write_snapshot(int fd, size_t len)
{
	enum { CHUNK = 1 << 20 };
	uint64_t *buf = malloc(CHUNK);

	if (!buf)
		die("vmm", "malloc", -ENOMEM);
	for (size_t at = 0; at < len; at += CHUNK) {
		for (size_t w = 0; w < CHUNK / 8; w++)
			buf[w] = word_at(at + w * 8);
		if (pwrite(fd, buf, CHUNK, (off_t)at) != CHUNK)
			die("vmm", "writing the snapshot", -errno);
	}
	free(buf);
}

/* The page [p, p + ps) of guest memory at byte offset off: 1 if it holds
 * the snapshot's bytes, 0 if not. */
static int page_is_snapshot(const uint64_t *p, uint64_t off, size_t ps)
{
	for (size_t w = 0; w < ps / 8; w++)
		if (p[w] != word_at(off + w * 8))
			return 0;
	return 1;
}

static int page_is_zero(const uint64_t *p, size_t ps)
{
	for (size_t w = 0; w < ps / 8; w++)
		if (p[w])
			return 0;
	return 1;
}

/*
 * The handler process: receive the VMM's userfaultfd on sock, serve its
 * memory from the snapshot at path until the VMM goes away, print what the
 * monitor did. Exits 0 if every fault was served.
 */
static void handler(int sock, const char *path, pid_t vmm)
{
	/* Only the VMM (this uid, that pid) may hand us its memory. */
	LIBUFFD_OPTS(libuffd_recv_opts, ropts,
		     .flags = LIBUFFD_RECV_CHECK_UID | LIBUFFD_RECV_CHECK_PID,
		     .uid = getuid(), .pid = vmm, .timeout_ms = 10000);
	libuffd_handle *h;
	libuffd_region_desc regions[8];
	libuffd_peer peer;
	int n = libuffd_recv(sock, &ropts, &h, regions, 8, &peer);
	if (n < 0)
		die("handler", "libuffd_recv", n);

	int snap = open(path, O_RDONLY | O_CLOEXEC);
	if (snap < 0)
		die("handler", "opening the snapshot", -errno);

	/* The monitor: the default adaptive fault-around window (1 to 512
	 * pages: a guest that reads on gets more with each fault), zero pages
	 * after a REMOVE (the balloon). */
	LIBUFFD_OPTS(libuffd_monitor_opts, mo, .remove_policy = LIBUFFD_ON_REMOVE_ZERO);
	libuffd_monitor *m;
	int rc = libuffd_monitor_new(&mo, NULL, NULL, NULL, &m);
	if (rc < 0)
		die("handler", "libuffd_monitor_new", rc);
	uint32_t id;
	if ((rc = libuffd_monitor_add_handle(m, h, &id)) < 0)
		die("handler", "libuffd_monitor_add_handle", rc);
	libuffd_handle_free(h); /* the monitor keeps its own reference */

	/* Every received range from the file, at its source offset (the page
	 * size comes with the description: hugetlb needs no guess), in the
	 * background too. The VMM registered the ranges already. */
	LIBUFFD_OPTS(libuffd_region_opts, ro, .source = LIBUFFD_SOURCE_FD,
		     .flags = LIBUFFD_REGION_PREFETCH, .fd = snap);
	if ((rc = libuffd_monitor_add_received(m, id, regions, (size_t)n, &ro)) < 0)
		die("handler", "libuffd_monitor_add_received", rc);
	close(snap); /* the monitor reads its own duplicate */

	/* Stop when the VMM dies or closes its end of the socket. */
	if ((rc = libuffd_monitor_watch_peer(m, peer.pidfd, sock)) < 0)
		die("handler", "libuffd_monitor_watch_peer", rc);
	if ((rc = libuffd_monitor_start(m)) < 0)
		die("handler", "libuffd_monitor_start", rc);

	/* Serve until the VMM has gone; the counters are then complete. */
	rc = libuffd_monitor_wait(m);
	if (rc < 0)
		die("handler", "monitor run", rc);
	struct libuffd_monitor_stats st = { .sz = sizeof(st) };
	libuffd_monitor_get_stats(m, &st);
	libuffd_monitor_free(m);
	if (peer.pidfd >= 0)
		close(peer.pidfd);

	printf("handler: %llu faults served (%llu KiB with fault-around), %llu KiB prefetched "
	       "in the background, %llu REMOVE events, %llu failed\n",
	       (unsigned long long)st.faults, (unsigned long long)(st.bytes >> 10),
	       (unsigned long long)(st.prefetched_bytes >> 10), (unsigned long long)st.removes,
	       (unsigned long long)st.failed);
	fflush(stdout);
	_exit(st.failed == 0 && st.removes > 0 ? 0 : 1);
}

int main(int argc, char *argv[])
{
	size_t mib = 64;
	int hugetlb = -1;

	setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order with the handler's */

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "anon") == 0)
			hugetlb = 0;
		else if (strcmp(argv[i], "hugetlb") == 0)
			hugetlb = 1;
		else if (atoi(argv[i]) >= 8 && atoi(argv[i]) % 8 == 0)
			mib = (size_t)atoi(argv[i]);
		else {
			fprintf(stderr, "usage: %s [anon|hugetlb] [MiB, a multiple of 8]\n", argv[0]);
			return 2;
		}
	}
	size_t len = mib << 20;
	if (hugetlb < 0)
		hugetlb = free_huge_pages() >= (long)(len >> 21);
	size_t ps = hugetlb ? 2UL << 20 : (size_t)sysconf(_SC_PAGESIZE);
	size_t npages = len / ps;

	/* The snapshot file, in $TMPDIR. */
	const char *tmp = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/lazy-restore-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	int snap = mkostemp(path, O_CLOEXEC);
	if (snap < 0)
		die("vmm", "creating the snapshot file", -errno);
	write_snapshot(snap, len);

	/* The handler process, before the guest memory exists: it shares
	 * nothing with the VMM but the socket and the snapshot's name. */
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		die("vmm", "socketpair", -errno);
	fflush(stdout);
	pid_t vmm = getpid();
	pid_t pid = fork();
	if (pid < 0)
		die("vmm", "fork", -errno);
	if (pid == 0) {
		close(sv[0]);
		close(snap);
		handler(sv[1], path, vmm);
	}
	close(sv[1]);

	/* The baseline: the whole file read() into a fresh buffer of the same
	 * size (the file is in the page cache, as it is for the restore). */
	char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		die("vmm", "mmap", -errno);
	if (lseek(snap, 0, SEEK_SET) < 0)
		die("vmm", "lseek", -errno);
	double t0 = now_ms();
	for (size_t at = 0; at < len;) {
		ssize_t r = read(snap, buf + at, len - at);
		if (r <= 0)
			die("vmm", "read()", r < 0 ? -errno : -EIO);
		at += (size_t)r;
	}
	double t_read = now_ms() - t0;
	if (!page_is_snapshot((const uint64_t *)(buf + len - ps), len - ps, ps))
		die("vmm", "read() gave wrong bytes", -EIO);
	munmap(buf, len);
	close(snap);

	/* The guest memory. */
	char *guest = mmap(NULL, len, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | (hugetlb ? MAP_HUGETLB : 0), -1, 0);
	if (guest == MAP_FAILED)
		die("vmm", hugetlb ? "mmap (hugetlb)" : "mmap", -errno);
	printf("lazy-restore: %s guest memory, %zu MiB (%zu pages of %zu KiB), snapshot in %s\n",
	       hugetlb ? "hugetlb" : "anon", mib, npages, ps >> 10, tmp && *tmp ? tmp : "/tmp");

	/* A userfaultfd with REMOVE events (the balloon), the guest memory
	 * registered for missing-page faults. Faults taken in kernel mode are
	 * trapped too (the default): a real VMM's guest memory is also
	 * touched by KVM and by read(2)/write(2) of its devices. */
	t0 = now_ms();
	LIBUFFD_OPTS(libuffd_open_opts, oo, .features = LIBUFFD_FEATURE_EVENT_REMOVE,
		     .required_features = LIBUFFD_FEATURE_EVENT_REMOVE);
	libuffd_handle *h;
	int rc = libuffd_open(&oo, &h);
	if (rc < 0)
		die("vmm", "libuffd_open", rc);
	if ((rc = libuffd_register(h, guest, len, LIBUFFD_REGISTER_MISSING, NULL)) < 0)
		die("vmm", "libuffd_register", rc);

	/* Hand it off: the descriptor and the range's description. */
	libuffd_region_desc d = { .start = guest, .len = len, .page_size = ps, .source_offset = 0 };
	if ((rc = libuffd_send(sv[0], h, &d, 1)) < 0)
		die("vmm", "libuffd_send", rc);
	libuffd_handle_free(h); /* the handler holds the userfaultfd now */

	/* The guest runs at once: its first access waits for the handler to
	 * be up and to serve that page. */
	volatile char sink = guest[0];
	double t_first = now_ms() - t0;

	/* The balloon inflates over an eighth of the memory, from its middle:
	 * the guest gives those pages back; they read as zeros from now on. */
	size_t b_first = npages / 2, b_pages = npages / 8;
	char *balloon = guest + b_first * ps;
	if (madvise(balloon, b_pages * ps, MADV_DONTNEED) < 0)
		die("vmm", "madvise(MADV_DONTNEED)", -errno);

	/* The guest touches all of its memory: restored once every page is
	 * in place (the background prefetch has placed most of them). */
	for (size_t i = 0; i < npages; i++)
		sink = guest[i * ps];
	(void)sink;
	double t_restore = now_ms() - t0;

	/* Check every byte: the balloon zeros, the rest the snapshot. */
	size_t ok = 0, zeros = 0, bad = 0;
	for (size_t i = 0; i < npages; i++) {
		const uint64_t *p = (const uint64_t *)(guest + i * ps);
		if (i >= b_first && i < b_first + b_pages) {
			if (page_is_zero(p, ps))
				zeros++;
			else
				bad++;
		} else if (page_is_snapshot(p, i * ps, ps)) {
			ok++;
		} else {
			bad++;
		}
	}

	/* Done: closing the socket stops the handler (watch_peer); it
	 * prints its counters and exits. */
	close(sv[0]);
	int status;
	if (waitpid(pid, &status, 0) < 0)
		die("vmm", "waitpid", -errno);
	munmap(guest, len);
	unlink(path);

	printf("lazy-restore: first page after %.3f ms\n", t_first);
	printf("lazy-restore: restore: %.1f ms (read(): %.1f ms, ratio %.2f)\n", t_restore,
	       t_read, t_restore / t_read);
	printf("lazy-restore: balloon: %zu pages read as zeros after MADV_DONTNEED\n", zeros);
	if (bad || zeros != b_pages || ok != npages - b_pages || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		printf("lazy-restore: FAILED: %zu pages wrong, handler status %#x\n", bad, status);
		return EXIT_FAILURE;
	}
	printf("lazy-restore: verified %zu pages (%zu restored from the snapshot, %zu balloon "
	       "zeros, %s)\n",
	       npages, ok, zeros, hugetlb ? "hugetlb" : "anon");
	return EXIT_SUCCESS;
}
