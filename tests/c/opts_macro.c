/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * opts_macro: LIBUFFD_OPTS and LIBUFFD_OPTS_INIT, the options-struct
 * macros, in C and in C++. run.sh builds this file as C11 (with every C
 * test), and again as C99, C++11 and C++17 with -Wall -Wextra -Werror (GCC,
 * and Clang when installed), and runs each build: the macros must compile
 * without a warning in all of them and give the same structs.
 *
 * Every struct they make has sz set, the given fields and every other
 * byte zero, and an all-zero struct means the defaults: the monitor below
 * serves a region whose options are all zero but the register mode with
 * zero pages, from an fd field of 0 that no source reads.
 *
 * Plain C that is also C++ (no harness.h: it is C only): designated
 * initialisers in the order of the fields, explicit casts from void *.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libuffd.h>

static int checks, failed;

#define CHECK(cond)                                                                      \
	do {                                                                             \
		checks++;                                                                \
		if (!(cond)) {                                                           \
			failed++;                                                        \
			fprintf(stderr, "%s:%d: FAIL %s\n", __FILE__, __LINE__, #cond); \
		}                                                                        \
	} while (0)

/* Bytes [from, n) of p are all zero. */
static int zero_from(const void *p, size_t from, size_t n)
{
	const unsigned char *b = (const unsigned char *)p;
	for (size_t i = from; i < n; i++)
		if (b[i])
			return 0;
	return 1;
}

static int log_calls;
static void on_log(void *ud, libuffd_monitor *m, const char *msg)
{
	(void)ud;
	(void)m;
	(void)msg;
	log_calls++;
}

int main(void)
{
	/* Declared with fields, in the order of the struct. */
	LIBUFFD_OPTS(libuffd_open_opts, o, .flags = LIBUFFD_OPEN_NONBLOCK, .features = LIBUFFD_FEATURE_THREAD_ID);
	CHECK(o.sz == sizeof(struct libuffd_open_opts));
	CHECK(o.flags == LIBUFFD_OPEN_NONBLOCK);
	CHECK(o.reserved == 0);
	CHECK(o.features == LIBUFFD_FEATURE_THREAD_ID);
	CHECK(o.required_features == 0);

	/* Declared with no field: sz, then zeros. */
	LIBUFFD_OPTS(libuffd_open_opts, none);
	CHECK(none.sz == sizeof none);
	CHECK(zero_from(&none, sizeof(size_t), sizeof none));

	/* Assigned. */
	none = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = 0u, .reserved = 0u);
	CHECK(none.sz == sizeof none);
	CHECK(zero_from(&none, sizeof(size_t), sizeof none));

	LIBUFFD_OPTS(libuffd_monitor_opts, mo, .workers = 1, .flags = LIBUFFD_MONITOR_FIXED_WINDOW);
	CHECK(mo.sz == sizeof mo);
	CHECK(mo.workers == 1 && mo.spin_us == 0 && mo.window_min == 0 && mo.window_max == 0);
	CHECK(mo.flags == LIBUFFD_MONITOR_FIXED_WINDOW);
	CHECK(mo.error_policy == LIBUFFD_ON_ERROR_SIGBUS && mo.stop_policy == LIBUFFD_ON_STOP_DEFAULT);

	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_log = on_log);
	CHECK(ops.sz == sizeof ops);
	CHECK(ops.on_fault == NULL && ops.on_fork == NULL && ops.on_remap == NULL);
	CHECK(ops.on_remove == NULL && ops.on_unmap == NULL && ops.on_log == on_log);

	LIBUFFD_OPTS(libuffd_region_opts, r, .register_mode = LIBUFFD_REGISTER_MISSING);
	CHECK(r.sz == sizeof r);
	CHECK(r.source == LIBUFFD_SOURCE_ZERO && r.flags == 0 && r.fd == 0 && r.stop_policy == 0);
	CHECK(r.buffer == NULL && r.data == NULL && r.page_size == 0);

	/* All of them at work on the real kernel. */
	libuffd_handle *h = NULL;
	int rc = libuffd_open(&o, &h);
	if (rc == -EPERM || rc == -ENOSYS) {
		printf("SKIP: no userfaultfd here (%s)\n", libuffd_last_error());
		return 77;
	}
	CHECK(rc == 0);
	libuffd_monitor *m = NULL;
	CHECK(libuffd_monitor_new(&mo, &ops, NULL, NULL, &m) == 0);
	uint32_t id = 0;
	CHECK(libuffd_monitor_add_handle(m, h, &id) == 0);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	char *mem = (char *)mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED);
	CHECK(libuffd_monitor_add_region(m, id, mem, 2 * page, &r) == 0);
	CHECK(libuffd_monitor_start(m) == 0);
	CHECK(mem[page + 9] == 0); /* a fault, served with a zero page */
	CHECK(libuffd_monitor_stop(m) == 0);
	CHECK(libuffd_monitor_wait(m) == 0);
	LIBUFFD_OPTS(libuffd_monitor_stats, st);
	CHECK(libuffd_monitor_get_stats(m, &st) == 0);
	CHECK(st.faults >= 1 && st.resolved >= 1 && st.failed == 0);
	CHECK(log_calls == 0);
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	munmap(mem, 2 * page);

	printf("%d checks, %d failed\n", checks, failed);
	return failed ? 1 : 0;
}
