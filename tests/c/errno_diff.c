/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * errno_diff: libuffd answers exactly as the kernel does.
 *
 * A table of argument cases (unmapped, partly mapped, misaligned, zero
 * length, wrapping, overlapping registrations, a pending REMOVE event,
 * unknown and empty modes, WP|DONTWAKE, hugetlb, shmem, read-only and
 * sealed files, poisoned and populated pages, MOVE, ...) is run three
 * times on identically prepared memory:
 *
 *   raw     raw ioctls (<linux/userfaultfd.h>) on
 *           userfaultfd(O_CLOEXEC|O_NONBLOCK|UFFD_USER_MODE_ONLY);
 *   open    libuffd_* calls on a handle from libuffd_open() with the
 *           flags that give the same fd;
 *   from_fd libuffd_* calls on a handle adopted with
 *           libuffd_handle_from_fd() from such a raw fd.
 *
 * Every step of a row records the C-visible result: for the fill and move
 * operations the kernel's result field (bytes done; -errno) or -errno
 * when the kernel did not write it, for the others 0 or -errno, plus the
 * ioctl mask of a successful registration. Each libuffd side must record
 * exactly what the raw side recorded, and when a libuffd call fails,
 * errno must equal the returned errno and libuffd_last_error() must name
 * the function; for the key cases its text must also carry libuffd's
 * diagnosis (what was wrong: "nothing is mapped", "2048 KiB", ...). The
 * count of differing rows is printed and must be 0.
 *
 * All sides use the same features (the wanted set, as far as the kernel
 * offers it).
 */
#include "harness.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

/*
 * The installed <linux/userfaultfd.h> may predate POISON (6.6) and MOVE
 * (6.8); the kernel's uAPI definitions of those, where missing.
 */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16)
#endif
#ifndef UFFDIO_CONTINUE_MODE_WP
#define UFFDIO_CONTINUE_MODE_WP ((__u64)1 << 1)
#endif
#ifndef UFFDIO_POISON
struct uffdio_poison {
	struct uffdio_range range;
#define UFFDIO_POISON_MODE_DONTWAKE ((__u64)1 << 0)
	__u64 mode;
	__s64 updated;
};
#define UFFDIO_POISON _IOWR(UFFDIO, 0x08, struct uffdio_poison)
#endif
#ifndef UFFDIO_MOVE
struct uffdio_move {
	__u64 dst;
	__u64 src;
	__u64 len;
#define UFFDIO_MOVE_MODE_DONTWAKE ((__u64)1 << 0)
#define UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES ((__u64)1 << 1)
	__u64 mode;
	__s64 move;
};
#define UFFDIO_MOVE _IOWR(UFFDIO, 0x05, struct uffdio_move)
#endif

#define P ((uint64_t)4096)
#define H ((uint64_t)2 << 20)

enum kind { RAW, LIB_OPEN, LIB_FD, NSIDES };
static const char *const side_names[NSIDES] = { "raw", "open", "from_fd" };

struct side {
	enum kind kind;
	int fd;
	libuffd_handle *h;
};

/* What one side recorded for one row. */
#define MAX_STEPS 48
struct rec {
	int n;
	const char *what[MAX_STEPS];
	int64_t val[MAX_STEPS];
	int bad_errno; /* a failing libuffd call left errno != its result */
	int no_text;   /* ... or left no last error naming it */
	int no_why;    /* libuffd_last_error() lacked the expected diagnosis */
};

static uint64_t features;
static int verbose; /* ERRNO_DIFF_VERBOSE=1: print libuffd's text of every failure */
static int have_huge;
static struct rec *cur_rec;

static void rec(const char *what, int64_t v)
{
	if (cur_rec->n < MAX_STEPS) {
		cur_rec->what[cur_rec->n] = what;
		cur_rec->val[cur_rec->n] = v;
		cur_rec->n++;
	}
}

/* Check errno and last_error after a libuffd call that returned `rc`. */
static int64_t lib_done(int64_t rc, const char *func)
{
	if (rc < 0) {
		if (errno != (int)-rc)
			cur_rec->bad_errno++;
		const char *t = libuffd_last_error();
		if (!t || !strstr(t, func))
			cur_rec->no_text++;
		if (verbose)
			printf("    %s\n", t ? t : "(null)");
	}
	return rc;
}

/* The raw side's result: the field when the kernel wrote it, or -errno
 * (call it after the ioctl, not in the same expression). */
static int64_t raw_fill(int rc, int64_t field)
{
	if (rc == 0)
		return field;
	if (field != 0)
		return field;
	return -errno;
}

static int64_t raw_plain(int rc)
{
	return rc == 0 ? 0 : -errno;
}

/* The libuffd sides: the last failure's text must contain `needle` (the
 * diagnosis libuffd adds to the kernel's errno). Nothing on the raw side. */
static void s_why(const struct side *s, const char *needle)
{
	if (s->h == NULL)
		return;
	const char *t = libuffd_last_error();
	if (!t || !strstr(t, needle)) {
		cur_rec->no_why++;
		printf("  text lacks \"%s\": %s\n", needle, t ? t : "(null)");
	}
}

/* ---- the operations, on either side ---- */

static void s_register(struct side *s, const char *what, uint64_t start, uint64_t len, uint64_t mode)
{
	uint64_t io = 0;
	int64_t r;
	if (s->kind == RAW) {
		struct uffdio_register a = { .range = { start, len }, .mode = mode };
		r = raw_plain(ioctl(s->fd, UFFDIO_REGISTER, &a));
		io = a.ioctls;
	} else {
		errno = 0;
		r = lib_done(libuffd_register(s->h, (void *)(uintptr_t)start, len, mode, &io),
			     "libuffd_register");
	}
	rec(what, r);
	if (r == 0)
		rec("  ioctls", (int64_t)io);
}

