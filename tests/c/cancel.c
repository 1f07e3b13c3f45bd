/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * cancel.c: pthread_cancel() of threads blocked in libuffd's waits.
 *
 * A thread blocked in libuffd_read_events() (timeout -1 and a timeout, on
 * a non-blocking and a blocking handle), in libuffd_monitor_run() (with
 * and without workers) or in libuffd_monitor_wait() is cancelled like a
 * thread blocked in read(2): the join gives PTHREAD_CANCELED, the process
 * lives, the handle then reads and resolves a real fault, the monitor is
 * stopped and freed (or, after a cancelled wait, still serves). A cancel
 * already pending when a thread enters libuffd_handle_free() or the
 * libuffd_monitor_* calls that are not cancellation points does not stop
 * them; the cancellation points act on it at entry. A cancelled run is
 * ended by the thread's cleanup handler freeing the monitor, or by a free
 * from another thread before the join, also when the thread cancelled is
 * the main thread (no Rust thread-local destructors run at its exit); a
 * cancel that arrives while a
 * callback runs waits for the callback to end. Every case repeats
 * CANCEL_CYCLES times (default 200) and the process's descriptors and
 * resident memory must not grow. The last section is the documented way
 * to wait for events and a shutdown pipe at once (poll the handle's fd).
 *
 * An alarm ends a hung test with a message (exit 3).
 *
 * CANCEL_VALGRIND=1 leaves out every check that needs a fault served
 * (valgrind serialises threads with a lock that a thread blocked in a
 * userfaultfd fault keeps: nothing could serve it) and the resident
 * memory checks (valgrind's own memory grows); valgrind checks the heap.
 */
#include "harness.h"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096UL
#define MON_PAGES 8UL

static int cycles = 200;
static int no_faults;
/* Under AddressSanitizer freed memory sits in a quarantine, so resident
 * memory grows whatever the library does, and a process whose main thread
 * was cancelled is judged by its leak checker at exit: the RSS bounds and
 * the main-thread child are checked by the plain and valgrind runs. */
#if defined(__SANITIZE_ADDRESS__)
static const int under_asan = 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
static const int under_asan = 1;
#else
static const int under_asan = 0;
#endif
#else
static const int under_asan = 0;
#endif
static char copy_src[PAGE] __attribute__((aligned(4096)));

static void on_alarm(int sig)
{
	static const char msg[] = "cancel: WATCHDOG: the test hung (section: see above)\n";
	(void)sig;
	if (write(2, msg, sizeof msg - 1) < 0)
		_exit(4);
	_exit(3);
}

static char *map_anon(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		FATAL("mmap: %s", strerror(errno));
	return p;
}

static libuffd_handle *open_handle(int nonblock)
{
	struct libuffd_open_opts o =
		LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = nonblock ? LIBUFFD_OPEN_NONBLOCK : 0);
	libuffd_handle *h = NULL;
	if (libuffd_open(&o, &h) < 0)
		FATAL("libuffd_open: %s", libuffd_last_error());
	return h;
}

static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;
	if (!d)
		FATAL("opendir /proc/self/fd: %s", strerror(errno));
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own descriptor */
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	if (!f)
		return -1;
	while (fgets(line, sizeof line, f))
		if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
			break;
	fclose(f);
	return v;
}

/* Wait until thread `tid` sleeps in the kernel (state S in its stat). */
static void wait_blocked(pid_t tid)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
	for (int i = 0; i < 100000; i++) {
		FILE *f = fopen(path, "r");
		if (f) {
			char buf[512];
			size_t n = fread(buf, 1, sizeof buf - 1, f);
			fclose(f);
			buf[n] = 0;
			char *p = strrchr(buf, ')');
			if (p && p[1] == ' ' && p[2] == 'S')
				return;
		}
		usleep(100);
	}
	FATAL("thread %d never blocked", (int)tid);
}

/* ---- A thread that blocks in a libuffd wait ---- */

enum wait_kind { READ_EVENTS, MONITOR_RUN, MONITOR_WAIT };

struct blocker {
	enum wait_kind kind;
	libuffd_handle *h;
	libuffd_monitor *m;
	int timeout_ms;
	_Atomic pid_t tid;
	int rc; /* set only if the call returned */
};

