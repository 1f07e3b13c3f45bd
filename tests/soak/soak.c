/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * soak.c: a stress soak of libuffd's monitor (make soak; not in CI).
 *
 *   build/soak/soak [SECONDS [PHASE]]   (default 240 s: a quarter for each
 *                                        phase; or all of it for PHASE)
 *
 * Four phases, each in a child process of its own that a watchdog (this
 * process) kills if it outlives its time by 30 s (then the phase is HUNG):
 *
 *  fork-burst   a monitor serving a BUFFER region to 4 faulting threads
 *               while the process forks bursts of 50 children without
 *               waiting between forks (each child reads a page and exits);
 *               the monitor serves the children (FORK_SERVE). Every page
 *               is checked byte by byte, in the parent and the children;
 *               the children's userfaultfds must be closed once they have
 *               exited, and the fd count must come back to where it was.
 *  late-handle  a running monitor is given new handles and regions; a
 *               thread faults on each at once; a fault not served within
 *               3 s is "stuck".
 *  fd-errors    FD regions whose pread (interposed here: libuffd.so calls
 *               the process's pread) returns short reads, EINTR, EIO on
 *               some offsets, or whose file is truncated mid-run. A page
 *               must read back exactly the file's bytes, or its thread gets
 *               SIGBUS where the file cannot supply it (EIO, past EOF);
 *               anything else (zeros, a SIGBUS where the data was there) is
 *               a corruption / a lost page.
 *  stop-restart a monitor stopped while threads fault; pages not yet
 *               restored must not silently read as zeros afterwards; the
 *               monitor started again must serve (or refuse to start).
 *
 * Prints each phase's faults served (pages read back and verified),
 * corruptions, SIGBUS, stuck faults and fd growth, then the totals
 * ("soak: N faults served, N corruptions") and exits 1 if any phase found
 * a problem. The soak reports; it does not hide what it finds.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libuffd.h>

static size_t page;

/* ---- results, shared with the watchdog --------------------------------- */

struct result {
	atomic_ullong served;      /* pages read back and verified */
	atomic_ullong corrupt;     /* pages with wrong bytes (zeros...) */
	atomic_ullong sigbus;      /* SIGBUS where the source could not supply */
	atomic_ullong lost;        /* SIGBUS where the source had the data */
	atomic_ullong stuck;       /* faults not served within the limit */
	atomic_ullong resolved;    /* the monitors' `resolved` counters */
	atomic_ullong failed;      /* the monitors' `failed` counters */
	atomic_ullong cycles;
	atomic_llong fd_growth;
	atomic_llong fd_running_max; /* fork-burst: fds open after the children exited */
	atomic_ullong api_errors;  /* libuffd calls that failed unexpectedly */
	atomic_ullong pread_calls; /* interposed pread calls (fd-errors) */
	char note[512];
};

static struct result *R;

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note(const char *fmt, ...)
{
	size_t n = strlen(R->note);
	if (n > sizeof R->note - 80)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(R->note + n, sizeof R->note - n, fmt, ap);
	va_end(ap);
	n = strlen(R->note);
	if (n < sizeof R->note - 2) {
		R->note[n] = ';';
		R->note[n + 1] = ' ';
		R->note[n + 2] = 0;
	}
}

#define API(call)                                                              \
	({                                                                     \
		long long r_ = (long long)(call);                              \
		if (r_ < 0) {                                                  \
			atomic_fetch_add(&R->api_errors, 1);                   \
			note("%s: %s", #call, libuffd_last_error());           \
		}                                                              \
		r_;                                                            \
	})

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	if (d)
		closedir(d);
	return n - 1; /* the directory's own fd */
}

/* ---- contents ---------------------------------------------------------- */

/* Byte i of page p of data set `seed`: never zero. */
static inline unsigned char pat(uint32_t seed, size_t p, size_t i)
{
	return (unsigned char)((p * 131 + i * 7 + seed * 17) % 255 + 1);
}

static void fill(char *buf, size_t npages, uint32_t seed)
{
	for (size_t p = 0; p < npages; p++)
		for (size_t i = 0; i < page; i++)
			buf[p * page + i] = (char)pat(seed, p, i);
}

/* ---- faulting threads -------------------------------------------------- */

static __thread sigjmp_buf tl_jb;
static __thread volatile int tl_armed;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (tl_armed)
		siglongjmp(tl_jb, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

enum { PAGE_OK, PAGE_CORRUPT, PAGE_SIGBUS };

/* Read page p of `base` (data set `seed`); compare every byte. */
static int check_page(const char *base, size_t p, uint32_t seed)
{
	volatile const unsigned char *q = (volatile const unsigned char *)base + p * page;
	if (sigsetjmp(tl_jb, 1)) {
		tl_armed = 0;
		return PAGE_SIGBUS;
	}
	tl_armed = 1;
	unsigned char first = q[0]; /* the fault */
	tl_armed = 0;
	if (first != pat(seed, p, 0))
		return PAGE_CORRUPT;
	for (size_t i = 1; i < page; i++)
		if (q[i] != pat(seed, p, i))
			return PAGE_CORRUPT;
	return PAGE_OK;
}

struct job {
	const char *base;
	size_t npages;
	uint32_t seed;
	int nthreads, t;
	/* may_sigbus(p): the source cannot supply page p (EIO, past EOF) */
	int (*may_sigbus)(size_t p);
	atomic_int done;
	unsigned long ok, corrupt, sigbus, lost;
};

static void *fault_thread(void *arg)
{
	struct job *j = arg;
	/* Pages t, t+n, ... from the middle outwards: faults spread over the
	 * region, and fault-around windows of one thread meet the others'. */
	for (size_t k = (size_t)j->t; k < j->npages; k += (size_t)j->nthreads) {
		size_t p = (k * 7919) % j->npages;
		switch (check_page(j->base, p, j->seed)) {
		case PAGE_OK:
			j->ok++;
			break;
		case PAGE_CORRUPT:
			j->corrupt++;
			break;
		default:
			if (j->may_sigbus && j->may_sigbus(p))
				j->sigbus++;
			else
				j->lost++;
			break;
		}
	}
	atomic_store(&j->done, 1);
	return NULL;
}

/* Run n faulting threads over the region; wait up to `limit` seconds for
 * them. Returns the number of threads still blocked (left running). */
static int run_faulters(const char *base, size_t npages, uint32_t seed, int n, int (*may)(size_t),
			double limit)
{
	struct job *jobs = calloc((size_t)n, sizeof *jobs);
	pthread_t *th = calloc((size_t)n, sizeof *th);
	for (int t = 0; t < n; t++) {
		jobs[t] = (struct job){ .base = base, .npages = npages, .seed = seed, .nthreads = n, .t = t,
					.may_sigbus = may };
		pthread_create(&th[t], NULL, fault_thread, &jobs[t]);
	}
	int blocked = 0;
	for (int t = 0; t < n; t++) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)limit;
		if (pthread_timedjoin_np(th[t], NULL, &ts) != 0) {
			blocked++;
			continue; /* left blocked: its job is leaked on purpose */
		}
		atomic_fetch_add(&R->served, jobs[t].ok);
		atomic_fetch_add(&R->corrupt, jobs[t].corrupt);
		atomic_fetch_add(&R->sigbus, jobs[t].sigbus);
		atomic_fetch_add(&R->lost, jobs[t].lost);
	}
	if (!blocked) {
		free(jobs);
		free(th);
	}
	return blocked;
}

