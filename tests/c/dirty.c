/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * dirty.c: LIBUFFD_REGION_TRACK_DIRTY and libuffd_monitor_dirty_scan() on
 * anonymous, shmem (memfd) and hugetlb memory, synchronous (WP faults
 * through the monitor, on_write) and asynchronous (WP_ASYNC +
 * PAGEMAP_SCAN): reads are not writes, written pages are reported, CLEAR
 * re-arms them, and with 4 writer threads running no write that completed
 * after a scan returned is missing from the next scan. Bad input: NULL
 * monitor or bitmap, unknown flags or handle, a range outside the region,
 * a bitmap too small (-ERANGE), a caller registration without WP.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>

#define HUGE (2UL << 20)

enum kind { ANON, SHMEM, HUGETLB };
static const char *kind_name[] = { "anon", "shmem", "hugetlb" };

static atomic_long on_write_calls;

static void on_write(void *user, struct libuffd_monitor *m, uint32_t id, void *page,
		     uint64_t page_size, void *region_data)
{
	(void)user; (void)m; (void)id; (void)page; (void)page_size;
	if (region_data == (void *)0x77)
		atomic_fetch_add(&on_write_calls, 1);
}

static void *map_kind(enum kind k, size_t len)
{
	int fd = -1, flags = MAP_SHARED;
	if (k == ANON)
		return h_map_anon(len);
	fd = memfd_create("dirty", MFD_CLOEXEC | (k == HUGETLB ? MFD_HUGETLB : 0));
	if (fd < 0 || ftruncate(fd, (off_t)len) != 0)
		return NULL;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

static uint64_t features_of(enum kind k, int async)
{
	uint64_t f = LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP;
	if (k != ANON)
		f |= LIBUFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	if (k == SHMEM)
		f |= LIBUFFD_FEATURE_MISSING_SHMEM;
	if (k == HUGETLB)
		f |= LIBUFFD_FEATURE_MISSING_HUGETLBFS;
	if (async)
		f |= LIBUFFD_FEATURE_WP_ASYNC | LIBUFFD_FEATURE_WP_UNPOPULATED;
	return f;
}

struct setup {
	struct libuffd_monitor *m;
	uint32_t id;
	unsigned char *mem;
	unsigned char *src;
	size_t len, ps, pages;
};

static int setup(struct setup *s, enum kind k, int async, size_t pages)
{
	s->ps = k == HUGETLB ? HUGE : 4096;
	s->pages = pages;
	s->len = pages * s->ps;
	s->mem = map_kind(k, s->len);
	if (!s->mem)
		return -1;
	s->src = malloc(s->len);
	for (size_t i = 0; i < s->len; i++)
		s->src[i] = (unsigned char)(i * 7 + 1);
	LIBUFFD_OPTS(libuffd_open_opts, o, .flags = LIBUFFD_OPEN_NONBLOCK,
		     .features = features_of(k, async), .required_features = features_of(k, async));
	struct libuffd_handle *h = NULL;
	CHECK_OK(libuffd_open(&o, &h));
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_write = on_write);
	CHECK_OK(libuffd_monitor_new(NULL, &ops, NULL, NULL, &s->m));
	CHECK_OK(libuffd_monitor_add_handle(s->m, h, &s->id));
	libuffd_handle_free(h);
	LIBUFFD_OPTS(libuffd_region_opts, r, .source = LIBUFFD_SOURCE_BUFFER,
		     .flags = LIBUFFD_REGION_TRACK_DIRTY, .register_mode = LIBUFFD_REGISTER_MISSING,
		     .buffer = s->src, .buffer_len = s->len, .data = (void *)0x77);
	CHECK_OK(libuffd_monitor_add_region(s->m, s->id, s->mem, s->len, &r));
	CHECK_OK(libuffd_monitor_start(s->m));
	return 0;
}

