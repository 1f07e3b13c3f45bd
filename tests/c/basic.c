/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * basic: libuffd's C API doing real work on the running kernel (Linux
 * 6.18 with 64 reserved 2 MiB huge pages, as root): open and probe,
 * faults raised by another thread and resolved with every resolving
 * operation, write protection, minor faults on shmem, poisoning, moving,
 * unregistering, page sizes, version queries, and FORK events adopted
 * with libuffd_handle_from_fd(). Also: open flags on both creation paths,
 * kernel-mode faults trapped by default versus USER_ONLY, EXACT_ADDRESS and THREAD_ID,
 * partial progress, -EINTR, REMOVE/REMAP/UNMAP events and their payloads,
 * FEATURE_SIGBUS, and the per-thread last error.
 *
 * Known library bug checked here (fails until fixed): for REMOVE and
 * UNMAP events, libuffd_event.u.raw[2] is not the kernel's word (0) but
 * uninitialised bytes.
 */
#include "harness.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

static size_t page;

#define SENTINEL_INIT 0xa5a5a5a5a5a5a5a5ULL

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Read events on a NONBLOCK handle, polling in 100 ms steps, until at
 * least one arrives or `total_ms` pass. Returns the count or -errno.
 */
static int read_events_within(libuffd_handle *h, struct libuffd_event *ev, size_t max, int total_ms)
{
	long long deadline = now_ms() + total_ms;
	for (;;) {
		int n = libuffd_read_events(h, ev, max, 100);
		if (n != 0)
			return n;
		if (now_ms() >= deadline)
			return 0;
	}
}

/* Open a handle with `flags` and `features` (all required), or FATAL. */
static libuffd_handle *open_or_die(uint32_t flags, uint64_t features)
{
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = flags,
						    .features = features,
						    .required_features = features);
	libuffd_handle *h = NULL;
	int rc = libuffd_open(&o, &h);
	if (rc != 0 || !h)
		FATAL("libuffd_open(flags %#x, features %#llx) = %d: %s", flags,
		      (unsigned long long)features, rc, libuffd_last_error());
	return h;
}

/* A thread that touches one byte (read or write) of registered memory. */
struct toucher {
	pthread_t thr;
	volatile char *addr;
	int write;      /* 0: read the byte; 1: write `value` */
	char value;     /* written, or the byte read */
	pid_t tid;
	volatile int done;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;
	t->tid = gettid();
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (t->write)
		*t->addr = t->value;
	else
		t->value = *t->addr;
	__atomic_store_n(&t->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void touch_start(struct toucher *t, void *addr, int write, char value)
{
	memset(t, 0, sizeof *t);
	t->addr = addr;
	t->write = write;
	t->value = value;
	int rc = pthread_create(&t->thr, NULL, toucher_main, t);
	if (rc != 0)
		FATAL("pthread_create: %s", strerror(rc));
}

/* Join a toucher within 10 s; a thread still stuck is fatal. */
static void touch_join(struct toucher *t)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 10;
	int rc = pthread_timedjoin_np(t->thr, NULL, &ts);
	if (rc != 0)
		FATAL("the faulting thread did not finish within 10 s (%s): fault not resolved",
		      strerror(rc));
}

/* ------------------------------------------------------------------ */

static void test_versions(void)
{
	SECTION("version");
	CHECK_EQ(libuffd_version(), LIBUFFD_VERSION);
	CHECK_EQ(LIBUFFD_VERSION, 0x010000);
	CHECK_EQ(libuffd_version() >> 16, LIBUFFD_VERSION_MAJOR);
	CHECK_EQ((libuffd_version() >> 8) & 0xff, LIBUFFD_VERSION_MINOR);
	CHECK_EQ(libuffd_version() & 0xff, LIBUFFD_VERSION_PATCH);
	CHECK_STREQ(libuffd_version_string(), "1.0.0");
	char expect[32];
	snprintf(expect, sizeof expect, "%d.%d.%d", LIBUFFD_VERSION_MAJOR,
		 LIBUFFD_VERSION_MINOR, LIBUFFD_VERSION_PATCH);
	CHECK_STREQ(libuffd_version_string(), expect);
}

static void test_opts_init(void)
{
	SECTION("LIBUFFD_OPTS_INIT");
	struct libuffd_open_opts o;
	memset(&o, 0xff, sizeof o);
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK);
	CHECK_EQ(o.sz, sizeof(struct libuffd_open_opts));
	CHECK_EQ(o.flags, LIBUFFD_OPEN_NONBLOCK);
	CHECK_EQ(o.reserved, 0);
	CHECK_EQ(o.features, 0);
	CHECK_EQ(o.required_features, 0);
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .features = LIBUFFD_FEATURE_THREAD_ID,
			      .required_features = LIBUFFD_FEATURE_MOVE);
	CHECK_EQ(o.sz, 32);
	CHECK_EQ(o.flags, 0);
	CHECK_EQ_HEX(o.features, LIBUFFD_FEATURE_THREAD_ID);
	CHECK_EQ_HEX(o.required_features, LIBUFFD_FEATURE_MOVE);
	/* Declared by LIBUFFD_OPTS, with no field given. */
	libuffd_handle *h = NULL;
	LIBUFFD_OPTS(libuffd_open_opts, zero);
	CHECK_RET(libuffd_open(&zero, &h), 0);
	libuffd_handle_free(h);
}

static void test_probe(void)
{
	SECTION("probe");
	uint64_t f = 0;
	CHECK_RET(libuffd_probe_features(&f), 0);
	CHECK_EQ_HEX(f, 0x1FFFF);
	CHECK_EQ_HEX(f & LIBUFFD_FEATURES_KNOWN, LIBUFFD_FEATURES_KNOWN);
	uint64_t again = 0;
	CHECK_RET(libuffd_probe_features(&again), 0);
	CHECK_EQ_HEX(again, f);
	CHECK_RET(libuffd_feature_supported(LIBUFFD_FEATURE_MOVE), 1);
	CHECK_RET(libuffd_feature_supported(LIBUFFD_FEATURE_POISON | LIBUFFD_FEATURE_MINOR_SHMEM), 1);
	CHECK_RET(libuffd_feature_supported(LIBUFFD_FEATURES_KNOWN), 1);
	CHECK_RET(libuffd_feature_supported(1ULL << 40), 0);
	CHECK_RET(libuffd_feature_supported(LIBUFFD_FEATURE_MOVE | (1ULL << 40)), 0);
}

/* libuffd_feature_name: one name per known bit, each the constant's
 * name without LIBUFFD_FEATURE_, distinct; NULL for anything else. */