static void add_stats(libuffd_monitor *m)
{
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	if (libuffd_monitor_get_stats(m, &st) == 0) {
		atomic_fetch_add(&R->resolved, st.resolved);
		atomic_fetch_add(&R->failed, st.failed);
	}
}

static libuffd_handle *open_handle(uint64_t features)
{
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK,
						      .features = features, .required_features = features);
	libuffd_handle *h = NULL;
	if (API(libuffd_open(&o, &h)) < 0)
		return NULL;
	return h;
}

static char *map_anon(size_t npages)
{
	char *p = mmap(NULL, npages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		note("mmap: %s", strerror(errno));
		return NULL;
	}
	return p;
}

static void log_cb(void *ud, libuffd_monitor *m, const char *msg)
{
	(void)ud;
	(void)m;
	(void)msg; /* counted through stats; the soak must not flood stdout */
}

static const struct libuffd_monitor_ops quiet_ops = { .sz = sizeof(struct libuffd_monitor_ops), .on_log = log_cb };

/* ---- phase: fork bursts ------------------------------------------------ */

#define FB_PAGES 512
#define FB_BURST 50

static void phase_fork_burst(double secs)
{
	double end = now() + secs;
	int fds0 = count_fds();
	uint32_t seed = 1;
	char *src = map_anon(FB_PAGES);
	while (now() < end) {
		seed++;
		fill(src, FB_PAGES, seed);
		libuffd_handle *h = open_handle(LIBUFFD_FEATURE_EVENT_FORK);
		if (!h)
			return;
		struct libuffd_monitor_opts mo = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .workers = 2);
		libuffd_monitor *m = NULL;
		if (API(libuffd_monitor_new(&mo, &quiet_ops, NULL, NULL, &m)) < 0)
			return;
		uint32_t id;
		char *mem = map_anon(FB_PAGES);
		struct libuffd_region_opts ro = LIBUFFD_OPTS_INIT(
			libuffd_region_opts, .source = LIBUFFD_SOURCE_BUFFER, .register_mode = LIBUFFD_REGISTER_MISSING,
			.buffer = src, .buffer_len = FB_PAGES * page);
		API(libuffd_monitor_add_handle(m, h, &id));
		libuffd_handle_free(h);
		API(libuffd_monitor_add_region(m, id, mem, FB_PAGES * page, &ro));
		API(libuffd_monitor_start(m));
		int fds_running = count_fds();

		/* 4 faulting threads, while this thread forks bursts. */
		struct job jobs[4];
		pthread_t th[4];
		for (int t = 0; t < 4; t++) {
			jobs[t] = (struct job){ .base = mem, .npages = FB_PAGES, .seed = seed, .nthreads = 4, .t = t };
			pthread_create(&th[t], NULL, fault_thread, &jobs[t]);
		}
		pid_t kids[FB_BURST];
		int nk = 0;
		for (int i = 0; i < FB_BURST; i++) {
			pid_t pid = fork();
			if (pid == 0) {
				/* The child: one page, checked (served through its own
				 * userfaultfd if the parent had not populated it). */
				size_t p = ((size_t)i * 37) % FB_PAGES;
				int r = check_page(mem, p, seed);
				_exit(r == PAGE_OK ? 0 : 10 + r);
			}
			if (pid > 0)
				kids[nk++] = pid;
			else
				note("fork: %s", strerror(errno));
		}
		for (int i = 0; i < nk; i++) {
			int st;
			if (waitpid(kids[i], &st, 0) == kids[i]) {
				if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
					atomic_fetch_add(&R->served, 1);
				else if (WIFEXITED(st) && WEXITSTATUS(st) == 10 + PAGE_CORRUPT)
					atomic_fetch_add(&R->corrupt, 1);
				else
					atomic_fetch_add(&R->lost, 1);
			}
		}
		for (int t = 0; t < 4; t++) {
			pthread_join(th[t], NULL);
			atomic_fetch_add(&R->served, jobs[t].ok);
			atomic_fetch_add(&R->corrupt, jobs[t].corrupt);
			atomic_fetch_add(&R->lost, jobs[t].lost + jobs[t].sigbus);
		}
		/* Every child has exited: its userfaultfd should be closed by
		 * now (give the monitor 100 ms to notice). */
		usleep(100000);
		long long open_after = count_fds() - fds_running;
		if (open_after > atomic_load(&R->fd_running_max))
			atomic_store(&R->fd_running_max, open_after);
		API(libuffd_monitor_stop(m));
		API(libuffd_monitor_wait(m));
		add_stats(m);
		libuffd_monitor_free(m);
		munmap(mem, FB_PAGES * page);
		atomic_fetch_add(&R->cycles, 1);
		atomic_store(&R->fd_growth, count_fds() - fds0);
	}
}