static void teardown(struct setup *s)
{
	libuffd_monitor_stop(s->m);
	libuffd_monitor_wait(s->m);
	libuffd_monitor_free(s->m);
	munmap(s->mem, s->len);
	free(s->src);
}

/* Scan with flags; the number reported; bits in out (words enough). */
static long long scan(struct setup *s, uint32_t flags, uint64_t *out, size_t words)
{
	return libuffd_monitor_dirty_scan(s->m, s->id, s->mem, s->len, flags, out, words);
}

static int bit(const uint64_t *b, size_t i)
{
	return (int)((b[i / 64] >> (i % 64)) & 1);
}

static void basic(enum kind k, int async)
{
	struct setup s;
	char name[64];
	snprintf(name, sizeof name, "basic %s %s", kind_name[k], async ? "async" : "sync");
	SECTION(name);
	size_t pages = k == HUGETLB ? 4 : 16;
	if (setup(&s, k, async, pages) != 0) {
		printf("SKIP: %s: no memory of this kind (%s)\n", name, strerror(errno));
		return;
	}
	uint64_t b[1];
	long before = atomic_load(&on_write_calls);
	for (size_t i = 0; i < pages / 2; i++)
		CHECK_EQ(s.mem[i * s.ps + 3], s.src[i * s.ps + 3]);
	CHECK_RET(scan(&s, LIBUFFD_DIRTY_CLEAR, b, 1), 0);
	size_t w[3] = { 1, pages / 2, pages - 1 };
	for (int j = 0; j < 3; j++)
		s.mem[w[j] * s.ps + 9] = 0xEE;
	CHECK_RET(scan(&s, 0, b, 1), 3);
	CHECK_RET(scan(&s, LIBUFFD_DIRTY_CLEAR, b, 1), 3);
	for (size_t i = 0; i < pages; i++)
		CHECK_EQ(bit(b, i), (i == w[0] || i == w[1] || i == w[2]));
	CHECK_RET(scan(&s, LIBUFFD_DIRTY_CLEAR, b, 1), 0);
	s.mem[w[1] * s.ps + 10] = 0xDD;
	CHECK_RET(scan(&s, LIBUFFD_DIRTY_CLEAR, b, 1), 1);
	CHECK_EQ(bit(b, w[1]), 1);
	CHECK_EQ(s.mem[w[1] * s.ps + 9], 0xEE);
	CHECK_EQ(s.mem[w[1] * s.ps + 11], s.src[w[1] * s.ps + 11]);
	LIBUFFD_OPTS(libuffd_monitor_stats, st);
	CHECK_OK(libuffd_monitor_get_stats(s.m, &st));
	CHECK_EQ(st.dirty_scans, 5);
	CHECK_EQ(st.dirty_scans_async, async ? 5 : 0);
	if (async)
		CHECK_EQ(atomic_load(&on_write_calls) - before, 0);
	else
		CHECK(atomic_load(&on_write_calls) - before >= 4);
	teardown(&s);
}

/* Pages written before add_region (present, with data): add_region
 * write-protects them, so tracking starts clean and each one's first
 * write after it is reported (c-examples/dirty-tracking relies on this). */
