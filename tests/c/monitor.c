/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * monitor.c: the monitor's C API on the real kernel: page sources, the
 * callback table with user data and its finaliser, deferral completed
 * from another thread, the error policy (SIGBUS), stop from a callback,
 * the caller's own event loop (fd + dispatch), and bad input.
 */
#include "harness.h"

#include <dirent.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096UL
#define PAGES 64UL

static char *source;

static char *map_anon(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		FATAL("mmap: %s", strerror(errno));
	return p;
}

static libuffd_handle *open_nonblock(void)
{
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK);
	libuffd_handle *h = NULL;
	int rc = libuffd_open(&o, &h);
	if (rc < 0)
		FATAL("libuffd_open: %s", libuffd_last_error());
	return h;
}

struct reader_arg {
	char *base;
	size_t first, count;
	unsigned long sum;
};

static void *read_pages(void *arg)
{
	struct reader_arg *r = arg;
	for (size_t i = r->first; i < r->first + r->count; i++)
		r->sum += (unsigned char)r->base[i * PAGE + 7];
	return NULL;
}

/* Touch pages [0, PAGES) from `threads` threads and wait for them. */
static void touch_all(char *base, int threads)
{
	pthread_t t[8];
	struct reader_arg a[8];
	size_t per = PAGES / threads;
	for (int i = 0; i < threads; i++) {
		a[i] = (struct reader_arg){ base, i * per, per, 0 };
		pthread_create(&t[i], NULL, read_pages, &a[i]);
	}
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
}

static void test_buffer_source(void)
{
	SECTION("buffer source, 4 faulting threads, stats");
	char *mem = map_anon(PAGES * PAGE);
	libuffd_handle *h = open_nonblock();
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &m));
	uint32_t id = 99;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	CHECK_EQ(id, 0);
	libuffd_handle_free(h); /* the monitor keeps its own reference */
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_BUFFER,
						      .buffer = source, .buffer_len = PAGES * PAGE,
						      .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, PAGES * PAGE, &r));
	CHECK_FAILS(libuffd_monitor_add_region(m, id, mem, PAGE, &r), -EINVAL, "libuffd_monitor_add_region");
	CHECK_OK(libuffd_monitor_start(m));
	CHECK_FAILS(libuffd_monitor_start(m), -EBUSY, "libuffd_monitor_start");
	touch_all(mem, 4);
	CHECK(memcmp(mem, source, PAGES * PAGE) == 0);
	CHECK_OK(libuffd_monitor_stop(m));
	CHECK_OK(libuffd_monitor_stop(m)); /* idempotent */
	CHECK_RET(libuffd_monitor_wait(m), 0);
	/* Counters are final once the monitor has stopped (they are updated
	 * after the faulting thread is woken). */
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	CHECK(st.faults >= 1);
	CHECK(st.resolved >= 1);
	CHECK_EQ(st.bytes, PAGES * PAGE);
	uint64_t lat = 0;
	for (unsigned i = 0; i < LIBUFFD_LATENCY_BUCKETS; i++)
		lat += st.latency_log2_ns[i];
	CHECK(lat >= st.resolved);
	CHECK_FAILS(libuffd_monitor_wait(m), -EINVAL, "libuffd_monitor_wait");
	libuffd_monitor_free(m);
	munmap(mem, PAGES * PAGE);
}

/* Callback source with user data and a finaliser. */
struct cb_state {
	char *base;
	atomic_int calls;
	atomic_int freed;
};

static int copy_from_source(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	struct cb_state *s = ud;
	atomic_fetch_add(&s->calls, 1);
	if (f->region_data != (void *)s)
		return -EINVAL;
	int rc = libuffd_monitor_copy(m, f, source + f->region_offset);
	return rc < 0 ? rc : LIBUFFD_ON_FAULT_HANDLED;
}

static void free_state(void *ud)
{
	struct cb_state *s = ud;
	atomic_fetch_add(&s->freed, 1);
}

/* Two monitors, one thread: monitor A's callback first calls the resolve
 * functions with monitor B (which serves no handle at all) and A's fault.
 * That is not a fault B's callback is handling, so it is a completion on
 * B, which knows no handle 0: LIBUFFD_RESOLVE_GONE, nothing placed, and
 * A's fault is resolved by A's own call. Before, the fault being handled
 * was found by fault alone (a per-thread pointer in the C layer): the call
 * through B resolved A's fault (LIBUFFD_RESOLVE_DONE). */
struct cross_state {
	libuffd_monitor *other;
	atomic_int via_other_rc;
	atomic_int own_rc;
};

static int cross_fault(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	struct cross_state *s = ud;
	atomic_store(&s->via_other_rc, libuffd_monitor_copy(s->other, f, source + f->region_offset));
	int rc = libuffd_monitor_copy(m, f, source + f->region_offset);
	atomic_store(&s->own_rc, rc);
	return rc < 0 ? rc : LIBUFFD_ON_FAULT_HANDLED;
}

static void test_two_monitors_one_thread(void)
{
	SECTION("two monitors on one thread: a resolution through the other monitor is not this fault's");
	char *a_mem = map_anon(PAGE);
	libuffd_handle *ha = open_nonblock();
	libuffd_monitor *a = NULL, *b = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &b));
	static struct cross_state s;
	s.other = b;
	atomic_store(&s.via_other_rc, 1000);
	atomic_store(&s.own_rc, 1000);
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = cross_fault);
	struct libuffd_monitor_opts mo = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .flags = LIBUFFD_MONITOR_FIXED_WINDOW);
	CHECK_OK(libuffd_monitor_new(&mo, &ops, &s, NULL, &a));
	uint32_t ida;
	CHECK_OK(libuffd_monitor_add_handle(a, ha, &ida));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_CALLBACK,
						      .register_mode = LIBUFFD_REGISTER_MISSING);
	CHECK_OK(libuffd_monitor_add_region(a, ida, a_mem, PAGE, &r));
	CHECK_OK(libuffd_monitor_start(a));
	CHECK_EQ(((volatile char *)a_mem)[PAGE / 2], source[PAGE / 2]);
	CHECK(memcmp(a_mem, source, PAGE) == 0);
	/* The copy wakes this thread before the callback returns: wait for
	   the callback (and the engine's count) to finish, bounded. */
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	for (int i = 0; i < 5000; i++) {
		CHECK_OK(libuffd_monitor_get_stats(a, &st));
		if (atomic_load(&s.own_rc) != 1000 && st.resolved >= 1)
			break;
		usleep(1000);
	}
	CHECK_EQ(atomic_load(&s.via_other_rc), LIBUFFD_RESOLVE_GONE);
	CHECK_EQ(atomic_load(&s.own_rc), LIBUFFD_RESOLVE_DONE);
	CHECK_EQ(st.resolved, 1);
	CHECK_EQ(st.failed, 0);
	libuffd_monitor_free(a);
	libuffd_monitor_free(b);
	libuffd_handle_free(ha);
	munmap(a_mem, PAGE);
}