/* ---- phase: handles and regions added to a running monitor ------------- */

#define LH_PAGES 16

static void phase_late_handle(double secs)
{
	double end = now() + secs;
	int fds0 = count_fds();
	char *src = map_anon(LH_PAGES);
	fill(src, LH_PAGES, 7);
	libuffd_monitor *m = NULL;
	if (API(libuffd_monitor_new(NULL, &quiet_ops, NULL, NULL, &m)) < 0)
		return;
	/* One handle from the start, so the monitor has something to poll. */
	libuffd_handle *h0 = open_handle(0);
	uint32_t id0;
	API(libuffd_monitor_add_handle(m, h0, &id0));
	libuffd_handle_free(h0);
	API(libuffd_monitor_start(m));
	int stuck_total = 0, stuck_handle = 0, stuck_region = 0;
	while (now() < end && stuck_total < 8) {
		libuffd_handle *h = open_handle(0);
		if (!h)
			break;
		uint32_t id;
		char *mem = map_anon(LH_PAGES);
		struct libuffd_region_opts ro = LIBUFFD_OPTS_INIT(
			libuffd_region_opts, .source = LIBUFFD_SOURCE_BUFFER, .register_mode = LIBUFFD_REGISTER_MISSING,
			.buffer = src, .buffer_len = LH_PAGES * page);
		API(libuffd_monitor_add_handle(m, h, &id));
		libuffd_handle_free(h);
		if (API(libuffd_monitor_add_region(m, id, mem, LH_PAGES * page, &ro)) < 0)
			break;
		/* Fault at once: the monitor must notice the new handle. */
		int blocked = run_faulters(mem, LH_PAGES, 7, 1, NULL, 3);
		if (blocked) {
			stuck_total += blocked;
			stuck_handle += blocked;
			atomic_fetch_add(&R->stuck, (unsigned)blocked);
			/* the region stays mapped: its thread is still in it */
		}
		/* A region added late on the first handle, too. */
		char *mem2 = map_anon(LH_PAGES);
		if (API(libuffd_monitor_add_region(m, id0, mem2, LH_PAGES * page, &ro)) == 0) {
			blocked = run_faulters(mem2, LH_PAGES, 7, 1, NULL, 3);
			stuck_total += blocked;
			stuck_region += blocked;
			atomic_fetch_add(&R->stuck, (unsigned)blocked);
		}
		atomic_fetch_add(&R->cycles, 1);
	}
	if (stuck_total)
		note("faults not served within 3 s: %d in a handle added while running, %d in a region "
		     "added while running to the first handle", stuck_handle, stuck_region);
	API(libuffd_monitor_stop(m));
	API(libuffd_monitor_wait(m));
	add_stats(m);
	libuffd_monitor_free(m);
	/* (Threads still blocked were released by the stop, or still are.) */
	atomic_store(&R->fd_growth, count_fds() - fds0);
}