static void *blocker_main(void *arg)
{
	struct blocker *b = arg;
	struct libuffd_event ev[4];
	b->tid = gettid();
	switch (b->kind) {
	case READ_EVENTS:
		b->rc = libuffd_read_events(b->h, ev, 4, b->timeout_ms);
		break;
	case MONITOR_RUN:
		b->rc = libuffd_monitor_run(b->m);
		break;
	case MONITOR_WAIT:
		b->rc = libuffd_monitor_wait(b->m);
		break;
	}
	return NULL;
}

/* Start a thread blocked in `b`'s call, cancel it, join it. */
static void cancel_blocked(struct blocker *b)
{
	pthread_t t;
	void *res = NULL;
	b->tid = 0;
	b->rc = 12345;
	if (pthread_create(&t, NULL, blocker_main, b) != 0)
		FATAL("pthread_create");
	while (!b->tid)
		usleep(20);
	wait_blocked(b->tid);
	CHECK_EQ(pthread_cancel(t), 0);
	CHECK_EQ(pthread_join(t, &res), 0);
	CHECK_MSG(res == PTHREAD_CANCELED, "the call returned %d (%s) instead of being cancelled",
		  b->rc, libuffd_strerror(b->rc));
}

/* ---- A real fault through libuffd_read_events ---- */

struct toucher {
	volatile char *p;
	char got;
};

static void *touch_main(void *arg)
{
	struct toucher *t = arg;
	t->got = t->p[5];
	return NULL;
}

/* A thread reads a registered page; read its fault and resolve it. */
static void serve_one_fault(libuffd_handle *h, int timeout_ms)
{
	if (no_faults)
		return;
	char *mem = map_anon(PAGE);
	struct toucher t = { mem, 0 };
	struct libuffd_event ev[4];
	pthread_t th;

	CHECK_OK(libuffd_register(h, mem, PAGE, LIBUFFD_REGISTER_MISSING, NULL));
	pthread_create(&th, NULL, touch_main, &t);
	int n = libuffd_read_events(h, ev, 4, timeout_ms);
	CHECK_RET(n, 1);
	if (n == 1) {
		CHECK_EQ(ev[0].kind, LIBUFFD_EVENT_PAGEFAULT);
		CHECK_EQ_HEX((uintptr_t)ev[0].u.fault.address & ~(PAGE - 1), (uintptr_t)mem);
	}
	CHECK_RET(libuffd_copy(h, mem, copy_src, PAGE, 0), PAGE);
	pthread_join(th, NULL);
	CHECK_EQ(t.got, 'c');
	CHECK_OK(libuffd_unregister(h, mem, PAGE));
	munmap(mem, PAGE);
}

static void test_read_events(const char *name, int nonblock, int timeout_ms)
{
	SECTION(name);
	libuffd_handle *h = open_handle(nonblock);
	int fds0 = fd_count();
	struct blocker b = { .kind = READ_EVENTS, .h = h, .timeout_ms = timeout_ms };

	cancel_blocked(&b);
	serve_one_fault(h, timeout_ms);
	long rss0 = rss_kib();
	for (int i = 0; i < cycles; i++)
		cancel_blocked(&b);
	long rss1 = rss_kib();
	serve_one_fault(h, timeout_ms);
	CHECK_EQ(fd_count(), fds0);
	CHECK_MSG(no_faults || under_asan || rss1 - rss0 < 2048, "resident memory grew by %ld KiB over %d cycles", rss1 - rss0,
		  cycles);
	/* A short timeout still times out normally. */
	if (nonblock)
		CHECK_RET(libuffd_read_events(h, (struct libuffd_event[1]){ 0 }, 1, 20), 0);
	libuffd_handle_free(h);
}

/* ---- The monitor ---- */

static atomic_int user_freed;

static void user_free(void *p)
{
	(void)p;
	user_freed++;
}

