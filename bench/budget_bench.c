/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * budget_bench: a budgeted region over a file (libuffd_region_opts.
 * max_resident) against a UMap-style hand-rolled fill+evict loop, in one
 * process, interleaved over repetitions.
 *
 * Both serve a fresh anonymous mapping of --pages pages from a file (a
 * memfd: the page cache, no disk), with a resident budget of a quarter of
 * them. One application thread makes --accesses random accesses (one byte
 * of a random page; every other access a write), the same sequence for
 * both. A fault on a missing page evicts first when the budget is full
 * (clock: second chance for pages faulted since the hand passed), writing
 * a dirty victim back (write-protect it, pwrite it to the file) before
 * dropping it (MADV_DONTNEED), then fills the page (pread + UFFDIO_COPY).
 * A page faulted by a read is placed write-protected (MODE_WP), and its
 * first write is a write-protect fault that marks it dirty and un-protects
 * it; a page faulted by a write is placed writable and dirty (as UMap's
 * fill workers do). Served by:
 *   hand-rolled  raw userfaultfd, one reader thread doing all of the above,
 *                evicting one page per fault with its own madvise (what a
 *                UMap-like client writes: UMap's evict workers do that);
 *   libuffd      the monitor (default configuration: its own thread), a
 *                LIBUFFD_SOURCE_FD region with LIBUFFD_REGION_WRITEBACK_FD
 *                on the same file and max_resident.
 * Printed: for each, the median time, faults (page-fault messages, missing
 * and write-protect) per second, the process's CPU time (all threads, user
 * and kernel) per fault, evictions and write-backs per repetition; then,
 * each the median over repetitions of the pair measured in that
 * repetition: the speed ratio, hand-rolled time / libuffd time for the
 * same accesses (higher is better, target >= 1.0; the two need not take
 * the same number of faults: libuffd evicts a batch when the budget is
 * full, so it keeps a few pages fewer resident and may fault a little
 * more); the ratio of faults/s; and the ratio of CPU time for the same
 * accesses (lower is better: less sensitive to other load on the machine
 * than elapsed time).
 *
 * --scan: the accesses go through the pages in order instead (page i % N,
 * every other one a write; --accesses defaults to two passes): a table
 * scan, where libuffd's fault-around within the budget places the pages
 * after the faulting one into the room its batch eviction leaves; the
 * hand-rolled loop, like UMap without read-ahead, takes one page per fault.
 *
 * Usage: budget_bench [--quick] [--scan] [--pages N] [--accesses N] [--reps N] [--only hand|libuffd]
 * (--only runs one variant, no ratio: for profiling it alone)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libuffd.h>

#define PS 4096UL

static size_t pages = 16384, accesses = 100000;
static int reps = 7;
/* --only hand|libuffd: run one variant (for profiling it alone). */
static const char *only;