/* ---- phase: fd sources with errors ------------------------------------- */

enum { INJ_NONE, INJ_SHORT, INJ_EINTR, INJ_EIO, INJ_TRUNC, INJ_MODES };
static const char *inj_names[] = { "none", "short", "eintr", "eio", "truncate" };
static atomic_int inj_mode;
/* The source file, by identity (the monitor reads its own duplicate of
 * the descriptor, under another number). */
static atomic_int inj_set;
static _Atomic unsigned long long inj_dev, inj_ino;

static void inj_target(int fd)
{
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0) {
		atomic_store(&inj_set, 0);
		return;
	}
	atomic_store(&inj_dev, (unsigned long long)st.st_dev);
	atomic_store(&inj_ino, (unsigned long long)st.st_ino);
	atomic_store(&inj_set, 1);
}

static int inj_is_target(int fd)
{
	struct stat st;
	return fd >= 0 && atomic_load(&inj_set) && fstat(fd, &st) == 0 &&
	       (unsigned long long)st.st_dev == atomic_load(&inj_dev) &&
	       (unsigned long long)st.st_ino == atomic_load(&inj_ino);
}
static atomic_uint inj_count;
static size_t fe_pages;
static atomic_size_t fe_file_pages; /* pages the file has now */

/* Pages whose offset is a multiple of 5 pages fail with EIO. */
static int eio_page(size_t p)
{
	return p % 5 == 3;
}

