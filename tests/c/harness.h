/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * harness.h: the tiny test harness of libuffd's C tests.
 *
 * Include it first (it sets _GNU_SOURCE). Every CHECK prints file:line,
 * the expression and the values involved when it fails, and counts the
 * failure; a test ends with `return h_finish();`, which prints a summary
 * and returns 0 (all passed) or 1. h_skip() exits with 77, the "skipped"
 * code of tests/c/run.sh, and may be used only when the kernel lacks a
 * feature.
 */
#ifndef LIBUFFD_TEST_HARNESS_H
#define LIBUFFD_TEST_HARNESS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libuffd.h>

#define H_UNUSED __attribute__((unused))

static int h_checks H_UNUSED;
static int h_failed H_UNUSED;
static const char *h_section H_UNUSED = "";

/* Name the part of the test that follows (printed with failures). */
#define SECTION(name) (h_section = (name), printf("-- %s\n", h_section), fflush(stdout))

static inline void h_fail(const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static inline void h_fail(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	h_failed++;
	fprintf(stderr, "%s:%d: FAIL [%s] ", file, line, h_section);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

/* A boolean condition. */
#define CHECK(cond)                                                          \
	do {                                                                 \
		h_checks++;                                                  \
		if (!(cond))                                                 \
			h_fail(__FILE__, __LINE__, "%s", #cond);             \
	} while (0)

/* Like CHECK, with a printf-style explanation appended. */
#define CHECK_MSG(cond, ...)                                                 \
	do {                                                                 \
		h_checks++;                                                  \
		if (!(cond)) {                                               \
			char h_buf_[512];                                    \
			snprintf(h_buf_, sizeof h_buf_, __VA_ARGS__);        \
			h_fail(__FILE__, __LINE__, "%s: %s", #cond, h_buf_); \
		}                                                            \
	} while (0)

/* Two integers (any integer type; compared as 64-bit signed). */
#define CHECK_EQ(a, b)                                                       \
	do {                                                                 \
		long long h_a_ = (long long)(a), h_b_ = (long long)(b);      \
		h_checks++;                                                  \
		if (h_a_ != h_b_)                                            \
			h_fail(__FILE__, __LINE__,                           \
			       "%s == %s: got %lld (%#llx), expected %lld (%#llx)", \
			       #a, #b, h_a_, (unsigned long long)h_a_, h_b_, \
			       (unsigned long long)h_b_);                    \
	} while (0)

/* Two unsigned 64-bit values, printed in hex. */
#define CHECK_EQ_HEX(a, b)                                                   \
	do {                                                                 \
		unsigned long long h_a_ = (unsigned long long)(a);           \
		unsigned long long h_b_ = (unsigned long long)(b);           \
		h_checks++;                                                  \
		if (h_a_ != h_b_)                                            \
			h_fail(__FILE__, __LINE__,                           \
			       "%s == %s: got %#llx, expected %#llx", #a, #b, \
			       h_a_, h_b_);                                  \
	} while (0)

/* Two C strings (NULL-safe). */
#define CHECK_STREQ(a, b)                                                    \
	do {                                                                 \
		const char *h_a_ = (a), *h_b_ = (b);                         \
		h_checks++;                                                  \
		if (!h_a_ || !h_b_ || strcmp(h_a_, h_b_) != 0)               \
			h_fail(__FILE__, __LINE__,                           \
			       "%s == %s: got \"%s\", expected \"%s\"", #a,  \
			       #b, h_a_ ? h_a_ : "(null)",                   \
			       h_b_ ? h_b_ : "(null)");                      \
	} while (0)

/* `hay` contains `needle`. */
#define CHECK_CONTAINS(hay, needle)                                          \
	do {                                                                 \
		const char *h_h_ = (hay), *h_n_ = (needle);                  \
		h_checks++;                                                  \
		if (!h_h_ || !strstr(h_h_, h_n_))                            \
			h_fail(__FILE__, __LINE__,                           \
			       "%s contains \"%s\": got \"%s\"", #hay, h_n_, \
			       h_h_ ? h_h_ : "(null)");                      \
	} while (0)

/*
 * A libuffd call expected to fail with `expected` (a negative errno):
 * checks the return value, that errno was set to -expected, and that
 * libuffd_last_error() is non-NULL and names `func`.
 */
#define CHECK_FAILS(call, expected, func)                                    \
	do {                                                                 \
		long long h_exp_ = (long long)(expected);                    \
		errno = 0;                                                   \
		long long h_rc_ = (long long)(call);                         \
		int h_errno_ = errno;                                        \
		const char *h_le_ = libuffd_last_error();                       \
		h_checks++;                                                  \
		if (h_rc_ != h_exp_)                                         \
			h_fail(__FILE__, __LINE__,                           \
			       "%s: returned %lld (%s), expected %lld (%s); last error: %s", \
			       #call, h_rc_, libuffd_strerror((int)h_rc_),      \
			       h_exp_, libuffd_strerror((int)h_exp_),           \
			       h_le_ ? h_le_ : "(null)");                    \
		h_checks++;                                                  \
		if (h_rc_ < 0 && h_errno_ != (int)-h_rc_)                    \
			h_fail(__FILE__, __LINE__,                           \
			       "%s: errno is %d after a return of %lld",     \
			       #call, h_errno_, h_rc_);                      \
		h_checks++;                                                  \
		if (!h_le_)                                                  \
			h_fail(__FILE__, __LINE__,                           \
			       "%s: libuffd_last_error() is NULL", #call);      \
		else if (h_rc_ < 0 && !strstr(h_le_, (func)))                \
			h_fail(__FILE__, __LINE__,                           \
			       "%s: libuffd_last_error() does not name %s: \"%s\"", \
			       #call, (func), h_le_);                        \
	} while (0)

/* A libuffd call expected to succeed with a return value >= 0. */
#define CHECK_OK(call)                                                       \
	do {                                                                 \
		long long h_rc_ = (long long)(call);                         \
		h_checks++;                                                  \
		if (h_rc_ < 0)                                               \
			h_fail(__FILE__, __LINE__,                           \
			       "%s: failed with %lld (%s): %s", #call, h_rc_, \
			       libuffd_strerror((int)h_rc_), libuffd_last_error()); \
	} while (0)

/* A libuffd call expected to return exactly `value`. */
#define CHECK_RET(call, value)                                               \
	do {                                                                 \
		long long h_rc_ = (long long)(call);                         \
		long long h_v_ = (long long)(value);                         \
		h_checks++;                                                  \
		if (h_rc_ != h_v_)                                           \
			h_fail(__FILE__, __LINE__,                           \
			       "%s: returned %lld (%s), expected %lld; last error: %s", \
			       #call, h_rc_,                                 \
			       h_rc_ < 0 ? libuffd_strerror((int)h_rc_) : "ok", \
			       h_v_, libuffd_last_error());                     \
	} while (0)

/* Give up on the whole test (a failure that makes the rest meaningless). */
#define FATAL(...)                                                           \
	do {                                                                 \
		h_fail(__FILE__, __LINE__, __VA_ARGS__);                     \
		fprintf(stderr, "FATAL: giving up (%d checks, %d failed)\n", \
			h_checks, h_failed);                                 \
		exit(1);                                                     \
	} while (0)

/* Skip the test: only for a feature the running kernel lacks. */
static inline H_UNUSED void h_skip(const char *reason)
{
	printf("SKIP: %s\n", reason);
	fflush(stdout);
	exit(77);
}

/* Print the summary; the test's exit status. */
static inline H_UNUSED int h_finish(void)
{
	printf("%d checks, %d failed\n", h_checks, h_failed);
	fflush(stdout);
	return h_failed ? 1 : 0;
}

/* An anonymous private read-write mapping of `len` bytes, or FATAL. */
#include <sys/mman.h>
static inline H_UNUSED void *h_map_anon(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		FATAL("mmap(%zu): %s", len, strerror(errno));
	return p;
}

/* The base page size. */
static inline H_UNUSED size_t h_page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

#endif /* LIBUFFD_TEST_HARNESS_H */