static void s_unregister(struct side *s, const char *what, uint64_t start, uint64_t len)
{
	int64_t r;
	if (s->kind == RAW) {
		struct uffdio_range a = { start, len };
		r = raw_plain(ioctl(s->fd, UFFDIO_UNREGISTER, &a));
	} else {
		errno = 0;
		r = lib_done(libuffd_unregister(s->h, (void *)(uintptr_t)start, len), "libuffd_unregister");
	}
	rec(what, r);
}

static void s_wake(struct side *s, const char *what, uint64_t start, uint64_t len)
{
	int64_t r;
	if (s->kind == RAW) {
		struct uffdio_range a = { start, len };
		r = raw_plain(ioctl(s->fd, UFFDIO_WAKE, &a));
	} else {
		errno = 0;
		r = lib_done(libuffd_wake(s->h, (void *)(uintptr_t)start, len), "libuffd_wake");
	}
	rec(what, r);
}

static void s_copy(struct side *s, const char *what, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode)
{
	int64_t r;
	if (s->kind == RAW) {
		struct uffdio_copy a = { .dst = dst, .src = src, .len = len, .mode = mode };
		int rc = ioctl(s->fd, UFFDIO_COPY, &a);
		r = raw_fill(rc, a.copy);
	} else {
		errno = 0;
		r = lib_done(libuffd_copy(s->h, (void *)(uintptr_t)dst, (const void *)(uintptr_t)src, len, mode),
			     "libuffd_copy");
	}
	rec(what, r);
}

static void s_zeropage(struct side *s, const char *what, uint64_t start, uint64_t len, uint64_t mode)
{
	int64_t r;
	if (s->kind == RAW) {
		struct uffdio_zeropage a = { .range = { start, len }, .mode = mode };
		int rc = ioctl(s->fd, UFFDIO_ZEROPAGE, &a);
		r = raw_fill(rc, a.zeropage);
	} else {
		errno = 0;
		r = lib_done(libuffd_zeropage(s->h, (void *)(uintptr_t)start, len, mode), "libuffd_zeropage");
	}
	rec(what, r);
}

static void s_continue(struct side *s, const char *what, uint64_t start, uint64_t len, uint64_t mode)
{
	int64_t r;
	if (s->kind == RAW) {
		struct uffdio_continue a = { .range = { start, len }, .mode = mode };
		int rc = ioctl(s->fd, UFFDIO_CONTINUE, &a);
		r = raw_fill(rc, a.mapped);
	} else {
		errno = 0;
		r = lib_done(libuffd_continue(s->h, (void *)(uintptr_t)start, len, mode), "libuffd_continue");
	}
	rec(what, r);
}

static void s_poison(struct side *s, const char *what, uint64_t start, uint64_t len, uint64_t mode)
{
	int64_t r;
	if (s->kind == RAW) {
		struct uffdio_poison a = { .range = { start, len }, .mode = mode };
		int rc = ioctl(s->fd, UFFDIO_POISON, &a);
		r = raw_fill(rc, a.updated);
	} else {
		errno = 0;
		r = lib_done(libuffd_poison(s->h, (void *)(uintptr_t)start, len, mode), "libuffd_poison");
	}
	rec(what, r);
}

static void s_move(struct side *s, const char *what, uint64_t dst, uint64_t src, uint64_t len, uint64_t mode)
{
	int64_t r;
	if (s->kind == RAW) {
		struct uffdio_move a = { .dst = dst, .src = src, .len = len, .mode = mode };
		int rc = ioctl(s->fd, UFFDIO_MOVE, &a);
		r = raw_fill(rc, a.move);
	} else {
		errno = 0;
		r = lib_done(libuffd_move(s->h, (void *)(uintptr_t)dst, (void *)(uintptr_t)src, len, mode),
			     "libuffd_move");
	}
	rec(what, r);
}

static void s_wp(struct side *s, const char *what, uint64_t start, uint64_t len, uint64_t mode)
{
	int64_t r;
	if (s->kind == RAW) {
		struct uffdio_writeprotect a = { .range = { start, len }, .mode = mode };
		r = raw_plain(ioctl(s->fd, UFFDIO_WRITEPROTECT, &a));
	} else {
		errno = 0;
		r = lib_done(libuffd_writeprotect(s->h, (void *)(uintptr_t)start, len, mode),
			     "libuffd_writeprotect");
	}
	rec(what, r);
}

/* ---- memory, prepared the same way for every side ---- */

#define MAX_MAPS 16
static struct {
	uint64_t addr, len;
} maps[MAX_MAPS];
static int nmaps;

static uint64_t track(void *p, uint64_t len)
{
	if (p == MAP_FAILED)
		FATAL("mmap of %#llx bytes: %s", (unsigned long long)len, strerror(errno));
	if (nmaps == MAX_MAPS)
		FATAL("too many mappings in one row");
	maps[nmaps].addr = (uint64_t)(uintptr_t)p;
	maps[nmaps].len = len;
	nmaps++;
	return (uint64_t)(uintptr_t)p;
}

static void unmap_all(void)
{
	for (int i = 0; i < nmaps; i++)
		munmap((void *)(uintptr_t)maps[i].addr, maps[i].len);
	nmaps = 0;
}

static uint64_t anon(uint64_t len)
{
	return track(mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), len);
}

/* An address range nothing is mapped at (mapped, then unmapped). */
static uint64_t unmapped(uint64_t len)
{
	void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		FATAL("mmap: %s", strerror(errno));
	munmap(p, len);
	return (uint64_t)(uintptr_t)p;
}

