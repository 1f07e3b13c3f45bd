/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * sigbus-mode: LIBUFFD_FEATURE_SIGBUS, faults handled on the faulting
 * thread itself: no monitor, no thread reading the userfaultfd.
 *
 * With the SIGBUS feature the kernel sends no fault message: a thread that
 * touches a missing page of a registered range gets SIGBUS at once. A
 * SIGBUS handler places the page (UFFDIO_COPY from a snapshot kept in
 * memory) and returns; the faulting instruction runs again and finds the
 * page. This is how a process restores its own memory lazily without any
 * helper thread (and how a language runtime can fill pages on demand).
 *
 * Caveats, all of them about running inside a signal handler:
 *  - Only async-signal-safe code may run there. libuffd_copy() is not
 *    documented as async-signal-safe, and is not: it goes through the
 *    library's error boundary, which may allocate (the per-thread error
 *    record, first-use thread-local state) and calls
 *    pthread_setcancelstate(). So the handler below issues the raw
 *    UFFDIO_COPY ioctl (ioctl(2) is async-signal-safe) on the descriptor
 *    that libuffd_handle_fd() returned before any fault, and reads nothing
 *    but data prepared beforehand. <linux/userfaultfd.h> and <libuffd.h>
 *    can be included together.
 *  - errno must be saved and restored by the handler.
 *  - A SIGBUS outside the registered range (a real bus error, a truncated
 *    file) is not ours: the handler restores the default action and
 *    returns, so the access faults again and kills the process as usual.
 *  - The handler runs on the faulting thread with its signal mask; the
 *    page must be placed before it returns or the thread faults again
 *    (another thread placing it first is fine: EEXIST).
 *  - Kernel accesses to the range (read(2) into it) are not served: with
 *    LIBUFFD_OPEN_USER_ONLY they fail with EFAULT, as they would for any
 *    SIGBUS-mode userfaultfd.
 *
 * Prints "N SIGBUS faults placed on the faulting threads" and
 * "verified N pages". Usage: sigbus-mode
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libuffd.h>

#define NPAGES 64
#define NTHREADS 4

static void die(const char *what, long err)
{
	fprintf(stderr, "sigbus-mode: %s: %s\n  %s\n", what, libuffd_strerror((int)err),
		libuffd_last_error());
	exit(EXIT_FAILURE);
}

/* Everything the handler reads is set before the first fault. */
static int uffd_fd;
static char *region, *snapshot;
static size_t page_size, region_len;
static unsigned long faults_placed; /* updated with atomic builtins */

static void on_sigbus(int sig, siginfo_t *si, void *ctx)
{
	(void)ctx;
	int saved_errno = errno;
	char *addr = si->si_addr;

	if (addr < region || addr >= region + region_len) {
		/* Not our range: let the access fault again, fatally. */
		signal(sig, SIG_DFL);
		errno = saved_errno;
		return;
	}
	size_t off = (size_t)(addr - region) & ~(page_size - 1);
	struct uffdio_copy copy = {
		.dst = (uintptr_t)(region + off),
		.src = (uintptr_t)(snapshot + off),
		.len = page_size,
		.mode = 0,
	};
	if (ioctl(uffd_fd, UFFDIO_COPY, &copy) == 0)
		__atomic_fetch_add(&faults_placed, 1, __ATOMIC_RELAXED);
	/* EEXIST: another thread placed it first; the access now succeeds.
	 * Any other failure: the access faults again and comes back here. */
	errno = saved_errno;
}

/* Each thread reads every page, starting at its own offset. */
static void *reader(void *arg)
{
	size_t start = (size_t)(uintptr_t)arg;
	size_t bad = 0;
	for (size_t k = 0; k < NPAGES; k++) {
		size_t i = (start + k * 5) % NPAGES;
		if (memcmp(region + i * page_size, snapshot + i * page_size, page_size) != 0)
			bad++;
	}
	return (void *)(uintptr_t)bad;
}

int main(void)
{
	page_size = (size_t)sysconf(_SC_PAGESIZE);
	region_len = NPAGES * page_size;

	/* The snapshot the pages are restored from: any memory of ours. */
	snapshot = malloc(region_len);
	if (!snapshot)
		return EXIT_FAILURE;
	for (size_t i = 0; i < region_len; i++)
		snapshot[i] = (char)(i * 31 / page_size + i);

	/* SIGBUS mode is required: without it faults would wait for a reader
	 * that does not exist. */
	LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_USER_ONLY,
		     .features = LIBUFFD_FEATURE_SIGBUS,
		     .required_features = LIBUFFD_FEATURE_SIGBUS);
	libuffd_handle *h;
	int rc = libuffd_open(&oo, &h);
	if (rc < 0)
		die("libuffd_open", rc);
	uffd_fd = libuffd_handle_fd(h);

	region = mmap(NULL, region_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED) {
		perror("mmap");
		return EXIT_FAILURE;
	}
	uint64_t ioctls = 0;
	if ((rc = libuffd_register(h, region, region_len, LIBUFFD_REGISTER_MISSING, &ioctls)) < 0)
		die("libuffd_register", rc);
	if (!(ioctls & LIBUFFD_IOCTL_COPY)) {
		fprintf(stderr, "sigbus-mode: the kernel allows no COPY on this range\n");
		return EXIT_FAILURE;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) < 0) {
		perror("sigaction");
		return EXIT_FAILURE;
	}

	/* Several threads fault at once, each on its own stack of SIGBUSes. */
	pthread_t thr[NTHREADS];
	for (int t = 0; t < NTHREADS; t++)
		if (pthread_create(&thr[t], NULL, reader, (void *)(uintptr_t)(t * NPAGES / NTHREADS)) != 0) {
			perror("pthread_create");
			return EXIT_FAILURE;
		}
	size_t bad = 0;
	for (int t = 0; t < NTHREADS; t++) {
		void *r;
		pthread_join(thr[t], &r);
		bad += (size_t)(uintptr_t)r;
	}

	unsigned long placed = __atomic_load_n(&faults_placed, __ATOMIC_RELAXED);
	printf("sigbus-mode: %lu SIGBUS faults placed on the faulting threads (%d threads, "
	       "no monitor, no reader thread)\n", placed, NTHREADS);
	libuffd_handle_free(h);
	if (bad || placed != NPAGES) {
		printf("sigbus-mode: FAILED: %zu pages differ, %lu of %d placed\n", bad, placed, NPAGES);
		return EXIT_FAILURE;
	}
	printf("sigbus-mode: verified %d pages\n", NPAGES);
	return EXIT_SUCCESS;
}