static void die(const char *what)
{
	fprintf(stderr, "budget_bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* CPU time of the whole process (every thread, user and kernel). */
static double cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int make_file(void)
{
	int fd = memfd_create("budget-bench", MFD_CLOEXEC);
	if (fd < 0)
		die("memfd_create");
	unsigned char *b = malloc(PS);
	for (size_t p = 0; p < pages; p++) {
		memset(b, (int)(p % 251) + 1, PS);
		if (pwrite(fd, b, PS, (off_t)(p * PS)) != (ssize_t)PS)
			die("pwrite");
	}
	free(b);
	return fd;
}

static char *map_region(void)
{
	void *p = mmap(NULL, pages * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

/* The application: the same random accesses for both (or, with --scan,
 * the pages in order, over and over: a table scan). */
static unsigned long long sink;
static int scan;
static int accesses_given;

static void access_all(char *mem)
{
	uint64_t x = 0x9e3779b97f4a7c15ULL;
	unsigned long long sum = 0;
	for (size_t i = 0; i < accesses; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t page = scan ? i % pages : (size_t)(x % pages);
		size_t off = (size_t)((x >> 32) % PS);
		volatile char *a = mem + page * PS + off;
		if (i & 1)
			*a = (char)i;
		else
			sum += (unsigned char)*a;
	}
	sink += sum;
}

struct result {
	double secs, cpu;
	uint64_t faults, evictions, writebacks;
};

/* ------------------------------------------------------- hand-rolled */

struct hand {
	int uffd, stopfd, file;
	char *mem;
	size_t budget;
	unsigned char *state; /* per page: RES 1, DIRTY 2, REF 4 */
	size_t hand, resident;
	char *buf;
	uint64_t faults, evictions, writebacks;
};

enum { RES = 1, DIRTY = 2, REF = 4 };

static void wp(struct hand *h, uint64_t addr, int on)
{
	struct uffdio_writeprotect w = { .range = { addr, PS }, .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };
	if (ioctl(h->uffd, UFFDIO_WRITEPROTECT, &w) < 0)
		die("UFFDIO_WRITEPROTECT");
}

static void evict_one(struct hand *h)
{
	for (;;) {
		size_t v = h->hand;
		h->hand = (h->hand + 1) % pages;
		unsigned char s = h->state[v];
		if (!(s & RES))
			continue;
		if (s & REF) {
			h->state[v] = s & ~REF;
			continue;
		}
		char *a = h->mem + v * PS;
		if (s & DIRTY) {
			/* Protect first, so that no write lands between the
			 * pwrite and the drop (the reader is this thread: the
			 * write fault waits until it is read). */
			wp(h, (uint64_t)a, 1);
			if (pwrite(h->file, a, PS, (off_t)(v * PS)) != (ssize_t)PS)
				die("pwrite (write-back)");
			h->writebacks++;
		}
		if (madvise(a, PS, MADV_DONTNEED) < 0)
			die("madvise");
		h->state[v] = 0;
		h->resident--;
		h->evictions++;
		return;
	}
}

static void *hand_reader(void *arg)
{
	struct hand *h = arg;
	struct pollfd pf[2] = { { h->uffd, POLLIN, 0 }, { h->stopfd, POLLIN, 0 } };
	struct uffd_msg msg;
	for (;;) {
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			die("poll");
		if (pf[1].revents)
			return NULL;
		ssize_t n = read(h->uffd, &msg, sizeof msg);
		if (n < 0 && errno == EAGAIN)
			continue;
		if (n != sizeof msg)
			die("read");
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		h->faults++;
		uint64_t addr = msg.arg.pagefault.address & ~(PS - 1);
		size_t i = (addr - (uint64_t)h->mem) / PS;
		if (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
			h->state[i] |= DIRTY | REF;
			wp(h, addr, 0);
			continue;
		}
		if (!(h->state[i] & RES)) {
			while (h->resident >= h->budget)
				evict_one(h);
		}
		if (pread(h->file, h->buf, PS, (off_t)(i * PS)) != (ssize_t)PS)
			die("pread");
		/* A read fault places the page write-protected (its first
		 * write faults and marks it dirty); a write fault places it
		 * writable and dirty at once, as UMap's fill workers do. */
		int write = (msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0;
		struct uffdio_copy c = { .dst = addr, .src = (uint64_t)h->buf, .len = PS,
					 .mode = write ? 0 : UFFDIO_COPY_MODE_WP };
		if (ioctl(h->uffd, UFFDIO_COPY, &c) < 0) {
			if (errno != EEXIST)
				die("UFFDIO_COPY");
			struct uffdio_range r = { addr, PS };
			ioctl(h->uffd, UFFDIO_WAKE, &r);
			continue;
		}
		if (!(h->state[i] & RES))
			h->resident++;
		h->state[i] = write ? RES | REF | DIRTY : RES | REF;
	}
}

static struct result run_hand(int file)
{
	struct hand h = { .file = file, .budget = pages / 4 };
	h.mem = map_region();
	h.state = calloc(pages, 1);
	h.buf = aligned_alloc(PS, PS);
	h.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (h.uffd < 0)
		die("userfaultfd");
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };
	if (ioctl(h.uffd, UFFDIO_API, &api) < 0)
		die("UFFDIO_API");
	struct uffdio_register reg = { .range = { (uint64_t)h.mem, pages * PS },
				       .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP };
	if (ioctl(h.uffd, UFFDIO_REGISTER, &reg) < 0)
		die("UFFDIO_REGISTER");
	h.stopfd = eventfd(0, EFD_CLOEXEC);
	pthread_t t;
	pthread_create(&t, NULL, hand_reader, &h);
	double c0 = cpu(), t0 = now();
	access_all(h.mem);
	double t1 = now(), c1 = cpu();
	uint64_t one = 1;
	if (write(h.stopfd, &one, sizeof one) != sizeof one)
		die("eventfd");
	pthread_join(t, NULL);
	struct result r = { t1 - t0, c1 - c0, h.faults, h.evictions, h.writebacks };
	close(h.uffd);
	close(h.stopfd);
	munmap(h.mem, pages * PS);
	free(h.state);
	free(h.buf);
	return r;
}

/* ----------------------------------------------------------- libuffd */

static struct result run_libuffd(int file)
{
	char *mem = map_region();
	LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_NONBLOCK,
		     .features = LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP,
		     .required_features = LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP);
	libuffd_handle *h = NULL;
	libuffd_monitor *m = NULL;
	uint32_t id;
	if (libuffd_open(&oo, &h) < 0 || libuffd_monitor_new(NULL, NULL, NULL, NULL, &m) < 0 ||
	    libuffd_monitor_add_handle(m, h, &id) < 0) {
		fprintf(stderr, "budget_bench: libuffd: %s\n", libuffd_last_error());
		exit(1);
	}
	libuffd_handle_free(h);
	LIBUFFD_OPTS(libuffd_region_opts, r, .source = LIBUFFD_SOURCE_FD, .fd = file,
		     .register_mode = LIBUFFD_REGISTER_MISSING, .max_resident = pages / 4 * PS,
		     .flags = LIBUFFD_REGION_WRITEBACK_FD, .writeback_fd = file);
	if (libuffd_monitor_add_region(m, id, mem, pages * PS, &r) < 0 || libuffd_monitor_start(m) < 0) {
		fprintf(stderr, "budget_bench: libuffd: %s\n", libuffd_last_error());
		exit(1);
	}
	double c0 = cpu(), t0 = now();
	access_all(mem);
	double t1 = now(), c1 = cpu();
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	libuffd_monitor_get_stats(m, &st);
	libuffd_monitor_stop(m);
	libuffd_monitor_wait(m);
	libuffd_monitor_free(m);
	munmap(mem, pages * PS);
	if (st.failed || st.writeback_failures) {
		fprintf(stderr, "budget_bench: libuffd: %llu failed faults, %llu failed write-backs\n",
			(unsigned long long)st.failed, (unsigned long long)st.writeback_failures);
		exit(1);
	}
	return (struct result){ t1 - t0, c1 - c0, st.faults, st.evictions, st.writebacks };
}

/* ------------------------------------------------------------- main */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			pages = 1024;
			accesses = 20000;
			reps = 1;
		} else if (!strcmp(argv[i], "--scan")) {
			scan = 1;
		} else if (!strcmp(argv[i], "--pages") && i + 1 < argc) {
			pages = strtoul(argv[++i], NULL, 0);
		} else if (!strcmp(argv[i], "--accesses") && i + 1 < argc) {
			accesses = strtoul(argv[++i], NULL, 0);
			accesses_given = 1;
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			reps = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			only = argv[++i];
		} else {
			fprintf(stderr, "usage: budget_bench [--quick] [--scan] [--pages N] [--accesses N] [--reps N] "
					"[--only hand|libuffd]\n");
			return 2;
		}
	}
	if (pages < 8 || accesses < 1 || reps < 1) {
		fprintf(stderr, "budget_bench: --pages >= 8, --accesses >= 1, --reps >= 1\n");
		return 2;
	}
	if (scan && !accesses_given)
		accesses = 2 * pages;
	printf("budget_bench: libuffd %s, %zu pages (%zu MiB) over a file, budget %zu pages, %zu %s accesses "
	       "(half writes), %d repetitions, pairs interleaved\n",
	       libuffd_version_string(), pages, pages * PS >> 20, pages / 4, accesses, scan ? "sequential" : "random",
	       reps);
	double *ht = calloc((size_t)reps, sizeof(double)), *lt = calloc((size_t)reps, sizeof(double));
	double *ratio = calloc((size_t)reps, sizeof(double));
	double *hf = calloc((size_t)reps, sizeof(double)), *lf = calloc((size_t)reps, sizeof(double));
	double *hc = calloc((size_t)reps, sizeof(double)), *lc = calloc((size_t)reps, sizeof(double));
	double *cratio = calloc((size_t)reps, sizeof(double));
	double *fratio = calloc((size_t)reps, sizeof(double));
	struct result hr = { 0 }, lr = { 0 };
	if (only) {
		for (int k = 0; k < reps; k++) {
			int file = make_file();
			struct result r = !strcmp(only, "hand") ? run_hand(file) : run_libuffd(file);
			close(file);
			printf("%s: %.1f ms, %.0f faults/s, %.2f cpu us/fault\n", only, r.secs * 1e3, r.faults / r.secs,
			       r.cpu / r.faults * 1e6);
		}
		return 0;
	}
	for (int k = 0; k < reps; k++) {
		int file = make_file();
		/* Alternate which goes first. */
		if (k % 2 == 0) {
			hr = run_hand(file);
			lr = run_libuffd(file);
		} else {
			lr = run_libuffd(file);
			hr = run_hand(file);
		}
		close(file);
		if (!hr.faults || !lr.faults || !hr.evictions || !lr.evictions || !lr.writebacks) {
			fprintf(stderr, "budget_bench: no faults, evictions or write-backs measured\n");
			return 1;
		}
		ht[k] = hr.secs;
		lt[k] = lr.secs;
		hf[k] = hr.faults / hr.secs;
		lf[k] = lr.faults / lr.secs;
		ratio[k] = hr.secs / lr.secs;
		fratio[k] = lf[k] / hf[k];
		hc[k] = hr.cpu / hr.faults * 1e6;
		lc[k] = lr.cpu / lr.faults * 1e6;
		cratio[k] = lr.cpu / hr.cpu;
	}
	printf("%-12s %10s %12s %12s %10s %10s %10s\n", "variant", "ms", "faults/s", "cpu us/fault", "faults",
	       "evictions", "writebacks");
	printf("%-12s %10.1f %12.0f %12.2f %10llu %10llu %10llu\n", "hand-rolled", median(ht, reps) * 1e3,
	       median(hf, reps), median(hc, reps), (unsigned long long)hr.faults,
	       (unsigned long long)hr.evictions, (unsigned long long)hr.writebacks);
	printf("%-12s %10.1f %12.0f %12.2f %10llu %10llu %10llu\n", "libuffd", median(lt, reps) * 1e3,
	       median(lf, reps), median(lc, reps), (unsigned long long)lr.faults,
	       (unsigned long long)lr.evictions, (unsigned long long)lr.writebacks);
	double rmin = ratio[0], rmax = ratio[0];
	for (int k = 1; k < reps; k++) {
		rmin = ratio[k] < rmin ? ratio[k] : rmin;
		rmax = ratio[k] > rmax ? ratio[k] : rmax;
	}
	printf("speed ratio (hand-rolled time / libuffd time, same accesses, median of pairs): %.3fx (%.3f..%.3f); "
	       "target >= 1.0\n",
	       median(ratio, reps), rmin, rmax);
	printf("faults/s ratio (libuffd / hand-rolled, median of pairs): %.3fx\n", median(fratio, reps));
	printf("cpu ratio (libuffd cpu / hand-rolled cpu, same accesses, median of pairs): %.3fx; lower is better\n",
	       median(cratio, reps));
	(void)sink;
	return 0;
}