static ssize_t real_pread(int fd, void *buf, size_t n, off_t off)
{
	return syscall(SYS_pread64, fd, buf, n, off);
}

static ssize_t injected_pread(int fd, void *buf, size_t n, off_t off)
{
	if (!inj_is_target(fd))
		return real_pread(fd, buf, n, off);
	atomic_fetch_add(&R->pread_calls, 1);
	unsigned c = atomic_fetch_add(&inj_count, 1);
	switch (atomic_load(&inj_mode)) {
	case INJ_SHORT:
		/* Half of what was asked, at most; sometimes one byte. */
		if (n > 1)
			n = (c % 3 == 0) ? 1 : n / 2;
		return real_pread(fd, buf, n, off);
	case INJ_EINTR:
		if (c % 2 == 0) {
			errno = EINTR;
			return -1;
		}
		return real_pread(fd, buf, n, off);
	case INJ_EIO: {
		/* The read fails if it covers an EIO page. */
		size_t first = (size_t)off / page, last = ((size_t)off + n - 1) / page;
		for (size_t p = first; p <= last; p++)
			if (eio_page(p)) {
				if (p == first) {
					errno = EIO;
					return -1;
				}
				/* the pages before it are fine: a short read */
				return real_pread(fd, buf, (p - first) * page - ((size_t)off % page), off);
			}
		return real_pread(fd, buf, n, off);
	}
	default:
		return real_pread(fd, buf, n, off);
	}
}

ssize_t pread(int fd, void *buf, size_t n, off_t off);
ssize_t pread64(int fd, void *buf, size_t n, off_t off);
ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	return injected_pread(fd, buf, n, off);
}
ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	return injected_pread(fd, buf, n, off);
}

static int fe_may_sigbus(size_t p)
{
	switch (atomic_load(&inj_mode)) {
	case INJ_EIO:
		return eio_page(p);
	case INJ_TRUNC:
		return p >= atomic_load(&fe_file_pages);
	default:
		return 0;
	}
}

static void *truncator(void *arg)
{
	int fd = *(int *)arg;
	usleep(2000);
	atomic_store(&fe_file_pages, fe_pages / 2);
	if (ftruncate(fd, (off_t)(fe_pages / 2 * page)) != 0)
		note("ftruncate: %s", strerror(errno));
	return NULL;
}

struct fe_stats {
	unsigned long long served, corrupt, sigbus, lost;
} fe_by_mode[INJ_MODES];