/* A callback with its own resolution code: it places the page with
 * libuffd_copy() on the handle (DONTWAKE: only the monitor's wake releases
 * the thread) and returns LIBUFFD_ON_FAULT_RESOLVED_BY_CALLER. Served, with
 * the right bytes, nothing failed. (LIBUFFD_ON_FAULT_HANDLED there is a
 * failure: the monitor did not resolve it.) */
struct self_state {
	libuffd_handle *h;
	char *base;
	atomic_int calls;
};

static int place_itself(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	(void)m;
	struct self_state *s = ud;
	atomic_fetch_add(&s->calls, 1);
	size_t off = (size_t)((char *)f->page - s->base);
	int64_t rc = libuffd_copy(s->h, f->page, source + off, f->page_size, LIBUFFD_COPY_DONTWAKE);
	if (rc < 0 && rc != -EEXIST)
		return (int)rc;
	return LIBUFFD_ON_FAULT_RESOLVED_BY_CALLER;
}

static void test_resolved_by_caller(void)
{
	SECTION("on_fault places the page itself: LIBUFFD_ON_FAULT_RESOLVED_BY_CALLER");
	static struct self_state s;
	s.base = map_anon(PAGES * PAGE);
	s.h = open_nonblock();
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = place_itself);
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, &ops, &s, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, s.h, &id));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_CALLBACK,
						      .register_mode = LIBUFFD_REGISTER_MISSING);
	CHECK_OK(libuffd_monitor_add_region(m, id, s.base, PAGES * PAGE, &r));
	CHECK_OK(libuffd_monitor_start(m));
	touch_all(s.base, 2);
	CHECK(memcmp(s.base, source, PAGES * PAGE) == 0);
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	CHECK_EQ(st.failed, 0);
	CHECK(st.resolved >= 1);
	CHECK(atomic_load(&s.calls) >= 1);
	libuffd_monitor_free(m);
	libuffd_handle_free(s.h);
	munmap(s.base, PAGES * PAGE);
}

/* libuffd_monitor_remove_region: half of a zero-fill region taken back
 * while running; the other half still served; bad input -EINVAL. */
static void test_remove_region(void)
{
	SECTION("libuffd_monitor_remove_region: part of a region taken back, the rest served");
	char *mem = map_anon(8 * PAGE);
	libuffd_handle *h = open_nonblock();
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_BUFFER,
						      .buffer = source, .buffer_len = 8 * PAGE,
						      .register_mode = LIBUFFD_REGISTER_MISSING);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, 8 * PAGE, &r));
	CHECK_OK(libuffd_monitor_start(m));
	CHECK_OK(libuffd_monitor_remove_region(m, id, mem + 4 * PAGE, 4 * PAGE));
	/* Not served any more: anonymous memory without userfaultfd. */
	CHECK_EQ(((volatile char *)mem)[5 * PAGE + 1], 0);
	/* Still served from the buffer. */
	CHECK_EQ(((volatile char *)mem)[PAGE + 1], source[PAGE + 1]);
	CHECK_FAILS(libuffd_monitor_remove_region(m, id, mem + 4 * PAGE, PAGE), -EINVAL, "libuffd_monitor_remove_region");
	CHECK_FAILS(libuffd_monitor_remove_region(m, id + 9, mem, PAGE), -EINVAL, "libuffd_monitor_remove_region");
	CHECK_FAILS(libuffd_monitor_remove_region(m, id, mem + 1, PAGE), -EINVAL, "libuffd_monitor_remove_region");
	CHECK_FAILS(libuffd_monitor_remove_region(NULL, id, mem, PAGE), -EINVAL, "libuffd_monitor_remove_region");
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(mem, 8 * PAGE);
}

/* libuffd_monitor_copy_range: one fault places 4 pages; bad lengths
 * (not whole pages, past the region) are -EINVAL. */
struct range_state {
	char *base;
	atomic_int faults;
	atomic_int bad_einval;
};

static int copy_four(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	struct range_state *s = ud;
	atomic_fetch_add(&s->faults, 1);
	size_t off = (size_t)((char *)f->page - s->base);
	if (libuffd_monitor_copy_range(m, f, source + off, PAGE / 2, 0) == -EINVAL)
		atomic_fetch_add(&s->bad_einval, 1);
	if (libuffd_monitor_copy_range(m, f, source + off, 64 * PAGE, 0) == -EINVAL)
		atomic_fetch_add(&s->bad_einval, 1);
	size_t left = 8 * PAGE - off;
	int rc = libuffd_monitor_copy_range(m, f, source + off, left < 4 * PAGE ? left : 4 * PAGE, 0);
	return rc < 0 ? rc : LIBUFFD_ON_FAULT_HANDLED;
}