static int memfd(const char *name, unsigned flags, uint64_t size)
{
	int fd = memfd_create(name, MFD_CLOEXEC | flags);
	if (fd < 0)
		FATAL("memfd_create: %s", strerror(errno));
	if (ftruncate(fd, (off_t)size) != 0)
		FATAL("ftruncate: %s", strerror(errno));
	return fd;
}

/* shmem; *fdp (if given) keeps the memfd open for a second mapping. */
static uint64_t shmem(uint64_t len, int *fdp)
{
	int fd = memfd("errno_diff", 0, len);
	uint64_t a = track(mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), len);
	if (fdp)
		*fdp = fd;
	else
		close(fd);
	return a;
}

static uint64_t huge_shared(uint64_t len)
{
	int fd = memfd("errno_diff_huge", MFD_HUGETLB, len);
	uint64_t a = track(mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), len);
	close(fd);
	return a;
}

static uint64_t huge_private(uint64_t len)
{
	return track(mmap(NULL, len, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0), len);
}

/* ---- a pending REMOVE event ---- */

struct remover {
	void *addr;
	size_t len;
};

static void *remove_thread(void *arg)
{
	struct remover *r = arg;
	/* Blocks until the REMOVE event is read. */
	madvise(r->addr, r->len, MADV_DONTNEED);
	return NULL;
}

/* Start madvise(DONTNEED) of a registered range in another thread and
 * wait until its REMOVE event is queued on `fd`. */
static pthread_t start_remove(int fd, struct remover *r)
{
	pthread_t t;
	if (pthread_create(&t, NULL, remove_thread, r) != 0)
		FATAL("pthread_create");
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	if (poll(&pfd, 1, 10000) != 1)
		FATAL("no REMOVE event within 10 s");
	return t;
}

/* Read every queued message (the fd is non-blocking). */
static void drain(int fd)
{
	struct uffd_msg m[8];
	while (read(fd, m, sizeof m) > 0) {
	}
}

static void finish_remove(int fd, pthread_t t)
{
	drain(fd);
	pthread_join(t, NULL);
}

/* ---- the rows ---- */

static uint8_t *buf; /* source data: 2 huge pages */

