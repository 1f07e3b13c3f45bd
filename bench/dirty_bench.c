/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * dirty_bench.c: dirty tracking, libuffd against hand-rolled C, in one run.
 *
 * A round writes one byte to 1%, 10% or 100% of the pages of a region
 * (evenly spread) and then asks which pages were written, re-arming them
 * (a clearing scan). Four variants, each on its own region, all pages
 * populated beforehand:
 *
 *   async libuffd  handle with WP_ASYNC (+ WP_UNPOPULATED), region with
 *                  LIBUFFD_REGION_TRACK_DIRTY, libuffd_monitor_dirty_scan
 *                  (CLEAR): one PAGEMAP_SCAN per scan, no faults.
 *   async raw      the same by hand: raw userfaultfd, WP registration,
 *                  PAGEMAP_SCAN(PAGE_IS_WRITTEN, WP_MATCHING|CHECK_WPASYNC)
 *                  on /proc/self/pagemap.
 *   sync libuffd   handle without WP_ASYNC: each first write is a WP fault
 *                  served by libuffd's monitor thread (mark + un-protect);
 *                  libuffd_monitor_dirty_scan(CLEAR) re-protects.
 *   sync raw       the same by hand: a thread that reads WP faults, sets a
 *                  bit and un-protects under a mutex; the scan takes the
 *                  bits and re-protects runs of written pages under it.
 *
 * Each repetition runs each raw/libuffd pair back to back (order
 * alternating), ROUNDS rounds each; printed are the medians of time per
 * round, the paired ratios libuffd/raw (median over repetitions of the
 * two times of one repetition), and async against sync (PAGEMAP_SCAN vs
 * WP faults, libuffd both).
 *
 * Usage: dirty_bench [--quick] [--mb N] [--reps N] [--rounds N]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libuffd.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Kernel uAPI newer than some system headers (Linux 6.7+). */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
struct b_page_region {
	uint64_t start, end, categories;
};
struct b_pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define B_PAGEMAP_SCAN _IOWR('f', 16, struct b_pm_scan_arg)
#define B_PM_SCAN_WP_MATCHING (1 << 0)
#define B_PM_SCAN_CHECK_WPASYNC (1 << 1)
#define B_PAGE_IS_WRITTEN (1 << 1)

#define PS 4096UL

static void die(const char *what)
{
	fprintf(stderr, "dirty_bench: %s: %s (%s)\n", what, strerror(errno), libuffd_last_error());
	exit(1);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static size_t npages;
static size_t words;

struct variant {
	const char *name;
	unsigned char *mem;
	/* libuffd */
	struct libuffd_monitor *m;
	uint32_t id;
	/* raw */
	int uffd, pagemap;
	pthread_t reader;
	atomic_int stop;
	pthread_mutex_t lock;
	uint64_t *bits;
	long (*scan)(struct variant *v, uint64_t *out);
};

static unsigned char *map_region(void)
{
	unsigned char *p = mmap(NULL, npages * PS, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

/* ------------------------------------------------------------ libuffd */

static long lib_scan(struct variant *v, uint64_t *out)
{
	long long n = libuffd_monitor_dirty_scan(v->m, v->id, v->mem, npages * PS,
						 LIBUFFD_DIRTY_CLEAR, out, words);
	if (n < 0)
		die("libuffd_monitor_dirty_scan");
	return (long)n;
}

static void lib_setup(struct variant *v, int async)
{
	v->mem = map_region();
	uint64_t f = LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP;
	if (async)
		f |= LIBUFFD_FEATURE_WP_ASYNC | LIBUFFD_FEATURE_WP_UNPOPULATED;
	LIBUFFD_OPTS(libuffd_open_opts, o, .flags = LIBUFFD_OPEN_NONBLOCK | LIBUFFD_OPEN_USER_ONLY,
		     .features = f, .required_features = f);
	struct libuffd_handle *h;
	if (libuffd_open(&o, &h) < 0)
		die("libuffd_open");
	if (libuffd_monitor_new(NULL, NULL, NULL, NULL, &v->m) < 0)
		die("libuffd_monitor_new");
	if (libuffd_monitor_add_handle(v->m, h, &v->id) < 0)
		die("libuffd_monitor_add_handle");
	libuffd_handle_free(h);
	LIBUFFD_OPTS(libuffd_region_opts, r, .source = LIBUFFD_SOURCE_ZERO,
		     .flags = LIBUFFD_REGION_TRACK_DIRTY, .register_mode = LIBUFFD_REGISTER_MISSING);
	if (libuffd_monitor_add_region(v->m, v->id, v->mem, npages * PS, &r) < 0)
		die("libuffd_monitor_add_region");
	if (libuffd_monitor_start(v->m) < 0)
		die("libuffd_monitor_start");
	/* Populate (placed write-protected), then start clean. */
	for (size_t i = 0; i < npages; i++)
		(void)((volatile unsigned char *)v->mem)[i * PS];
	uint64_t *tmp = calloc(words, 8);
	lib_scan(v, tmp);
	free(tmp);
	v->scan = lib_scan;
}

/* ---------------------------------------------------------------- raw */

static int raw_uffd(uint64_t features)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		die("userfaultfd");
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		die("UFFDIO_API");
	return fd;
}

static void raw_wp(int fd, uint64_t start, uint64_t len, int protect)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = start, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};
	if (ioctl(fd, UFFDIO_WRITEPROTECT, &wp) < 0)
		die("UFFDIO_WRITEPROTECT");
}