static libuffd_monitor *new_monitor(unsigned workers, char **mem)
{
	libuffd_handle *h = open_handle(1);
	struct libuffd_monitor_opts o = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .workers = workers);
	libuffd_monitor *m = NULL;
	uint32_t id;
	if (libuffd_monitor_new(&o, NULL, &user_freed, user_free, &m) < 0)
		FATAL("libuffd_monitor_new: %s", libuffd_last_error());
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	libuffd_handle_free(h);
	*mem = map_anon(MON_PAGES * PAGE);
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_ZERO,
							 .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1);
	CHECK_OK(libuffd_monitor_add_region(m, id, *mem, MON_PAGES * PAGE, &r));
	return m;
}

/* Touch page `i` of `mem` from another thread; with a watchdog on it. */
static void touch_page(char *mem, size_t i, char expect)
{
	if (no_faults)
		return;
	struct toucher t = { mem + i * PAGE, 1 };
	pthread_t th;
	pthread_create(&th, NULL, touch_main, &t);
	pthread_join(th, NULL);
	CHECK_EQ(t.got, expect);
}

static void monitor_run_cycle(unsigned workers, int check)
{
	char *mem;
	int freed0 = user_freed;
	libuffd_monitor *m = new_monitor(workers, &mem);
	struct blocker b = { .kind = MONITOR_RUN, .m = m };
	pthread_t t;

	b.tid = 0;
	pthread_create(&t, NULL, blocker_main, &b);
	while (!b.tid)
		usleep(20);
	/* It serves: a fault on page 0 is zero-filled. */
	touch_page(mem, 0, 0);
	wait_blocked(b.tid);
	CHECK_EQ(pthread_cancel(t), 0);
	void *res = NULL;
	CHECK_EQ(pthread_join(t, &res), 0);
	CHECK_MSG(res == PTHREAD_CANCELED, "libuffd_monitor_run returned %d instead of being cancelled", b.rc);
	if (check) {
		/* A cancelled run leaves the monitor stopped, its regions released:
		 * page 1 is now an ordinary page (not served, no hang). */
		if (!no_faults) {
			mem[PAGE + 3] = 'r';
			CHECK_EQ(mem[PAGE + 3], 'r');
		}
		CHECK_RET(libuffd_monitor_stop(m), 0);
		/* A stop asked between runs ends the next run at once. */
		CHECK_RET(libuffd_monitor_run(m), 0);
		CHECK_FAILS(libuffd_monitor_wait(m), -EINVAL, "libuffd_monitor_wait");
	}
	libuffd_monitor_free(m);
	CHECK_EQ(user_freed, freed0 + 1);
	munmap(mem, MON_PAGES * PAGE);
}

static void test_monitor_run(const char *name, unsigned workers)
{
	SECTION(name);
	monitor_run_cycle(workers, 1);
	int fds0 = fd_count();
	long rss0 = rss_kib();
	for (int i = 0; i < cycles; i++)
		monitor_run_cycle(workers, 0);
	long rss1 = rss_kib();
	monitor_run_cycle(workers, 1);
	CHECK_EQ(fd_count(), fds0);
	CHECK_MSG(no_faults || under_asan || rss1 - rss0 < 4096, "resident memory grew by %ld KiB over %d cycles", rss1 - rss0,
		  cycles);
}

static void monitor_wait_cycle(int check)
{
	char *mem;
	libuffd_monitor *m = new_monitor(0, &mem);
	struct blocker b = { .kind = MONITOR_WAIT, .m = m };

	CHECK_OK(libuffd_monitor_start(m));
	cancel_blocked(&b);
	if (check) {
		/* The monitor runs on: a cancelled wait is like a cancelled
		 * pthread_join, the thread waited for goes on. */
		touch_page(mem, 2, 0);
		cancel_blocked(&b);
	}
	CHECK_RET(libuffd_monitor_stop(m), 0);
	CHECK_RET(libuffd_monitor_wait(m), 0);
	libuffd_monitor_free(m);
	munmap(mem, MON_PAGES * PAGE);
}

static void test_monitor_wait(void)
{
	SECTION("cancel libuffd_monitor_wait");
	monitor_wait_cycle(1);
	int fds0 = fd_count();
	long rss0 = rss_kib();
	for (int i = 0; i < cycles; i++)
		monitor_wait_cycle(0);
	long rss1 = rss_kib();
	monitor_wait_cycle(1);
	CHECK_EQ(fd_count(), fds0);
	CHECK_MSG(no_faults || under_asan || rss1 - rss0 < 4096, "resident memory grew by %ld KiB over %d cycles", rss1 - rss0,
		  cycles);
}