static void present(enum kind k, int async)
{
	char name[64];
	snprintf(name, sizeof name, "present %s %s", kind_name[k], async ? "async" : "sync");
	SECTION(name);
	size_t ps = k == HUGETLB ? HUGE : 4096, pages = k == HUGETLB ? 4 : 64, len = pages * ps;
	unsigned char *mem = map_kind(k, len);
	if (!mem) {
		printf("SKIP: %s: no memory of this kind (%s)\n", name, strerror(errno));
		return;
	}
	for (size_t i = 0; i < len; i += 512)
		mem[i] = (unsigned char)(i / 512 + 1);
	LIBUFFD_OPTS(libuffd_open_opts, o, .flags = LIBUFFD_OPEN_NONBLOCK,
		     .features = features_of(k, async), .required_features = features_of(k, async));
	struct libuffd_handle *h = NULL;
	struct libuffd_monitor *m = NULL;
	uint32_t id;
	CHECK_OK(libuffd_open(&o, &h));
	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &m));
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	libuffd_handle_free(h);
	LIBUFFD_OPTS(libuffd_region_opts, r, .flags = LIBUFFD_REGION_TRACK_DIRTY,
		     .register_mode = LIBUFFD_REGISTER_MISSING);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, len, &r));
	CHECK_OK(libuffd_monitor_start(m));
	uint64_t b[1];
	CHECK_RET(libuffd_monitor_dirty_scan(m, id, mem, len, 0, b, 1), 0);
	size_t w[2] = { 0, pages - 1 };
	for (int j = 0; j < 2; j++)
		mem[w[j] * ps + 100] = 0xAB;
	CHECK_RET(libuffd_monitor_dirty_scan(m, id, mem, len, LIBUFFD_DIRTY_CLEAR, b, 1), 2);
	for (size_t i = 0; i < pages; i++)
		CHECK_EQ(bit(b, i), (i == w[0] || i == w[1]));
	size_t kept = 0;
	for (size_t i = 0; i < len; i += 512)
		kept += mem[i] == (unsigned char)(i / 512 + 1);
	CHECK_EQ(kept, len / 512); /* the data written before add_region stays */
	CHECK_EQ(mem[w[1] * ps + 100], 0xAB);
	libuffd_monitor_stop(m);
	CHECK_OK(libuffd_monitor_wait(m));
	libuffd_monitor_free(m);
	munmap(mem, len);
}

/* ------------------------------------------------- concurrent writers */

#define WRITERS 4
#define MAXP 256
static atomic_ulong started[MAXP], done[MAXP];
static atomic_int stop_writers;

struct wargs {
	struct setup *s;
	unsigned w;
};

static void *writer(void *p)
{
	struct wargs *a = p;
	uint64_t x = 0x9E3779B9ULL * (a->w + 1);
	size_t per = a->s->pages / WRITERS;
	unsigned n = 0;
	while (!atomic_load(&stop_writers)) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t pg = (x % per) * WRITERS + a->w;
		atomic_fetch_add(&started[pg], 1);
		((volatile unsigned char *)a->s->mem)[pg * a->s->ps + 64 + a->w] = (unsigned char)++n;
		atomic_fetch_add(&done[pg], 1);
	}
	return NULL;
}

static void concurrent(enum kind k, int async)
{
	struct setup s;
	char name[64];
	snprintf(name, sizeof name, "concurrent %s %s", kind_name[k], async ? "async" : "sync");
	SECTION(name);
	size_t pages = k == HUGETLB ? 8 : MAXP;
	if (setup(&s, k, async, pages) != 0) {
		printf("SKIP: %s: no memory of this kind (%s)\n", name, strerror(errno));
		return;
	}
	for (size_t i = 0; i < MAXP; i++) {
		atomic_store(&started[i], 0);
		atomic_store(&done[i], 0);
	}
	atomic_store(&stop_writers, 0);
	pthread_t t[WRITERS];
	struct wargs a[WRITERS];
	for (unsigned i = 0; i < WRITERS; i++) {
		a[i] = (struct wargs){ &s, i };
		pthread_create(&t[i], NULL, writer, &a[i]);
	}
	unsigned long prev[MAXP], before[MAXP];
	uint64_t b[MAXP / 64];
	int missed = 0, scans = 0;
	for (size_t i = 0; i < pages; i++)
		prev[i] = atomic_load(&started[i]);
	struct timespec t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int last = 0; !last;) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if ((now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000 > 500) {
			atomic_store(&stop_writers, 1);
			for (unsigned i = 0; i < WRITERS; i++)
				pthread_join(t[i], NULL);
			last = 1;
		}
		for (size_t i = 0; i < pages; i++)
			before[i] = atomic_load(&done[i]);
		long long n = scan(&s, LIBUFFD_DIRTY_CLEAR, b, MAXP / 64);
		if (n < 0)
			CHECK_OK(n);
		for (size_t i = 0; i < pages; i++) {
			if (before[i] > prev[i] && !bit(b, i))
				missed++;
			prev[i] = atomic_load(&started[i]);
		}
		scans++;
	}
	CHECK_MSG(missed == 0, "%s: %d writes missed in %d scans", name, missed, scans);
	CHECK_RET(scan(&s, LIBUFFD_DIRTY_CLEAR, b, MAXP / 64), 0);
	teardown(&s);
}

