/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * uffd_bench: libuffd against the hand-rolled userfaultfd loop and the
 * physical floor, measured in one process, interleaved over repetitions.
 *
 * Every scenario maps fresh memory, registers it, and times how long the
 * faulting thread(s) take to touch every page (one byte per page), with
 * the faults served by:
 *   hand-rolled   the loop users write today: poll, read ONE message,
 *                 UFFDIO_COPY (or CONTINUE / unprotect / MOVE) ONE page,
 *                 UFFDIO_WAKE on EEXIST;
 *   libuffd ...   the monitor, serving the same region from a buffer page
 *                 source, in its default configuration and with each
 *                 speed option;
 *   floor ...     no faults at all: one UFFDIO_COPY of the whole region,
 *                 or plain first-touch of ordinary memory.
 * The "register" scenarios time something else: UFFDIO_REGISTER (MISSING)
 * plus UFFDIO_UNREGISTER of one 4 KiB anonymous range (its own mapping,
 * between PROT_NONE guards), --pairs times per repetition, by
 *   raw ioctls    on userfaultfd(O_CLOEXEC|O_NONBLOCK|UFFD_USER_MODE_ONLY);
 *   libuffd ...   libuffd_register + libuffd_unregister on a handle from
 *                 libuffd_open (same flags) and on one adopted with
 *                 libuffd_handle_from_fd;
 * once in this small process and once with 2 GiB (--quick: 64 MiB)
 * resident in other mappings (4 KiB pages, touched before and unmapped
 * after the scenario): registration must cost the ioctl, not a walk of
 * the process. There "pages" are register+unregister pairs ("faults/s" is
 * pairs per second, "cpu us/p" CPU per pair) and both ratios are to the
 * raw ioctls.
 * The "fetched" scenario gives every page a fetch latency (--fetch-us,
 * default 50 us, a nanosleep standing in for the network round trip of
 * post-copy migration): both loops fetch the page, then COPY it; libuffd
 * does it from a fault callback.
 * Output: a table of medians, spreads (min..max) and ratios to the
 * hand-rolled loop and to the floor, and optionally JSON. A ratio is the
 * median over repetitions of the two times measured in that repetition.
 * "cpu us/p" is the CPU time of the whole process (faulting and serving
 * threads, user and kernel) per page, and "cpus" that CPU time over the
 * elapsed time: when it reaches the machine's CPU count, the faults are
 * bound by the CPU work done per fault, not by how they are served.
 *
 * Usage: uffd_bench [--quick] [--mb N] [--reps N] [--json FILE] [--only SUBSTR]
 *                   [--variant SUBSTR] [--raw] [--trace-allocs] [--fetch-us N]
 *                   [--pairs N]
 * --only keeps the scenarios whose name contains SUBSTR; --variant keeps the
 * variants whose name contains SUBSTR, plus the hand-rolled loop and the
 * floors (every ratio needs them). Filtering variants is meant for profiling
 * one of them, or for more repetitions of one comparison.
 * --raw prints each variant's time in every repetition, in order (the pairs
 * behind the ratios).
 * --trace-allocs prints a backtrace (to stderr) for every heap allocation
 * made anywhere in the process while pages are being touched.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libuffd.h>

/* Linux 6.1 headers lack these (the running kernel has them). */
struct bench_uffdio_move { uint64_t dst, src, len, mode; int64_t move; };
#define BENCH_UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct bench_uffdio_move)

#define MAX_REPS 32
#define MAX_VARIANTS 16
#define MAX_THREADS 8
#define PAGE 4096UL
#define HUGE (2UL << 20)

/* ------------------------------------------------------------------ */
/* Allocation counting: every malloc in the process (libuffd's included)
 * goes through these, so the bench can report allocations per fault. */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
static atomic_ulong n_allocs;
static atomic_int touching;   /* faulting threads still running */
static int trace_allocs;      /* --trace-allocs */
static __thread int in_trace;

/* Count one allocation; with --trace-allocs, print where it came from when
 * it happens while pages are being touched. */