/* ---- After the cancel: who ends the run ---- */

static void free_monitor(void *m)
{
	libuffd_monitor_free(m);
}

static void *run_with_cleanup(void *arg)
{
	struct blocker *b = arg;
	b->tid = gettid();
	pthread_cleanup_push(free_monitor, b->m);
	b->rc = libuffd_monitor_run(b->m);
	pthread_cleanup_pop(0);
	return NULL;
}

static void test_run_cleanup(void)
{
	SECTION("cancelled run: a cleanup handler frees the monitor; another thread frees it");
	int fds0 = fd_count();
	int freed0 = user_freed;
	for (int i = 0; i < cycles / 4 + 1; i++) {
		char *mem;
		struct blocker b = { .kind = MONITOR_RUN, .m = new_monitor(i % 2 ? 2 : 0, &mem) };
		pthread_t t;
		void *res = NULL;

		/* The cancelled thread's cleanup handler frees the monitor: the
		 * run it abandoned is ended first, on the same thread. */
		b.tid = 0;
		pthread_create(&t, NULL, run_with_cleanup, &b);
		while (!b.tid)
			usleep(20);
		wait_blocked(b.tid);
		pthread_cancel(t);
		CHECK_EQ(pthread_join(t, &res), 0);
		CHECK(res == PTHREAD_CANCELED);
		munmap(mem, MON_PAGES * PAGE);

		/* Freed from this thread at once after the cancel, before the
		 * join: the free waits for the cancelled thread to end the run. */
		b.m = new_monitor(i % 2 ? 0 : 2, &mem);
		b.tid = 0;
		pthread_create(&t, NULL, blocker_main, &b);
		while (!b.tid)
			usleep(20);
		wait_blocked(b.tid);
		pthread_cancel(t);
		libuffd_monitor_free(b.m);
		CHECK_EQ(pthread_join(t, &res), 0);
		/* (The stop may wake the run before the cancel acts: then the
		 * run returns 0, as a read(2) that got data would return.) */
		CHECK_MSG(res == PTHREAD_CANCELED || (res == NULL && b.rc == 0),
			  "libuffd_monitor_run returned %d", b.rc);
		munmap(mem, MON_PAGES * PAGE);
	}
	CHECK_EQ(user_freed, freed0 + 2 * (cycles / 4 + 1));
	CHECK_EQ(fd_count(), fds0);
}

/* ---- The main thread cancelled in libuffd_monitor_run ---- */

static libuffd_monitor *main_monitor;
static pthread_t main_thread;

static void *cancel_main(void *arg)
{
	(void)arg;
	wait_blocked(getpid());
	pthread_cancel(main_thread);
	/* Waits until the main thread has ended the run it was cancelled in:
	 * at its exit, which runs no Rust thread-local destructors. */
	libuffd_monitor_free(main_monitor);
	_exit(user_freed == 1 && h_failed == 0 ? 0 : 1);
}