static void bad_input(void)
{
	SECTION("bad input");
	struct setup s;
	if (setup(&s, ANON, 0, 128) != 0)
		FATAL("anon memory");
	uint64_t b[2];
	CHECK_FAILS(libuffd_monitor_dirty_scan(NULL, s.id, s.mem, s.len, 0, b, 2), -EINVAL,
		    "libuffd_monitor_dirty_scan");
	CHECK_FAILS(libuffd_monitor_dirty_scan(s.m, s.id, s.mem, s.len, 0, NULL, 2), -EINVAL,
		    "libuffd_monitor_dirty_scan");
	CHECK_CONTAINS(libuffd_last_error(), "bitmap is NULL");
	CHECK_FAILS(libuffd_monitor_dirty_scan(s.m, s.id, s.mem, s.len, 0x10, b, 2), -EINVAL,
		    "libuffd_monitor_dirty_scan");
	CHECK_CONTAINS(libuffd_last_error(), "unknown flags");
	CHECK_FAILS(libuffd_monitor_dirty_scan(s.m, 99, s.mem, s.len, 0, b, 2), -EINVAL,
		    "libuffd_monitor_dirty_scan");
	CHECK_CONTAINS(libuffd_last_error(), "no userfaultfd with id 99");
	CHECK_FAILS(libuffd_monitor_dirty_scan(s.m, s.id, s.mem, s.len + 4096, 0, b, 2), -EINVAL,
		    "libuffd_monitor_dirty_scan");
	CHECK_CONTAINS(libuffd_last_error(), "not inside one dirty-tracked region");
	CHECK_FAILS(libuffd_monitor_dirty_scan(s.m, s.id, s.mem, s.len, 0, b, 1), -ERANGE,
		    "libuffd_monitor_dirty_scan");
	CHECK_CONTAINS(libuffd_last_error(), "128 pages need 2");

	/* A caller's registration without WP is refused. */
	unsigned char *mem = h_map_anon(4 * 4096);
	LIBUFFD_OPTS(libuffd_open_opts, o, .flags = LIBUFFD_OPEN_NONBLOCK,
		     .features = LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP);
	struct libuffd_handle *h = NULL;
	uint32_t id;
	CHECK_OK(libuffd_open(&o, &h));
	CHECK_OK(libuffd_register(h, mem, 4 * 4096, LIBUFFD_REGISTER_MISSING, NULL));
	CHECK_OK(libuffd_monitor_add_handle(s.m, h, &id));
	LIBUFFD_OPTS(libuffd_region_opts, r, .flags = LIBUFFD_REGION_TRACK_DIRTY);
	CHECK_FAILS(libuffd_monitor_add_region(s.m, id, mem, 4 * 4096, &r), -EINVAL,
		    "libuffd_monitor_add_region");
	CHECK_CONTAINS(libuffd_last_error(), "must include WP");
	libuffd_handle_free(h);
	teardown(&s);
	munmap(mem, 4 * 4096);
}

int main(void)
{
	bad_input();
	for (int k = ANON; k <= HUGETLB; k++)
		for (int async = 0; async < 2; async++) {
			basic((enum kind)k, async);
			present((enum kind)k, async);
			concurrent((enum kind)k, async);
		}
	return h_finish();
}