static void count_alloc(void)
{
	atomic_fetch_add_explicit(&n_allocs, 1, memory_order_relaxed);
	if (trace_allocs && !in_trace && atomic_load_explicit(&touching, memory_order_relaxed) > 0) {
		void *frames[32];
		in_trace = 1;
		int n = backtrace(frames, 32);
		fprintf(stderr, "uffd_bench: allocation while faulting:\n");
		backtrace_symbols_fd(frames, n, 2);
		in_trace = 0;
	}
}
void *malloc(size_t n) { count_alloc(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { count_alloc(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { count_alloc(); return __libc_realloc(p, n); }
int posix_memalign(void **out, size_t al, size_t n)
{
	count_alloc();
	void *p = __libc_memalign(al, n);
	if (!p)
		return ENOMEM;
	*out = p;
	return 0;
}
void *aligned_alloc(size_t al, size_t n) { count_alloc(); return __libc_memalign(al, n); }
void *memalign(size_t al, size_t n) { count_alloc(); return __libc_memalign(al, n); }

/* ------------------------------------------------------------------ */
static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of the whole process (every thread: faulting, serving, and the
 * kernel work done for them), in seconds. */
static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e-6;
}

/* CPU time spent inside the last measuring window (set with its time). */
static double window_cpu;

static void die(const char *what, long err)
{
	fprintf(stderr, "uffd_bench: %s: %s\n  %s\n", what, strerror(err < 0 ? (int)-err : (int)err),
		err < 0 ? libuffd_last_error() : "");
	exit(2);
}

enum mem_kind { MEM_ANON, MEM_HUGETLB, MEM_SHMEM };
enum serve { SERVE_MISSING, SERVE_MINOR, SERVE_WP, SERVE_MOVE, SERVE_FETCH, SERVE_REGISTER };

struct scenario {
	const char *name;
	enum mem_kind mem;
	enum serve serve;
	size_t page;
	size_t len;
	int threads;
	int random;
	size_t resident; /* register scenarios: bytes kept resident elsewhere */
};

/* The memory under test and its backing. */
struct region {
	char *addr;
	size_t len;
	int memfd;
	char *alias; /* shmem: a second, unregistered mapping (page cache) */
};

static char *source;      /* the bytes every region is filled from */
static size_t source_len;
static long fetch_us = 50; /* --fetch-us */

/* The "fetched" scenario's page source: wait out the fetch latency, then
 * hand over the page's bytes. */
static void fetch_page(size_t off, char *dst, size_t len)
{
	struct timespec ts = { 0, fetch_us * 1000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	memcpy(dst, source + off, len);
}

static void region_map(const struct scenario *s, struct region *r)
{
	r->len = s->len;
	r->memfd = -1;
	r->alias = NULL;
	int prot = PROT_READ | PROT_WRITE;
	if (s->mem == MEM_ANON) {
		r->addr = mmap(NULL, r->len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	} else if (s->mem == MEM_HUGETLB) {
		r->addr = mmap(NULL, r->len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	} else {
		r->memfd = memfd_create("uffd-bench", MFD_CLOEXEC);
		if (r->memfd < 0 || ftruncate(r->memfd, r->len) < 0)
			die("memfd", errno);
		/* Fill the page cache (what MINOR faults map). */
		r->alias = mmap(NULL, r->len, prot, MAP_SHARED, r->memfd, 0);
		if (r->alias == MAP_FAILED)
			die("mmap alias", errno);
		memcpy(r->alias, source, r->len);
		r->addr = mmap(NULL, r->len, prot, MAP_SHARED, r->memfd, 0);
	}
	if (r->addr == MAP_FAILED) {
		fprintf(stderr, "uffd_bench: mmap %zu bytes (%s) failed: %s%s\n", r->len,
			s->mem == MEM_HUGETLB ? "hugetlb" : "anon", strerror(errno),
			s->mem == MEM_HUGETLB ? " (reserve huge pages: echo 64 > /proc/sys/vm/nr_hugepages)" : "");
		exit(2);
	}
	if (s->serve == SERVE_WP) {
		memcpy(r->addr, source, r->len); /* populated, then protected */
	}
}

static void region_unmap(struct region *r)
{
	munmap(r->addr, r->len);
	if (r->alias)
		munmap(r->alias, r->len);
	if (r->memfd >= 0)
		close(r->memfd);
}

/* ------------------------------------------------------------------ */
/* The faulting side: T threads touch one byte of every page, each its own
 * stripe, sequentially or in a shuffled order; writes for WP scenarios. */
static atomic_ulong touch_allocs; /* allocations while pages were being touched */

struct toucher {
	pthread_t tid;
	char *base;
	size_t page;
	size_t *order;
	size_t n;
	int write;
	pthread_barrier_t *start;
	volatile unsigned long sum;
};

static void *touch_thread(void *arg)
{
	struct toucher *t = arg;
	unsigned long sum = 0;
	pthread_setname_np(pthread_self(), "toucher");
	pthread_barrier_wait(t->start);
	for (size_t i = 0; i < t->n; i++) {
		char *p = t->base + t->order[i] * t->page;
		if (t->write)
			*(volatile char *)p = 1;
		else
			sum += *(volatile char *)p;
	}
	t->sum = sum;
	/* The last thread to finish closes the measuring window. */
	if (atomic_fetch_sub(&touching, 1) == 1)
		atomic_fetch_add(&touch_allocs, atomic_load(&n_allocs));
	return NULL;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* Page order for each thread's stripe. */
static size_t *make_order(const struct scenario *s)
{
	size_t pages = s->len / s->page;
	size_t *order = malloc(pages * sizeof *order);
	for (size_t i = 0; i < pages; i++)
		order[i] = i;
	if (s->random) {
		for (size_t i = pages - 1; i > 0; i--) {
			size_t j = rng() % (i + 1);
			size_t tmp = order[i];
			order[i] = order[j];
			order[j] = tmp;
		}
	}
	return order;
}

/* Touch every page with s->threads threads; returns seconds. */
static double touch_all(const struct scenario *s, struct region *r, size_t *order)
{
	struct toucher t[MAX_THREADS];
	pthread_barrier_t start;
	size_t pages = s->len / s->page, per = pages / s->threads;
	pthread_barrier_init(&start, NULL, s->threads + 1);
	for (int i = 0; i < s->threads; i++) {
		t[i] = (struct toucher){ .base = r->addr, .page = s->page, .order = order + i * per,
					 .n = (i == s->threads - 1) ? pages - i * per : per,
					 .write = s->serve == SERVE_WP, .start = &start };
		pthread_create(&t[i].tid, NULL, touch_thread, &t[i]);
	}
	atomic_store(&touching, s->threads);
	atomic_fetch_sub(&touch_allocs, atomic_load(&n_allocs));
	double c0 = cpu_s(), t0 = now_s();
	pthread_barrier_wait(&start);
	for (int i = 0; i < s->threads; i++)
		pthread_join(t[i].tid, NULL);
	double dt = now_s() - t0;
	window_cpu = cpu_s() - c0;
	pthread_barrier_destroy(&start);
	return dt;
}

/* ------------------------------------------------------------------ */
/* The hand-rolled loop, written the way a user writes it today. */
struct handrolled {
	int uffd, stopfd;
	char *base;
	char *src;       /* COPY / MOVE source for the region's first byte */
	size_t page;
	enum serve serve;
	pthread_t tid[4];
};

static void *handrolled_loop(void *arg)
{
	struct handrolled *h = arg;
	pthread_setname_np(pthread_self(), "hand-rolled"); /* for profilers */
	struct pollfd pfd[2] = { { .fd = h->uffd, .events = POLLIN }, { .fd = h->stopfd, .events = POLLIN } };
	for (;;) {
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll", errno);
		}
		if (pfd[1].revents)
			return NULL;
		struct uffd_msg msg;
		ssize_t n = read(h->uffd, &msg, sizeof msg);
		if (n < 0) {
			if (errno == EAGAIN)
				continue;
			die("read", errno);
		}
		if (msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		uint64_t page = msg.arg.pagefault.address & ~(uint64_t)(h->page - 1);
		uint64_t off = page - (uint64_t)(uintptr_t)h->base;
		int rc;
		if (h->serve == SERVE_MINOR) {
			struct uffdio_continue c = { .range = { page, h->page } };
			rc = ioctl(h->uffd, UFFDIO_CONTINUE, &c);
		} else if (h->serve == SERVE_WP) {
			struct uffdio_writeprotect w = { .range = { page, h->page }, .mode = 0 };
			rc = ioctl(h->uffd, UFFDIO_WRITEPROTECT, &w);
		} else if (h->serve == SERVE_MOVE) {
			struct bench_uffdio_move mv = { .dst = page, .src = (uint64_t)(uintptr_t)(h->src + off), .len = h->page };
			rc = ioctl(h->uffd, BENCH_UFFDIO_MOVE, &mv);
		} else if (h->serve == SERVE_FETCH) {
			static __thread char buf[PAGE] __attribute__((aligned(PAGE)));
			fetch_page(off, buf, h->page);
			struct uffdio_copy c = { .dst = page, .src = (uint64_t)(uintptr_t)buf, .len = h->page };
			rc = ioctl(h->uffd, UFFDIO_COPY, &c);
		} else {
			struct uffdio_copy c = { .dst = page, .src = (uint64_t)(uintptr_t)(h->src + off), .len = h->page };
			rc = ioctl(h->uffd, UFFDIO_COPY, &c);
		}
		if (rc < 0 && errno == EEXIST) {
			struct uffdio_range w = { page, h->page };
			ioctl(h->uffd, UFFDIO_WAKE, &w);
		} else if (rc < 0) {
			die("hand-rolled resolve", errno);
		}
	}
}

static int raw_uffd(uint64_t features)
{
	/* The mode libuffd_open() gives by default: kernel-mode faults too. */
	int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		die("userfaultfd", errno);
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		die("UFFDIO_API", errno);
	return fd;
}

static uint64_t reg_mode(enum serve s)
{
	return s == SERVE_MINOR ? UFFDIO_REGISTER_MODE_MINOR
	       : s == SERVE_WP  ? UFFDIO_REGISTER_MODE_WP
				: UFFDIO_REGISTER_MODE_MISSING;
}

static uint64_t features_for(const struct scenario *s)
{
	switch (s->serve) {
	case SERVE_MINOR: return UFFD_FEATURE_MINOR_SHMEM;
	case SERVE_WP: return UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	case SERVE_MOVE: return 0x10000; /* UFFD_FEATURE_MOVE */
	default: return 0;
	}
}

/* Prepare a source the MOVE ioctl may take pages from (fresh each run). */
static char *move_source(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		die("mmap move source", errno);
	memcpy(p, source, len);
	return p;
}

/* The hand-rolled loop on `readers` threads at once (1: the usual loop). */
static double run_handrolled(const struct scenario *s, size_t *order, int readers)
{
	struct region r;
	region_map(s, &r);
	struct handrolled h = { .uffd = raw_uffd(features_for(s)), .base = r.addr, .page = s->page,
				.serve = s->serve, .src = source };
	h.stopfd = eventfd(0, EFD_CLOEXEC);
	if (s->serve == SERVE_MOVE)
		h.src = move_source(s->len);
	struct uffdio_register reg = { .range = { (uint64_t)(uintptr_t)r.addr, r.len }, .mode = reg_mode(s->serve) };
	if (ioctl(h.uffd, UFFDIO_REGISTER, &reg) < 0)
		die("UFFDIO_REGISTER", errno);
	if (s->serve == SERVE_WP) {
		struct uffdio_writeprotect w = { .range = reg.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
		if (ioctl(h.uffd, UFFDIO_WRITEPROTECT, &w) < 0)
			die("UFFDIO_WRITEPROTECT", errno);
	}
	for (int i = 0; i < readers; i++)
		pthread_create(&h.tid[i], NULL, handrolled_loop, &h);
	double dt = touch_all(s, &r, order);
	uint64_t one = 1;
	if (write(h.stopfd, &one, 8) != 8)
		die("eventfd", errno);
	for (int i = 0; i < readers; i++)
		pthread_join(h.tid[i], NULL);
	if (s->serve != SERVE_WP && memcmp(r.addr, source, r.len) != 0) {
		fprintf(stderr, "uffd_bench: hand-rolled %s: data mismatch\n", s->name);
		exit(2);
	}
	close(h.uffd);
	close(h.stopfd);
	if (s->serve == SERVE_MOVE)
		munmap(h.src, s->len);
	region_unmap(&r);
	return dt;
}

/* ------------------------------------------------------------------ */
/* libuffd's monitor. */
struct lib_variant {
	uint32_t workers, spin_us, window_min, window_max, flags;
	int prefetch;
};

static char *move_src_for_cb;
static int move_fault(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	char *base = ud;
	int rc = libuffd_monitor_move(m, f, move_src_for_cb + ((char *)f->page - base));
	return rc < 0 ? rc : LIBUFFD_ON_FAULT_HANDLED;
}

/* The "fetched" scenario's fault callback (runs on the monitor's reader or
 * on its workers, so the staging buffer is per thread). */
static int fetch_fault(void *ud, libuffd_monitor *m, const struct libuffd_fault *f)
{
	static __thread char buf[PAGE] __attribute__((aligned(PAGE)));
	char *base = ud;
	fetch_page((size_t)((char *)f->page - base), buf, f->page_size);
	int rc = libuffd_monitor_copy(m, f, buf);
	return rc < 0 ? rc : LIBUFFD_ON_FAULT_HANDLED;
}

static unsigned long allocs_during, faults_during;

static double run_libuffd(const struct scenario *s, size_t *order, const struct lib_variant *v)
{
	struct region r;
	region_map(s, &r);
	struct libuffd_open_opts oo = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK,
						     .required_features = features_for(s));
	libuffd_handle *h;
	int rc = libuffd_open(&oo, &h);
	if (rc < 0)
		die("libuffd_open", rc);
	struct libuffd_monitor_opts mo = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .workers = v->workers,
							.spin_us = v->spin_us, .window_min = v->window_min,
							.window_max = v->window_max, .flags = v->flags);
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = s->serve == SERVE_FETCH ? fetch_fault : move_fault);
	int cb = s->serve == SERVE_MOVE || s->serve == SERVE_FETCH;
	libuffd_monitor *m;
	rc = libuffd_monitor_new(&mo, cb ? &ops : NULL, r.addr, NULL, &m);
	if (rc < 0)
		die("libuffd_monitor_new", rc);
	uint32_t id;
	if ((rc = libuffd_monitor_add_handle(m, h, &id)) < 0)
		die("libuffd_monitor_add_handle", rc);
	struct libuffd_region_opts ro = LIBUFFD_OPTS_INIT(libuffd_region_opts, .register_mode = reg_mode(s->serve),
						       .fd = -1);
	if (s->serve == SERVE_MINOR) {
		ro.source = LIBUFFD_SOURCE_PAGE_CACHE;
	} else if (s->serve == SERVE_MOVE) {
		ro.source = LIBUFFD_SOURCE_CALLBACK;
		move_src_for_cb = move_source(s->len);
	} else if (s->serve == SERVE_FETCH) {
		ro.source = LIBUFFD_SOURCE_CALLBACK;
	} else {
		ro.source = LIBUFFD_SOURCE_BUFFER;
		ro.buffer = source;
		ro.buffer_len = s->len;
	}
	if (v->prefetch)
		ro.flags |= LIBUFFD_REGION_PREFETCH;
	if ((rc = libuffd_monitor_add_region(m, id, r.addr, r.len, &ro)) < 0)
		die("libuffd_monitor_add_region", rc);
	if (s->serve == SERVE_WP && (rc = libuffd_writeprotect(h, r.addr, r.len, LIBUFFD_WRITEPROTECT_WP)) < 0)
		die("libuffd_writeprotect", rc);
	if ((rc = libuffd_monitor_start(m)) < 0)
		die("libuffd_monitor_start", rc);
	struct libuffd_monitor_stats st0 = { .sz = sizeof st0 }, st1 = { .sz = sizeof st1 };
	libuffd_monitor_get_stats(m, &st0);
	atomic_store(&touch_allocs, 0);
	double dt = touch_all(s, &r, order);
	libuffd_monitor_get_stats(m, &st1);
	allocs_during += atomic_load(&touch_allocs);
	faults_during += st1.faults - st0.faults;
	libuffd_monitor_stop(m);
	if ((rc = libuffd_monitor_wait(m)) < 0)
		die("libuffd_monitor_wait", rc);
	if (s->serve != SERVE_WP && memcmp(r.addr, source, r.len) != 0) {
		fprintf(stderr, "uffd_bench: libuffd %s: data mismatch\n", s->name);
		exit(2);
	}
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	if (s->serve == SERVE_MOVE)
		munmap(move_src_for_cb, s->len);
	region_unmap(&r);
	return dt;
}

/* ------------------------------------------------------------------ */
/* Floors: no fault handling at all. */
static double run_floor_copy(const struct scenario *s)
{
	struct region r;
	region_map(s, &r);
	int uffd = raw_uffd(0);
	struct uffdio_register reg = { .range = { (uint64_t)(uintptr_t)r.addr, r.len }, .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0)
		die("UFFDIO_REGISTER", errno);
	double c0 = cpu_s(), t0 = now_s();
	struct uffdio_copy c = { .dst = (uint64_t)(uintptr_t)r.addr, .src = (uint64_t)(uintptr_t)source, .len = r.len };
	if (ioctl(uffd, UFFDIO_COPY, &c) < 0)
		die("UFFDIO_COPY (floor)", errno);
	double dt = now_s() - t0;
	window_cpu = cpu_s() - c0;
	close(uffd);
	region_unmap(&r);
	return dt;
}

static double run_floor_touch(const struct scenario *s, size_t *order)
{
	struct scenario plain = *s;
	plain.serve = SERVE_MISSING;
	struct region r;
	region_map(&plain, &r);
	double dt = touch_all(s, &r, order);
	region_unmap(&r);
	return dt;
}

/* ------------------------------------------------------------------ */
struct variant {
	const char *name;
	int kind; /* 0 hand-rolled, 1 libuffd, 2 floor copy, 3 floor touch, 4 hand-rolled x4 readers,
	           * 5 raw register+unregister, 6 libuffd_open handle, 7 adopted handle */
	struct lib_variant lib;
};

/* ------------------------------------------------------------------ */
/* The register scenarios: one 4 KiB range registered and unregistered. */
static char *reg_range;              /* the page, between two PROT_NONE guards */
static int reg_raw_fd = -1;          /* raw userfaultfd */
static libuffd_handle *reg_open_h;   /* from libuffd_open, same flags */
static libuffd_handle *reg_adopt_h;  /* from libuffd_handle_from_fd */

static int raw_userfaultfd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		die("userfaultfd", errno);
	return fd;
}

static void register_setup(void)
{
	if (reg_range)
		return;
	char *g = mmap(NULL, 3 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g == MAP_FAILED)
		die("mmap", errno);
	reg_range = g + PAGE;
	if (mprotect(reg_range, PAGE, PROT_READ | PROT_WRITE) != 0)
		die("mprotect", errno);
	reg_raw_fd = raw_userfaultfd();
	struct uffdio_api api = { .api = UFFD_API };
	if (ioctl(reg_raw_fd, UFFDIO_API, &api) != 0)
		die("UFFDIO_API", errno);
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts,
						       .flags = LIBUFFD_OPEN_NONBLOCK | LIBUFFD_OPEN_USER_ONLY);
	int rc = libuffd_open(&o, &reg_open_h);
	if (rc < 0)
		die("libuffd_open", rc);
	struct libuffd_open_opts a = LIBUFFD_OPTS_INIT(libuffd_open_opts);
	int fd = raw_userfaultfd();
	rc = libuffd_handle_from_fd(fd, &a, &reg_adopt_h);
	if (rc < 0)
		die("libuffd_handle_from_fd", rc);
}

/* Keep `bytes` resident in other mappings (4 KiB pages, every one
 * touched); returns the mapping, to unmap after the scenario. */
static char *make_resident(size_t bytes)
{
	char *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (m == MAP_FAILED)
		die("mmap resident", errno);
	madvise(m, bytes, MADV_NOHUGEPAGE);
	for (size_t off = 0; off < bytes; off += PAGE)
		m[off] = (char)off | 1;
	return m;
}

/* --pairs register+unregister pairs of reg_range, timed. */
static double run_register(const struct scenario *s, int kind)
{
	size_t pairs = s->len / s->page;
	libuffd_handle *h = kind == 6 ? reg_open_h : reg_adopt_h;
	double c0 = cpu_s(), t0 = now_s();
	for (size_t i = 0; i < pairs; i++) {
		if (kind == 5) {
			struct uffdio_register r = {
				.range = { (uintptr_t)reg_range, PAGE },
				.mode = UFFDIO_REGISTER_MODE_MISSING,
			};
			if (ioctl(reg_raw_fd, UFFDIO_REGISTER, &r) != 0)
				die("UFFDIO_REGISTER", errno);
			struct uffdio_range u = { (uintptr_t)reg_range, PAGE };
			if (ioctl(reg_raw_fd, UFFDIO_UNREGISTER, &u) != 0)
				die("UFFDIO_UNREGISTER", errno);
		} else {
			uint64_t io;
			int rc = libuffd_register(h, reg_range, PAGE, LIBUFFD_REGISTER_MISSING, &io);
			if (rc < 0)
				die("libuffd_register", rc);
			rc = libuffd_unregister(h, reg_range, PAGE);
			if (rc < 0)
				die("libuffd_unregister", rc);
		}
	}
	double dt = now_s() - t0;
	window_cpu = cpu_s() - c0;
	return dt;
}

struct result {
	double t[MAX_REPS];
	double cpu[MAX_REPS]; /* process CPU time in the same window */
	int n;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(struct result *r)
{
	double tmp[MAX_REPS];
	memcpy(tmp, r->t, r->n * sizeof(double));
	qsort(tmp, r->n, sizeof(double), cmp_double);
	return r->n % 2 ? tmp[r->n / 2] : (tmp[r->n / 2 - 1] + tmp[r->n / 2]) / 2;
}

/* Median over repetitions of a's time / b's time in the same repetition:
 * each pair ran back to back, so the ratio cancels the drift of a shared
 * machine's speed from one repetition to the next, which a ratio of
 * medians would not. */
static double paired_ratio(struct result *a, struct result *b)
{
	struct result q = { .n = a->n < b->n ? a->n : b->n };
	for (int i = 0; i < q.n; i++)
		q.t[i] = a->t[i] / b->t[i];
	return q.n ? median(&q) : 0;
}

/* Median CPU time per page, and median CPUs kept busy (CPU time / time). */
static void cpu_use(struct result *r, size_t pages, double *us_per_page, double *busy)
{
	struct result per = { .n = r->n }, load = { .n = r->n };
	for (int i = 0; i < r->n; i++) {
		per.t[i] = r->cpu[i] * 1e6 / pages;
		load.t[i] = r->cpu[i] / r->t[i];
	}
	*us_per_page = median(&per);
	*busy = median(&load);
}

static double minv(struct result *r) { double m = r->t[0]; for (int i = 1; i < r->n; i++) if (r->t[i] < m) m = r->t[i]; return m; }
static double maxv(struct result *r) { double m = r->t[0]; for (int i = 1; i < r->n; i++) if (r->t[i] > m) m = r->t[i]; return m; }

static FILE *json;
static int json_first = 1;
static const char *variant_filter;
static int print_raw;

static int variant_wanted(const struct variant *v)
{
	return !variant_filter || v->kind == 0 || v->kind == 2 || v->kind == 3 || v->kind == 5 ||
	       strstr(v->name, variant_filter);
}

static void run_scenario(const struct scenario *s, const struct variant *vs, int nv, int reps)
{
	struct result res[MAX_VARIANTS] = { 0 };
	size_t *order = make_order(s);
	for (int rep = 0; rep < reps; rep++) {
		/* Interleave: rotate the starting variant each repetition. */
		for (int k = 0; k < nv; k++) {
			int i = (k + rep) % nv;
			const struct variant *v = &vs[i];
			double dt;
			if (!variant_wanted(v))
				continue;
			if (v->kind == 0 || v->kind == 4)
				dt = run_handrolled(s, order, v->kind == 4 ? 4 : 1);
			else if (v->kind == 1)
				dt = run_libuffd(s, order, &v->lib);
			else if (v->kind >= 5)
				dt = run_register(s, v->kind);
			else if (v->kind == 2)
				dt = run_floor_copy(s);
			else
				dt = run_floor_touch(s, order);
			res[i].cpu[res[i].n] = window_cpu;
			res[i].t[res[i].n++] = dt;
		}
	}
	free(order);
	struct result *hand = NULL, *floor = NULL;
	for (int i = 0; i < nv; i++) {
		if (!variant_wanted(&vs[i]))
			continue;
		if (vs[i].kind == 0 || vs[i].kind == 5)
			hand = &res[i];
		if (vs[i].kind == 2 || vs[i].kind == 5 || (vs[i].kind == 3 && !floor))
			floor = &res[i];
	}
	size_t pages = s->len / s->page;
	if (s->serve == SERVE_REGISTER)
		printf("\n%s  (%zu register+unregister pairs of one 4 KiB range per repetition, %zu MiB resident elsewhere; ratios to the raw ioctls)\n",
		       s->name, pages, s->resident >> 20);
	else
		printf("\n%s  (%zu MiB, %zu pages of %zu KiB, %d thread%s, %s)\n", s->name, s->len >> 20, pages,
		       s->page >> 10, s->threads, s->threads > 1 ? "s" : "", s->random ? "random" : "sequential");
	printf("  %-34s %10s %21s %10s %9s %9s %8s %5s\n", "variant", "median ms", "spread ms (min..max)", "faults/s",
	       "x hand", "x floor", "cpu us/p", "cpus");
	for (int i = 0; i < nv; i++) {
		if (!variant_wanted(&vs[i]))
			continue;
		double med = median(&res[i]);
		double x_hand = hand ? paired_ratio(&res[i], hand) : 0;
		double x_floor = floor ? paired_ratio(&res[i], floor) : 0;
		double cpu_us, busy;
		cpu_use(&res[i], pages, &cpu_us, &busy);
		printf("  %-34s %10.2f %10.2f..%-10.2f %10.0f %9.3f %9.3f %8.2f %5.2f\n", vs[i].name, med * 1e3,
		       minv(&res[i]) * 1e3, maxv(&res[i]) * 1e3, pages / med, x_hand, x_floor, cpu_us, busy);
		if (s->serve == SERVE_REGISTER)
			printf("    %.3f us per register+unregister pair (median)\n", med * 1e6 / pages);
		if (print_raw) {
			printf("    ms by repetition:");
			for (int k = 0; k < res[i].n; k++)
				printf(" %.2f", res[i].t[k] * 1e3);
			printf("\n");
		}
		if (json) {
			fprintf(json, "%s\n  {\"scenario\": \"%s\", \"variant\": \"%s\", \"pages\": %zu, \"page_size\": %zu, "
				      "\"threads\": %d, \"random\": %d, \"median_s\": %.9f, \"min_s\": %.9f, \"max_s\": %.9f, "
				      "\"reps\": %d, \"ratio_to_handrolled\": %.6f, \"ratio_to_floor\": %.6f, "
				      "\"cpu_us_per_page\": %.3f, \"cpus_busy\": %.3f}",
				json_first ? "" : ",", s->name, vs[i].name, pages, s->page, s->threads, s->random, med,
				minv(&res[i]), maxv(&res[i]), res[i].n, x_hand, x_floor, cpu_us, busy);
			json_first = 0;
		}
	}
	fflush(stdout);
}

#define HAND { "hand-rolled (poll+read 1+COPY 1)", 0, { 0 } }
#define HAND4 { "hand-rolled, 4 reader threads", 4, { 0 } }
#define LIB_DEFAULT { "libuffd default", 1, { 0 } }
#define LIB_FIXED1 { "libuffd window 1 (no fault-around)", 1, { .window_min = 1, .window_max = 1, .flags = LIBUFFD_MONITOR_FIXED_WINDOW } }
#define LIB_FIXED16 { "libuffd fault-around fixed 16", 1, { .window_min = 16, .window_max = 16, .flags = LIBUFFD_MONITOR_FIXED_WINDOW } }
#define LIB_ADAPT { "libuffd fault-around adaptive 1..512", 1, { .window_min = 1, .window_max = 512 } }
#define LIB_WORKERS { "libuffd workers=4", 1, { .workers = 4 } }
#define LIB_WORKERS_ALL { "libuffd workers=4, hand off all", 1, { .workers = 4, .flags = LIBUFFD_MONITOR_HAND_OFF_ALL } }
#define LIB_SPIN { "libuffd low-latency (spin 50us)", 1, { .spin_us = 50 } }
#define LIB_PREFETCH { "libuffd prefetch", 1, { .prefetch = 1 } }
#define FLOOR_COPY { "floor: one COPY of the region", 2, { 0 } }
#define FLOOR_TOUCH { "floor: first touch, no uffd", 3, { 0 } }
#define REG_RAW { "raw ioctls REGISTER+UNREGISTER", 5, { 0 } }
#define REG_OPEN { "libuffd, libuffd_open handle", 6, { 0 } }
#define REG_ADOPT { "libuffd, adopted handle (from_fd)", 7, { 0 } }

int main(int argc, char **argv)
{
	size_t mb = 64;
	int reps = 5, quick = 0;
	long pairs = 0; /* --pairs; default 2000 (quick: 200) */
	const char *json_path = NULL, *only = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = 1;
		else if (!strcmp(argv[i], "--mb") && i + 1 < argc)
			mb = strtoul(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--json") && i + 1 < argc)
			json_path = argv[++i];
		else if (!strcmp(argv[i], "--only") && i + 1 < argc)
			only = argv[++i];
		else if (!strcmp(argv[i], "--raw"))
			print_raw = 1;
		else if (!strcmp(argv[i], "--variant") && i + 1 < argc)
			variant_filter = argv[++i];
		else if (!strcmp(argv[i], "--trace-allocs"))
			trace_allocs = 1;
		else if (!strcmp(argv[i], "--fetch-us") && i + 1 < argc)
			fetch_us = strtol(argv[++i], NULL, 0);
		else if (!strcmp(argv[i], "--pairs") && i + 1 < argc)
			pairs = strtol(argv[++i], NULL, 0);
		else {
			fprintf(stderr, "usage: %s [--quick] [--mb N] [--reps N] [--json FILE] [--only SUBSTR] [--variant SUBSTR] [--raw] [--trace-allocs] [--fetch-us N] [--pairs N]\n", argv[0]);
			return 2;
		}
	}
	if (quick) {
		mb = 4;
		reps = 1;
	}
	if (pairs == 0)
		pairs = quick ? 200 : 2000;
	if (pairs < 1 || pairs > 10000000) {
		fprintf(stderr, "uffd_bench: need 1 <= pairs <= 10000000\n");
		return 2;
	}
	size_t resident = quick ? (size_t)64 << 20 : (size_t)2 << 30;
	if (reps < 1 || reps > MAX_REPS || mb < 4 || fetch_us < 0 || fetch_us > 999999) {
		fprintf(stderr, "uffd_bench: need 1 <= reps <= %d, mb >= 4 and 0 <= fetch-us < 1000000\n", MAX_REPS);
		return 2;
	}
	/* Sleeps as long as asked (not up to 50 us more), in every thread
	 * created from here on: the fetch latency is what --fetch-us says. */
	prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
	size_t len = mb << 20;
	size_t huge_len = (mb < 64 ? mb : 64) << 20; /* 64 reserved huge pages at most */
	size_t fetch_len = len / 4;                    /* every page waits fetch_us */
	source_len = len;
	source = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (source == MAP_FAILED)
		die("mmap source", errno);
	for (size_t i = 0; i < len; i++)
		source[i] = (char)(i * 7 + (i >> 12));
	if (json_path && !(json = fopen(json_path, "w")))
		die("open json", errno);
	if (json)
		fprintf(json, "{\"libuffd\": \"%s\", \"mb\": %zu, \"reps\": %d, \"results\": [", libuffd_version_string(), mb, reps);

	printf("uffd_bench: libuffd %s, %zu MiB regions, %d repetition%s (medians; ratios: time / hand-rolled and time / floor in the same repetition, median over repetitions; lower is better)\n",
	       libuffd_version_string(), mb, reps, reps > 1 ? "s" : "");

	const struct variant seq[] = { HAND, LIB_DEFAULT, LIB_FIXED1, LIB_FIXED16, LIB_ADAPT, LIB_PREFETCH, FLOOR_COPY, FLOOR_TOUCH };
	const struct variant rnd[] = { HAND, LIB_DEFAULT, LIB_FIXED1, LIB_SPIN, LIB_WORKERS, FLOOR_COPY, FLOOR_TOUCH };
	const struct variant thr[] = { HAND, HAND4, LIB_DEFAULT, LIB_WORKERS, LIB_WORKERS_ALL, LIB_SPIN, FLOOR_TOUCH };
	const struct variant huge[] = { HAND, LIB_DEFAULT, LIB_WORKERS, FLOOR_COPY, FLOOR_TOUCH };
	const struct variant minor[] = { HAND, LIB_DEFAULT, LIB_FIXED1, FLOOR_TOUCH };
	const struct variant wp[] = { HAND, LIB_DEFAULT, LIB_SPIN, FLOOR_TOUCH };
	const struct variant mv[] = { HAND, { "libuffd callback + libuffd_monitor_move", 1, { 0 } }, FLOOR_TOUCH };
	const struct variant reg[] = { REG_RAW, REG_OPEN, REG_ADOPT };
	const struct variant fetched[] = { HAND, HAND4, { "libuffd callback (default)", 1, { 0 } }, LIB_WORKERS, FLOOR_TOUCH };

	struct {
		struct scenario s;
		const struct variant *v;
		int nv;
	} plan[] = {
		{ { "anon 4k sequential", MEM_ANON, SERVE_MISSING, PAGE, len, 1, 0, 0 }, seq, 8 },
		{ { "anon 4k random", MEM_ANON, SERVE_MISSING, PAGE, len, 1, 1, 0 }, rnd, 7 },
		{ { "anon 4k random x2 threads", MEM_ANON, SERVE_MISSING, PAGE, len, 2, 1, 0 }, thr, 7 },
		{ { "anon 4k random x4 threads", MEM_ANON, SERVE_MISSING, PAGE, len, 4, 1, 0 }, thr, 7 },
		{ { "hugetlb 2m sequential", MEM_HUGETLB, SERVE_MISSING, HUGE, huge_len, 1, 0, 0 }, huge, 5 },
		{ { "hugetlb 2m random", MEM_HUGETLB, SERVE_MISSING, HUGE, huge_len, 1, 1, 0 }, huge, 5 },
		{ { "shmem minor+continue sequential", MEM_SHMEM, SERVE_MINOR, PAGE, len, 1, 0, 0 }, minor, 4 },
		{ { "shmem minor+continue random", MEM_SHMEM, SERVE_MINOR, PAGE, len, 1, 1, 0 }, minor, 4 },
		{ { "anon write-protect round trips", MEM_ANON, SERVE_WP, PAGE, len, 1, 1, 0 }, wp, 4 },
		{ { "anon MOVE (vs COPY above)", MEM_ANON, SERVE_MOVE, PAGE, len, 1, 1, 0 }, mv, 3 },
		{ { "anon 4k random x4 threads, fetched", MEM_ANON, SERVE_FETCH, PAGE, fetch_len, 4, 1, 0 }, fetched, 5 },
		{ { "register 4k, small process", MEM_ANON, SERVE_REGISTER, PAGE, (size_t)pairs * PAGE, 1, 0, 0 }, reg, 3 },
		{ { "register 4k, resident elsewhere", MEM_ANON, SERVE_REGISTER, PAGE, (size_t)pairs * PAGE, 1, 0, resident },
		  reg, 3 },
	};
	for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
		if (only && !strstr(plan[i].s.name, only))
			continue;
		allocs_during = faults_during = 0;
		char *res_map = NULL;
		if (plan[i].s.serve == SERVE_REGISTER) {
			register_setup();
			if (plan[i].s.resident)
				res_map = make_resident(plan[i].s.resident);
		}
		run_scenario(&plan[i].s, plan[i].v, plan[i].nv, reps);
		if (res_map)
			munmap(res_map, plan[i].s.resident);
		if (plan[i].s.serve != SERVE_REGISTER)
			printf("  heap allocations per fault while faulting (libuffd variants): %lu allocations / %lu faults = %.4f\n",
			       allocs_during, faults_during, faults_during ? (double)allocs_during / faults_during : 0.0);
	}
	if (json) {
		fprintf(json, "\n]}\n");
		fclose(json);
	}
	return 0;
}