static void test_feature_name(void)
{
	SECTION("libuffd_feature_name");
	static const struct { uint64_t bit; const char *name; } known[] = {
#define F(n) { LIBUFFD_FEATURE_##n, #n }
		F(PAGEFAULT_FLAG_WP), F(EVENT_FORK), F(EVENT_REMAP), F(EVENT_REMOVE),
		F(MISSING_HUGETLBFS), F(MISSING_SHMEM), F(EVENT_UNMAP), F(SIGBUS),
		F(THREAD_ID), F(MINOR_HUGETLBFS), F(MINOR_SHMEM), F(EXACT_ADDRESS),
		F(WP_HUGETLBFS_SHMEM), F(WP_UNPOPULATED), F(POISON), F(WP_ASYNC), F(MOVE),
#undef F
	};
	uint64_t seen = 0;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		const char *n = libuffd_feature_name(known[i].bit);
		CHECK(n != NULL && strcmp(n, known[i].name) == 0);
		seen |= known[i].bit;
	}
	CHECK_EQ_HEX(seen, LIBUFFD_FEATURES_KNOWN);
	/* Every named bit is a known one, and the names are distinct. */
	int named = 0;
	for (int i = 0; i < 64; i++) {
		const char *n = libuffd_feature_name(1ULL << i);
		if (!n)
			continue;
		named++;
		CHECK((LIBUFFD_FEATURES_KNOWN >> i) & 1);
		for (int j = 0; j < i; j++) {
			const char *m = libuffd_feature_name(1ULL << j);
			CHECK(m == NULL || strcmp(m, n) != 0);
		}
	}
	CHECK(named == (int)(sizeof(known) / sizeof(known[0])));
	/* The same pointer each time: a static string. */
	CHECK(libuffd_feature_name(LIBUFFD_FEATURE_MOVE) == libuffd_feature_name(LIBUFFD_FEATURE_MOVE));
	CHECK(libuffd_feature_name(0) == NULL);
	CHECK(libuffd_feature_name(LIBUFFD_FEATURE_MOVE | LIBUFFD_FEATURE_POISON) == NULL);
	CHECK(libuffd_feature_name(1ULL << 40) == NULL);
	CHECK(libuffd_feature_name(1ULL << 63) == NULL);
	CHECK(libuffd_feature_name(~0ULL) == NULL);
}

static void test_open_and_accessors(void)
{
	SECTION("open flags, libuffd_handle_fd, libuffd_handle_features");
	libuffd_handle *h = NULL;
	CHECK_RET(libuffd_open(NULL, &h), 0);
	if (!h)
		FATAL("libuffd_open(NULL): %s", libuffd_last_error());
	int fd = libuffd_handle_fd(h);
	CHECK(fd >= 0);
	CHECK_EQ(libuffd_handle_fd(h), fd); /* stable */
	int fdfl = fcntl(fd, F_GETFD), fl = fcntl(fd, F_GETFL);
	CHECK(fdfl >= 0 && (fdfl & FD_CLOEXEC));
	CHECK(fl >= 0 && !(fl & O_NONBLOCK));
	char path[64], target[256] = { 0 };
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	CHECK(readlink(path, target, sizeof target - 1) > 0);
	CHECK_CONTAINS(target, "userfaultfd");
	uint64_t f = SENTINEL_INIT;
	CHECK_RET(libuffd_handle_features(h, &f), 0);
	CHECK_EQ_HEX(f, 0);
	libuffd_handle_free(h);
	CHECK(fcntl(fd, F_GETFD) < 0 && errno == EBADF); /* closed by free */

	h = open_or_die(LIBUFFD_OPEN_NONBLOCK | LIBUFFD_OPEN_NO_CLOEXEC,
			LIBUFFD_FEATURE_THREAD_ID | LIBUFFD_FEATURE_EXACT_ADDRESS);
	fd = libuffd_handle_fd(h);
	fdfl = fcntl(fd, F_GETFD);
	fl = fcntl(fd, F_GETFL);
	CHECK(fdfl >= 0 && !(fdfl & FD_CLOEXEC));
	CHECK(fl >= 0 && (fl & O_NONBLOCK));
	f = SENTINEL_INIT;
	CHECK_RET(libuffd_handle_features(h, &f), 0);
	CHECK_EQ_HEX(f, LIBUFFD_FEATURE_THREAD_ID | LIBUFFD_FEATURE_EXACT_ADDRESS);
	libuffd_handle_free(h);

	SECTION("adopting a descriptor whose handshake is done");
	h = open_or_die(LIBUFFD_OPEN_NONBLOCK, LIBUFFD_FEATURE_THREAD_ID | LIBUFFD_FEATURE_MOVE);
	int dupfd = fcntl(libuffd_handle_fd(h), F_DUPFD_CLOEXEC, 0);
	libuffd_handle *adopted = NULL;
	CHECK_RET(libuffd_handle_from_fd(dupfd, NULL, &adopted), 0);
	/* The handle has its own duplicate: the caller closes its descriptor,
	 * and a file that takes its number meanwhile never reaches the handle. */
	CHECK(fcntl(dupfd, F_GETFD) >= 0);
	close(dupfd);
	int reuse = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CHECK_EQ(reuse, dupfd);
	if (adopted) {
		f = SENTINEL_INIT;
		CHECK_RET(libuffd_handle_features(adopted, &f), 0);
		CHECK_EQ_HEX(f, LIBUFFD_FEATURE_THREAD_ID | LIBUFFD_FEATURE_MOVE);
		CHECK(libuffd_handle_fd(adopted) != dupfd);
		CHECK(fcntl(libuffd_handle_fd(adopted), F_GETFD) & FD_CLOEXEC);
		/* Its user-mode-only setting cannot be learnt from the kernel. */
		CHECK_EQ_HEX(libuffd_handle_flags(adopted),
			     LIBUFFD_OPEN_NONBLOCK | LIBUFFD_HANDLE_MODE_UNKNOWN);
		/* It keeps the descriptor's O_NONBLOCK: timeouts are allowed. */
		struct libuffd_event ev[1];
		CHECK_RET(libuffd_read_events(adopted, ev, 1, 0), 0);
		libuffd_handle_free(adopted);
	}
	CHECK(fcntl(reuse, F_GETFD) >= 0); /* freeing the handle closed its own only */
	close(reuse);
	libuffd_handle_free(h);
	h = open_or_die(0, 0);
	dupfd = fcntl(libuffd_handle_fd(h), F_DUPFD_CLOEXEC, 0);
	adopted = NULL;
	CHECK_RET(libuffd_handle_from_fd(dupfd, NULL, &adopted), 0);
	close(dupfd);
	if (adopted) {
		struct libuffd_event ev[1];
		CHECK_FAILS(libuffd_read_events(adopted, ev, 1, 0), -EINVAL, "libuffd_read_events");
		libuffd_handle_free(adopted);
	}
	libuffd_handle_free(h);

	SECTION("libuffd_read_events timeouts");
	h = open_or_die(LIBUFFD_OPEN_NONBLOCK, 0);
	struct libuffd_event tev[2];
	long long t0 = now_ms();
	CHECK_RET(libuffd_read_events(h, tev, 2, 0), 0);
	CHECK(now_ms() - t0 < 50);
	t0 = now_ms();
	CHECK_RET(libuffd_read_events(h, tev, 2, 150), 0);
	long long waited = now_ms() - t0;
	CHECK_MSG(waited >= 140 && waited < 2000, "a 150 ms timeout waited %lld ms", waited);
	libuffd_handle_free(h);

	/* Each creation path alone (root may use both), and kernel faults;
	 * the descriptor flags are the same whichever path made it. */
	const uint32_t paths[] = { LIBUFFD_OPEN_NO_DEV, LIBUFFD_OPEN_NO_SYSCALL,
				   LIBUFFD_OPEN_USER_ONLY,
				   LIBUFFD_OPEN_USER_ONLY | LIBUFFD_OPEN_NO_SYSCALL };
	const uint32_t extra[] = { 0, LIBUFFD_OPEN_NONBLOCK | LIBUFFD_OPEN_NO_CLOEXEC };
	for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
		for (size_t j = 0; j < 2; j++) {
			uint32_t fl_in = paths[i] | extra[j];
			struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = fl_in);
			h = NULL;
			CHECK_RET(libuffd_open(&o, &h), 0);
			if (!h)
				continue;
			fd = libuffd_handle_fd(h);
			int want_cloexec = !(fl_in & LIBUFFD_OPEN_NO_CLOEXEC);
			int want_nonblock = !!(fl_in & LIBUFFD_OPEN_NONBLOCK);
			CHECK_MSG(!!(fcntl(fd, F_GETFD) & FD_CLOEXEC) == want_cloexec,
				  "flags %#x: FD_CLOEXEC should be %d", fl_in, want_cloexec);
			CHECK_MSG(!!(fcntl(fd, F_GETFL) & O_NONBLOCK) == want_nonblock,
				  "flags %#x: O_NONBLOCK should be %d", fl_in, want_nonblock);
			/* The handle says what it got, in the open flags' terms. */
			uint32_t want = fl_in & (LIBUFFD_OPEN_NONBLOCK | LIBUFFD_OPEN_NO_CLOEXEC |
						 LIBUFFD_OPEN_USER_ONLY);
			CHECK_EQ_HEX(libuffd_handle_flags(h), want);
			libuffd_handle_free(h);
		}
	}
}

