/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * handoff_bench.c: lazy restore of a region from a file, served by a
 * handler process that received the userfaultfd with libuffd_send() /
 * libuffd_recv() and runs the monitor there, against the same restore
 * served by a monitor in the faulting process itself. Same file, same
 * region, same monitor options; the pairs are interleaved and the median
 * of each side and their ratio are printed (target: hand-off <= 1.2x).
 * Then the same restore in-process from a page server process over a
 * Unix socket (LIBUFFD_SOURCE_REMOTE, libuffd_page_server_serve) against
 * the local file.
 *
 *   handoff_bench [--quick] [--mib N] [--reps N]
 */
#define _GNU_SOURCE
#include <libuffd.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "handoff_bench: %s: %s (%s)\n", what, libuffd_strerror(rc), libuffd_last_error());
	exit(1);
}

static size_t len;
static int file;

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Touch every page of mem (reads) and check a sample; the time taken. */
static double touch(const unsigned char *mem)
{
	double t0 = now_s();
	unsigned long sum = 0;
	for (size_t i = 0; i < len; i += 4096)
		sum += mem[i];
	double t = now_s() - t0;
	if (mem[len - 1] != (unsigned char)((len - 1) % 251 + 1) || sum == 0) {
		fprintf(stderr, "handoff_bench: wrong bytes restored\n");
		exit(1);
	}
	return t;
}

static void *fresh_region(struct libuffd_handle **h)
{
	void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		die("mmap", -errno);
	LIBUFFD_OPTS(libuffd_open_opts, o, .flags = LIBUFFD_OPEN_NONBLOCK);
	int rc = libuffd_open(&o, h);
	if (rc < 0)
		die("libuffd_open", rc);
	rc = libuffd_register(*h, mem, len, LIBUFFD_REGISTER_MISSING, NULL);
	if (rc < 0)
		die("libuffd_register", rc);
	return mem;
}

/* In-process: the monitor runs in this process; its pages come from the
 * file (remote < 0) or from the page server at the other end of remote. */
static double in_process_from(int remote)
{
	struct libuffd_handle *h;
	unsigned char *mem = fresh_region(&h);
	struct libuffd_monitor *m;
	int rc = libuffd_monitor_new(NULL, NULL, NULL, NULL, &m);
	if (rc < 0)
		die("libuffd_monitor_new", rc);
	uint32_t id;
	if ((rc = libuffd_monitor_add_handle(m, h, &id)) < 0)
		die("add_handle", rc);
	LIBUFFD_OPTS(libuffd_region_opts, r, .source = LIBUFFD_SOURCE_FD, .fd = file);
	if (remote >= 0) {
		r.source = LIBUFFD_SOURCE_REMOTE;
		r.fd = remote;
		r.max_in_flight = 16;
	}
	if ((rc = libuffd_monitor_add_region(m, id, mem, len, &r)) < 0)
		die("add_region", rc);
	if ((rc = libuffd_monitor_start(m)) < 0)
		die("start", rc);
	double t = touch(mem);
	libuffd_monitor_stop(m);
	libuffd_monitor_wait(m);
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(mem, len);
	return t;
}

static double in_process(void)
{
	return in_process_from(-1);
}

/* The handler process: receive, serve, stop on 'd', again until EOF. */
static void handler(int s)
{
	for (;;) {
		struct libuffd_handle *h;
		struct libuffd_region_desc d[4];
		int n = libuffd_recv(s, NULL, &h, d, 4, NULL);
		if (n == -ECONNRESET)
			_exit(0);
		if (n < 0)
			die("libuffd_recv", n);
		struct libuffd_monitor *m;
		int rc = libuffd_monitor_new(NULL, NULL, NULL, NULL, &m);
		if (rc < 0)
			die("libuffd_monitor_new", rc);
		uint32_t id;
		if ((rc = libuffd_monitor_add_handle(m, h, &id)) < 0)
			die("add_handle", rc);
		LIBUFFD_OPTS(libuffd_region_opts, r, .source = LIBUFFD_SOURCE_FD, .fd = file);
		if ((rc = libuffd_monitor_add_received(m, id, d, (size_t)n, &r)) < 0)
			die("add_received", rc);
		if ((rc = libuffd_monitor_start(m)) < 0)
			die("start", rc);
		if (write(s, "r", 1) != 1)
			_exit(1);
		char c;
		if (read(s, &c, 1) != 1)
			_exit(1);
		libuffd_monitor_stop(m);
		libuffd_monitor_wait(m);
		libuffd_monitor_free(m);
		libuffd_handle_free(h);
		if (write(s, "s", 1) != 1)
			_exit(1);
	}
}

