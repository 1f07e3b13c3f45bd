/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * postcopy: the live-migration pattern. The destination runs at once on
 * memory it does not have yet: each page it touches first is fetched from
 * the source over TCP at that moment, while the rest is pulled in the
 * background, until every page has arrived.
 *
 * Two processes:
 *  - the source, a page server on 127.0.0.1: its memory image is a memfd,
 *    served to one connection by libuffd_page_server_serve();
 *  - the destination maps empty memory and serves it with a monitor whose
 *    region's pages come from that connection (LIBUFFD_SOURCE_REMOTE): a
 *    fault sends a request and is completed when the reply arrives, the
 *    monitor never waiting on the network, at most max_in_flight requests
 *    outstanding. Four worker threads (the "vCPUs") touch pages in random
 *    order.
 *
 * The rest comes in the background with no code of ours: the region has
 * LIBUFFD_REGION_PREFETCH, so the monitor requests its pages in address
 * order, 256 KiB at a time, one such request out at a time and only when
 * no fault's request waits, skipping the pages the vCPUs got first: a
 * vCPU's request never queues behind the stream, only (at the server, which
 * answers in order) behind the one 256 KiB reply ahead of it, if any. The
 * prefetch_done_regions counter says when it is done.
 *
 * Which side fetched each page: the monitor's fault-around window is fixed
 * at one page here, so each fault fetches its own page only; the monitor
 * counts the bytes faults placed (bytes) and the bytes the prefetch placed
 * (prefetched_bytes), each page once. Each vCPU times the accesses that
 * faulted (getrusage(RUSAGE_THREAD): a fault the monitor resolved counts
 * once in the thread's ru_majflt + ru_minflt). A real migration would let
 * the window grow (the default) to fetch neighbours with each request.
 *
 * Prints the pages fetched on demand and in the background, the vCPUs'
 * median wait for a page, the time until every page had arrived, and
 * "verified N pages" after checking every byte against the source's image.
 *
 * Usage: postcopy [MiB]  (default 32).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libuffd.h>

#define WORKERS 4

static void die(const char *who, const char *what, long err)
{
	fprintf(stderr, "postcopy (%s): %s: %s\n  %s\n", who, what, libuffd_strerror((int)err),
		libuffd_last_error());
	exit(EXIT_FAILURE);
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* The source's memory: the 64-bit word at byte offset off (no page is all
 * zeros, no two pages are alike). */
static uint64_t word_at(uint64_t off)
{
	return (off + 8) * 0x9e3779b97f4a7c15ULL;
}

/* Faults the calling thread has taken so far. */
static long thread_faults(void)
{
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_majflt + ru.ru_minflt;
}

/*
 * The source: a page server process. Builds its memory image, listens on
 * 127.0.0.1 (a port the kernel picks, written to port_pipe), serves one
 * connection until the destination closes it.
 */
static void source(size_t len, int port_pipe, pid_t destination)
{
	/* Never outlive the destination (should it fail before connecting,
	 * accept() would wait for ever). */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != destination)
		_exit(EXIT_FAILURE);

	int image = memfd_create("source-ram", MFD_CLOEXEC);
	if (image < 0 || ftruncate(image, (off_t)len) < 0)
		die("source", "memfd", -errno);
	uint64_t *ram = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, image, 0);
	if (ram == MAP_FAILED)
		die("source", "mmap", -errno);
	for (size_t w = 0; w < len / 8; w++)
		ram[w] = word_at(w * 8);
	munmap(ram, len);

	int lsock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	if (lsock < 0 || bind(lsock, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lsock, 1) < 0 ||
	    getsockname(lsock, (struct sockaddr *)&a, &alen) < 0)
		die("source", "listening on 127.0.0.1", -errno);
	if (write(port_pipe, &a.sin_port, sizeof(a.sin_port)) != sizeof(a.sin_port))
		die("source", "write", -errno);
	close(port_pipe);

	int conn = accept4(lsock, NULL, NULL, SOCK_CLOEXEC);
	if (conn < 0)
		die("source", "accept", -errno);
	close(lsock);
	/* Until the destination closes the connection (the server sets
	 * TCP_NODELAY itself: each reply goes out at once). */
	int n = libuffd_page_server_serve(conn, image);
	if (n < 0)
		die("source", "libuffd_page_server_serve", n);
	printf("source: page server answered %d requests\n", n);
	fflush(stdout);
	_exit(EXIT_SUCCESS);
}