static void test_copy_range(void)
{
	SECTION("libuffd_monitor_copy_range: several pages per fault, bad lengths -EINVAL");
	static struct range_state s;
	s.base = map_anon(8 * PAGE);
	libuffd_handle *h = open_nonblock();
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = copy_four);
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, &ops, &s, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_CALLBACK,
						      .register_mode = LIBUFFD_REGISTER_MISSING);
	CHECK_OK(libuffd_monitor_add_region(m, id, s.base, 8 * PAGE, &r));
	CHECK_OK(libuffd_monitor_start(m));
	for (int p = 0; p < 8; p++)
		CHECK_EQ(((volatile char *)s.base)[p * PAGE + 3], source[p * PAGE + 3]);
	CHECK_EQ(atomic_load(&s.faults), 2);
	CHECK_EQ(atomic_load(&s.bad_einval), 4);
	CHECK_FAILS(libuffd_monitor_copy_range(m, NULL, source, PAGE, 0), -EINVAL, "libuffd_monitor_copy_range");
	CHECK_FAILS(libuffd_monitor_zero_range(NULL, NULL, PAGE), -EINVAL, "libuffd_monitor_zero_range");
	CHECK_FAILS(libuffd_monitor_continue_range(NULL, NULL, PAGE, 0), -EINVAL, "libuffd_monitor_continue_range");
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(s.base, 8 * PAGE);
}

/* libuffd_monitor_move_range: each fault moves 4 pages out of a staging
 * buffer (they leave it); bad lengths and a NULL source are -EINVAL. */
static char *move_staging;

static int move_four(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	struct range_state *s = ud;
	atomic_fetch_add(&s->faults, 1);
	size_t off = (size_t)((char *)f->page - s->base);
	if (libuffd_monitor_move_range(m, f, move_staging + off, PAGE / 2, 0) == -EINVAL)
		atomic_fetch_add(&s->bad_einval, 1);
	if (libuffd_monitor_move_range(m, f, move_staging + off, 64 * PAGE, 0) == -EINVAL)
		atomic_fetch_add(&s->bad_einval, 1);
	if (libuffd_monitor_move_range(m, f, NULL, PAGE, 0) == -EINVAL)
		atomic_fetch_add(&s->bad_einval, 1);
	size_t left = 8 * PAGE - off;
	int rc = libuffd_monitor_move_range(m, f, move_staging + off, left < 4 * PAGE ? left : 4 * PAGE, 0);
	return rc < 0 ? rc : LIBUFFD_ON_FAULT_HANDLED;
}

static void test_move_range(void)
{
	SECTION("libuffd_monitor_move_range: 4 pages moved per fault, bad lengths -EINVAL");
	static struct range_state s;
	s.base = map_anon(8 * PAGE);
	move_staging = map_anon(8 * PAGE);
	memcpy(move_staging, source, 8 * PAGE);
	LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_NONBLOCK, .features = LIBUFFD_FEATURE_MOVE);
	libuffd_handle *h = NULL;
	CHECK_OK(libuffd_open(&oo, &h));
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = move_four);
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, &ops, &s, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_CALLBACK,
						      .register_mode = LIBUFFD_REGISTER_MISSING);
	CHECK_OK(libuffd_monitor_add_region(m, id, s.base, 8 * PAGE, &r));
	CHECK_OK(libuffd_monitor_start(m));
	CHECK_EQ(memcmp(s.base, source, 8 * PAGE), 0);
	CHECK_EQ(atomic_load(&s.faults), 2);
	CHECK_EQ(atomic_load(&s.bad_einval), 6);
	int zeros = 1;
	for (size_t i = 0; i < 8 * PAGE; i++)
		zeros &= move_staging[i] == 0;
	CHECK_EQ(zeros, 1); /* the pages left the staging buffer */
	CHECK_FAILS(libuffd_monitor_move_range(m, NULL, move_staging, PAGE, 0), -EINVAL, "libuffd_monitor_move_range");
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(s.base, 8 * PAGE);
	munmap(move_staging, 8 * PAGE);
}

static void test_callback_source(void)
{
	SECTION("callback source, user data, finaliser");
	static struct cb_state s;
	s.base = map_anon(PAGES * PAGE);
	libuffd_handle *h = open_nonblock();
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = copy_from_source);
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, &ops, &s, free_state, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_CALLBACK,
						      .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1, .data = &s);
	CHECK_OK(libuffd_monitor_add_region(m, id, s.base, PAGES * PAGE, &r));
	CHECK_OK(libuffd_monitor_start(m));
	touch_all(s.base, 2);
	CHECK(memcmp(s.base, source, PAGES * PAGE) == 0);
	CHECK(atomic_load(&s.calls) >= (int)PAGES);
	CHECK_EQ(atomic_load(&s.freed), 0);
	libuffd_monitor_free(m);
	CHECK_EQ(atomic_load(&s.freed), 1);
	libuffd_handle_free(h);
	munmap(s.base, PAGES * PAGE);
}

/* Workers: which thread ran each callback, by the monitor's thread names. */
struct pool_state {
	int delay_us;
	atomic_int on_worker[4];
	atomic_int elsewhere;
};

static int fetch_and_copy(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	struct pool_state *s = ud;
	char name[16] = "";
	pthread_getname_np(pthread_self(), name, sizeof name);
	int w = -1;
	if (sscanf(name, "uffd-worker-%d", &w) == 1 && w >= 0 && w < 4)
		atomic_fetch_add(&s->on_worker[w], 1);
	else
		atomic_fetch_add(&s->elsewhere, 1);
	if (s->delay_us)
		usleep(s->delay_us); /* a fetch: the network, a disk */
	int rc = libuffd_monitor_copy(m, f, source + f->region_offset);
	return rc < 0 ? rc : LIBUFFD_ON_FAULT_HANDLED;
}

/* Serve PAGES pages with 4 workers from a callback (s != NULL) or from the
 * buffer, while 4 threads fault; return the monitor's counters. */
static struct libuffd_monitor_stats run_pool(struct pool_state *s, uint32_t flags)
{
	char *mem = map_anon(PAGES * PAGE);
	libuffd_handle *h = open_nonblock();
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = fetch_and_copy);
	struct libuffd_monitor_opts mo = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .workers = 4, .flags = flags);
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(&mo, &ops, s, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_CALLBACK,
						      .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1);
	if (!s) {
		r.source = LIBUFFD_SOURCE_BUFFER;
		r.buffer = source;
		r.buffer_len = PAGES * PAGE;
	}
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, PAGES * PAGE, &r));
	CHECK_OK(libuffd_monitor_start(m));
	touch_all(mem, 4);
	CHECK(memcmp(mem, source, PAGES * PAGE) == 0);
	CHECK_OK(libuffd_monitor_stop(m));
	CHECK_RET(libuffd_monitor_wait(m), 0);
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(mem, PAGES * PAGE);
	return st;
}