/* A system call reading registered memory from another thread. */
struct kernel_reader {
	pthread_t thr;
	const char *addr;
	int pipe_w;
	ssize_t rc;
	int err;
	volatile int done;
};

static void *kernel_reader_main(void *arg)
{
	struct kernel_reader *k = arg;
	errno = 0;
	k->rc = write(k->pipe_w, k->addr, 8);
	k->err = errno;
	__atomic_store_n(&k->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void test_kernel_faults(void)
{
	SECTION("kernel accesses trapped by default, as with the raw syscall; LIBUFFD_OPEN_USER_ONLY does not trap them");
	int p[2];
	if (pipe(p) != 0)
		FATAL("pipe: %s", strerror(errno));
	char *src = h_map_anon(page);
	memset(src, 'k', page);

	/* USER_ONLY: a kernel-mode access is not trapped, it fails with EFAULT. */
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK | LIBUFFD_OPEN_USER_ONLY, 0);
	CHECK_EQ_HEX(libuffd_handle_flags(h), LIBUFFD_OPEN_NONBLOCK | LIBUFFD_OPEN_USER_ONLY);
	char *mem = h_map_anon(page);
	CHECK_RET(libuffd_register(h, mem, page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	errno = 0;
	ssize_t w = write(p[1], mem, 8);
	CHECK_MSG(w == -1 && errno == EFAULT, "write() from registered memory: %zd (%s)", w,
		  strerror(errno));
	libuffd_handle_free(h);
	munmap(mem, page);

	/* The default: the same access waits for the fault to be resolved. */
	h = open_or_die(LIBUFFD_OPEN_NONBLOCK, 0);
	CHECK_EQ_HEX(libuffd_handle_flags(h), LIBUFFD_OPEN_NONBLOCK);
	mem = h_map_anon(page);
	CHECK_RET(libuffd_register(h, mem, page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	struct kernel_reader k = { .addr = mem, .pipe_w = p[1] };
	if (pthread_create(&k.thr, NULL, kernel_reader_main, &k) != 0)
		FATAL("pthread_create");
	struct libuffd_event ev[1];
	int n = read_events_within(h, ev, 1, 10000);
	CHECK_EQ(n, 1);
	if (n == 1) {
		CHECK_EQ(ev[0].kind, LIBUFFD_EVENT_PAGEFAULT);
		CHECK_EQ_HEX(ev[0].u.fault.address, (uintptr_t)mem);
		CHECK(!__atomic_load_n(&k.done, __ATOMIC_SEQ_CST));
		CHECK_RET(libuffd_copy(h, mem, src, page, 0), (int64_t)page);
	} else {
		libuffd_handle_free(h); /* releases the waiting thread */
		h = NULL;
	}
	pthread_join(k.thr, NULL);
	CHECK_EQ(k.rc, 8);
	char buf[8] = { 0 };
	CHECK_EQ(read(p[0], buf, 8), 8);
	CHECK(memcmp(buf, "kkkkkkkk", 8) == 0);
	libuffd_handle_free(h);
	munmap(mem, page);
	munmap(src, page);
	close(p[0]);
	close(p[1]);
}

/* A read fault and a write fault from other threads; copy, zeropage, wake. */
static void test_fault_copy_zeropage(void)
{
	SECTION("fault from a thread, libuffd_read_events, libuffd_copy, EEXIST, libuffd_wake");
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, LIBUFFD_FEATURE_THREAD_ID);
	char *mem = h_map_anon(4 * page);
	char *src = h_map_anon(page);
	for (size_t i = 0; i < page; i++)
		src[i] = (char)('a' + i % 26);

	uint64_t ioctls = 0;
	CHECK_RET(libuffd_register(h, mem, 4 * page, LIBUFFD_REGISTER_MISSING, &ioctls), 0);
	uint64_t need = LIBUFFD_IOCTL_WAKE | LIBUFFD_IOCTL_COPY | LIBUFFD_IOCTL_ZEROPAGE;
	CHECK_EQ_HEX(ioctls & need, need);
	CHECK_EQ_HEX(ioctls & (LIBUFFD_IOCTL_WRITEPROTECT | LIBUFFD_IOCTL_CONTINUE), 0);
	/* ioctls may be NULL. */
	CHECK_RET(libuffd_register(h, mem, 4 * page, LIBUFFD_REGISTER_MISSING, NULL), 0);

	/* Nothing pending yet. */
	struct libuffd_event ev[8];
	CHECK_RET(libuffd_read_events(h, ev, 8, 0), 0);

	struct toucher t;
	char *target = mem + page + 123;
	touch_start(&t, target, 0, 0);
	int n = read_events_within(h, ev, 8, 10000);
	CHECK_EQ(n, 1);
	if (n < 1)
		FATAL("no fault event within 10 s (%d): %s", n, libuffd_last_error());
	CHECK_EQ(ev[0].kind, LIBUFFD_EVENT_PAGEFAULT);
	CHECK_EQ(ev[0].reserved, 0);
	CHECK_EQ_HEX(ev[0].u.fault.address, (uintptr_t)(mem + page));
	CHECK_EQ_HEX(ev[0].u.fault.exact_address, (uintptr_t)(mem + page));
	CHECK_EQ_HEX(ev[0].u.fault.flags, 0); /* a read of a missing page */
	CHECK(!__atomic_load_n(&t.done, __ATOMIC_SEQ_CST));
	CHECK_EQ(ev[0].u.fault.thread_id, t.tid);

	CHECK_RET(libuffd_copy(h, mem + page, src, page, 0), (int64_t)page);
	touch_join(&t);
	CHECK_EQ(t.value, src[123]);
	CHECK(memcmp(mem + page, src, page) == 0);

	/* Again: already populated. libuffd_wake is then harmless. */
	CHECK_FAILS(libuffd_copy(h, mem + page, src, page, 0), -EEXIST, "libuffd_copy");
	CHECK_RET(libuffd_wake(h, mem + page, page), 0);
	CHECK_RET(libuffd_wake(h, mem, 4 * page), 0);

	SECTION("two faults, read one event at a time");
	struct toucher t2;
	touch_start(&t, mem + 2 * page + 1, 0, 0);
	touch_start(&t2, mem + 3 * page + 2, 0, 0);
	uint64_t seen = 0;
	for (int i = 0; i < 2; i++) {
		n = read_events_within(h, ev, 1, 10000);
		CHECK_EQ(n, 1);
		if (n != 1)
			FATAL("fault event %d missing", i);
		CHECK_EQ(ev[0].kind, LIBUFFD_EVENT_PAGEFAULT);
		uintptr_t a = (uintptr_t)ev[0].u.fault.address;
		CHECK(a == (uintptr_t)(mem + 2 * page) || a == (uintptr_t)(mem + 3 * page));
		seen |= 1u << ((a - (uintptr_t)mem) / page);
		CHECK(ev[0].u.fault.thread_id == (uint32_t)t.tid ||
		      ev[0].u.fault.thread_id == (uint32_t)t2.tid);
	}
	CHECK_EQ_HEX(seen, 0xc);
	CHECK_RET(libuffd_read_events(h, ev, 8, 0), 0);
	CHECK_RET(libuffd_copy(h, mem + 2 * page, src, page, LIBUFFD_COPY_DONTWAKE), (int64_t)page);
	CHECK_RET(libuffd_copy(h, mem + 3 * page, src, page, LIBUFFD_COPY_DONTWAKE), (int64_t)page);
	CHECK_RET(libuffd_wake(h, mem + 2 * page, 2 * page), 0);
	touch_join(&t);
	touch_join(&t2);
	CHECK_EQ(t.value, src[1]);
	CHECK_EQ(t2.value, src[2]);
	/* Start again on fresh memory for the rest. */
	CHECK_RET(libuffd_unregister(h, mem, 4 * page), 0);
	munmap(mem, 4 * page);
	mem = h_map_anon(4 * page);
	CHECK_RET(libuffd_register(h, mem, 4 * page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	CHECK_RET(libuffd_copy(h, mem + page, src, page, 0), (int64_t)page);

	SECTION("write fault resolved with libuffd_zeropage");
	target = mem + 3 * page + 7;
	touch_start(&t, target, 1, 'W');
	n = read_events_within(h, ev, 8, 10000);
	CHECK_EQ(n, 1);
	if (n < 1)
		FATAL("no write-fault event within 10 s");
	CHECK_EQ(ev[0].kind, LIBUFFD_EVENT_PAGEFAULT);
	CHECK_EQ_HEX(ev[0].u.fault.address, (uintptr_t)(mem + 3 * page));
	CHECK_EQ_HEX(ev[0].u.fault.flags & LIBUFFD_PAGEFAULT_FLAG_WRITE, LIBUFFD_PAGEFAULT_FLAG_WRITE);
	CHECK_EQ_HEX(ev[0].u.fault.flags & (LIBUFFD_PAGEFAULT_FLAG_WP | LIBUFFD_PAGEFAULT_FLAG_MINOR), 0);
	CHECK_RET(libuffd_zeropage(h, mem + 3 * page, page, 0), (int64_t)page);
	touch_join(&t);
	CHECK_EQ(mem[3 * page + 7], 'W');
	CHECK_EQ(mem[3 * page], 0);
	CHECK_EQ(mem[4 * page - 1], 0);
	CHECK_FAILS(libuffd_zeropage(h, mem + 3 * page, page, 0), -EEXIST, "libuffd_zeropage");

	SECTION("libuffd_copy with DONTWAKE, then libuffd_wake");
	target = mem;
	touch_start(&t, target, 0, 0);
	n = read_events_within(h, ev, 8, 10000);
	CHECK_EQ(n, 1);
	CHECK_RET(libuffd_copy(h, mem, src, page, LIBUFFD_COPY_DONTWAKE), (int64_t)page);
	usleep(100 * 1000);
	/* Not woken by the copy (the thread may only wake on its own by a retry). */
	CHECK_RET(libuffd_wake(h, mem, page), 0);
	touch_join(&t);
	CHECK_EQ(t.value, src[0]);

	SECTION("libuffd_zeropage without a fault");
	CHECK_RET(libuffd_zeropage(h, mem + 2 * page, page, LIBUFFD_ZEROPAGE_DONTWAKE), (int64_t)page);
	CHECK_EQ(mem[2 * page + 100], 0);
	/* Everything populated now. */
	CHECK_FAILS(libuffd_copy(h, mem, src, page, 0), -EEXIST, "libuffd_copy");
	CHECK_RET(libuffd_read_events(h, ev, 8, 0), 0);

	libuffd_handle_free(h);
	munmap(mem, 4 * page);
	munmap(src, page);
}

/* EXACT_ADDRESS: the exact address is reported next to the aligned one. */
static void test_exact_address(void)
{
	SECTION("EXACT_ADDRESS");
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, LIBUFFD_FEATURE_EXACT_ADDRESS);
	char *mem = h_map_anon(page);
	char *src = h_map_anon(page);
	memset(src, 'X', page);
	CHECK_RET(libuffd_register(h, mem, page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	struct toucher t;
	touch_start(&t, mem + 1234, 1, 'e');
	struct libuffd_event ev[2];
	int n = read_events_within(h, ev, 2, 10000);
	CHECK_EQ(n, 1);
	if (n < 1)
		FATAL("no fault event within 10 s");
	CHECK_EQ(ev[0].kind, LIBUFFD_EVENT_PAGEFAULT);
	CHECK_EQ_HEX(ev[0].u.fault.address, (uintptr_t)mem);
	CHECK_EQ_HEX(ev[0].u.fault.exact_address, (uintptr_t)(mem + 1234));
	CHECK_EQ(ev[0].u.fault.thread_id, 0); /* THREAD_ID not negotiated */
	CHECK_RET(libuffd_copy(h, mem, src, page, 0), (int64_t)page);
	touch_join(&t);
	CHECK_EQ(mem[1234], 'e');
	CHECK_EQ(mem[0], 'X');
	libuffd_handle_free(h);
	munmap(mem, page);
	munmap(src, page);
}

static void test_writeprotect(void)
{
	SECTION("libuffd_writeprotect round trip");
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP);
	char *mem = h_map_anon(2 * page);
	char *src = h_map_anon(page);
	memset(src, 'p', page);
	uint64_t ioctls = 0;
	CHECK_RET(libuffd_register(h, mem, 2 * page,
				LIBUFFD_REGISTER_MISSING | LIBUFFD_REGISTER_WP, &ioctls), 0);
	CHECK_EQ_HEX(ioctls & LIBUFFD_IOCTL_WRITEPROTECT, LIBUFFD_IOCTL_WRITEPROTECT);
	CHECK_RET(libuffd_copy(h, mem, src, page, 0), (int64_t)page);
	CHECK_RET(libuffd_writeprotect(h, mem, page, LIBUFFD_WRITEPROTECT_WP), 0);
	/* Reads do not fault. */
	CHECK_EQ(mem[10], 'p');

	struct toucher t;
	touch_start(&t, mem + 10, 1, 'w');
	struct libuffd_event ev[4];
	int n = read_events_within(h, ev, 4, 10000);
	CHECK_EQ(n, 1);
	if (n < 1)
		FATAL("no WP fault event within 10 s");
	CHECK_EQ(ev[0].kind, LIBUFFD_EVENT_PAGEFAULT);
	CHECK_EQ_HEX(ev[0].u.fault.address, (uintptr_t)mem);
	CHECK_EQ_HEX(ev[0].u.fault.flags, LIBUFFD_PAGEFAULT_FLAG_WRITE | LIBUFFD_PAGEFAULT_FLAG_WP);
	usleep(50 * 1000);
	CHECK(!__atomic_load_n(&t.done, __ATOMIC_SEQ_CST));
	CHECK_EQ(mem[10], 'p');
	/* Unprotect: wakes the writer. */
	CHECK_RET(libuffd_writeprotect(h, mem, page, 0), 0);
	touch_join(&t);
	CHECK_EQ(mem[10], 'w');

	SECTION("libuffd_copy with COPY_WP, unprotect with DONTWAKE then wake");
	CHECK_RET(libuffd_copy(h, mem + page, src, page, LIBUFFD_COPY_WP), (int64_t)page);
	touch_start(&t, mem + page, 1, 'v');
	n = read_events_within(h, ev, 4, 10000);
	CHECK_EQ(n, 1);
	if (n < 1)
		FATAL("no WP fault event within 10 s");
	CHECK_EQ_HEX(ev[0].u.fault.flags, LIBUFFD_PAGEFAULT_FLAG_WRITE | LIBUFFD_PAGEFAULT_FLAG_WP);
	CHECK_RET(libuffd_writeprotect(h, mem + page, page, LIBUFFD_WRITEPROTECT_DONTWAKE), 0);
	CHECK_RET(libuffd_wake(h, mem + page, page), 0);
	touch_join(&t);
	CHECK_EQ(mem[page], 'v');
	CHECK_EQ(mem[page + 1], 'p');

	libuffd_handle_free(h);
	munmap(mem, 2 * page);
	munmap(src, page);
}

static void test_continue(void)
{
	SECTION("libuffd_continue on memfd shmem (MINOR)");
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, LIBUFFD_FEATURE_MINOR_SHMEM);
	int mfd = memfd_create("libuffd-basic", MFD_CLOEXEC);
	if (mfd < 0)
		FATAL("memfd_create: %s", strerror(errno));
	if (ftruncate(mfd, (off_t)(2 * page)) != 0)
		FATAL("ftruncate: %s", strerror(errno));
	char *a = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	char *b = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	if (a == MAP_FAILED || b == MAP_FAILED)
		FATAL("mmap memfd: %s", strerror(errno));
	/* Page 0 is in the page cache (written through a); page 1 is not. */
	memset(a, 'c', page);

	uint64_t ioctls = 0;
	CHECK_RET(libuffd_register(h, b, 2 * page, LIBUFFD_REGISTER_MINOR, &ioctls), 0);
	CHECK_EQ_HEX(ioctls & LIBUFFD_IOCTL_CONTINUE, LIBUFFD_IOCTL_CONTINUE);
	CHECK_EQ(libuffd_page_size(b), (int64_t)page);

	struct toucher t;
	touch_start(&t, b + 5, 0, 0);
	struct libuffd_event ev[4];
	int n = read_events_within(h, ev, 4, 10000);
	CHECK_EQ(n, 1);
	if (n < 1)
		FATAL("no minor fault event within 10 s");
	CHECK_EQ(ev[0].kind, LIBUFFD_EVENT_PAGEFAULT);
	CHECK_EQ_HEX(ev[0].u.fault.address, (uintptr_t)b);
	CHECK_EQ_HEX(ev[0].u.fault.flags, LIBUFFD_PAGEFAULT_FLAG_MINOR);
	CHECK_RET(libuffd_continue(h, b, page, 0), (int64_t)page);
	touch_join(&t);
	CHECK_EQ(t.value, 'c');
	/* The same page-cache page: a write through b shows in a. */
	b[6] = 'B';
	CHECK_EQ(a[6], 'B');
	CHECK_FAILS(libuffd_continue(h, b, page, 0), -EEXIST, "libuffd_continue");
	/* No page-cache page behind page 1. */
	CHECK_FAILS(libuffd_continue(h, b + page, page, 0), -EFAULT, "libuffd_continue");

	libuffd_handle_free(h);
	munmap(a, 2 * page);
	munmap(b, 2 * page);
	close(mfd);
}

static void test_poison(void)
{
	SECTION("libuffd_poison, then a forked child touching it dies of SIGBUS");
	libuffd_handle *h = open_or_die(0, LIBUFFD_FEATURE_POISON);
	char *mem = h_map_anon(2 * page);
	char *src = h_map_anon(page);
	memset(src, 'o', page);
	uint64_t ioctls = 0;
	CHECK_RET(libuffd_register(h, mem, 2 * page, LIBUFFD_REGISTER_MISSING, &ioctls), 0);
	CHECK_EQ_HEX(ioctls & LIBUFFD_IOCTL_POISON, LIBUFFD_IOCTL_POISON);
	CHECK_RET(libuffd_copy(h, mem, src, page, 0), (int64_t)page);
	CHECK_RET(libuffd_poison(h, mem + page, page, 0), (int64_t)page);
	CHECK_FAILS(libuffd_poison(h, mem + page, page, 0), -EEXIST, "libuffd_poison");

	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		FATAL("fork: %s", strerror(errno));
	if (pid == 0) {
		alarm(10);
		signal(SIGBUS, SIG_DFL);
		volatile char c = mem[0];
		if (c != 'o')
			_exit(3);
		c = mem[page + 1]; /* SIGBUS */
		_exit(4);
	}
	int status = 0;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
		  "child status %#x (exit %d, signal %d)", status,
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		  WIFSIGNALED(status) ? WTERMSIG(status) : -1);
	libuffd_handle_free(h);
	munmap(mem, 2 * page);
	munmap(src, page);
}

static void test_move(void)
{
	SECTION("libuffd_move");
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, LIBUFFD_FEATURE_MOVE);
	char *dst = h_map_anon(3 * page);
	char *src = h_map_anon(2 * page);
	memset(src, 'm', 2 * page);
	uint64_t ioctls = 0;
	CHECK_RET(libuffd_register(h, dst, 3 * page, LIBUFFD_REGISTER_MISSING, &ioctls), 0);
	CHECK_EQ_HEX(ioctls & LIBUFFD_IOCTL_MOVE, LIBUFFD_IOCTL_MOVE);

	/* Resolve a real fault by moving a page in. */
	struct toucher t;
	touch_start(&t, dst + 17, 0, 0);
	struct libuffd_event ev[4];
	int n = read_events_within(h, ev, 4, 10000);
	CHECK_EQ(n, 1);
	if (n < 1)
		FATAL("no fault event within 10 s");
	CHECK_EQ_HEX(ev[0].u.fault.address, (uintptr_t)dst);
	CHECK_RET(libuffd_move(h, dst, src, page, 0), (int64_t)page);
	touch_join(&t);
	CHECK_EQ(t.value, 'm');
	CHECK_EQ(dst[page - 1], 'm');

	/* The source is now a hole (not read yet: a read would map a zero page). */
	CHECK_FAILS(libuffd_move(h, dst + page, src, page, 0), -ENOENT, "libuffd_move");
	CHECK_EQ(src[0], 0); /* the page left: src reads as a fresh zero page */
	CHECK_RET(libuffd_move(h, dst + page, src + page, page, LIBUFFD_MOVE_DONTWAKE),
		  (int64_t)page);
	CHECK_EQ(dst[page], 'm');
	CHECK_FAILS(libuffd_move(h, dst + page, src, page, 0), -EEXIST, "libuffd_move");
	/* A hole counts as moved with ALLOW_SRC_HOLES; dst stays missing. */
	char *hole = h_map_anon(page);
	CHECK_RET(libuffd_move(h, dst + 2 * page, hole, page, LIBUFFD_MOVE_ALLOW_SRC_HOLES),
		  (int64_t)page);
	CHECK_RET(libuffd_zeropage(h, dst + 2 * page, page, 0), (int64_t)page);

	libuffd_handle_free(h);
	munmap(dst, 3 * page);
	munmap(src, 2 * page);
	munmap(hole, page);
}

static void test_unregister(void)
{
	SECTION("libuffd_unregister");
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, 0);
	char *mem = h_map_anon(2 * page);
	char *src = h_map_anon(page);
	memset(src, 'u', page);
	CHECK_RET(libuffd_register(h, mem, 2 * page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	CHECK_RET(libuffd_unregister(h, mem + page, page), 0);
	/* Page 1 is ordinary memory again. */
	CHECK_FAILS(libuffd_copy(h, mem + page, src, page, 0), -ENOENT, "libuffd_copy");
	struct toucher t;
	touch_start(&t, mem + page + 3, 0, 0);
	touch_join(&t);
	CHECK_EQ(t.value, 0);
	/* Page 0 still registered: a waiting fault is released by unregister. */
	touch_start(&t, mem + 3, 0, 0);
	struct libuffd_event ev[2];
	int n = read_events_within(h, ev, 2, 10000);
	CHECK_EQ(n, 1);
	CHECK_RET(libuffd_unregister(h, mem, 2 * page), 0);
	touch_join(&t);
	CHECK_EQ(t.value, 0);
	CHECK_FAILS(libuffd_copy(h, mem, src, page, 0), -ENOENT, "libuffd_copy");
	/* Registering again works. */
	CHECK_RET(libuffd_register(h, mem, 2 * page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	CHECK_FAILS(libuffd_copy(h, mem, src, page, 0), -EEXIST, "libuffd_copy");
	libuffd_handle_free(h);
	munmap(mem, 2 * page);
	munmap(src, page);
}

static void test_page_size(void)
{
	SECTION("libuffd_page_size, hugetlb");
	char *mem = h_map_anon(page);
	CHECK_RET(libuffd_page_size(mem), 4096);
	CHECK_RET(libuffd_page_size(mem + page - 1), 4096);
	static int on_data;
	CHECK_RET(libuffd_page_size(&on_data), 4096);

	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
	long nr = -1;
	if (f) {
		if (fscanf(f, "%ld", &nr) != 1)
			nr = -1;
		fclose(f);
	}
	if (nr <= 0) {
		printf("SKIP: hugetlb part: no huge pages reserved (/proc/sys/vm/nr_hugepages = %ld; "
		       "as root `echo 64 > /proc/sys/vm/nr_hugepages`, which make test does)\n", nr);
		return;
	}
	const size_t huge = 2u << 20;
	char *hp = mmap(NULL, huge, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (hp == MAP_FAILED) {
		printf("SKIP: hugetlb part: mmap(MAP_HUGETLB, 2 MiB) failed with %ld huge pages "
		       "reserved: %s\n", nr, strerror(errno));
		return;
	}
	CHECK_RET(libuffd_page_size(hp), 2097152);
	CHECK_RET(libuffd_page_size(hp + huge - 1), 2097152);

	/* Resolve the whole huge page with one copy. */
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, 0);
	uint64_t ioctls = 0;
	CHECK_FAILS(libuffd_register(h, hp, page, LIBUFFD_REGISTER_MISSING, NULL), -EINVAL,
		    "libuffd_register");
	CHECK_CONTAINS(libuffd_last_error(), "2048");
	CHECK_RET(libuffd_register(h, hp, huge, LIBUFFD_REGISTER_MISSING, &ioctls), 0);
	CHECK_EQ_HEX(ioctls & LIBUFFD_IOCTL_COPY, LIBUFFD_IOCTL_COPY);
	char *src = h_map_anon(huge);
	for (size_t i = 0; i < huge; i += page)
		src[i] = (char)(i / page);
	CHECK_FAILS(libuffd_zeropage(h, hp, huge, 0), -EINVAL, "libuffd_zeropage");
	CHECK_FAILS(libuffd_copy(h, hp, src, page, 0), -EINVAL, "libuffd_copy");
	CHECK_RET(libuffd_copy(h, hp, src, huge, 0), (int64_t)huge);
	CHECK_EQ(hp[5 * page], 5);
	CHECK_EQ(hp[huge - page], (char)(huge / page - 1));
	libuffd_handle_free(h);
	munmap(hp, huge);
	munmap(src, huge);
	munmap(mem, page);
}


/* Partial progress: a copy stops at a populated page and says how far. */
static void test_partial_progress(void)
{
	SECTION("partial progress of libuffd_copy / libuffd_zeropage");
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, 0);
	char *mem = h_map_anon(4 * page);
	char *src = h_map_anon(4 * page);
	memset(src, 'P', 4 * page);
	CHECK_RET(libuffd_register(h, mem, 4 * page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	CHECK_RET(libuffd_zeropage(h, mem + page, page, 0), (int64_t)page);
	CHECK_RET(libuffd_copy(h, mem, src, 4 * page, 0), (int64_t)page);
	CHECK_EQ(mem[0], 'P');
	/* Continue at dst + n: that page is the populated one. */
	CHECK_FAILS(libuffd_copy(h, mem + page, src + page, 3 * page, 0), -EEXIST, "libuffd_copy");
	CHECK_RET(libuffd_copy(h, mem + 2 * page, src, 2 * page, 0), (int64_t)(2 * page));
	CHECK_RET(libuffd_zeropage(h, mem, 4 * page, 0) < 0, 1);
	libuffd_handle_free(h);
	munmap(mem, 4 * page);
	munmap(src, 4 * page);
}

/* A signal interrupting a wait gives -EINTR. */
static void on_sigusr1(int sig)
{
	(void)sig;
}

struct blocked_reader {
	libuffd_handle *h;
	int rc;
	int err;
	volatile int done;
};

static void *blocked_reader_main(void *arg)
{
	struct blocked_reader *r = arg;
	struct libuffd_event ev[1];
	errno = 0;
	r->rc = libuffd_read_events(r->h, ev, 1, -1);
	r->err = errno;
	__atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

static void test_eintr(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigusr1;
	sa.sa_flags = 0; /* no SA_RESTART */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);

	const uint32_t flags[] = { 0, LIBUFFD_OPEN_NONBLOCK };
	for (int i = 0; i < 2; i++) {
		SECTION(i == 0 ? "libuffd_read_events -EINTR (blocking handle)"
			       : "libuffd_read_events -EINTR (non-blocking handle, timeout -1)");
		struct blocked_reader r = { .h = open_or_die(flags[i], 0) };
		pthread_t thr;
		if (pthread_create(&thr, NULL, blocked_reader_main, &r) != 0)
			FATAL("pthread_create");
		long long deadline = now_ms() + 5000;
		while (!__atomic_load_n(&r.done, __ATOMIC_SEQ_CST) && now_ms() < deadline) {
			usleep(50 * 1000);
			pthread_kill(thr, SIGUSR1);
		}
		if (!__atomic_load_n(&r.done, __ATOMIC_SEQ_CST))
			FATAL("libuffd_read_events(timeout -1) was not interrupted by signals within 5 s");
		pthread_join(thr, NULL);
		CHECK_EQ(r.rc, -EINTR);
		CHECK_EQ(r.err, EINTR);
		libuffd_handle_free(r.h);
	}
	signal(SIGUSR1, SIG_DFL);
}

/* Freeing the handle releases a thread waiting on a fault. */
static void test_free_releases_faults(void)
{
	SECTION("libuffd_handle_free releases waiting faults");
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, 0);
	char *mem = h_map_anon(page);
	CHECK_RET(libuffd_register(h, mem, page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	struct toucher t;
	touch_start(&t, mem + 9, 0, 0);
	struct libuffd_event ev[1];
	CHECK_EQ(read_events_within(h, ev, 1, 10000), 1);
	libuffd_handle_free(h);
	touch_join(&t);
	CHECK_EQ(t.value, 0);
	/* Registration is gone with it. */
	mem[0] = 1;
	CHECK_EQ(mem[0], 1);
	munmap(mem, page);
}

/* REMOVE, REMAP and UNMAP events with their payloads. */
struct event_collector {
	libuffd_handle *h;
	struct libuffd_event ev[16];
	int n;
	volatile int stop;
	int err;
};

/* Read events until told to stop (and nothing is left), or 15 s. */
static void *collector_main(void *arg)
{
	struct event_collector *c = arg;
	long long deadline = now_ms() + 15000;
	while (now_ms() < deadline && c->n < 16) {
		int stop = __atomic_load_n(&c->stop, __ATOMIC_SEQ_CST);
		int n = libuffd_read_events(c->h, c->ev + c->n, (size_t)(16 - c->n), stop ? 0 : 50);
		if (n < 0) {
			c->err = n;
			return NULL;
		}
		c->n += n;
		if (stop && n == 0)
			break;
	}
	return NULL;
}

static void test_noncoop_events(void)
{
	SECTION("REMOVE, REMAP and UNMAP events");
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, LIBUFFD_FEATURE_EVENT_REMOVE |
				     LIBUFFD_FEATURE_EVENT_REMAP | LIBUFFD_FEATURE_EVENT_UNMAP);
	char *mem = h_map_anon(4 * page);
	char *src = h_map_anon(page);
	memset(src, 'r', page);
	CHECK_RET(libuffd_register(h, mem, 4 * page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	CHECK_RET(libuffd_copy(h, mem, src, page, 0), (int64_t)page);
	char *target = h_map_anon(4 * page); /* replaced by mremap below */

	struct event_collector c = { .h = h };
	pthread_t thr;
	if (pthread_create(&thr, NULL, collector_main, &c) != 0)
		FATAL("pthread_create");
	/* Each call blocks until the collector has read its event. */
	CHECK_EQ(madvise(mem + page, 2 * page, MADV_DONTNEED), 0);
	char *moved = mremap(mem, 4 * page, 4 * page, MREMAP_MAYMOVE | MREMAP_FIXED, target);
	CHECK(moved == target);
	CHECK_EQ(munmap(moved, 4 * page), 0);
	__atomic_store_n(&c.stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(thr, NULL);

	CHECK_EQ(c.err, 0);
	/* The old range's teardown sends an UNMAP after the REMAP (mm/mremap.c). */
	CHECK_EQ(c.n, 4);
	if (c.n == 4) {
		CHECK_EQ(c.ev[0].kind, LIBUFFD_EVENT_REMOVE);
		CHECK_EQ_HEX(c.ev[0].u.range.start, (uintptr_t)(mem + page));
		CHECK_EQ_HEX(c.ev[0].u.range.end, (uintptr_t)(mem + 3 * page));
		CHECK_EQ(c.ev[1].kind, LIBUFFD_EVENT_REMAP);
		CHECK_EQ_HEX(c.ev[1].u.remap.from, (uintptr_t)mem);
		CHECK_EQ_HEX(c.ev[1].u.remap.to, (uintptr_t)target);
		CHECK_EQ_HEX(c.ev[1].u.remap.len, 4 * page);
		CHECK_EQ(c.ev[2].kind, LIBUFFD_EVENT_UNMAP);
		CHECK_EQ_HEX(c.ev[2].u.range.start, (uintptr_t)mem);
		CHECK_EQ_HEX(c.ev[2].u.range.end, (uintptr_t)(mem + 4 * page));
		CHECK_EQ(c.ev[3].kind, LIBUFFD_EVENT_UNMAP);
		CHECK_EQ_HEX(c.ev[3].u.range.start, (uintptr_t)target);
		CHECK_EQ_HEX(c.ev[3].u.range.end, (uintptr_t)(target + 4 * page));
		/* raw[] is "the kernel's three argument words as they came": the
		 * kernel zeroes the words an event does not use. */
		CHECK_EQ_HEX(c.ev[1].u.raw[0], c.ev[1].u.remap.from);
		CHECK_EQ_HEX(c.ev[1].u.raw[2], c.ev[1].u.remap.len);
		for (int i = 0; i < 4; i++) {
			CHECK_EQ(c.ev[i].reserved, 0);
			if (c.ev[i].kind != LIBUFFD_EVENT_REMAP)
				CHECK_MSG(c.ev[i].u.raw[2] == 0,
					  "event %d (kind %#x): u.raw[2] = %#llx, the kernel's word is 0",
					  i, c.ev[i].kind, (unsigned long long)c.ev[i].u.raw[2]);
		}
	}
	libuffd_handle_free(h);
	munmap(src, page);
}

/* SIGBUS feature: no message, the faulting thread gets SIGBUS. */
static sigjmp_buf sigbus_jmp;
static void *volatile sigbus_addr;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	sigbus_addr = si->si_addr;
	siglongjmp(sigbus_jmp, 1);
}

static void test_sigbus_feature(void)
{
	SECTION("FEATURE_SIGBUS");
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, LIBUFFD_FEATURE_SIGBUS);
	char *mem = h_map_anon(page);
	CHECK_RET(libuffd_register(h, mem, page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	struct sigaction sa, old;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &old);
	volatile int got = 0;
	if (sigsetjmp(sigbus_jmp, 1) == 0) {
		volatile char c = *(volatile char *)(mem + 77);
		(void)c;
	} else {
		got = 1;
	}
	sigaction(SIGBUS, &old, NULL);
	CHECK(got);
	CHECK(sigbus_addr == mem + 77);
	struct libuffd_event ev[1];
	CHECK_RET(libuffd_read_events(h, ev, 1, 0), 0);
	libuffd_handle_free(h);
	munmap(mem, page);
}

/* libuffd_last_error() is per thread. */
static void *last_error_thread(void *arg)
{
	int *ok = arg;
	ok[0] = strcmp(libuffd_last_error(), "no error") == 0;
	ok[1] = libuffd_feature_supported(0) == -EINVAL &&
		strstr(libuffd_last_error(), "libuffd_feature_supported") != NULL;
	return NULL;
}

static void test_last_error_per_thread(void)
{
	SECTION("libuffd_last_error per thread");
	CHECK_FAILS(libuffd_handle_fd(NULL), -EINVAL, "libuffd_handle_fd");
	int ok[2] = { 0, 0 };
	pthread_t thr;
	if (pthread_create(&thr, NULL, last_error_thread, ok) != 0)
		FATAL("pthread_create");
	pthread_join(thr, NULL);
	CHECK_MSG(ok[0], "a new thread's libuffd_last_error() is not \"no error\"");
	CHECK(ok[1]);
	CHECK_CONTAINS(libuffd_last_error(), "libuffd_handle_fd");
	/* A success does not clear it. */
	uint64_t f;
	CHECK_RET(libuffd_probe_features(&f), 0);
	CHECK_CONTAINS(libuffd_last_error(), "libuffd_handle_fd");
}

/* ------------------------------------------------------------ fork */

struct fork_reader {
	libuffd_handle *h;
	int fork_fd;
	struct libuffd_event fork_ev;
	int other_events;
	int err;
};

static void *fork_reader_main(void *arg)
{
	struct fork_reader *r = arg;
	long long deadline = now_ms() + 20000;
	while (now_ms() < deadline) {
		struct libuffd_event ev[4];
		int n = libuffd_read_events(r->h, ev, 4, 100);
		if (n < 0) {
			r->err = n;
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].kind == LIBUFFD_EVENT_FORK && r->fork_fd < 0) {
				r->fork_fd = ev[i].u.fork.fd;
				r->fork_ev = ev[i];
			}
			else
				r->other_events++;
		}
		if (r->fork_fd >= 0)
			return NULL;
	}
	return NULL;
}

static void test_fork_event(void)
{
	SECTION("FORK event adopted with libuffd_handle_from_fd");
	if (geteuid() != 0)
		FATAL("EVENT_FORK needs CAP_SYS_PTRACE: run this test as root");
	libuffd_handle *h = open_or_die(LIBUFFD_OPEN_NONBLOCK, LIBUFFD_FEATURE_EVENT_FORK);
	uint64_t feats = 0;
	CHECK_RET(libuffd_handle_features(h, &feats), 0);
	CHECK_EQ_HEX(feats & LIBUFFD_FEATURE_EVENT_FORK, LIBUFFD_FEATURE_EVENT_FORK);
	char *mem = h_map_anon(2 * page);
	char *src = h_map_anon(page);
	memset(src, 'F', page);
	CHECK_RET(libuffd_register(h, mem, 2 * page, LIBUFFD_REGISTER_MISSING, NULL), 0);

	struct fork_reader r = { .h = h, .fork_fd = -1 };
	pthread_t thr;
	int rc = pthread_create(&thr, NULL, fork_reader_main, &r);
	if (rc != 0)
		FATAL("pthread_create: %s", strerror(rc));

	fflush(NULL);
	/* fork() returns only once the reader has read the FORK event. */
	pid_t pid = fork();
	if (pid < 0)
		FATAL("fork: %s", strerror(errno));
	if (pid == 0) {
		alarm(20);
		volatile char *p = mem;
		char c = p[42]; /* faults on the child's new userfaultfd */
		_exit(c == 'F' ? 0 : 3);
	}
	pthread_join(thr, NULL);
	CHECK_EQ(r.err, 0);
	CHECK_EQ(r.other_events, 0);
	CHECK(r.fork_fd >= 0);
	if (r.fork_fd < 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		FATAL("no FORK event (reader error %d)", r.err);
	}
	CHECK_EQ(r.fork_ev.reserved, 0);
	CHECK_EQ(r.fork_ev.u.fork.reserved, 0);
	/* raw[]: the kernel's words are (ufd, 0, 0). */
	CHECK_EQ_HEX(r.fork_ev.u.raw[0], (uint32_t)r.fork_fd);
	CHECK_EQ_HEX(r.fork_ev.u.raw[1], 0);
	CHECK_EQ_HEX(r.fork_ev.u.raw[2], 0);
	/* Inherits NONBLOCK and CLOEXEC from the parent's descriptor. */
	CHECK(fcntl(r.fork_fd, F_GETFL) & O_NONBLOCK);
	CHECK(fcntl(r.fork_fd, F_GETFD) & FD_CLOEXEC);

	libuffd_handle *ch = (libuffd_handle *)(uintptr_t)1;
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts,
						    .required_features = LIBUFFD_FEATURE_EVENT_FORK);
	CHECK_RET(libuffd_handle_from_fd(r.fork_fd, &o, &ch), 0);
	if (ch == (libuffd_handle *)(uintptr_t)1 || !ch) {
		close(r.fork_fd);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		FATAL("libuffd_handle_from_fd on the FORK fd failed: %s", libuffd_last_error());
	}
	CHECK(libuffd_handle_fd(ch) != r.fork_fd); /* its own duplicate */
	close(r.fork_fd);                           /* ours to close */
	uint64_t cf = 0;
	CHECK_RET(libuffd_handle_features(ch, &cf), 0);
	CHECK_EQ_HEX(cf, feats);

	/* Serve the child's fault through the adopted handle. */
	struct libuffd_event ev[4];
	int n = read_events_within(ch, ev, 4, 10000);
	CHECK_EQ(n, 1);
	if (n >= 1) {
		CHECK_EQ(ev[0].kind, LIBUFFD_EVENT_PAGEFAULT);
		CHECK_EQ_HEX(ev[0].u.fault.address, (uintptr_t)mem);
		CHECK_RET(libuffd_copy(ch, mem, src, page, 0), (int64_t)page);
	}
	int status = 0;
	if (n < 1)
		kill(pid, SIGKILL);
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "child status %#x (exit %d, signal %d)", status,
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1,
		  WIFSIGNALED(status) ? WTERMSIG(status) : -1);
	/* The child's memory is gone now. */
	CHECK_FAILS(libuffd_copy(ch, mem + page, src, page, 0), -ESRCH, "libuffd_copy");
	/* The parent's own memory was not touched. */
	CHECK_RET(libuffd_copy(h, mem + page, src, page, 0), (int64_t)page);
	libuffd_handle_free(ch);
	libuffd_handle_free(h);
	munmap(mem, 2 * page);
	munmap(src, page);
}

int main(void)
{
	page = h_page();
	CHECK_EQ(page, 4096);
	/* The only reason to skip: no userfaultfd in this kernel at all. */
	uint64_t probed = 0;
	int prc = libuffd_probe_features(&probed);
	if (prc == -ENOSYS)
		h_skip("this kernel has no userfaultfd (libuffd_probe_features: -ENOSYS)");

	test_versions();
	test_opts_init();
	test_probe();
	test_feature_name();
	test_open_and_accessors();
	test_kernel_faults();
	test_fault_copy_zeropage();
	test_exact_address();
	test_writeprotect();
	test_continue();
	test_poison();
	test_move();
	test_unregister();
	test_partial_progress();
	test_eintr();
	test_free_releases_faults();
	test_noncoop_events();
	test_sigbus_feature();
	test_last_error_per_thread();
	test_page_size();
	test_fork_event();
	return h_finish();
}