static void row_register_basic(struct side *s)
{
	uint64_t a = anon(2 * P);
	s_register(s, "register anon MISSING", a, 2 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_register(s, "re-register same fd, MISSING|WP", a, 2 * P,
		   UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	s_unregister(s, "unregister", a, 2 * P);
	s_unregister(s, "unregister again (not registered)", a, 2 * P);
}

static void row_unmapped(struct side *s)
{
	uint64_t a = unmapped(4 * P);
	s_register(s, "register unmapped", a, 4 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_why(s, "nothing is mapped");
	s_unregister(s, "unregister unmapped", a, 4 * P);
	s_why(s, "nothing is mapped");
	s_wake(s, "wake unmapped", a, 4 * P);
	s_copy(s, "copy to unmapped", a, (uint64_t)(uintptr_t)buf, P, 0);
	s_zeropage(s, "zeropage unmapped", a, P, 0);
	s_wp(s, "writeprotect unmapped", a, P, UFFDIO_WRITEPROTECT_MODE_WP);
}

static void row_below_min(struct side *s)
{
	s_register(s, "register page 0", 0, P, UFFDIO_REGISTER_MODE_MISSING);
	s_why(s, "vm.mmap_min_addr");
	s_unregister(s, "unregister page 0", 0, P);
	s_wake(s, "wake page 0", 0, P);
	s_copy(s, "copy to page 0", 0, (uint64_t)(uintptr_t)buf, P, 0);
}

static void row_hole(struct side *s)
{
	uint64_t a = anon(3 * P);
	munmap((void *)(uintptr_t)(a + P), P);
	s_register(s, "register with a hole inside", a, 3 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_zeropage(s, "zeropage across the hole", a, 3 * P, 0);
	s_copy(s, "copy into the hole", a + P, (uint64_t)(uintptr_t)buf, P, 0);
	s_unregister(s, "unregister with a hole inside", a, 3 * P);
	s_register(s, "register hole only", a + P, P, UFFDIO_REGISTER_MODE_MISSING);
	s_why(s, "nothing is mapped");
}

static void row_tail_unmapped(struct side *s)
{
	uint64_t a = anon(4 * P);
	munmap((void *)(uintptr_t)(a + 2 * P), 2 * P);
	s_register(s, "register, tail unmapped", a, 4 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_unregister(s, "unregister, tail unmapped", a, 4 * P);
	uint64_t b = unmapped(4 * P);
	uint64_t c = track(mmap((void *)(uintptr_t)(b + 2 * P), 2 * P, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0), 2 * P);
	(void)c;
	s_register(s, "register, head unmapped", b, 4 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_unregister(s, "unregister, head unmapped", b, 4 * P);
}

static void row_misaligned(struct side *s)
{
	uint64_t a = anon(2 * P);
	const uint64_t M = UFFDIO_REGISTER_MODE_MISSING;
	s_register(s, "register start+1", a + 1, P, M);
	s_why(s, "not aligned");
	s_register(s, "register start+8", a + 8, P, M);
	s_register(s, "register len 100", a, 100, M);
	s_why(s, "not a multiple");
	s_register(s, "register len P+1", a, P + 1, M);
	s_register(s, "register len 0", a, 0, M);
	s_why(s, "length is 0");
	s_unregister(s, "unregister start+1", a + 1, P);
	s_unregister(s, "unregister len 100", a, 100);
	s_unregister(s, "unregister len 0", a, 0);
	s_wake(s, "wake start+1", a + 1, P);
	s_wake(s, "wake len 0", a, 0);
	s_register(s, "register ok", a, 2 * P, M);
	s_copy(s, "copy dst+1", a + 1, (uint64_t)(uintptr_t)buf, P, 0);
	s_copy(s, "copy len 100", a, (uint64_t)(uintptr_t)buf, 100, 0);
	s_zeropage(s, "zeropage start+1", a + 1, P, 0);
	s_zeropage(s, "zeropage len P/2", a, P / 2, 0);
	s_poison(s, "poison start+1", a + 1, P, 0);
	s_continue(s, "continue start+1", a + 1, P, 0);
	s_wp(s, "writeprotect start+1", a + 1, P, 0);
	s_move(s, "move dst+1", a + 1, (uint64_t)(uintptr_t)buf, P, 0);
	s_move(s, "move src+1", a, (uint64_t)(uintptr_t)buf + 1, P, 0);
	s_why(s, "src start");
	s_unregister(s, "unregister ok", a, 2 * P);
}

static void row_zero_len(struct side *s)
{
	uint64_t a = anon(2 * P);
	s_register(s, "register", a, 2 * P, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	s_copy(s, "copy len 0", a, (uint64_t)(uintptr_t)buf, 0, 0);
	s_why(s, "length is 0");
	s_zeropage(s, "zeropage len 0", a, 0, 0);
	s_continue(s, "continue len 0", a, 0, 0);
	s_poison(s, "poison len 0", a, 0, 0);
	s_move(s, "move len 0", a, (uint64_t)(uintptr_t)buf, 0, 0);
	s_wp(s, "writeprotect len 0", a, 0, UFFDIO_WRITEPROTECT_MODE_WP);
	s_wake(s, "wake len 0", a, 0);
	s_unregister(s, "unregister len 0", a, 0);
	s_unregister(s, "unregister", a, 2 * P);
}

static void row_wrap(struct side *s)
{
	const uint64_t top = UINT64_MAX - P + 1;
	const uint64_t M = UFFDIO_REGISTER_MODE_MISSING;
	uint64_t a = anon(2 * P);
	s_register(s, "register wrapping", top, 2 * P, M);
	s_why(s, "wraps");
	s_register(s, "register huge len", a, UINT64_MAX - P + 1, M);
	s_register(s, "register at 1<<47", (uint64_t)1 << 47, P, M);
	s_register(s, "register at 1<<56", (uint64_t)1 << 56, P, M);
	s_register(s, "register len > INT64_MAX", a, (uint64_t)INT64_MAX + 1, M);
	s_unregister(s, "unregister wrapping", top, 2 * P);
	s_wake(s, "wake wrapping", top, 2 * P);
	s_register(s, "register ok", a, 2 * P, M);
	s_copy(s, "copy dst wrapping", top, (uint64_t)(uintptr_t)buf, 2 * P, 0);
	s_copy(s, "copy src wrapping", a, top, 2 * P, 0);
	s_why(s, "src");
	s_copy(s, "copy len > INT64_MAX", a, (uint64_t)(uintptr_t)buf, (uint64_t)INT64_MAX + 1, 0);
	s_zeropage(s, "zeropage wrapping", top, 2 * P, 0);
	s_zeropage(s, "zeropage len SIZE_MAX&~4095", a, UINT64_MAX - P + 1, 0);
	s_move(s, "move src wrapping", a, top, 2 * P, 0);
	s_wp(s, "writeprotect wrapping", top, 2 * P, 0);
	s_unregister(s, "unregister ok", a, 2 * P);
}

static void row_ebusy(struct side *s, int other)
{
	uint64_t a = anon(4 * P);
	struct uffdio_register r = { .range = { a, 2 * P }, .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (ioctl(other, UFFDIO_REGISTER, &r) != 0)
		FATAL("other uffd: register: %s", strerror(errno));
	s_register(s, "register range owned by another uffd", a, 2 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_why(s, "another userfaultfd");
	s_register(s, "register overlapping it", a + P, 2 * P, UFFDIO_REGISTER_MODE_WP);
	s_register(s, "register the free part", a + 2 * P, 2 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_unregister(s, "unregister across both", a, 4 * P);
	s_copy(s, "copy into the other's range", a, (uint64_t)(uintptr_t)buf, P, 0);
	struct uffdio_range u = { a, 2 * P };
	ioctl(other, UFFDIO_UNREGISTER, &u);
	s_register(s, "register after the other let go", a, 4 * P, UFFDIO_REGISTER_MODE_MISSING);
}

static void row_modes(struct side *s)
{
	uint64_t a = anon(2 * P);
	uint64_t u = unmapped(P);
	s_register(s, "register mode 0", a, P, 0);
	s_why(s, "mode is 0");
	s_register(s, "register mode 0, unmapped", u, P, 0);
	s_register(s, "register mode 0, len 0", a, 0, 0);
	s_register(s, "register mode 1<<3", a, P, 1 << 3);
	s_register(s, "register mode MISSING|1<<3", a, P, UFFDIO_REGISTER_MODE_MISSING | 1 << 3);
	s_register(s, "register mode 1<<63", a, P, (uint64_t)1 << 63);
	s_why(s, "unknown mode bits");
	s_register(s, "register mode 1<<3, len 0", a, 0, 1 << 3);
	s_register(s, "register MINOR on anon", a, P, UFFDIO_REGISTER_MODE_MINOR);
	s_why(s, "MINOR registration needs shmem or hugetlb");
	s_register(s, "register MISSING|WP", a, 2 * P, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	s_copy(s, "copy mode 1<<5", a, (uint64_t)(uintptr_t)buf, P, 1 << 5);
	s_zeropage(s, "zeropage mode 2", a, P, 2);
	s_continue(s, "continue mode 4", a, P, 4);
	s_poison(s, "poison mode 2", a, P, 2);
	s_move(s, "move mode 4", a, (uint64_t)(uintptr_t)buf, P, 4);
	s_wp(s, "writeprotect mode 4", a, P, 4);
	s_wp(s, "writeprotect WP|DONTWAKE", a, P,
	     UFFDIO_WRITEPROTECT_MODE_WP | UFFDIO_WRITEPROTECT_MODE_DONTWAKE);
	s_why(s, "MODE_DONTWAKE together");
	s_wp(s, "writeprotect WP|DONTWAKE, len 0", a, 0,
	     UFFDIO_WRITEPROTECT_MODE_WP | UFFDIO_WRITEPROTECT_MODE_DONTWAKE);
	s_wp(s, "writeprotect WP", a, P, UFFDIO_WRITEPROTECT_MODE_WP);
	s_wp(s, "writeprotect 0", a, P, 0);
	s_wp(s, "writeprotect DONTWAKE", a, P, UFFDIO_WRITEPROTECT_MODE_DONTWAKE);
	s_unregister(s, "unregister", a, 2 * P);
}

static void row_wp_on_non_wp(struct side *s)
{
	uint64_t a = anon(2 * P);
	s_register(s, "register MISSING only", a, 2 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_copy(s, "copy MODE_WP", a, (uint64_t)(uintptr_t)buf, P, UFFDIO_COPY_MODE_WP);
	s_wp(s, "writeprotect WP", a, P, UFFDIO_WRITEPROTECT_MODE_WP);
	s_wp(s, "writeprotect 0", a, P, 0);
	s_continue(s, "continue MODE_WP on anon", a, P, UFFDIO_CONTINUE_MODE_WP);
	s_copy(s, "copy plain", a, (uint64_t)(uintptr_t)buf, P, 0);
}

static void row_populated(struct side *s)
{
	uint64_t a = anon(3 * P);
	s_register(s, "register", a, 3 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_zeropage(s, "zeropage page 1", a + P, P, 0);
	s_copy(s, "copy pages 0-1 (partial)", a, (uint64_t)(uintptr_t)buf, 2 * P, 0);
	s_copy(s, "copy page 1 (populated)", a + P, (uint64_t)(uintptr_t)buf, P, 0);
	s_zeropage(s, "zeropage page 0 (populated)", a, P, 0);
	s_zeropage(s, "zeropage pages 1-2", a + P, 2 * P, 0);
	s_copy(s, "copy page 2 DONTWAKE", a + 2 * P, (uint64_t)(uintptr_t)buf, P, UFFDIO_COPY_MODE_DONTWAKE);
	s_wake(s, "wake", a, 3 * P);
	s_copy(s, "copy to unregistered anon", anon(P), (uint64_t)(uintptr_t)buf, P, 0);
}

static void row_bad_src(struct side *s)
{
	uint64_t a = anon(4 * P);
	uint64_t u = unmapped(P);
	s_register(s, "register", a, 4 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_copy(s, "copy src NULL", a, 0, P, 0);
	s_copy(s, "copy src unmapped", a, u, P, 0);
	s_copy(s, "copy src PROT_NONE", a,
	       track(mmap(NULL, P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), P), P, 0);
	s_copy(s, "copy src len 0", a, u, 0, 0);
	s_copy(s, "copy src unaligned", a + P, (uint64_t)(uintptr_t)buf + 1, P, 0);
	s_copy(s, "copy src at 1<<47", a + 2 * P, (uint64_t)1 << 47, P, 0);
}

static void row_pending_remove(struct side *s)
{
	if (!(features & UFFD_FEATURE_EVENT_REMOVE))
		return;
	uint64_t a = anon(4 * P);
	uint64_t b = anon(P);
	uint64_t src = anon(P);
	memset((void *)(uintptr_t)src, 7, P);
	const uint64_t top = UINT64_MAX - P + 1;
	s_register(s, "register", a, 4 * P, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	s_zeropage(s, "zeropage 2 pages", a, 2 * P, 0);
	struct remover r = { (void *)(uintptr_t)a, P };
	pthread_t t = start_remove(s->fd, &r);
	s_copy(s, "pending: copy len 0", a + 2 * P, (uint64_t)(uintptr_t)buf, 0, 0);
	s_why(s, "length is 0");
	s_zeropage(s, "pending: zeropage len 0", a + 2 * P, 0, 0);
	s_continue(s, "pending: continue len 0", a + 2 * P, 0, 0);
	s_poison(s, "pending: poison len 0", a + 2 * P, 0, 0);
	s_move(s, "pending: move len 0", a + 2 * P, src, 0, 0);
	s_wp(s, "pending: writeprotect len 0", a + 2 * P, 0, UFFDIO_WRITEPROTECT_MODE_WP);
	s_copy(s, "pending: copy", a + 2 * P, (uint64_t)(uintptr_t)buf, P, 0);
	s_copy(s, "pending: copy unknown mode", a + 2 * P, (uint64_t)(uintptr_t)buf, P, 1 << 9);
	s_why(s, "unknown mode bits");
	s_copy(s, "pending: copy misaligned", a + 2 * P + 1, (uint64_t)(uintptr_t)buf, P, 0);
	s_copy(s, "pending: copy wrapping", top, (uint64_t)(uintptr_t)buf, 2 * P, 0);
	s_copy(s, "pending: copy len > INT64_MAX", a, (uint64_t)(uintptr_t)buf, (uint64_t)INT64_MAX + 1, 0);
	s_copy(s, "pending: copy to unregistered", b, (uint64_t)(uintptr_t)buf, P, 0);
	s_zeropage(s, "pending: zeropage", a + 3 * P, P, 0);
	s_poison(s, "pending: poison", a + 3 * P, P, 0);
	s_move(s, "pending: move", a + 3 * P, src, P, 0);
	s_wp(s, "pending: writeprotect WP|DONTWAKE", a, P,
	     UFFDIO_WRITEPROTECT_MODE_WP | UFFDIO_WRITEPROTECT_MODE_DONTWAKE);
	s_wp(s, "pending: writeprotect WP", a + P, P, UFFDIO_WRITEPROTECT_MODE_WP);
	s_wake(s, "pending: wake", a, 4 * P);
	s_wake(s, "pending: wake len 0", a, 0);
	s_register(s, "pending: register", b, P, UFFDIO_REGISTER_MODE_MISSING);
	s_register(s, "pending: register mode 0", b, P, 0);
	finish_remove(s->fd, t);
	s_copy(s, "after: copy len 0", a + 2 * P, (uint64_t)(uintptr_t)buf, 0, 0);
	s_copy(s, "after: copy", a + 2 * P, (uint64_t)(uintptr_t)buf, P, 0);
	s_wp(s, "after: writeprotect WP", a + P, P, UFFDIO_WRITEPROTECT_MODE_WP);
}

static void row_continue_anon(struct side *s)
{
	uint64_t a = anon(P);
	s_register(s, "register MISSING", a, P, UFFDIO_REGISTER_MODE_MISSING);
	s_continue(s, "continue on anon", a, P, 0);
	s_why(s, "anonymous private memory");
}

static void row_poison(struct side *s)
{
	if (!(features & UFFD_FEATURE_POISON))
		return;
	uint64_t a = anon(3 * P);
	s_register(s, "register", a, 3 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_poison(s, "poison page 0", a, P, 0);
	s_copy(s, "copy onto the poisoned page", a, (uint64_t)(uintptr_t)buf, P, 0);
	s_zeropage(s, "zeropage onto it", a, P, 0);
	s_poison(s, "poison it again", a, P, 0);
	s_poison(s, "poison pages 0-2 (partial)", a, 3 * P, 0);
	s_poison(s, "poison page 1 DONTWAKE", a + P, P, UFFDIO_POISON_MODE_DONTWAKE);
	s_poison(s, "poison unregistered", anon(P), P, 0);
}

static void row_move(struct side *s)
{
	if (!(features & UFFD_FEATURE_MOVE))
		return;
	uint64_t dst = anon(4 * P);
	uint64_t src = anon(4 * P);
	memset((void *)(uintptr_t)src, 9, 2 * P); /* pages 0-1 populated, 2-3 holes */
	uint64_t sh = shmem(P, NULL);
	memset((void *)(uintptr_t)sh, 1, P);
	s_register(s, "register dst", dst, 4 * P, UFFDIO_REGISTER_MODE_MISSING);
	s_move(s, "move page 0", dst, src, P, 0);
	s_move(s, "move onto populated dst", dst, src + P, P, 0);
	s_move(s, "move from a hole", dst + P, src, P, 0);
	s_move(s, "move from a hole, ALLOW_SRC_HOLES", dst + P, src + 2 * P, P, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES);
	s_move(s, "move pages 1-2 from src 1-2", dst + 2 * P, src + P, 2 * P, 0);
	s_move(s, "move from shmem", dst + 3 * P, sh, P, 0);
	s_why(s, "MOVE needs anonymous");
	s_move(s, "move to unregistered", anon(P), src + P, P, 0);
	s_move(s, "move to unmapped", unmapped(P), src + P, P, 0);
	s_move(s, "move from unmapped", dst + 3 * P, unmapped(P), P, 0);
	s_move(s, "move overlapping", dst + 3 * P, dst + 3 * P, P, 0);
}

static void row_shmem(struct side *s)
{
	if (!(features & UFFD_FEATURE_MINOR_SHMEM) || !(features & UFFD_FEATURE_MISSING_SHMEM))
		return;
	int fd;
	uint64_t a = shmem(4 * P, &fd);
	/* Page 3 exists in the page cache (written through a second mapping). */
	uint64_t alias = track(mmap(NULL, 4 * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), 4 * P);
	close(fd);
	memset((void *)(uintptr_t)(alias + 3 * P), 5, P);
	s_register(s, "register MISSING|MINOR", a, 4 * P, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR);
	s_register(s, "register MISSING|MINOR|WP", a, 4 * P,
		   UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_MINOR | UFFDIO_REGISTER_MODE_WP);
	s_copy(s, "copy page 0", a, (uint64_t)(uintptr_t)buf, P, 0);
	s_zeropage(s, "zeropage page 1", a + P, P, 0);
	s_continue(s, "continue page 2 (no page-cache page)", a + 2 * P, P, 0);
	s_continue(s, "continue page 3", a + 3 * P, P, 0);
	s_continue(s, "continue page 3 again", a + 3 * P, P, 0);
	s_copy(s, "copy page 3 (populated)", a + 3 * P, (uint64_t)(uintptr_t)buf, P, 0);
	s_wp(s, "writeprotect page 0", a, P, UFFDIO_WRITEPROTECT_MODE_WP);
	s_unregister(s, "unregister", a, 4 * P);
}

static void row_hugetlb(struct side *s, int shared)
{
	if (!have_huge)
		return;
	uint64_t a = shared ? huge_shared(2 * H) : huge_private(2 * H);
	const uint64_t M = UFFDIO_REGISTER_MODE_MISSING;
	s_register(s, "register start+4K", a + P, H, M);
	s_why(s, "2048 KiB");
	s_register(s, "register len 4K", a, P, M);
	s_register(s, "register len H+4K", a, H + P, M);
	s_register(s, "register [H-4K, H+4K)", a + H - P, 2 * P, M);
	s_register(s, "register ok", a, 2 * H, M);
	s_zeropage(s, "zeropage a huge page", a, H, 0);
	s_why(s, "ZEROPAGE does not support hugetlb");
	s_copy(s, "copy 4K", a, (uint64_t)(uintptr_t)buf, P, 0);
	s_why(s, "2048 KiB");
	s_copy(s, "copy at +4K", a + P, (uint64_t)(uintptr_t)buf, H, 0);
	s_copy(s, "copy a huge page", a, (uint64_t)(uintptr_t)buf, H, 0);
	s_copy(s, "copy it again", a, (uint64_t)(uintptr_t)buf, H, 0);
	s_copy(s, "copy 2 huge pages (partial)", a, (uint64_t)(uintptr_t)buf, 2 * H, 0);
	if (features & UFFD_FEATURE_POISON)
		s_poison(s, "poison 4K", a + H, P, 0);
	s_continue(s, "continue", a + H, H, 0);
	s_unregister(s, "unregister start+4K", a + P, H);
	s_unregister(s, "unregister len 4K", a, P);
	s_unregister(s, "unregister ok", a, 2 * H);
}

static void row_files(struct side *s)
{
	/* A memfd reopened read-only: shared, not writable. */
	int fd = memfd("errno_diff_ro", 0, P);
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	int ro = open(path, O_RDONLY | O_CLOEXEC);
	if (ro < 0)
		FATAL("open %s: %s", path, strerror(errno));
	uint64_t a = track(mmap(NULL, P, PROT_READ, MAP_SHARED, ro, 0), P);
	uint64_t ap = track(mmap(NULL, P, PROT_READ, MAP_PRIVATE, ro, 0), P);
	close(ro);
	close(fd);
	s_register(s, "register read-only shared memfd", a, P, UFFDIO_REGISTER_MODE_MISSING);
	s_why(s, "without write permission");
	s_register(s, "register read-only shared memfd, MINOR", a, P, UFFDIO_REGISTER_MODE_MINOR);
	s_register(s, "register read-only private memfd", ap, P, UFFDIO_REGISTER_MODE_MISSING);
	s_unregister(s, "unregister read-only shared memfd", a, P);

	/* A write-sealed memfd. */
	fd = memfd_create("errno_diff_sealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, P) != 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) != 0)
		FATAL("sealed memfd: %s", strerror(errno));
	uint64_t b = track(mmap(NULL, P, PROT_READ, MAP_SHARED, fd, 0), P);
	close(fd);
	s_register(s, "register write-sealed memfd", b, P, UFFDIO_REGISTER_MODE_MISSING);
	s_why(s, "without write permission");

	/* A regular file (ext4 or whatever /tmp is), writable. */
	char tmpl[] = "/tmp/errno_diff_XXXXXX";
	fd = mkstemp(tmpl);
	if (fd < 0 || ftruncate(fd, P) != 0)
		FATAL("mkstemp: %s", strerror(errno));
	unlink(tmpl);
	uint64_t c = track(mmap(NULL, P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), P);
	close(fd);
	s_register(s, "register regular file mapping", c, P, UFFDIO_REGISTER_MODE_MISSING);
	s_why(s, "userfaultfd serves only");
	s_register(s, "register regular file, WP", c, P, UFFDIO_REGISTER_MODE_WP);
	/* Mixed: anon followed by the file mapping is refused as a whole. */
	s_register(s, "register PROT_NONE anon", track(mmap(NULL, P, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), P),
		   P, UFFDIO_REGISTER_MODE_MISSING);
}

/* ---- running the table ---- */

struct row {
	const char *name;
	void (*fn)(struct side *);
};

static int other_fd;
static void row_ebusy_(struct side *s) { row_ebusy(s, other_fd); }
static void row_hugetlb_shared(struct side *s) { row_hugetlb(s, 1); }
static void row_hugetlb_private(struct side *s) { row_hugetlb(s, 0); }

static const struct row rows[] = {
	{ "register, re-register, unregister", row_register_basic },
	{ "unmapped range", row_unmapped },
	{ "page 0 (below vm.mmap_min_addr)", row_below_min },
	{ "partly mapped: hole inside", row_hole },
	{ "partly mapped: head or tail unmapped", row_tail_unmapped },
	{ "misaligned start and length", row_misaligned },
	{ "zero length", row_zero_len },
	{ "wrapping and out-of-range", row_wrap },
	{ "registered with another uffd (EBUSY)", row_ebusy_ },
	{ "modes: unknown bits, empty, WP|DONTWAKE, MINOR on anon", row_modes },
	{ "MODE_WP on a non-WP registration", row_wp_on_non_wp },
	{ "populated pages (EEXIST, partial progress)", row_populated },
	{ "COPY with a bad src", row_bad_src },
	{ "pending REMOVE event (EAGAIN first)", row_pending_remove },
	{ "CONTINUE on anon", row_continue_anon },
	{ "poisoned pages", row_poison },
	{ "MOVE", row_move },
	{ "shmem/memfd: COPY, ZEROPAGE, CONTINUE", row_shmem },
	{ "hugetlb shared (2 MiB)", row_hugetlb_shared },
	{ "hugetlb private (2 MiB)", row_hugetlb_private },
	{ "read-only, sealed and regular file mappings", row_files },
};

static int raw_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		FATAL("userfaultfd: %s", strerror(errno));
	return fd;
}

static void raw_api(int fd, uint64_t f)
{
	struct uffdio_api api = { .api = UFFD_API, .features = f };
	if (ioctl(fd, UFFDIO_API, &api) != 0)
		FATAL("UFFDIO_API(%#llx): %s", (unsigned long long)f, strerror(errno));
}

/* A fresh side of `kind` (a fresh uffd per row: nothing carries over). */
static void open_side(struct side *s, enum kind kind)
{
	s->kind = kind;
	s->h = NULL;
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .features = features,
						       .required_features = features);
	switch (kind) {
	case RAW:
		s->fd = raw_uffd();
		raw_api(s->fd, features);
		return;
	case LIB_OPEN:
		o.flags = LIBUFFD_OPEN_NONBLOCK | LIBUFFD_OPEN_USER_ONLY;
		if (libuffd_open(&o, &s->h) != 0)
			FATAL("libuffd_open: %s", libuffd_last_error());
		break;
	case LIB_FD: {
		int fd = raw_uffd();
		if (libuffd_handle_from_fd(fd, &o, &s->h) != 0)
			FATAL("libuffd_handle_from_fd: %s", libuffd_last_error());
		close(fd); /* the handle has its own duplicate */
		break;
	}
	default:
		FATAL("bad side");
	}
	s->fd = libuffd_handle_fd(s->h);
	/* Both libuffd sides must be the same kind of fd as the raw one. */
	int fl = fcntl(s->fd, F_GETFL);
	if (!(fl & O_NONBLOCK))
		FATAL("%s: fd is not O_NONBLOCK", side_names[kind]);
	uint64_t got = 0;
	libuffd_handle_features(s->h, &got);
	if (got != features)
		FATAL("%s: features %#llx, expected %#llx", side_names[kind], (unsigned long long)got,
		      (unsigned long long)features);
}

static void close_side(struct side *s)
{
	if (s->h)
		libuffd_handle_free(s->h);
	else
		close(s->fd);
}

static const char *errname(int64_t v, char *b, size_t n)
{
	if (v >= 0)
		snprintf(b, n, "%lld", (long long)v);
	else
		snprintf(b, n, "-%s", libuffd_strerror((int)v));
	return b;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	verbose = getenv("ERRNO_DIFF_VERBOSE") != NULL;
	if (sysconf(_SC_PAGESIZE) != (long)P)
		h_skip("the table assumes 4 KiB base pages");
	buf = mmap(NULL, 2 * H, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		FATAL("mmap buf");
	memset(buf, 0x5a, 2 * H);

	/* The features every side asks for: what the kernel offers of these. */
	int probe = raw_uffd();
	struct uffdio_api api = { .api = UFFD_API };
	if (ioctl(probe, UFFDIO_API, &api) != 0)
		FATAL("UFFDIO_API: %s", strerror(errno));
	close(probe);
	const uint64_t wanted = UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_MISSING_HUGETLBFS |
				UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_MINOR_HUGETLBFS |
				UFFD_FEATURE_MINOR_SHMEM | UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
				UFFD_FEATURE_POISON | UFFD_FEATURE_MOVE | UFFD_FEATURE_THREAD_ID;
	features = api.features & wanted;
	printf("features %#llx\n", (unsigned long long)features);

	void *hp = mmap(NULL, H, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	have_huge = hp != MAP_FAILED && (features & UFFD_FEATURE_MISSING_HUGETLBFS);
	if (hp != MAP_FAILED)
		munmap(hp, H);
	if (!have_huge)
		printf("note: no 2 MiB huge pages; hugetlb rows skipped\n");

	other_fd = raw_uffd();
	raw_api(other_fd, 0);

	int nrows = (int)(sizeof rows / sizeof rows[0]);
	int differing = 0, steps = 0;
	for (int i = 0; i < nrows; i++) {
		static struct rec recs[NSIDES];
		memset(recs, 0, sizeof recs);
		for (int k = 0; k < NSIDES; k++) {
			struct side s;
			open_side(&s, (enum kind)k);
			cur_rec = &recs[k];
			rows[i].fn(&s);
			drain(s.fd);
			unmap_all();
			close_side(&s);
		}
		int differs = 0;
		for (int k = 1; k < NSIDES; k++) {
			if (recs[k].n != recs[0].n) {
				printf("  %s: %s recorded %d steps, raw %d\n", rows[i].name, side_names[k],
				       recs[k].n, recs[0].n);
				differs = 1;
			}
			int n = recs[k].n < recs[0].n ? recs[k].n : recs[0].n;
			for (int j = 0; j < n; j++) {
				if (recs[k].val[j] != recs[0].val[j]) {
					char b1[64], b2[64];
					printf("  DIFF [%s] %s: raw %s, %s %s\n", rows[i].name, recs[0].what[j],
					       errname(recs[0].val[j], b1, sizeof b1), side_names[k],
					       errname(recs[k].val[j], b2, sizeof b2));
					differs = 1;
				}
			}
			CHECK_MSG(recs[k].bad_errno == 0, "[%s] %s: errno differs from the returned errno %d times",
				  rows[i].name, side_names[k], recs[k].bad_errno);
			CHECK_MSG(recs[k].no_text == 0, "[%s] %s: no last error naming the function %d times",
				  rows[i].name, side_names[k], recs[k].no_text);
			CHECK_MSG(recs[k].no_why == 0, "[%s] %s: the expected diagnosis missing %d times",
				  rows[i].name, side_names[k], recs[k].no_why);
		}
		steps += recs[0].n;
		differing += differs;
		printf("%-4s %s (%d steps)\n", differs ? "DIFF" : "same", rows[i].name, recs[0].n);
		CHECK_MSG(!differs, "row [%s] differs from the raw ioctls", rows[i].name);
	}
	printf("%d rows, %d steps: %d differing rows\n", nrows, steps, differing);
	CHECK_EQ(differing, 0);
	close(other_fd);
	return h_finish();
}