static void test_cancel_main_thread(void)
{
	SECTION("the main thread cancelled in libuffd_monitor_run (in a child process)");
	if (no_faults || under_asan)
		return; /* valgrind or ASan would judge the child's exit with its parent's heap */
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		FATAL("fork: %s", strerror(errno));
	if (pid == 0) {
		char *mem;
		pthread_t t;
		alarm(20);
		user_freed = 0;
		main_monitor = new_monitor(0, &mem);
		main_thread = pthread_self();
		pthread_create(&t, NULL, cancel_main, NULL);
		libuffd_monitor_run(main_monitor);
		_exit(2); /* not cancelled */
	}
	int status = 0;
	CHECK_EQ(waitpid(pid, &status, 0), pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended with status %#x", status);
}

/* ---- A cancel that arrives while a callback runs ---- */

static atomic_int in_callback;

static int32_t slow_on_fault(void *user, libuffd_monitor *m, const struct libuffd_fault *f)
{
	(void)user;
	in_callback = 1;
	/* usleep is a cancellation point: not while a callback runs. */
	usleep(30000);
	int rc = libuffd_monitor_zero(m, f);
	in_callback = 2;
	return rc < 0 ? rc : LIBUFFD_ON_FAULT_HANDLED;
}

static void test_cancel_in_callback(void)
{
	SECTION("a cancel arriving in a callback acts once the run waits again");
	if (no_faults)
		return;
	libuffd_handle *h = open_handle(1);
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = slow_on_fault);
	libuffd_monitor *m = NULL;
	uint32_t id;
	char *mem = map_anon(MON_PAGES * PAGE);
	CHECK_OK(libuffd_monitor_new(NULL, &ops, NULL, NULL, &m));
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	libuffd_handle_free(h);
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_CALLBACK,
							 .register_mode = LIBUFFD_REGISTER_MISSING, .fd = -1);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, MON_PAGES * PAGE, &r));

	struct blocker b = { .kind = MONITOR_RUN, .m = m };
	struct toucher tc = { mem + 4 * PAGE, 1 };
	pthread_t t, th;
	void *res = NULL;
	in_callback = 0;
	pthread_create(&t, NULL, blocker_main, &b);
	while (!b.tid)
		usleep(20);
	pthread_create(&th, NULL, touch_main, &tc);
	while (in_callback == 0)
		usleep(100);
	pthread_cancel(t);
	CHECK_EQ(pthread_join(t, &res), 0);
	CHECK(res == PTHREAD_CANCELED);
	/* The callback ran to its end and the fault was resolved. */
	CHECK_EQ(in_callback, 2);
	pthread_join(th, NULL);
	CHECK_EQ(tc.got, 0);
	libuffd_monitor_free(m);
	munmap(mem, MON_PAGES * PAGE);
}

/* ---- A cancel already pending when calls are entered ---- */

struct pending {
	sem_t ready, cancelled;
	libuffd_handle *h, *h2;
	libuffd_monitor *idle, *started;
	int stage;
	enum wait_kind last;
};

static void *pending_main(void *arg)
{
	struct pending *p = arg;
	struct libuffd_event ev[2];
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	sem_post(&p->ready);
	sem_wait(&p->cancelled);
	/* The cancel is pending from here on; none of these acts on it. */
	pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
	libuffd_handle_free(p->h2);
	p->stage = 1;
	if (libuffd_monitor_dispatch(p->idle, 0) >= 0)
		p->stage = 2;
	if (libuffd_monitor_stop(p->started) == 0)
		p->stage = 3;
	libuffd_monitor_free(p->started); /* joins the monitor's threads */
	p->stage = 4;
	/* A cancellation point acts on it at entry, before doing anything. */
	switch (p->last) {
	case READ_EVENTS:
		libuffd_read_events(p->h, ev, 2, 0);
		break;
	case MONITOR_RUN:
		libuffd_monitor_run(p->idle);
		break;
	case MONITOR_WAIT:
		libuffd_monitor_wait(p->idle);
		break;
	}
	p->stage = 99;
	return NULL;
}

static void test_pending(const char *name, enum wait_kind last)
{
	SECTION(name);
	int fds0 = fd_count();
	int freed0 = user_freed;
	struct pending p = { .last = last };
	char *mem1, *mem2;
	pthread_t t;
	void *res = NULL;

	sem_init(&p.ready, 0, 0);
	sem_init(&p.cancelled, 0, 0);
	p.h = open_handle(1);
	p.h2 = open_handle(1);
	p.idle = new_monitor(0, &mem1);
	p.started = new_monitor(2, &mem2);
	CHECK_OK(libuffd_monitor_start(p.started));
	pthread_create(&t, NULL, pending_main, &p);
	sem_wait(&p.ready);
	CHECK_EQ(pthread_cancel(t), 0);
	sem_post(&p.cancelled);
	CHECK_EQ(pthread_join(t, &res), 0);
	CHECK(res == PTHREAD_CANCELED);
	CHECK_EQ(p.stage, 4);
	CHECK_EQ(user_freed, freed0 + 1);
	/* The monitor the cancelled call was given is untouched: it runs. */
	CHECK_OK(libuffd_monitor_start(p.idle));
	touch_page(mem1, 1, 0);
	libuffd_monitor_free(p.idle);
	CHECK_EQ(user_freed, freed0 + 2);
	/* The handle the cancelled call was given is untouched. */
	serve_one_fault(p.h, 5000);
	libuffd_handle_free(p.h);
	munmap(mem1, MON_PAGES * PAGE);
	munmap(mem2, MON_PAGES * PAGE);
	CHECK_EQ(fd_count(), fds0);
	sem_destroy(&p.ready);
	sem_destroy(&p.cancelled);
}