static void raw_register(struct variant *v)
{
	struct uffdio_register reg = {
		.range = { .start = (uint64_t)(uintptr_t)v->mem, .len = npages * PS },
		.mode = UFFDIO_REGISTER_MODE_WP,
	};
	if (ioctl(v->uffd, UFFDIO_REGISTER, &reg) < 0)
		die("UFFDIO_REGISTER");
}

static long raw_async_scan(struct variant *v, uint64_t *out)
{
	struct b_page_region vec[64];
	uint64_t base = (uint64_t)(uintptr_t)v->mem, end = base + npages * PS, at = base;
	long n = 0;
	memset(out, 0, words * 8);
	while (at < end) {
		struct b_pm_scan_arg a = {
			.size = sizeof a, .flags = B_PM_SCAN_WP_MATCHING | B_PM_SCAN_CHECK_WPASYNC,
			.start = at, .end = end, .vec = (uint64_t)(uintptr_t)vec, .vec_len = 64,
			.category_mask = B_PAGE_IS_WRITTEN, .return_mask = B_PAGE_IS_WRITTEN,
		};
		int r = ioctl(v->pagemap, B_PAGEMAP_SCAN, &a);
		if (r < 0)
			die("PAGEMAP_SCAN");
		for (int i = 0; i < r; i++)
			for (uint64_t p = vec[i].start; p < vec[i].end; p += PS) {
				size_t k = (p - base) / PS;
				out[k / 64] |= 1ULL << (k % 64);
				n++;
			}
		if (a.walk_end <= at || a.walk_end >= end)
			break;
		at = a.walk_end;
	}
	return n;
}

static void raw_async_setup(struct variant *v)
{
	v->mem = map_region();
	v->uffd = raw_uffd(UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_ASYNC |
			   UFFD_FEATURE_WP_UNPOPULATED);
	raw_register(v);
	for (size_t i = 0; i < npages; i++)
		((volatile unsigned char *)v->mem)[i * PS] = 1;
	raw_wp(v->uffd, (uint64_t)(uintptr_t)v->mem, npages * PS, 1);
	v->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (v->pagemap < 0)
		die("open /proc/self/pagemap");
	v->scan = raw_async_scan;
}

static void *raw_reader(void *p)
{
	struct variant *v = p;
	struct uffd_msg msgs[64];
	uint64_t base = (uint64_t)(uintptr_t)v->mem;
	while (!atomic_load(&v->stop)) {
		struct pollfd pfd = { .fd = v->uffd, .events = POLLIN };
		if (poll(&pfd, 1, 50) <= 0)
			continue;
		ssize_t got = read(v->uffd, msgs, sizeof msgs);
		if (got <= 0)
			continue;
		for (size_t i = 0; i < (size_t)got / sizeof msgs[0]; i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT ||
			    !(msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP))
				continue;
			uint64_t page = msgs[i].arg.pagefault.address & ~(PS - 1);
			size_t k = (page - base) / PS;
			pthread_mutex_lock(&v->lock);
			v->bits[k / 64] |= 1ULL << (k % 64);
			raw_wp(v->uffd, page, PS, 0);
			pthread_mutex_unlock(&v->lock);
		}
	}
	return NULL;
}

static long raw_sync_scan(struct variant *v, uint64_t *out)
{
	uint64_t base = (uint64_t)(uintptr_t)v->mem;
	long n = 0;
	pthread_mutex_lock(&v->lock);
	memcpy(out, v->bits, words * 8);
	for (size_t i = 0; i < npages;) {
		if (!(out[i / 64] >> (i % 64) & 1)) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < npages && (out[j / 64] >> (j % 64) & 1))
			j++;
		raw_wp(v->uffd, base + i * PS, (j - i) * PS, 1);
		n += (long)(j - i);
		i = j;
	}
	memset(v->bits, 0, words * 8);
	pthread_mutex_unlock(&v->lock);
	return n;
}

static void raw_sync_setup(struct variant *v)
{
	v->mem = map_region();
	v->uffd = raw_uffd(UFFD_FEATURE_PAGEFAULT_FLAG_WP);
	raw_register(v);
	for (size_t i = 0; i < npages; i++)
		((volatile unsigned char *)v->mem)[i * PS] = 1;
	raw_wp(v->uffd, (uint64_t)(uintptr_t)v->mem, npages * PS, 1);
	v->bits = calloc(words, 8);
	pthread_mutex_init(&v->lock, NULL);
	if (pthread_create(&v->reader, NULL, raw_reader, v) != 0)
		die("pthread_create");
	v->scan = raw_sync_scan;
}