static void test_workers(void)
{
	SECTION("workers: callbacks side by side, copies on the reader, HAND_OFF_ALL");
	/* Callbacks (here taking 300 us, as a fetch would) run on the
	 * workers, several at once (4 faulting threads). */
	static struct pool_state slow = { .delay_us = 300 };
	struct libuffd_monitor_stats st = run_pool(&slow, 0);
	int busy = 0, on_workers = 0;
	for (int i = 0; i < 4; i++) {
		busy += atomic_load(&slow.on_worker[i]) > 0;
		on_workers += atomic_load(&slow.on_worker[i]);
	}
	CHECK(busy >= 2);
	CHECK_EQ(on_workers, (int)PAGES);
	CHECK_EQ(atomic_load(&slow.elsewhere), 0);
	CHECK_EQ(st.handed_off, st.faults - st.coalesced);
	/* Copies from memory stay on the reader... */
	st = run_pool(NULL, 0);
	CHECK(st.faults >= 1);
	CHECK_EQ(st.handed_off, 0);
	/* ...unless every fault is to be handed off. */
	st = run_pool(NULL, LIBUFFD_MONITOR_HAND_OFF_ALL);
	CHECK(st.faults >= 1);
	CHECK_EQ(st.handed_off, st.faults - st.coalesced);
}

/* Deferral: the callback queues the fault; another thread completes it. */
static struct libuffd_fault deferred[PAGES];
static atomic_int n_deferred;

static int defer_fault(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	(void)ud;
	(void)m;
	int i = atomic_load(&n_deferred);
	deferred[i] = *f;
	atomic_store(&n_deferred, i + 1);
	return LIBUFFD_ON_FAULT_DEFER;
}

struct completer {
	libuffd_monitor *m;
	int done;
};

static void *complete_later(void *arg)
{
	struct completer *c = arg;
	int served = 0;
	while (served < 1) {
		int n = atomic_load(&n_deferred);
		for (; served < n; served++) {
			usleep(20000); /* "a page fetched over the network" */
			int rc = libuffd_monitor_copy(c->m, &deferred[served], source + deferred[served].region_offset);
			if (rc == LIBUFFD_RESOLVE_DONE || rc == LIBUFFD_RESOLVE_ALREADY_DONE)
				c->done++;
		}
		usleep(1000);
	}
	return NULL;
}

static void test_defer(void)
{
	SECTION("defer and complete from another thread");
	char *mem = map_anon(PAGE);
	libuffd_handle *h = open_nonblock();
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = defer_fault);
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, &ops, NULL, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_CALLBACK,
						      .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, PAGE, &r));
	CHECK_OK(libuffd_monitor_start(m));
	struct completer c = { m, 0 };
	pthread_t t;
	pthread_create(&t, NULL, complete_later, &c);
	CHECK_EQ((unsigned char)mem[100], (unsigned char)source[100]);
	pthread_join(t, NULL);
	CHECK_EQ(c.done, 1);
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	CHECK_EQ(st.deferred, 1);
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(mem, PAGE);
}

/* A failing callback: the default policy poisons, the thread gets SIGBUS. */
static int fail_eio(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	(void)ud;
	(void)m;
	(void)f;
	return -EIO;
}

static int log_pipe[2];
static void count_log(void *ud, libuffd_monitor *m, const char *msg)
{
	(void)ud;
	(void)m;
	/* The child dies of SIGBUS: tell the parent through a pipe. */
	if (msg && strstr(msg, "fault callback") && strstr(msg, "EIO"))
		(void)!write(log_pipe[1], "L", 1);
}

static void test_error_policy_sigbus(void)
{
	SECTION("callback error -> SIGBUS, logged");
	fflush(stdout);
	if (pipe(log_pipe) < 0)
		FATAL("pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid == 0) {
		char *mem = map_anon(PAGE);
		libuffd_handle *h = open_nonblock();
		LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = fail_eio, .on_log = count_log);
		libuffd_monitor *m = NULL;
		if (libuffd_monitor_new(NULL, &ops, NULL, NULL, &m) < 0)
			_exit(10);
		uint32_t id;
		libuffd_monitor_add_handle(m, h, &id);
		struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_CALLBACK,
							      .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1);
		if (libuffd_monitor_add_region(m, id, mem, PAGE, &r) < 0 || libuffd_monitor_start(m) < 0)
			_exit(11);
		alarm(20); /* a hang fails by SIGALRM, not SIGBUS */
		volatile char c = mem[0];
		(void)c;
		_exit(12); /* reached only if the access was resolved */
	}
	close(log_pipe[1]);
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "child status %#x", status);
	char c = 0;
	CHECK_EQ(read(log_pipe[0], &c, 1), 1); /* on_log saw the callback's EIO */
	CHECK_EQ(c, 'L');
	close(log_pipe[0]);
}

/* Stop from inside a callback; the blocked thread is released. */
static int stop_now(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	(void)ud;
	(void)f;
	libuffd_monitor_stop(m); /* allowed from a callback */
	return LIBUFFD_ON_FAULT_STOP;
}

static void *read_one(void *arg)
{
	char *p = arg;
	return (void *)(uintptr_t)(unsigned char)p[0];
}

static void test_stop_from_callback(void)
{
	SECTION("stop from a callback releases the faulting thread");
	char *mem = map_anon(PAGE);
	libuffd_handle *h = open_nonblock();
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = stop_now);
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, &ops, NULL, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	/* Zeros for the page never resolved, asked for explicitly (the default
	 * for a callback region is SIGBUS: no silent zeros). */
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_CALLBACK,
						      .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1,
						      .stop_policy = LIBUFFD_ON_STOP_ZERO);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, PAGE, &r));
	pthread_t t;
	pthread_create(&t, NULL, read_one, mem);
	CHECK_RET(libuffd_monitor_run(m), 0); /* on this thread, until the callback stops it */
	void *v;
	pthread_join(t, &v);
	CHECK_EQ((uintptr_t)v, 0); /* released: the region was unregistered, a zero page */
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	CHECK_EQ(st.stop_zeroed, 1);
	CHECK_EQ(st.stop_sigbus + st.stop_blocked, 0);
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(mem, PAGE);
}