static char *mem;
static size_t page_size, npages;

struct toucher {
	pthread_t thr;
	unsigned seed;
	long faults;	    /* pages this thread fetched (its faults) */
	uint64_t *waits_ns; /* how long each of those faults took */
	size_t bad;	    /* words read that were not the source's */
};

/* A vCPU: touches npages / 8 pages at random, reading one word of each
 * and checking it; times each access that faulted. */
static void *vcpu(void *arg)
{
	struct toucher *t = arg;
	size_t touches = npages / 8;
	uint64_t x = t->seed * 0x9e3779b97f4a7c15ULL + 1;

	for (size_t k = 0; k < touches; k++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
		size_t page = x % npages;
		size_t off = page * page_size + (x >> 32) % (page_size / 8) * 8;
		long f0 = thread_faults();
		uint64_t t0 = now_ns();
		uint64_t v = *(volatile uint64_t *)(mem + off);
		uint64_t dt = now_ns() - t0;
		if (thread_faults() != f0)
			t->waits_ns[t->faults++] = dt;
		if (v != word_at(off))
			t->bad++;
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char *argv[])
{
	size_t mib = 32;

	setvbuf(stdout, NULL, _IOLBF, 0); /* lines in order with the source's */
	if (argc > 2 || (argc == 2 && (mib = strtoul(argv[1], NULL, 10)) == 0)) {
		fprintf(stderr, "usage: %s [MiB]\n", argv[0]);
		return 2;
	}
	page_size = (size_t)sysconf(_SC_PAGESIZE);
	size_t len = mib << 20;
	npages = len / page_size;

	/* The source process, and a connection to it. */
	int pp[2];
	if (pipe2(pp, O_CLOEXEC) < 0)
		die("destination", "pipe", -errno);
	pid_t destination = getpid();
	pid_t src = fork();
	if (src < 0)
		die("destination", "fork", -errno);
	if (src == 0) {
		close(pp[0]);
		source(len, pp[1], destination);
	}
	close(pp[1]);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (read(pp[0], &a.sin_port, sizeof(a.sin_port)) != sizeof(a.sin_port))
		die("destination", "the source did not start", -EPIPE);
	close(pp[0]);
	int sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0 || connect(sock, (struct sockaddr *)&a, sizeof(a)) < 0)
		die("destination", "connecting to the source", -errno);
	printf("postcopy: %zu MiB (%zu pages of %zu KiB) from a page server on 127.0.0.1:%u\n",
	       mib, npages, page_size >> 10, ntohs(a.sin_port));

	/* The destination's memory, empty; a userfaultfd for it. Only this
	 * process's own threads touch it: user-mode faults are enough (a VMM
	 * would trap kernel-mode faults too, for KVM). */
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("destination", "mmap", -errno);
	LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_USER_ONLY);
	libuffd_handle *h;
	int rc = libuffd_open(&oo, &h);
	if (rc < 0)
		die("destination", "libuffd_open", rc);

	/* The monitor: one page per fault (see above), the region's pages from
	 * the source's connection (the monitor sets TCP_NODELAY on it: each
	 * 24-byte request goes out at once), 16 requests in flight at most. */
	LIBUFFD_OPTS(libuffd_monitor_opts, mo, .window_min = 1, .window_max = 1,
		     .flags = LIBUFFD_MONITOR_FIXED_WINDOW);
	libuffd_monitor *m;
	if ((rc = libuffd_monitor_new(&mo, NULL, NULL, NULL, &m)) < 0)
		die("destination", "libuffd_monitor_new", rc);
	uint32_t id;
	if ((rc = libuffd_monitor_add_handle(m, h, &id)) < 0)
		die("destination", "libuffd_monitor_add_handle", rc);
	libuffd_handle_free(h); /* the monitor keeps its own reference */
	LIBUFFD_OPTS(libuffd_region_opts, ro, .source = LIBUFFD_SOURCE_REMOTE,
		     .register_mode = LIBUFFD_REGISTER_MISSING, .fd = sock, .fd_offset = 0,
		     .max_in_flight = 16, .flags = LIBUFFD_REGION_PREFETCH);
	if ((rc = libuffd_monitor_add_region(m, id, mem, len, &ro)) < 0)
		die("destination", "libuffd_monitor_add_region", rc);

	/* Run: the vCPUs start at once, the monitor's prefetch with them. */
	static struct toucher t[WORKERS];
	struct libuffd_monitor_stats st = { .sz = sizeof(st) };
	uint64_t t0 = now_ns();
	if ((rc = libuffd_monitor_start(m)) < 0)
		die("destination", "libuffd_monitor_start", rc);
	for (int i = 0; i < WORKERS; i++) {
		t[i].seed = (unsigned)i + 1;
		t[i].waits_ns = calloc(npages, sizeof(uint64_t));
		if (!t[i].waits_ns || pthread_create(&t[i].thr, NULL, vcpu, &t[i]) != 0)
			die("destination", "starting a thread", -EAGAIN);
	}
	for (int i = 0; i < WORKERS; i++)
		pthread_join(t[i].thr, NULL);
	/* Every page has arrived when the region's prefetch is done (one
	 * PREFETCH region: the counter reaches 1); 20 s at most. */
	for (int waited = 0;; waited++) {
		libuffd_monitor_get_stats(m, &st);
		if (st.prefetch_done_regions >= 1)
			break;
		if (waited == 20000)
			die("destination", "the prefetch did not end within 20 s", -ETIMEDOUT);
		usleep(1000);
	}
	double ms = (double)(now_ns() - t0) / 1e6;

	/* Every page has arrived: the monitor's work is done. Its counters
	 * are complete once the run has ended. */
	libuffd_monitor_stop(m);
	if ((rc = libuffd_monitor_wait(m)) < 0)
		die("destination", "monitor run", rc);
	libuffd_monitor_get_stats(m, &st);
	libuffd_monitor_free(m); /* the socket is ours again */
	close(sock);		 /* the source's service ends */

	/* Check every byte against the source's image. */
	size_t good = 0, bad = 0;
	for (size_t i = 0; i < npages; i++) {
		const uint64_t *p = (const uint64_t *)(mem + i * page_size);
		size_t w = 0;
		while (w < page_size / 8 && p[w] == word_at(i * page_size + w * 8))
			w++;
		w == page_size / 8 ? good++ : bad++;
	}

	long vcpu_faults = 0;
	size_t nwaits = 0;
	for (int i = 0; i < WORKERS; i++) {
		vcpu_faults += t[i].faults;
		bad += t[i].bad;
	}
	uint64_t *waits = calloc((size_t)vcpu_faults + 1, sizeof(uint64_t));
	for (int i = 0; i < WORKERS; i++)
		for (long k = 0; k < t[i].faults; k++)
			waits[nwaits++] = t[i].waits_ns[k];
	qsort(waits, nwaits, sizeof(*waits), cmp_u64);

	int status;
	if (waitpid(src, &status, 0) < 0)
		die("destination", "waitpid", -errno);

	/* Each page was placed once: by a fault (one page each) or by the
	 * prefetch (a fault that met a page the prefetch placed first, or the
	 * other way round, placed nothing: EEXIST). */
	uint64_t demand = st.bytes / page_size, background = st.prefetched_bytes / page_size;
	printf("postcopy: %llu pages fetched on demand (faults of %d vCPU threads, median wait "
	       "%.0f us), %llu in the background\n",
	       (unsigned long long)demand, WORKERS,
	       nwaits ? (double)waits[nwaits / 2] / 1e3 : 0.0, (unsigned long long)background);
	printf("postcopy: every page arrived in %.1f ms (%.0f MiB/s); monitor: %llu faults, "
	       "%llu KiB placed, %llu failed\n",
	       ms, (double)mib / (ms / 1e3), (unsigned long long)st.faults,
	       (unsigned long long)((st.bytes + st.prefetched_bytes) >> 10),
	       (unsigned long long)st.failed);
	if (bad || good != npages || st.failed || st.bytes + st.prefetched_bytes != len ||
	    demand == 0 || background == 0 || st.prefetch_done_regions != 1 ||
	    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("postcopy: FAILED: %zu pages wrong, source status %#x\n", bad, status);
		return EXIT_FAILURE;
	}
	printf("postcopy: verified %zu pages\n", good);
	return EXIT_SUCCESS;
}