/* ---------------------------------------------------------- measuring */

static int rounds = 20;

/* ROUNDS rounds of: write every stride-th page, clearing scan. Seconds
 * per round; checks the scan reported exactly the pages written. */
static double run(struct variant *v, size_t stride, uint64_t *out)
{
	size_t want = (npages + stride - 1) / stride;
	double t0 = now();
	for (int r = 0; r < rounds; r++) {
		for (size_t i = 0; i < npages; i += stride)
			((volatile unsigned char *)v->mem)[i * PS + 8] = (unsigned char)r;
		long n = v->scan(v, out);
		if ((size_t)n != want) {
			fprintf(stderr, "dirty_bench: %s: scan reported %ld pages, %zu written\n",
				v->name, n, want);
			exit(1);
		}
	}
	return (now() - t0) / rounds;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double med(double *v, int n)
{
	double *c = malloc(sizeof(double) * (size_t)n);
	memcpy(c, v, sizeof(double) * (size_t)n);
	qsort(c, (size_t)n, sizeof(double), cmp);
	double m = n % 2 ? c[n / 2] : (c[n / 2 - 1] + c[n / 2]) / 2;
	free(c);
	return m;
}

int main(int argc, char **argv)
{
	size_t mb = 64;
	int reps = 7;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			mb = 4;
			reps = 1;
			rounds = 3;
		} else if (!strcmp(argv[i], "--mb") && i + 1 < argc) {
			mb = (size_t)atol(argv[++i]);
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			reps = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			rounds = atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: dirty_bench [--quick] [--mb N] [--reps N] [--rounds N]\n");
			return 2;
		}
	}
	if (mb == 0 || reps < 1 || rounds < 1)
		return 2;
	npages = mb * (1 << 20) / PS;
	words = (npages + 63) / 64;
	uint64_t feats = 0;
	if (libuffd_probe_features(&feats) < 0)
		die("libuffd_probe_features");
	if (!(feats & LIBUFFD_FEATURE_WP_ASYNC) || !(feats & LIBUFFD_FEATURE_WP_UNPOPULATED)) {
		printf("SKIP: the kernel lacks WP_ASYNC/WP_UNPOPULATED (Linux 6.7+)\n");
		return 0;
	}
	struct variant v[4] = { { .name = "async libuffd" }, { .name = "async raw" },
				{ .name = "sync libuffd" }, { .name = "sync raw" } };
	lib_setup(&v[0], 1);
	raw_async_setup(&v[1]);
	lib_setup(&v[2], 0);
	raw_sync_setup(&v[3]);
	uint64_t *out = calloc(words, 8);
	const int pct[3] = { 1, 10, 100 };
	printf("dirty_bench: %zu MiB region (%zu pages of 4 KiB), %d rounds x %d repetitions; "
	       "a round = write 1 byte to N%% of the pages + a clearing scan\n",
	       mb, npages, rounds, reps);
	printf("%-6s %-14s %12s %12s %12s   %s\n", "pages", "variant", "median ms", "min ms", "max ms",
	       "ratio (paired median)");
	for (int f = 0; f < 3; f++) {
		size_t stride = 100 / (size_t)pct[f];
		double t[4][64];
		double ra[64], rs[64], rsa[64];
		int n = reps > 64 ? 64 : reps;
		for (int r = 0; r < n; r++) {
			for (int pair = 0; pair < 2; pair++) {
				int a = pair * 2, b = pair * 2 + 1;
				if (r % 2) {
					t[b][r] = run(&v[b], stride, out);
					t[a][r] = run(&v[a], stride, out);
				} else {
					t[a][r] = run(&v[a], stride, out);
					t[b][r] = run(&v[b], stride, out);
				}
			}
			ra[r] = t[0][r] / t[1][r];
			rs[r] = t[2][r] / t[3][r];
			rsa[r] = t[0][r] / t[2][r];
		}
		for (int i = 0; i < 4; i++) {
			double mn = t[i][0], mx = t[i][0];
			for (int r = 1; r < n; r++) {
				mn = t[i][r] < mn ? t[i][r] : mn;
				mx = t[i][r] > mx ? t[i][r] : mx;
			}
			char ratio[96] = "";
			if (i == 0)
				snprintf(ratio, sizeof ratio, "%.2fx async raw; %.3fx sync libuffd",
					 med(ra, n), med(rsa, n));
			if (i == 2)
				snprintf(ratio, sizeof ratio, "%.2fx sync raw", med(rs, n));
			printf("%4d%%  %-14s %12.3f %12.3f %12.3f   %s\n", pct[f], v[i].name,
			       med(t[i], n) * 1e3, mn * 1e3, mx * 1e3, ratio);
		}
	}
	atomic_store(&v[3].stop, 1);
	pthread_join(v[3].reader, NULL);
	for (int i = 0; i < 4; i += 2) {
		libuffd_monitor_stop(v[i].m);
		libuffd_monitor_wait(v[i].m);
		libuffd_monitor_free(v[i].m);
	}
	free(out);
	return 0;
}