static void test_dispatch(void)
{
	SECTION("caller's event loop: libuffd_monitor_fd + libuffd_monitor_dispatch");
	char *mem = map_anon(PAGES * PAGE);
	libuffd_handle *h = open_nonblock();
	libuffd_monitor *m = NULL;
	struct libuffd_monitor_opts mo = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .flags = LIBUFFD_MONITOR_FIXED_WINDOW);
	CHECK_OK(libuffd_monitor_new(&mo, NULL, NULL, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_ZERO,
						      .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, PAGES * PAGE, &r));
	/* Adding the handle woke the reader (so that a running one polls it):
	   the first dispatch sees that wake-up, the next nothing. */
	CHECK_RET(libuffd_monitor_dispatch(m, 0), 1);
	CHECK_RET(libuffd_monitor_dispatch(m, 0), 0);
	pthread_t t;
	struct reader_arg a = { mem, 0, PAGES, 0 };
	pthread_create(&t, NULL, read_pages, &a);
	struct pollfd p = { .fd = libuffd_monitor_fd(m), .events = POLLIN };
	CHECK(p.fd >= 0);
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	for (int i = 0; i < 20000; i++) {
		if (poll(&p, 1, 10) > 0)
			CHECK_OK(libuffd_monitor_dispatch(m, 0));
		CHECK_OK(libuffd_monitor_get_stats(m, &st));
		if (st.bytes == PAGES * PAGE)
			break;
	}
	pthread_join(t, NULL);
	CHECK_EQ(a.sum, 0);
	CHECK_EQ(st.bytes, PAGES * PAGE);
	CHECK_EQ(st.resolved, PAGES); /* fixed window of 1: one page per fault */
	/* A stop ends a dispatch loop (before: dispatch went on returning the
	   ready count, and a `while (dispatch >= 0)` loop never ended); the
	   next dispatch serves again. */
	CHECK_OK(libuffd_monitor_stop(m));
	CHECK_FAILS(libuffd_monitor_dispatch(m, -1), -ECANCELED, "libuffd_monitor_dispatch");
	CHECK_RET(libuffd_monitor_dispatch(m, 0), 1); /* the stop's wake-up */
	CHECK_RET(libuffd_monitor_dispatch(m, 0), 0);
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(mem, PAGES * PAGE);
}

/* A lazy restore stopped half-way: the page never restored must not read
 * as zeros. Default policy (buffer region): SIGBUS. Before stop policies it read 0. */
static void test_stop_no_silent_zeros(void)
{
	SECTION("stop: a page never restored gets SIGBUS, not zeros (default policy)");
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char *mem = map_anon(2 * PAGE);
		libuffd_handle *h = open_nonblock();
		struct libuffd_monitor_opts mo =
			LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .flags = LIBUFFD_MONITOR_FIXED_WINDOW);
		libuffd_monitor *m = NULL;
		if (libuffd_monitor_new(&mo, NULL, NULL, NULL, &m) < 0)
			_exit(10);
		uint32_t id;
		libuffd_monitor_add_handle(m, h, &id);
		struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_BUFFER,
							      .buffer = source, .buffer_len = 2 * PAGE,
							      .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1);
		if (libuffd_monitor_add_region(m, id, mem, 2 * PAGE, &r) < 0 || libuffd_monitor_start(m) < 0)
			_exit(11);
		alarm(20);
		if (mem[5] != source[5])
			_exit(12);
		libuffd_monitor_stop(m);
		libuffd_monitor_wait(m);
		if (mem[6] != source[6])
			_exit(13); /* the restored page keeps its data */
		volatile char c = mem[PAGE + 1];
		_exit(c == 0 ? 14 : 15); /* 14: silent zeros (the bug) */
	}
	int status = 0;
	waitpid(pid, &status, 0);
	CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS, "child status %#x", status);
}

/* A forked child's userfaultfd (EVENT_FORK) is served, and closed by the
 * monitor once the child has exited: children_closed counts it and the
 * process's descriptors come back to what they were. */
static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void test_fork_child_closed(void)
{
	SECTION("a forked child's userfaultfd is closed when the child exits");
	char *mem = map_anon(PAGES * PAGE);
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK,
						    .required_features = LIBUFFD_FEATURE_EVENT_FORK);
	libuffd_handle *h = NULL;
	CHECK_OK(libuffd_open(&o, &h));
	if (!h)
		return;
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_BUFFER,
						      .buffer = source, .buffer_len = PAGES * PAGE,
						      .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, PAGES * PAGE, &r));
	CHECK_OK(libuffd_monitor_start(m));
	int fds0 = count_fds();
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(20);
		/* The child's copy is served by the monitor too. */
		_exit(mem[PAGE + 5] == source[PAGE + 5] ? 0 : 1);
	}
	int status = 0;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	for (int i = 0; i < 5000; i++) {
		CHECK_OK(libuffd_monitor_get_stats(m, &st));
		if (st.children_closed >= 1 && count_fds() <= fds0)
			break;
		usleep(1000);
	}
	CHECK_EQ(st.children_closed, 1);
	CHECK_EQ(st.children_dropped, 0);
	CHECK_MSG(count_fds() <= fds0, "descriptors %d after the child exited, %d before", count_fds(), fds0);
	CHECK_OK(libuffd_monitor_stop(m));
	CHECK_OK(libuffd_monitor_wait(m));
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(mem, PAGES * PAGE);
}