/* ---- Waiting for events and a shutdown pipe at once ---- */

struct loop_arg {
	libuffd_handle *h;
	int stop_fd;
	int served;
};

/* The pattern of libuffd_read_events()'s documentation. */
static void *event_loop(void *arg)
{
	struct loop_arg *a = arg;
	struct pollfd fds[2] = {
		{ .fd = libuffd_handle_fd(a->h), .events = POLLIN },
		{ .fd = a->stop_fd, .events = POLLIN },
	};
	for (;;) {
		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			return NULL;
		if (fds[1].revents)
			return NULL;
		if (!(fds[0].revents & POLLIN))
			continue;
		struct libuffd_event ev[8];
		int n = libuffd_read_events(a->h, ev, 8, 0);
		for (int i = 0; i < n; i++) {
			if (ev[i].kind != LIBUFFD_EVENT_PAGEFAULT)
				continue;
			uint64_t page = (uintptr_t)ev[i].u.fault.address & ~(PAGE - 1);
			if (libuffd_copy(a->h, (void *)(uintptr_t)page, copy_src, PAGE, 0) == (int64_t)PAGE)
				a->served++;
		}
	}
}

static void test_poll_pattern(void)
{
	SECTION("poll the handle's fd and a shutdown pipe");
	if (no_faults)
		return;
	int pfd[2];
	if (pipe(pfd) < 0)
		FATAL("pipe: %s", strerror(errno));
	struct loop_arg a = { .h = open_handle(1), .stop_fd = pfd[0] };
	char *mem = map_anon(4 * PAGE);
	pthread_t t;
	void *res = (void *)1;

	CHECK_OK(libuffd_register(a.h, mem, 4 * PAGE, LIBUFFD_REGISTER_MISSING, NULL));
	pthread_create(&t, NULL, event_loop, &a);
	touch_page(mem, 0, 'c');
	touch_page(mem, 3, 'c');
	CHECK_EQ(write(pfd[1], "q", 1), 1);
	CHECK_EQ(pthread_join(t, &res), 0);
	CHECK(res == NULL);
	CHECK_EQ(a.served, 2);
	libuffd_handle_free(a.h);
	munmap(mem, 4 * PAGE);
	close(pfd[0]);
	close(pfd[1]);
}

int main(void)
{
	const char *c = getenv("CANCEL_CYCLES");
	if (c && atoi(c) > 0)
		cycles = atoi(c);
	c = getenv("CANCEL_VALGRIND");
	no_faults = c && atoi(c) > 0;
	memset(copy_src, 'c', sizeof copy_src);
	signal(SIGALRM, on_alarm);
	alarm(50);
	setvbuf(stdout, NULL, _IOLBF, 0);

	test_read_events("cancel libuffd_read_events: non-blocking handle, timeout -1", 1, -1);
	test_read_events("cancel libuffd_read_events: non-blocking handle, timeout 10 s", 1, 10000);
	test_read_events("cancel libuffd_read_events: blocking handle, timeout -1", 0, -1);
	test_monitor_run("cancel libuffd_monitor_run, no workers", 0);
	test_monitor_run("cancel libuffd_monitor_run, 2 workers", 2);
	test_monitor_wait();
	test_run_cleanup();
	test_cancel_main_thread();
	test_cancel_in_callback();
	test_pending("pending cancel: entering libuffd_read_events", READ_EVENTS);
	test_pending("pending cancel: entering libuffd_monitor_run", MONITOR_RUN);
	test_pending("pending cancel: entering libuffd_monitor_wait", MONITOR_WAIT);
	test_poll_pattern();
	return h_finish();
}
