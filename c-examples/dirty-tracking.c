/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * dirty-tracking: incremental checkpoints of a memory region. A first
 * checkpoint saves the whole region (the base); each later one saves only
 * the pages written since the one before (an increment). Restoring the
 * base and then every increment in order gives the memory back.
 *
 * libuffd tracks the written pages (LIBUFFD_REGION_TRACK_DIRTY) and
 * libuffd_monitor_dirty_scan() with LIBUFFD_DIRTY_CLEAR reports them and
 * re-arms them in the same call, two ways, done here side by side on two
 * identical regions receiving the same writes:
 *
 *  - async: a userfaultfd with LIBUFFD_FEATURE_WP_ASYNC (Linux 6.7+). The
 *    kernel itself records a write-protected page's first write and lets
 *    it through: no fault ever reaches the monitor, the application's
 *    writes run at full speed, and a scan is one PAGEMAP_SCAN ioctl;
 *  - sync: a userfaultfd without it (LIBUFFD_REGION_DIRTY_SYNC insists on
 *    this path). Each page's first write after a checkpoint is a
 *    write-protect fault the monitor serves (it calls on_write, marks the
 *    page, un-protects it); a scan reads the monitor's bitmap and
 *    write-protects the reported pages again. This works on any kernel
 *    with userfaultfd write-protection (5.7+), and on_write sees each
 *    first write as it happens.
 *
 * Each round, the application writes to a random subset of pages (the
 * same for both regions), then checkpoints each region. This application
 * does not write while it checkpoints; one that does would get, in each
 * increment, every page written before its scan, and a page written during
 * the copy again in the next increment (a scan never loses a write), but
 * no point-in-time image: that is what libuffd_snapshot_begin() is for
 * (see db-snapshot).
 *
 * Checks: each scan reports exactly the pages written that round, the sync
 * path's on_write saw each of them once, and base + increments read back
 * from each checkpoint file equal the region's memory. Prints, per round
 * and on average, the pages written, the application's writing time and
 * the checkpoint's time (scan + save) for each path.
 *
 * Usage: dirty-tracking
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <libuffd.h>

#define PAGES 4096 /* 16 MiB of 4 KiB pages */
#define WORDS (PAGES / 64)
#define ROUNDS 8

/* Percent of the pages written in each round. */
static const unsigned percent[ROUNDS] = { 1, 5, 10, 25, 50, 10, 2, 100 };

struct tracker {
	const char *name;
	int async;
	libuffd_monitor *m;
	uint32_t id;
	unsigned char *mem;
	FILE *ckpt;            /* the checkpoint file: base, then increments */
	uint64_t bits[WORDS];  /* the last scan's result */
	uint64_t write_ns[ROUNDS], ckpt_ns[ROUNDS], scan_ns[ROUNDS];
};

static size_t ps;
static atomic_ulong on_write_calls;