static void phase_fd_errors(double secs)
{
	double end = now() + secs;
	int fds0 = count_fds();
	fe_pages = 256;
	char *src = map_anon(fe_pages);
	uint32_t seed = 100;
	int mode = 0;
	while (now() < end) {
		mode = mode % (INJ_MODES - 1) + 1; /* short, eintr, eio, truncate */
		seed++;
		fill(src, fe_pages, seed);
		int fd = memfd_create("soak-src", MFD_CLOEXEC);
		if (fd < 0 || write(fd, src, fe_pages * page) != (ssize_t)(fe_pages * page)) {
			note("memfd: %s", strerror(errno));
			return;
		}
		atomic_store(&fe_file_pages, fe_pages);
		atomic_store(&inj_mode, mode);
		atomic_store(&inj_count, 0);
		inj_target(fd);

		libuffd_handle *h = open_handle(0);
		struct libuffd_monitor_opts mo = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .workers = 2);
		libuffd_monitor *m = NULL;
		if (!h || API(libuffd_monitor_new(&mo, &quiet_ops, NULL, NULL, &m)) < 0)
			return;
		uint32_t id;
		char *mem = map_anon(fe_pages);
		struct libuffd_region_opts ro = LIBUFFD_OPTS_INIT(libuffd_region_opts, .source = LIBUFFD_SOURCE_FD,
								 .register_mode = LIBUFFD_REGISTER_MISSING,
								 .fd = fd, .fd_offset = 0);
		API(libuffd_monitor_add_handle(m, h, &id));
		libuffd_handle_free(h);
		API(libuffd_monitor_add_region(m, id, mem, fe_pages * page, &ro));
		API(libuffd_monitor_start(m));
		pthread_t tr;
		if (mode == INJ_TRUNC)
			pthread_create(&tr, NULL, truncator, &fd);
		struct result before = { 0 };
		before.served = atomic_load(&R->served);
		before.corrupt = atomic_load(&R->corrupt);
		before.sigbus = atomic_load(&R->sigbus);
		before.lost = atomic_load(&R->lost);
		int blocked = run_faulters(mem, fe_pages, seed, 4, fe_may_sigbus, 20);
		if (mode == INJ_TRUNC)
			pthread_join(tr, NULL);
		atomic_fetch_add(&R->stuck, (unsigned)blocked);
		fe_by_mode[mode].served += atomic_load(&R->served) - before.served;
		fe_by_mode[mode].corrupt += atomic_load(&R->corrupt) - before.corrupt;
		fe_by_mode[mode].sigbus += atomic_load(&R->sigbus) - before.sigbus;
		fe_by_mode[mode].lost += atomic_load(&R->lost) - before.lost;
		API(libuffd_monitor_stop(m));
		API(libuffd_monitor_wait(m));
		add_stats(m);
		libuffd_monitor_free(m);
		inj_target(-1);
		if (blocked) {
			note("%s: %d threads blocked 20 s", inj_names[mode], blocked);
			break;
		}
		munmap(mem, fe_pages * page);
		close(fd);
		atomic_fetch_add(&R->cycles, 1);
	}
	for (int i = 1; i < INJ_MODES; i++)
		if (fe_by_mode[i].corrupt || fe_by_mode[i].lost)
			note("%s: %llu served, %llu corrupt, %llu lost (SIGBUS with data there), %llu SIGBUS",
			     inj_names[i], fe_by_mode[i].served, fe_by_mode[i].corrupt, fe_by_mode[i].lost,
			     fe_by_mode[i].sigbus);
	atomic_store(&R->fd_growth, count_fds() - fds0);
}

/* ---- phase: stop while faulting, then restart -------------------------- */

/* Every 16th page of the second half (never faulted before the stop). */
static void *after_stop_thread(void *arg)
{
	struct job *j = arg;
	for (size_t p = j->npages / 2; p < j->npages; p += 16) {
		int r = check_page(j->base, p, j->seed);
		if (r == PAGE_OK)
			j->ok++;
		else if (r == PAGE_CORRUPT)
			j->corrupt++;
		else
			j->sigbus++;
	}
	return NULL;
}

#define SR_PAGES 256