static void test_remove_handle(void)
{
	SECTION("libuffd_monitor_remove_handle: a removed handle is no longer served");
	char *mem = map_anon(PAGES * PAGE);
	libuffd_handle *h = open_nonblock();
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_ZERO,
						      .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, PAGES * PAGE, &r));
	CHECK_FAILS(libuffd_monitor_remove_handle(NULL, id), -EINVAL, "libuffd_monitor_remove_handle");
	CHECK_FAILS(libuffd_monitor_remove_handle(m, id + 7), -EINVAL, "libuffd_monitor_remove_handle");
	CHECK_OK(libuffd_monitor_remove_handle(m, id));
	CHECK_FAILS(libuffd_monitor_remove_handle(m, id), -EINVAL, "libuffd_monitor_remove_handle");
	/* Its regions went with it: adding one to the id fails. */
	CHECK_FAILS(libuffd_monitor_add_region(m, id, mem, PAGE, &r), -EINVAL, "libuffd_monitor_add_region");
	/* Added again, it is served again (a new id). */
	uint32_t id2;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id2));
	CHECK(id2 != id);
	r.register_mode = 0; /* still registered */
	CHECK_OK(libuffd_monitor_add_region(m, id2, mem, PAGES * PAGE, &r));
	CHECK_OK(libuffd_monitor_start(m));
	pthread_t t;
	struct reader_arg a = { mem, 0, PAGES, 0 };
	pthread_create(&t, NULL, read_pages, &a);
	pthread_join(t, NULL);
	CHECK_EQ(a.sum, 0);
	CHECK_OK(libuffd_monitor_stop(m));
	CHECK_OK(libuffd_monitor_wait(m));
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(mem, PAGES * PAGE);
}

static void test_bad_input(void)
{
	SECTION("bad input");
	{
		libuffd_monitor *bm = NULL;
		struct libuffd_monitor_opts mo = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .stop_policy = 9);
		CHECK_FAILS(libuffd_monitor_new(&mo, NULL, NULL, NULL, &bm), -EINVAL, "libuffd_monitor_new");
		mo = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .flags = LIBUFFD_MONITOR_NO_RELEASE_ON_STOP,
				       .stop_policy = LIBUFFD_ON_STOP_SIGBUS);
		CHECK_FAILS(libuffd_monitor_new(&mo, NULL, NULL, NULL, &bm), -EINVAL, "libuffd_monitor_new");
		mo = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .flags = LIBUFFD_MONITOR_NO_RELEASE_ON_STOP,
				       .stop_policy = LIBUFFD_ON_STOP_BLOCK);
		CHECK_OK(libuffd_monitor_new(&mo, NULL, NULL, NULL, &bm));
		char *bmem = map_anon(PAGE);
		libuffd_handle *bh = open_nonblock();
		uint32_t bid;
		CHECK_OK(libuffd_monitor_add_handle(bm, bh, &bid));
		struct libuffd_region_opts br = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_ZERO,
							       .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1,
							       .stop_policy = 7);
		CHECK_FAILS(libuffd_monitor_add_region(bm, bid, bmem, PAGE, &br), -EINVAL,
			    "libuffd_monitor_add_region");
		libuffd_monitor_free(bm);
		libuffd_handle_free(bh);
		munmap(bmem, PAGE);
	}
	libuffd_monitor *m = (libuffd_monitor *)0x1;
	CHECK_FAILS(libuffd_monitor_new(NULL, NULL, NULL, NULL, NULL), -EINVAL, "libuffd_monitor_new");
	struct libuffd_monitor_ops ops = { 0 };
	CHECK_FAILS(libuffd_monitor_new(NULL, &ops, NULL, NULL, &m), -EINVAL, "libuffd_monitor_ops: .sz is 0");
	ops.sz = 3;
	CHECK_FAILS(libuffd_monitor_new(NULL, &ops, NULL, NULL, &m), -EINVAL, "libuffd_monitor_ops");
	ops.sz = sizeof ops + 4; /* part of a member that does not exist */
	CHECK_FAILS(libuffd_monitor_new(NULL, &ops, NULL, NULL, &m), -EINVAL, "whole number of members");
	CHECK(m == (libuffd_monitor *)0x1); /* not written on failure */
	union {
		struct libuffd_monitor_ops o;
		char bytes[sizeof(struct libuffd_monitor_ops) + 8];
	} big;
	memset(&big, 0, sizeof big);
	big.o.sz = sizeof big;
	big.bytes[sizeof(struct libuffd_monitor_ops)] = 1;
	CHECK_FAILS(libuffd_monitor_new(NULL, &big.o, NULL, NULL, &m), -E2BIG, "libuffd_monitor_new");
	big.bytes[sizeof(struct libuffd_monitor_ops)] = 0; /* a zero tail is fine */
	CHECK_OK(libuffd_monitor_new(NULL, &big.o, NULL, NULL, &m));
	libuffd_monitor_free(m);
	m = (libuffd_monitor *)0x1;
	struct libuffd_monitor_opts bad = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .error_policy = 9);
	CHECK_FAILS(libuffd_monitor_new(&bad, NULL, NULL, NULL, &m), -EINVAL, "libuffd_monitor_new");
	bad = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .window_min = 8, .window_max = 2);
	CHECK_FAILS(libuffd_monitor_new(&bad, NULL, NULL, NULL, &m), -EINVAL, "libuffd_monitor");
	bad = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .flags = 0x80);
	CHECK_FAILS(libuffd_monitor_new(&bad, NULL, NULL, NULL, &m), -EINVAL, "libuffd_monitor_new");

	CHECK_FAILS(libuffd_monitor_add_handle(NULL, NULL, NULL), -EINVAL, "libuffd_monitor_add_handle");
	CHECK_FAILS(libuffd_monitor_add_region(NULL, 0, NULL, 0, NULL), -EINVAL, "libuffd_monitor_add_region");
	CHECK_FAILS(libuffd_monitor_run(NULL), -EINVAL, "libuffd_monitor_run");
	CHECK_FAILS(libuffd_monitor_start(NULL), -EINVAL, "libuffd_monitor_start");
	CHECK_FAILS(libuffd_monitor_stop(NULL), -EINVAL, "libuffd_monitor_stop");
	CHECK_FAILS(libuffd_monitor_wait(NULL), -EINVAL, "libuffd_monitor_wait");
	CHECK_FAILS(libuffd_monitor_fd(NULL), -EINVAL, "libuffd_monitor_fd");
	CHECK_FAILS(libuffd_monitor_dispatch(NULL, 0), -EINVAL, "libuffd_monitor_dispatch");
	CHECK_FAILS(libuffd_monitor_get_stats(NULL, NULL), -EINVAL, "libuffd_monitor_get_stats");
	CHECK_FAILS(libuffd_monitor_copy(NULL, NULL, source), -EINVAL, "libuffd_monitor_copy");
	CHECK_FAILS(libuffd_monitor_zero(NULL, NULL), -EINVAL, "libuffd_monitor_zero");
	CHECK_FAILS(libuffd_monitor_continue(NULL, NULL), -EINVAL, "libuffd_monitor_continue");
	CHECK_FAILS(libuffd_monitor_unprotect(NULL, NULL), -EINVAL, "libuffd_monitor_unprotect");
	CHECK_FAILS(libuffd_monitor_poison(NULL, NULL), -EINVAL, "libuffd_monitor_poison");
	CHECK_FAILS(libuffd_monitor_move(NULL, NULL, source), -EINVAL, "libuffd_monitor_move");
	libuffd_monitor_free(NULL);

	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &m));
	libuffd_handle *blocking = NULL;
	CHECK_OK(libuffd_open(NULL, &blocking));
	/* Blocking handles are served too (tests/monitor_fidelity.rs). */
	CHECK_OK(libuffd_monitor_add_handle(m, blocking, NULL));
	libuffd_handle_free(blocking);
	char *mem = map_anon(PAGE);
	CHECK_FAILS(libuffd_monitor_add_region(m, 7, mem, PAGE, NULL), -EINVAL, "libuffd_monitor_add_region");
	libuffd_handle *h = open_nonblock();
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	CHECK_FAILS(libuffd_monitor_add_region(m, id, mem + 1, PAGE, NULL), -EINVAL, "libuffd_monitor_add_region");
	struct libuffd_region_opts ro = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = 42, .fd = -1);
	CHECK_FAILS(libuffd_monitor_add_region(m, id, mem, PAGE, &ro), -EINVAL, "libuffd_monitor_add_region");
	ro = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_BUFFER, .fd = -1);
	CHECK_FAILS(libuffd_monitor_add_region(m, id, mem, PAGE, &ro), -EINVAL, "libuffd_monitor_add_region");
	ro = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_FD, .fd = -5);
	CHECK_FAILS(libuffd_monitor_add_region(m, id, mem, PAGE, &ro), -EINVAL, "libuffd_monitor_add_region");
	/* page_size: a power of two of at least the base page size, and for
	 * this process's own memory the mapping's. */
	ro = LIBUFFD_OPTS_INIT(libuffd_region_opts, .fd = -1, .page_size = 3);
	CHECK_FAILS(libuffd_monitor_add_region(m, id, mem, PAGE, &ro), -EINVAL, "power of two");
	ro = LIBUFFD_OPTS_INIT(libuffd_region_opts, .fd = -1, .page_size = 2 << 20);
	CHECK_FAILS(libuffd_monitor_add_region(m, id, mem, PAGE, &ro), -EINVAL, "KiB pages");
	/* A struct from before page_size (shorter sz) means page_size 0. */
	ro = LIBUFFD_OPTS_INIT(libuffd_region_opts, .fd = -1, .page_size = 2 << 20);
	ro.sz = offsetof(struct libuffd_region_opts, page_size);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, PAGE, &ro));
	struct libuffd_fault f = { .page = (void *)0x1001, .page_size = 4096 };
	CHECK_FAILS(libuffd_monitor_zero(m, &f), -EINVAL, "libuffd_monitor_zero");
	struct libuffd_monitor_stats st = { .sz = 2 };
	CHECK_FAILS(libuffd_monitor_get_stats(m, &st), -EINVAL, "libuffd_monitor_get_stats");
	/* An older, shorter stats struct gets what it has. */
	struct { size_t sz; uint64_t faults; } old = { sizeof old, 12345 };
	CHECK_OK(libuffd_monitor_get_stats(m, (struct libuffd_monitor_stats *)&old));
	CHECK_EQ(old.faults, 0);
	CHECK_FAILS(libuffd_monitor_dispatch(m, -2), -EINVAL, "libuffd_monitor_dispatch");
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(mem, PAGE);
}