static void die(const char *what, long err)
{
	fprintf(stderr, "dirty-tracking: %s: %s\n  %s\n", what, libuffd_strerror((int)err),
		libuffd_last_error());
	exit(EXIT_FAILURE);
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t next(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

/* Sync path only: a page's first write since the last checkpoint. */
static void on_write(void *user_data, libuffd_monitor *m, uint32_t id, void *page,
		     uint64_t page_size, void *region_data)
{
	(void)user_data; (void)m; (void)id; (void)page; (void)page_size; (void)region_data;
	atomic_fetch_add(&on_write_calls, 1);
}

static void tracker_init(struct tracker *t, const char *name, int async, const unsigned char *init)
{
	t->name = name;
	t->async = async;
	t->mem = mmap(NULL, PAGES * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (t->mem == MAP_FAILED)
		die("mmap", -errno);
	madvise(t->mem, PAGES * ps, MADV_NOHUGEPAGE); /* track 4 KiB pages, not 2 MiB ones */
	memcpy(t->mem, init, PAGES * ps);

	/* Only this process's own code writes the region: user-mode faults
	 * are enough, so no privilege is needed. */
	uint64_t f = LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP;
	if (async)
		f |= LIBUFFD_FEATURE_WP_ASYNC | LIBUFFD_FEATURE_WP_UNPOPULATED;
	LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_NONBLOCK | LIBUFFD_OPEN_USER_ONLY,
		     .features = f, .required_features = f);
	libuffd_handle *h;
	int rc = libuffd_open(&oo, &h);
	if (rc < 0)
		die(async ? "libuffd_open with WP_ASYNC" : "libuffd_open", rc);
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_write = on_write);
	if ((rc = libuffd_monitor_new(NULL, &ops, NULL, NULL, &t->m)) < 0)
		die("libuffd_monitor_new", rc);
	if ((rc = libuffd_monitor_add_handle(t->m, h, &t->id)) < 0)
		die("libuffd_monitor_add_handle", rc);
	libuffd_handle_free(h); /* the monitor keeps its own reference */

	/* The region: registered MISSING (never-touched pages would read as
	 * zeros) plus WP, and write-protected whole by add_region. */
	LIBUFFD_OPTS(libuffd_region_opts, ro, .source = LIBUFFD_SOURCE_ZERO,
		     .flags = LIBUFFD_REGION_TRACK_DIRTY | (async ? 0 : LIBUFFD_REGION_DIRTY_SYNC),
		     .register_mode = LIBUFFD_REGISTER_MISSING);
	if ((rc = libuffd_monitor_add_region(t->m, t->id, t->mem, PAGES * ps, &ro)) < 0)
		die("libuffd_monitor_add_region", rc);
	if ((rc = libuffd_monitor_start(t->m)) < 0)
		die("libuffd_monitor_start", rc);

	/* The base checkpoint: the whole region, written since tracking
	 * began (nothing writes it meanwhile). */
	t->ckpt = tmpfile();
	if (!t->ckpt || fwrite(t->mem, ps, PAGES, t->ckpt) != PAGES)
		die("writing the base checkpoint", -errno);
}

/* Save the pages written since the last checkpoint: the count, their
 * numbers, then the pages. Returns the number of pages saved. */
static size_t checkpoint(struct tracker *t, int round)
{
	uint64_t t0 = now_ns();
	int64_t n = libuffd_monitor_dirty_scan(t->m, t->id, t->mem, PAGES * ps, LIBUFFD_DIRTY_CLEAR,
					       t->bits, WORDS);
	if (n < 0)
		die("libuffd_monitor_dirty_scan", n);
	uint64_t t1 = now_ns();
	uint64_t count = (uint64_t)n;
	if (fwrite(&count, sizeof count, 1, t->ckpt) != 1)
		die("writing a checkpoint", -errno);
	for (uint64_t p = 0; p < PAGES; p++)
		if (t->bits[p / 64] >> (p % 64) & 1)
			if (fwrite(&p, sizeof p, 1, t->ckpt) != 1)
				die("writing a checkpoint", -errno);
	for (uint64_t p = 0; p < PAGES; p++)
		if (t->bits[p / 64] >> (p % 64) & 1)
			if (fwrite(t->mem + p * ps, ps, 1, t->ckpt) != 1)
				die("writing a checkpoint", -errno);
	if (fflush(t->ckpt) != 0)
		die("writing a checkpoint", -errno);
	uint64_t t2 = now_ns();
	t->scan_ns[round] = t1 - t0;
	t->ckpt_ns[round] = t2 - t0;
	return (size_t)count;
}

/* Read the checkpoint file back (base, then each increment in order) into
 * new memory and compare with the region. Returns the increments applied,
 * or -1 if the result differs from the region. */
static int restore_and_compare(struct tracker *t)
{
	unsigned char *img = malloc(PAGES * ps), *page = malloc(ps);
	uint64_t *index = malloc(PAGES * sizeof *index);
	if (!img || !page || !index)
		die("malloc", -ENOMEM);
	rewind(t->ckpt);
	if (fread(img, ps, PAGES, t->ckpt) != PAGES)
		die("reading the base checkpoint", -EIO);
	int increments = 0;
	uint64_t count;
	while (fread(&count, sizeof count, 1, t->ckpt) == 1) {
		if (count > PAGES || fread(index, sizeof *index, count, t->ckpt) != count)
			die("reading an increment", -EIO);
		for (uint64_t i = 0; i < count; i++) {
			if (index[i] >= PAGES || fread(page, ps, 1, t->ckpt) != 1)
				die("reading an increment", -EIO);
			memcpy(img + index[i] * ps, page, ps);
		}
		increments++;
	}
	int same = memcmp(img, t->mem, PAGES * ps) == 0;
	free(img);
	free(page);
	free(index);
	return same ? increments : -1;
}

static void tracker_end(struct tracker *t)
{
	libuffd_monitor_stop(t->m);
	int rc = libuffd_monitor_wait(t->m);
	if (rc < 0)
		die("monitor run", rc);
	libuffd_monitor_free(t->m);
	fclose(t->ckpt);
	munmap(t->mem, PAGES * ps);
}

static double avg_us(const uint64_t *ns)
{
	uint64_t s = 0;
	for (int r = 0; r < ROUNDS; r++)
		s += ns[r];
	return (double)s / ROUNDS / 1e3;
}

int main(void)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	unsigned char *init = malloc(PAGES * ps);
	if (!init)
		return EXIT_FAILURE;
	uint64_t x = 0x2545f4914f6cdd1dULL;
	for (size_t i = 0; i < PAGES * ps / 8; i++)
		((uint64_t *)init)[i] = next(&x);

	struct tracker tr[2];
	tracker_init(&tr[0], "async", 1, init);
	tracker_init(&tr[1], "sync", 0, init);
	free(init);

	printf("dirty-tracking: %d pages of %zu KiB, %d rounds; async = WP_ASYNC + PAGEMAP_SCAN, "
	       "sync = WP faults through the monitor\n", PAGES, ps / 1024, ROUNDS);
	printf("dirty-tracking: round  pages | async: writes  checkpoint (scan) | "
	       "sync: writes  checkpoint (scan)   [us]\n");

	static uint64_t written[WORDS];  /* the pages a round writes */
	static uint32_t pick[2 * PAGES]; /* the page of each write */
	size_t total_pages = 0, mismatches = 0;
	unsigned long on_write_expected = 0;
	for (int r = 0; r < ROUNDS; r++) {
		/* The round's subset: percent[r] of the pages, chosen at random
		 * (a few picked twice: a second write to a page is not a second
		 * dirty page); each written at random offsets. */
		size_t picks = PAGES * percent[r] / 100, dirty = 0;
		memset(written, 0, sizeof written);
		for (size_t i = 0; i < picks; i++) {
			uint64_t p = next(&x) % PAGES;
			if (percent[r] == 100)
				p = i; /* every page */
			pick[i] = (uint32_t)p;
			if (!(written[p / 64] >> (p % 64) & 1))
				dirty++;
			written[p / 64] |= 1ULL << (p % 64);
		}
		for (size_t i = 0; i < picks / 8; i++) /* some pages twice */
			pick[picks + i] = pick[i];
		size_t writes = picks + picks / 8;
		uint64_t seed = next(&x);

		for (int k = 0; k < 2; k++) {
			struct tracker *t = &tr[k];
			uint64_t y = seed, t0 = now_ns();
			for (size_t i = 0; i < writes; i++) {
				uint64_t v = next(&y);
				size_t off = (v >> 40) % (ps / 8) * 8;
				*(volatile uint64_t *)(t->mem + pick[i] * ps + off) = v;
			}
			t->write_ns[r] = now_ns() - t0;
			size_t saved = checkpoint(t, r);
			if (saved != dirty || memcmp(t->bits, written, sizeof written) != 0) {
				printf("dirty-tracking: %s round %d: the scan reported %zu pages, %zu were written\n",
				       t->name, r + 1, saved, dirty);
				mismatches++;
			}
		}
		on_write_expected += dirty;
		total_pages += dirty;
		printf("dirty-tracking: %5d %6zu | %13.0f %11.0f (%4.0f) | %12.0f %11.0f (%4.0f)\n", r + 1,
		       dirty, tr[0].write_ns[r] / 1e3, tr[0].ckpt_ns[r] / 1e3, tr[0].scan_ns[r] / 1e3,
		       tr[1].write_ns[r] / 1e3, tr[1].ckpt_ns[r] / 1e3, tr[1].scan_ns[r] / 1e3);
	}

	for (int k = 0; k < 2; k++)
		printf("dirty-tracking: %s (%s): %.0f us per checkpoint (scan %.0f us), %zu pages per "
		       "round; application's writes %.0f us per round (%.2f us per page)\n", tr[k].name,
		       k ? "WP faults" : "WP_ASYNC + PAGEMAP_SCAN", avg_us(tr[k].ckpt_ns),
		       avg_us(tr[k].scan_ns), total_pages / ROUNDS, avg_us(tr[k].write_ns),
		       avg_us(tr[k].write_ns) * ROUNDS / (double)total_pages);

	unsigned long seen = atomic_load(&on_write_calls);
	printf("dirty-tracking: sync on_write calls: %lu for %lu first writes\n", seen, on_write_expected);
	int restored[2];
	for (int k = 0; k < 2; k++)
		restored[k] = restore_and_compare(&tr[k]);
	printf("dirty-tracking: restore of base + increments equals memory: async %s, sync %s\n",
	       restored[0] == ROUNDS ? "yes" : "NO", restored[1] == ROUNDS ? "yes" : "NO");
	for (int k = 0; k < 2; k++)
		tracker_end(&tr[k]);
	if (mismatches || seen != on_write_expected || restored[0] != ROUNDS || restored[1] != ROUNDS) {
		printf("dirty-tracking: FAILED\n");
		return EXIT_FAILURE;
	}
	printf("dirty-tracking: verified %d incremental checkpoints, both ways\n", ROUNDS);
	return EXIT_SUCCESS;
}