static void phase_stop_restart(double secs)
{
	double end = now() + secs;
	int fds0 = count_fds();
	char *src = map_anon(SR_PAGES);
	uint32_t seed = 300;
	unsigned long zeroed = 0, zeroed_during = 0, restart_stuck = 0, restart_refused = 0, restart_ok = 0;
	unsigned long kept_blocked = 0;
	while (now() < end && restart_stuck < 4) {
		seed++;
		fill(src, SR_PAGES, seed);
		libuffd_handle *h = open_handle(0);
		libuffd_monitor *m = NULL;
		struct libuffd_monitor_opts mo = LIBUFFD_OPTS_INIT(libuffd_monitor_opts, .workers = 1,
								 .window_max = 1);
		if (!h || API(libuffd_monitor_new(&mo, &quiet_ops, NULL, NULL, &m)) < 0)
			return;
		uint32_t id;
		char *mem = map_anon(SR_PAGES);
		struct libuffd_region_opts ro = LIBUFFD_OPTS_INIT(
			libuffd_region_opts, .source = LIBUFFD_SOURCE_BUFFER, .register_mode = LIBUFFD_REGISTER_MISSING,
			.buffer = src, .buffer_len = SR_PAGES * page);
		API(libuffd_monitor_add_handle(m, h, &id));
		API(libuffd_monitor_add_region(m, id, mem, SR_PAGES * page, &ro));
		API(libuffd_monitor_start(m));
		/* Threads fault over the first half; stop comes in the middle. */
		struct job jobs[2];
		pthread_t th[2];
		for (int t = 0; t < 2; t++) {
			jobs[t] = (struct job){ .base = mem, .npages = SR_PAGES / 2, .seed = seed, .nthreads = 2, .t = t };
			pthread_create(&th[t], NULL, fault_thread, &jobs[t]);
		}
		usleep(200);
		API(libuffd_monitor_stop(m));
		API(libuffd_monitor_wait(m));
		/* A stop policy may keep threads blocked until the handle is
		 * freed: wait 2 s, then count them as kept (not a problem). */
		int joined[2] = { 0, 0 };
		for (int t = 0; t < 2; t++) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 2;
			if (pthread_timedjoin_np(th[t], NULL, &ts) != 0) {
				kept_blocked++;
				continue;
			}
			joined[t] = 1;
			atomic_fetch_add(&R->served, jobs[t].ok);
			atomic_fetch_add(&R->corrupt, jobs[t].corrupt);
			/* Pages the stop found unrestored: SIGBUS is the default
			 * stop policy for a buffer region (data that cannot be
			 * restored any more fails loudly), not a loss. */
			atomic_fetch_add(&R->sigbus, jobs[t].lost + jobs[t].sigbus);
			zeroed_during += jobs[t].corrupt;
		}
		/* After the stop: pages never restored. They may stay blocked
		 * (with a policy that keeps them), raise SIGBUS, or be zeros
		 * only if asked for; silent zeros are data lost. Read in a
		 * thread, which may stay blocked. */
		struct job after = { .base = mem, .npages = SR_PAGES, .seed = seed };
		pthread_t ta;
		pthread_create(&ta, NULL, after_stop_thread, &after);
		struct timespec ts2;
		clock_gettime(CLOCK_REALTIME, &ts2);
		ts2.tv_sec += 2;
		int after_joined = pthread_timedjoin_np(ta, NULL, &ts2) == 0;
		if (after_joined) {
			zeroed += after.corrupt;
			atomic_fetch_add(&R->corrupt, after.corrupt);
			atomic_fetch_add(&R->sigbus, after.sigbus + after.lost);
			atomic_fetch_add(&R->served, after.ok);
		} else {
			kept_blocked++;
		}
		/* Start again: it must serve a new region, or refuse. */
		long long rs = libuffd_monitor_start(m);
		if (rs == 0) {
			char *mem2 = map_anon(16);
			struct libuffd_region_opts ro2 = ro;
			if (API(libuffd_monitor_add_region(m, id, mem2, 16 * page, &ro2)) == 0) {
				int blocked = run_faulters(mem2, 16, seed, 1, NULL, 3);
				if (blocked) {
					restart_stuck++;
					atomic_fetch_add(&R->stuck, (unsigned)blocked);
				} else {
					restart_ok++;
				}
			}
			API(libuffd_monitor_stop(m));
			API(libuffd_monitor_wait(m));
		} else {
			restart_refused++;
		}
		add_stats(m);
		libuffd_monitor_free(m);
		libuffd_handle_free(h);
		/* Freeing the handle releases whatever was kept blocked. */
		for (int t = 0; t < 2; t++)
			if (!joined[t])
				pthread_join(th[t], NULL);
		if (!after_joined)
			pthread_join(ta, NULL);
		atomic_fetch_add(&R->cycles, 1);
	}
	if (kept_blocked)
		note("%lu threads kept blocked by the stop until the handle was freed", kept_blocked);
	if (zeroed_during)
		note("%lu pages faulted while the monitor stopped read back wrong (zeros)", zeroed_during);
	if (zeroed)
		note("%lu pages never restored read back as zeros after the stop", zeroed);
	if (restart_stuck)
		note("restart after stop+wait returned 0 and left %lu faults unserved 3 s", restart_stuck);
	if (restart_ok || restart_refused)
		note("restarts: %lu served, %lu refused", restart_ok, restart_refused);
	atomic_store(&R->fd_growth, count_fds() - fds0);
}