/* Through the handler: send the uffd, wait for "ready", touch. */
static double handed_off(int s)
{
	struct libuffd_handle *h;
	unsigned char *mem = fresh_region(&h);
	struct libuffd_region_desc d = { .start = mem, .len = len, .page_size = 4096 };
	int rc = libuffd_send(s, h, &d, 1);
	if (rc < 0)
		die("libuffd_send", rc);
	char c;
	if (read(s, &c, 1) != 1 || c != 'r')
		die("handler not ready", -EPROTO);
	double t = touch(mem);
	if (write(s, "d", 1) != 1 || read(s, &c, 1) != 1)
		die("handler gone", -EPIPE);
	libuffd_handle_free(h);
	munmap(mem, len);
	return t;
}

int main(int argc, char **argv)
{
	size_t mib = 64;
	int reps = 9, quick = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = 1;
		else if (!strcmp(argv[i], "--mib") && i + 1 < argc)
			mib = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--quick] [--mib N] [--reps N]\n", argv[0]);
			return 2;
		}
	}
	if (quick) {
		mib = 4;
		reps = 1;
	}
	len = mib << 20;
	file = memfd_create("restore-image", MFD_CLOEXEC);
	unsigned char *img = malloc(len);
	for (size_t i = 0; i < len; i++)
		img[i] = (unsigned char)(i % 251 + 1);
	if (file < 0 || pwrite(file, img, len, 0) != (ssize_t)len)
		die("image file", -errno);
	free(img);

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		die("socketpair", -errno);
	pid_t pid = fork();
	if (pid == 0) {
		close(sv[0]);
		handler(sv[1]);
	}
	close(sv[1]);

	/* A page server process for the remote page source. */
	int ps[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ps))
		die("socketpair", -errno);
	pid_t server = fork();
	if (server == 0) {
		close(ps[0]);
		close(sv[0]);
		_exit(libuffd_page_server_serve(ps[1], file) >= 0 ? 0 : 1);
	}
	close(ps[1]);

	double *a = calloc(reps, sizeof *a), *b = calloc(reps, sizeof *b);
	double *fa = calloc(reps, sizeof *fa), *fr = calloc(reps, sizeof *fr);
	for (int i = 0; i < reps; i++) {
		/* Pairs interleaved, the order alternating. */
		if (i % 2) {
			b[i] = handed_off(sv[0]);
			a[i] = in_process();
		} else {
			a[i] = in_process();
			b[i] = handed_off(sv[0]);
		}
	}
	for (int i = 0; i < reps; i++) {
		if (i % 2) {
			fr[i] = in_process_from(ps[0]);
			fa[i] = in_process();
		} else {
			fa[i] = in_process();
			fr[i] = in_process_from(ps[0]);
		}
	}
	close(sv[0]);
	close(ps[0]);
	int status, sstatus;
	waitpid(pid, &status, 0);
	waitpid(server, &sstatus, 0);
	qsort(fa, reps, sizeof *fa, cmp);
	qsort(fr, reps, sizeof *fr, cmp);
	qsort(a, reps, sizeof *a, cmp);
	qsort(b, reps, sizeof *b, cmp);
	double ma = a[reps / 2], mb = b[reps / 2];
	printf("lazy restore of %zu MiB from a file (%d reps, median)\n", mib, reps);
	printf("  in-process monitor          %8.2f ms  %8.0f MiB/s\n", ma * 1e3, mib / ma);
	printf("  handler process (hand-off)  %8.2f ms  %8.0f MiB/s\n", mb * 1e3, mib / mb);
	printf("  ratio hand-off / in-process %8.2fx (target <= 1.2x)\n", mb / ma);
	double la = fa[reps / 2], lr = fr[reps / 2];
	printf("page source, in-process monitor (%d reps, median)\n", reps);
	printf("  local file (SOURCE_FD)      %8.2f ms  %8.0f MiB/s\n", la * 1e3, mib / la);
	printf("  page server (SOURCE_REMOTE) %8.2f ms  %8.0f MiB/s\n", lr * 1e3, mib / lr);
	printf("  ratio remote / local        %8.2fx\n", lr / la);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "handoff_bench: the handler process failed (status %#x)\n", status);
		return 1;
	}
	return 0;
}