/* ---- A good guest: wrong kinds of pointers, free/wait from a callback ---- */

static int deadlk_free_rc, deadlk_free_errno, deadlk_wait_rc;

static int free_and_wait_inside(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	(void)ud;
	errno = 0;
	libuffd_monitor_free(m); /* refused: it would free the callback's own monitor */
	deadlk_free_errno = errno;
	deadlk_free_rc = strstr(libuffd_last_error(), "libuffd_monitor_free") != NULL;
	deadlk_wait_rc = libuffd_monitor_wait(m);
	int32_t n = libuffd_monitor_zero(m, f);
	return n < 0 ? n : LIBUFFD_ON_FAULT_HANDLED;
}

static void test_good_guest(void)
{
	SECTION("a monitor where a handle is expected (and back): -EINVAL, nothing corrupted");
	char *mem = map_anon(PAGE);
	libuffd_handle *h = open_nonblock();
	libuffd_monitor *m = NULL;
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = free_and_wait_inside);
	CHECK_OK(libuffd_monitor_new(NULL, &ops, NULL, NULL, &m));
	libuffd_handle *as_handle = (libuffd_handle *)m;
	libuffd_monitor *as_monitor = (libuffd_monitor *)h;
	CHECK_FAILS(libuffd_handle_fd(as_handle), -EINVAL, "libuffd_handle_fd");
	CHECK_FAILS(libuffd_register(as_handle, mem, PAGE, LIBUFFD_REGISTER_MISSING, NULL), -EINVAL,
		    "libuffd_register");
	uint32_t id;
	CHECK_FAILS(libuffd_monitor_add_handle(m, as_handle, &id), -EINVAL, "libuffd_monitor_add_handle");
	CHECK_FAILS(libuffd_monitor_stop(as_monitor), -EINVAL, "libuffd_monitor_stop");
	CHECK_FAILS(libuffd_monitor_start(as_monitor), -EINVAL, "libuffd_monitor_start");
	CHECK_FAILS(libuffd_monitor_wait(as_monitor), -EINVAL, "libuffd_monitor_wait");
	/* The free functions are void: the wrong kind is left alone, errno says
	 * EINVAL and libuffd_last_error() why. */
	errno = 0;
	libuffd_handle_free(as_handle);
	CHECK_EQ(errno, EINVAL);
	CHECK(strstr(libuffd_last_error(), "libuffd_monitor") != NULL);
	errno = 0;
	libuffd_monitor_free(as_monitor);
	CHECK_EQ(errno, EINVAL);
	/* Both still work. */
	CHECK(libuffd_handle_fd(h) >= 0);

	SECTION("libuffd_monitor_free/wait from inside a callback: -EDEADLK, no use-after-free");
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_CALLBACK,
						      .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, PAGE, &r));
	CHECK_OK(libuffd_monitor_start(m));
	CHECK_EQ(mem[7], 0); /* served by the callback, after its refused calls */
	CHECK_EQ(deadlk_free_errno, EDEADLK);
	CHECK_EQ(deadlk_free_rc, 1);
	CHECK_EQ(deadlk_wait_rc, -EDEADLK);
	CHECK_OK(libuffd_monitor_stop(m));
	CHECK_OK(libuffd_monitor_wait(m));
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(mem, PAGE);
}