/* ---- the watchdog ------------------------------------------------------ */

struct phase {
	const char *name;
	void (*fn)(double);
};

static const struct phase phases[] = {
	{ "fork-burst", phase_fork_burst },
	{ "late-handle", phase_late_handle },
	{ "fd-errors", phase_fd_errors },
	{ "stop-restart", phase_stop_restart },
};

int main(int argc, char **argv)
{
	double total = argc > 1 ? atof(argv[1]) : 240;
	const char *only = argc > 2 ? argv[2] : NULL;
	page = (size_t)sysconf(_SC_PAGESIZE);
	setvbuf(stdout, NULL, _IOLBF, 0);
	size_t nph = sizeof phases / sizeof phases[0];
	size_t nrun = only ? 1 : nph;
	double each = total / (double)nrun;
	unsigned long long served = 0, corrupt = 0;
	int problems = 0;
	printf("soak: %zu phases of %.0f s (libuffd %s)\n", nrun, each, libuffd_version_string());
	for (size_t i = 0; i < nph; i++) {
		if (only && strcmp(only, phases[i].name) != 0)
			continue;
		R = mmap(NULL, sizeof *R, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		memset(R, 0, sizeof *R);
		double t0 = now();
		pid_t pid = fork();
		if (pid == 0) {
			struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };
			sigaction(SIGBUS, &sa, NULL);
			phases[i].fn(each);
			fflush(NULL);
			_exit(0); /* threads left blocked (stuck) end with the process */
		}
		const char *status = "ok";
		int st = 0;
		for (;;) {
			pid_t w = waitpid(pid, &st, WNOHANG);
			if (w == pid)
				break;
			if (now() - t0 > each + 30) {
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
				status = "HUNG (killed by the watchdog)";
				break;
			}
			usleep(100000);
		}
		if (!strcmp(status, "ok") && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
			static char buf[64];
			if (WIFSIGNALED(st))
				snprintf(buf, sizeof buf, "CRASHED (signal %d)", WTERMSIG(st));
			else
				snprintf(buf, sizeof buf, "exit status %d", WEXITSTATUS(st));
			status = buf;
		}
		int bad = strcmp(status, "ok") != 0 || R->corrupt || R->lost || R->stuck || R->fd_growth > 0 ||
			  R->fd_running_max > 0 || R->api_errors;
		problems += bad;
		printf("phase %-12s %-4s %6.1f s, %llu cycles: %llu faults served, %llu corruptions, "
		       "%llu lost (SIGBUS where data was), %llu SIGBUS (expected), %llu stuck, fd growth %lld, "
		       "monitors: %llu resolved, %llu failed; %llu API errors%s%s\n",
		       phases[i].name, bad ? "FAIL" : "ok", now() - t0, (unsigned long long)R->cycles,
		       (unsigned long long)R->served, (unsigned long long)R->corrupt, (unsigned long long)R->lost,
		       (unsigned long long)R->sigbus, (unsigned long long)R->stuck, (long long)R->fd_growth,
		       (unsigned long long)R->resolved, (unsigned long long)R->failed,
		       (unsigned long long)R->api_errors, strcmp(status, "ok") ? "; " : "",
		       strcmp(status, "ok") ? status : "");
		if (R->note[0])
			printf("      notes: %s\n", R->note);
		if (!strcmp(phases[i].name, "fork-burst"))
			printf("      fds still open 100 ms after a burst's %d children exited (monitor running): "
			       "at most %lld\n", FB_BURST, (long long)R->fd_running_max);
		if (!strcmp(phases[i].name, "fd-errors"))
			printf("      (pread calls interposed: %llu)\n", (unsigned long long)R->pread_calls);
		served += R->served;
		corrupt += R->corrupt;
		munmap(R, sizeof *R);
	}
	printf("soak: %llu faults served, %llu corruptions found, %d of %zu phases with problems\n", served,
	       corrupt, problems, nrun);
	return problems ? 1 : 0;
}