/* ------------------------------------------ event callbacks: the monitor */

/* What the event callbacks saw (written on the monitor's thread, read here
 * after the monitor has stopped, or through the atomic counter). */
static struct {
	libuffd_monitor *remap_m, *remove_m, *unmap_m;
	void *user;
	uint32_t handle_id;
	void *remap_from, *remap_to;
	uint64_t remap_len;
	void *remove_start, *remove_end;
	void *unmap_start, *unmap_end;
	atomic_int seen;
} evcb;

static void on_remap_cb(void *ud, libuffd_monitor *m, uint32_t handle_id, void *from, void *to, uint64_t len)
{
	evcb.remap_m = m;
	evcb.user = ud;
	evcb.handle_id = handle_id;
	evcb.remap_from = from;
	evcb.remap_to = to;
	evcb.remap_len = len;
	atomic_fetch_or(&evcb.seen, 1);
}

static void on_remove_cb(void *ud, libuffd_monitor *m, uint32_t handle_id, void *start, void *end)
{
	(void)ud;
	(void)handle_id;
	evcb.remove_m = m;
	evcb.remove_start = start;
	evcb.remove_end = end;
	atomic_fetch_or(&evcb.seen, 2);
}

static void on_unmap_cb(void *ud, libuffd_monitor *m, uint32_t handle_id, void *start, void *end)
{
	(void)ud;
	(void)handle_id;
	evcb.unmap_m = m;
	evcb.unmap_start = start;
	evcb.unmap_end = end;
	atomic_fetch_or(&evcb.seen, 4);
}

static void test_event_callbacks_get_monitor(void)
{
	SECTION("on_remap, on_remove, on_unmap receive the monitor and the addresses as void *");
	LIBUFFD_OPTS(libuffd_open_opts, o, .flags = LIBUFFD_OPEN_NONBLOCK,
		     .features = LIBUFFD_FEATURE_EVENT_REMAP | LIBUFFD_FEATURE_EVENT_REMOVE | LIBUFFD_FEATURE_EVENT_UNMAP,
		     .required_features =
			     LIBUFFD_FEATURE_EVENT_REMAP | LIBUFFD_FEATURE_EVENT_REMOVE | LIBUFFD_FEATURE_EVENT_UNMAP);
	libuffd_handle *h = NULL;
	CHECK_OK(libuffd_open(&o, &h));
	if (!h)
		return;
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_remap = on_remap_cb, .on_remove = on_remove_cb,
		     .on_unmap = on_unmap_cb);
	int user_token = 0;
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, &ops, &user_token, NULL, &m));
	uint32_t id = 99;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	char *mem = map_anon(4 * PAGE);
	/* All zero but sz and the register mode: a zero-page region. */
	LIBUFFD_OPTS(libuffd_region_opts, r, .register_mode = LIBUFFD_REGISTER_MISSING);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, 4 * PAGE, &r));
	CHECK_OK(libuffd_monitor_start(m));
	CHECK_EQ(mem[PAGE + 5], 0); /* a fault, served with zeros */

	/* The kernel waits for the monitor to read REMOVE and REMAP. */
	CHECK_OK(madvise(mem + PAGE, 2 * PAGE, MADV_DONTNEED));
	char *moved = mmap(NULL, 4 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(moved != MAP_FAILED);
	char *to = mremap(mem, 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, moved);
	CHECK(to == moved);
	CHECK_OK(munmap(to, 4 * PAGE));
	for (int i = 0; i < 5000 && atomic_load(&evcb.seen) != 7; i++)
		usleep(1000);
	CHECK_OK(libuffd_monitor_stop(m));
	CHECK_OK(libuffd_monitor_wait(m));

	CHECK_EQ(atomic_load(&evcb.seen), 7);
	CHECK(evcb.remap_m == m);
	CHECK(evcb.remove_m == m);
	CHECK(evcb.unmap_m == m);
	CHECK(evcb.user == &user_token);
	CHECK_EQ(evcb.handle_id, id);
	CHECK(evcb.remove_start == mem + PAGE);
	CHECK(evcb.remove_end == mem + 3 * PAGE);
	CHECK(evcb.remap_from == mem);
	CHECK(evcb.remap_to == to);
	CHECK_EQ(evcb.remap_len, 4 * PAGE);
	CHECK(evcb.unmap_start == to);
	CHECK(evcb.unmap_end == to + 4 * PAGE);
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
}

int main(void)
{
	source = malloc(PAGES * PAGE);
	for (size_t i = 0; i < PAGES * PAGE; i++)
		source[i] = (char)(i * 13 + (i >> 12) + 1);
	test_error_policy_sigbus(); /* forks: first, before any thread exists */
	test_stop_no_silent_zeros(); /* forks too */
	test_fork_child_closed(); /* forks too */
	test_buffer_source();
	test_callback_source();
	test_two_monitors_one_thread();
	test_resolved_by_caller();
	test_remove_region();
	test_copy_range();
	test_move_range();
	test_workers();
	test_defer();
	test_stop_from_callback();
	test_dispatch();
	test_remove_handle();
	test_bad_input();
	test_good_guest();
	test_event_callbacks_get_monitor();
	free(source);
	return h_finish();
}
