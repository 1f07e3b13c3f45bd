/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * fuzz_capi.c: a libFuzzer target over libuffd's C ABI.
 *
 * Each input is a program: a sequence of libuffd_* calls with arguments
 * chosen by the input bytes, run on real userfaultfds and real memory
 * (anonymous, memfd/shmem, hugetlb when pages are reserved), with good and
 * bad arguments: NULL handles/monitors/pointers, garbage pointers where the
 * kernel reads them (copy sources), unmapped holes, wrapping and
 * out-of-range ranges, misaligned starts and lengths, unknown mode and flag
 * bits, short/long/garbage option structs. Freed objects are never passed
 * again (the API cannot detect them), nor a handle for a monitor.
 *
 * After every call it checks the ABI's invariants and abort()s (a libFuzzer
 * crash, with the reproducer saved) when one breaks:
 *  - the return value is >= 0 or a negative errno in [-4095, -1];
 *  - on failure errno == -return value and libuffd_last_error() is a
 *    non-empty string; libuffd_strerror() never returns NULL;
 *  - out-parameters are not written on failure;
 *  - the cases the header promises -EINVAL for (NULL handle, monitor or
 *    pointer, register mode 0, read_events with max 0 or timeout < -1,
 *    get_stats with sz < sizeof(size_t), ...) return exactly -EINVAL;
 *  - byte counts are never more than the length asked for;
 *  - no call returns -ENOTRECOVERABLE (a panic caught at the boundary;
 *    `make fuzz` builds the library with overflow checks and debug
 *    assertions when a nightly toolchain is there, and with libFuzzer's
 *    coverage instrumentation so that the library's branches guide it);
 *  - monitors serve faults: a page of a ZERO or BUFFER region added before
 *    the monitor started is touched while it runs and must read back the
 *    region's contents (zeros / the buffer) unless the input itself placed
 *    something else there first (then it must not hang: libFuzzer's
 *    -timeout reports a hang).
 * Crashes, hangs and sanitizer reports (built with ASan+UBSan) are found by
 * libFuzzer itself.
 *
 * Every iteration ends by freeing all monitors and handles and dropping the
 * pages, so inputs do not depend on each other.
 *
 * Build: see `make fuzz-quick` (clang -fsanitize=fuzzer,address,undefined).
 * With -DFUZZ_STANDALONE (any C compiler) a main() replays the files named
 * on the command line instead (make test replays the committed corpus).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <pthread.h>
#include <signal.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <libuffd.h>

#define NHANDLES 4
#define NMONITORS 2
#define NREGIONS 8
#define MAX_OPS 64

static size_t page;
static size_t hpage;          /* huge page size, 0 if no hugetlb memory */
static char *anon;            /* 16 pages, private anonymous */
static char *shm;             /* 16 pages, memfd MAP_SHARED */
static char *huge;            /* 2 huge pages, private hugetlb, or NULL */
static char *arena;           /* PROT_NONE: "random" addresses land here */
#define RESERVATION (16UL << 20)  /* arena .. arena + RESERVATION: all test memory */
static char *hole;            /* an unmapped page */
static char *scratch;         /* 16 pages: source buffers, move sources */
static char *buffer_src;      /* 16 pages of pattern: BUFFER regions read it */
static int shm_fd = -1;
static int data_fd = -1;      /* memfd with 16 pages of pattern: FD regions */
static int null_fd = -1;      /* /dev/null */
#define ANON_PAGES 16
#define SHM_PAGES 16
#define ARENA_PAGES 64

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "fuzz_capi: INVARIANT BROKEN: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n  last error: %s\n", libuffd_last_error());
	abort();
}

/*
 * ASan's default fast unwinder follows frame pointers on every malloc; the
 * library's (Rust) code does not keep them, so %rbp may hold any pointer,
 * and one into registered memory that no monitor serves makes the unwinder
 * fault there and wait forever (seen: a hang inside malloc called by
 * libuffd_open). Unwind with the unwind tables instead.
 */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
	return "fast_unwind_on_malloc=0:handle_sigbus=1";
}

/* ---- input reader ------------------------------------------------------ */

struct in {
	const uint8_t *p;
	size_t n;
};

static uint8_t u8(struct in *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}
static uint32_t u32(struct in *in)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)u8(in) << (8 * i);
	return v;
}
static uint64_t u64(struct in *in)
{
	return (uint64_t)u32(in) | ((uint64_t)u32(in) << 32);
}

/* ---- state ------------------------------------------------------------- */

struct region {
	char *start;
	size_t len;
	uint32_t source;   /* LIBUFFD_SOURCE_ZERO or _BUFFER */
	int before_start;  /* added while the monitor was not running */
	int hinfo;         /* index in hinfo_monitors of its handle */
};

struct mon {
	libuffd_monitor *m;
	int running;        /* started, not stopped */
	int started;        /* start succeeded at least once, wait not yet done */
	int stop_asked;
	int starts;         /* successful starts */
	int stopped_ever;   /* libuffd_monitor_stop was called on it */
	uint32_t handle_ids[NHANDLES];
	int handle_slot[NHANDLES]; /* slot of the handle behind handle_ids[i] */
	int handle_hinfo[NHANDLES];
	int nids;
	struct region regions[NREGIONS];
	int nregions;
};

static libuffd_handle *handles[NHANDLES];
static uint64_t handle_feats[NHANDLES];
/* Per handle ever made in this input: how many monitors it was given to.
 * handle_info[s] indexes it for the live handle in slot s. */
static int hinfo_monitors[64];
static int hinfo_next;
static int handle_info[NHANDLES];
/* Faults may be touched only in regions whose page can come from one source
 * alone: any region with another source, a register/writeprotect on the
 * test memory done by hand, or a handle served by two monitors disables
 * the byte check (or the touch). FUZZ_STRICT=1 in the environment also
 * touches regions added while running and monitors started again (both
 * known problems of issue 14, fixed on other branches). */
static int nonzero_source_seen;
static int touch_unsafe;
static int strict;
static int trace;  /* FUZZ_TRACE=1: print every call and log line to stderr */
static struct mon mons[NMONITORS];
/* The input placed something by hand (copy, move, poison...) or unregistered:
 * touched pages may legitimately read otherwise, or raise SIGBUS (poison). */
static int placed_by_hand;
static int poisoned;
static atomic_int log_calls;
static unsigned long n_calls, n_touches;

/* ---- invariant checks -------------------------------------------------- */

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void check_ret(const char *what, long long r, int err)
{
	if (r >= 0)
		return;
	if (r < -4095)
		die("%s returned %lld: not a negative errno", what, r);
	if (err != (int)-r)
		die("%s returned %lld but errno is %d", what, r, err);
	/* A panic inside the library, caught at the C boundary. */
	if (r == -ENOTRECOVERABLE)
		die("%s returned -ENOTRECOVERABLE: a panic in the library", what);
	const char *le = libuffd_last_error();
	if (!le || !*le)
		die("%s failed (%lld) with an empty libuffd_last_error()", what, r);
	if (!libuffd_strerror((int)r))
		die("libuffd_strerror(%lld) is NULL", r);
}

/* Call EXPR, check the generic invariants; the value is in `r`. */
#define CALL(what, expr)                                \
	do {                                            \
		double t0_ = trace ? mono() : 0;        \
		errno = 0;                              \
		n_calls++;                              \
		r = (long long)(expr);                  \
		check_ret((what), r, errno);            \
		if (trace)                              \
			fprintf(stderr, "%s -> %lld (%.3f s)\n", (what), r, mono() - t0_); \
	} while (0)

#define EXPECT(what, cond)                                                  \
	do {                                                                \
		if (!(cond))                                                \
			die("%s: returned %lld, expected %s", (what), r, #cond); \
	} while (0)

/* ---- argument choosers ------------------------------------------------- */

/* A handle: a live one, or NULL. Returns the slot in *slot (-1 for NULL). */
static libuffd_handle *pick_handle(struct in *in, int *slot)
{
	uint8_t b = u8(in);
	int s = b % (NHANDLES + 1);
	if (s == NHANDLES || !handles[s]) {
		*slot = -1;
		return NULL;
	}
	*slot = s;
	return handles[s];
}

static struct mon *pick_mon(struct in *in)
{
	uint8_t b = u8(in);
	int s = b % (NMONITORS + 1);
	if (s == NMONITORS || !mons[s].m)
		return NULL;
	return &mons[s];
}

/* An address: in one of the test mappings (possibly misaligned), in the
 * PROT_NONE arena, unmapped, NULL, near the top, or in kernel space. */
static char *pick_addr(struct in *in)
{
	uint8_t kind = u8(in);
	uint8_t off = u8(in);
	switch (kind % 12) {
	case 0:
	case 1:
		return anon + (off % ANON_PAGES) * page;
	case 2:
	case 3:
		return shm + (off % SHM_PAGES) * page;
	case 4:
		if (huge)
			return huge + (off % 2) * hpage;
		return anon;
	case 5:
		return arena + (off % ARENA_PAGES) * page;
	case 6:
		return anon + (off % (ANON_PAGES * page));   /* misaligned */
	case 7:
		return hole;
	case 8:
		return NULL;
	case 9:
		return (char *)(uintptr_t)(UINT64_MAX - page + 1 - (off % 4) * page); /* wraps */
	case 10:
		return (char *)(uintptr_t)0xffffffff80000000ULL; /* kernel */
	default:
		if (huge)
			return huge + page * (off % 4);  /* hugetlb, misaligned */
		return arena + page * (off % ARENA_PAGES);
	}
}

static size_t pick_len(struct in *in)
{
	uint8_t kind = u8(in);
	switch (kind % 11) {
	case 0:
		return 0;
	case 1:
	case 2:
		return page;
	case 3:
		return 2 * page;
	case 4:
		return 4 * page;
	case 5:
		return hpage ? hpage : 8 * page;
	case 6:
		return 16 * page;
	case 7:
		return 1 + (u8(in) % 16) * 512;  /* not page-sized */
	case 8:
		return SIZE_MAX & ~(page - 1);
	case 9:
		return (size_t)1 << (12 + u8(in) % 36);
	default:
		return (size_t)u8(in) * page;
	}
}

/* Mode bits: mostly the meaningful low bits, sometimes anything. */
static uint64_t pick_mode(struct in *in)
{
	uint8_t b = u8(in);
	if (b >= 0xf0)
		return u64(in);
	return b & 0x7;
}

/* A copy/move source: valid, NULL, unmapped, kernel space. */
static char *pick_src(struct in *in)
{
	switch (u8(in) % 6) {
	case 0:
		return NULL;
	case 1:
		return hole;
	case 2:
		return (char *)(uintptr_t)0xffffffff80000000ULL;
	case 3:
		return arena;
	default:
		return scratch + (u8(in) % 8) * page;
	}
}

/* ---- callbacks --------------------------------------------------------- */

static int32_t cb_fault(void *ud, libuffd_monitor *m, const libuffd_fault *f)
{
	(void)ud;
	(void)m;
	(void)f;
	return LIBUFFD_ON_FAULT_USE_SOURCE;
}
static void cb_log(void *ud, libuffd_monitor *m, const char *msg)
{
	(void)ud;
	if (!msg)
		die("on_log called with NULL");
	if (!m)
		die("on_log called without its monitor");
	atomic_fetch_add(&log_calls, 1);
	if (trace)
		fprintf(stderr, "  on_log: %s\n", msg);
}
static void ud_free(void *ud)
{
	free(ud);
}

/* ---- operations -------------------------------------------------------- */

static void new_handle(int s, libuffd_handle *h)
{
	handles[s] = h;
	handle_info[s] = hinfo_next < 63 ? hinfo_next++ : 63;
	hinfo_monitors[handle_info[s]] = 0;
	if (handle_info[s] == 63)
		hinfo_monitors[63] = 100; /* out of records: never touched */
}

static int free_handle_slot(void)
{
	for (int i = 0; i < NHANDLES; i++)
		if (!handles[i])
			return i;
	return -1;
}

static void op_open(struct in *in)
{
	long long r;
	struct {
		struct libuffd_open_opts o;
		uint64_t extra[2];
	} big;
	memset(&big, 0, sizeof big);
	big.o.sz = sizeof big.o;
	uint8_t v = u8(in);
	/* Flags: NONBLOCK and USER_ONLY mostly, sometimes anything. */
	uint8_t f = u8(in);
	big.o.flags = f >= 0xf0 ? u32(in) : (f & (LIBUFFD_OPEN_NONBLOCK | LIBUFFD_OPEN_USER_ONLY |
						   LIBUFFD_OPEN_NO_CLOEXEC));
	uint8_t feat = u8(in);
	/* Never SIGBUS (touching would then kill the fuzzer: covered by the
	 * tests) unless the input insists with raw bits. */
	big.o.features = feat >= 0xf0 ? u64(in) : ((uint64_t)feat * 0x101) & LIBUFFD_FEATURES_KNOWN &
						  ~(uint64_t)LIBUFFD_FEATURE_SIGBUS;
	if (u8(in) % 8 == 0)
		big.o.required_features = u64(in);
	const struct libuffd_open_opts *opts = &big.o;
	int expect_einval = 0;
	switch (v % 8) {
	case 0:
		opts = NULL;
		break;
	case 1:
		big.o.sz = 0;
		expect_einval = 1;
		break;
	case 2:
		big.o.sz = sizeof big;  /* larger, zero tail: accepted */
		break;
	case 3:
		big.o.sz = sizeof big;
		big.extra[1] = 1;       /* larger, non-zero tail: -E2BIG */
		break;
	case 4:
		big.o.reserved = 1;
		expect_einval = 1;
		break;
	default:
		break;
	}
	int s = free_handle_slot();
	libuffd_handle *sentinel = (libuffd_handle *)(uintptr_t)0x5eed;
	libuffd_handle *h = sentinel;
	int null_out = (u8(in) % 16 == 0) || s < 0;
	CALL("libuffd_open", libuffd_open(opts, null_out ? NULL : &h));
	if (null_out)
		EXPECT("libuffd_open(out NULL)", r == -EINVAL);
	if (expect_einval)
		EXPECT("libuffd_open(bad opts)", r == -EINVAL);
	if (v % 8 == 3 && !null_out)
		EXPECT("libuffd_open(non-zero tail)", r == -E2BIG || r == -EINVAL);
	if (v % 8 == 3 && !null_out && !(big.o.flags & ~(uint32_t)0x1f))
		EXPECT("libuffd_open(non-zero tail, good flags)", r == -E2BIG);
	if (r < 0) {
		if (h != sentinel)
			die("libuffd_open wrote *out on failure");
		return;
	}
	if (r != 0)
		die("libuffd_open returned %lld", r);
	if (!h || h == sentinel)
		die("libuffd_open succeeded without a handle");
	if ((big.o.required_features & ~LIBUFFD_FEATURES_KNOWN) && opts)
		die("libuffd_open accepted required features no kernel offers: %#" PRIx64,
		    big.o.required_features);
	new_handle(s, h);
	uint64_t feats = 0;
	CALL("libuffd_handle_features", libuffd_handle_features(h, &feats));
	EXPECT("libuffd_handle_features", r == 0);
	if (opts && (feats & big.o.required_features) != big.o.required_features)
		die("handle lacks required features");
	handle_feats[s] = feats;
	if (trace)
		fprintf(stderr, "  handle %d: flags %#x features %#" PRIx64 "\n", s, big.o.flags, feats);
}

static int raw_uffd(int flags)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | flags);
	return fd;
}

static void op_from_fd(struct in *in)
{
	long long r;
	uint8_t v = u8(in);
	int fd, owned = 0;
	int expect_einval = 0;
	switch (v % 6) {
	case 0:
		fd = -1 - (int)(u8(in) % 3);
		expect_einval = 1;
		break;
	case 1:
		fd = null_fd;            /* not a userfaultfd: -EINVAL */
		expect_einval = 1;
		break;
	case 2:
		fd = 100000;             /* not open: -EBADF */
		break;
	default:
		fd = raw_uffd((u8(in) & 1) ? O_NONBLOCK : 0);
		owned = 1;
		break;
	}
	struct libuffd_open_opts o = { .sz = sizeof o };
	if (u8(in) % 4 == 0)
		o.flags = LIBUFFD_OPEN_NONBLOCK; /* must be 0: -EINVAL */
	o.features = u8(in) % 2 ? LIBUFFD_FEATURE_EVENT_REMOVE | LIBUFFD_FEATURE_THREAD_ID : 0;
	int s = free_handle_slot();
	libuffd_handle *h = NULL;
	CALL("libuffd_handle_from_fd", libuffd_handle_from_fd(fd, &o, s < 0 ? NULL : &h));
	if (s < 0 || o.flags)
		EXPECT("libuffd_handle_from_fd(bad)", r == -EINVAL);
	if (expect_einval)
		EXPECT("libuffd_handle_from_fd(not a uffd)", r == -EINVAL);
	if (fd == 100000)
		EXPECT("libuffd_handle_from_fd(closed fd)", r == -EBADF || r == -EINVAL);
	if (r < 0) {
		if (h)
			die("libuffd_handle_from_fd wrote *out on failure");
		if (owned && fd >= 0) {
			/* On failure the fd stays ours and open. */
			if (fcntl(fd, F_GETFD) < 0)
				die("libuffd_handle_from_fd closed the fd on failure");
			close(fd);
		}
		return;
	}
	if (!owned)
		die("libuffd_handle_from_fd adopted fd %d", fd);
	/* The handle holds its own duplicate: ours stays open and is ours to
	 * close. (Left open, it kept the uffd alive after the handle's free:
	 * with EVENT_REMOVE and a range still registered, the teardown's
	 * madvise then waited forever for someone to read the REMOVE event,
	 * the hang fuzz-quick met once.) */
	if (fcntl(fd, F_GETFD) < 0)
		die("libuffd_handle_from_fd closed the caller's fd");
	close(fd);
	new_handle(s, h);
	uint64_t feats = 0;
	CALL("libuffd_handle_features", libuffd_handle_features(h, &feats));
	handle_feats[s] = feats;
}

static void op_handle_free(struct in *in)
{
	int s;
	libuffd_handle *h = pick_handle(in, &s);
	libuffd_handle_free(h); /* NULL is accepted */
	if (s >= 0)
		handles[s] = NULL;
}

static void op_handle_query(struct in *in)
{
	long long r;
	int s;
	libuffd_handle *h = pick_handle(in, &s);
	CALL("libuffd_handle_fd", libuffd_handle_fd(h));
	if (!h)
		EXPECT("libuffd_handle_fd(NULL)", r == -EINVAL);
	else
		EXPECT("libuffd_handle_fd", r >= 0 && fcntl((int)r, F_GETFD) >= 0);
	CALL("libuffd_handle_flags", libuffd_handle_flags(h));
	if (!h)
		EXPECT("libuffd_handle_flags(NULL)", r == -EINVAL);
	uint64_t feats = 0x5eed;
	int null_ptr = u8(in) & 1;
	CALL("libuffd_handle_features", libuffd_handle_features(h, null_ptr ? NULL : &feats));
	if (!h || null_ptr)
		EXPECT("libuffd_handle_features(NULL)", r == -EINVAL);
	if (r < 0 && feats != 0x5eed)
		die("libuffd_handle_features wrote on failure");
	if (r == 0 && feats != handle_feats[s])
		die("libuffd_handle_features changed: %#" PRIx64 " then %#" PRIx64, handle_feats[s], feats);
}

static void op_probe(struct in *in)
{
	long long r;
	uint64_t f = 0x5eed;
	int null_ptr = u8(in) % 4 == 0;
	CALL("libuffd_probe_features", libuffd_probe_features(null_ptr ? NULL : &f));
	if (null_ptr)
		EXPECT("libuffd_probe_features(NULL)", r == -EINVAL);
	uint64_t mask = u8(in) % 4 ? (uint64_t)1 << (u8(in) % 64) : u64(in);
	CALL("libuffd_feature_supported", libuffd_feature_supported(mask));
	if (mask == 0)
		EXPECT("libuffd_feature_supported(0)", r == -EINVAL);
	else
		EXPECT("libuffd_feature_supported", r == 0 || r == 1);
	if (!null_ptr && r >= 0 && (r == 1) != ((f & mask) == mask))
		die("libuffd_feature_supported(%#" PRIx64 ") = %lld but probe says %#" PRIx64, mask, r, f);
}

static void op_page_size(struct in *in)
{
	long long r;
	char *a = pick_addr(in);
	CALL("libuffd_page_size", libuffd_page_size(a));
	if (a == hole || a == NULL)
		EXPECT("libuffd_page_size(unmapped)", r == -ENOMEM);
	if ((a >= anon && a < anon + ANON_PAGES * page) || (a >= shm && a < shm + SHM_PAGES * page))
		EXPECT("libuffd_page_size(4k mapping)", r == (long long)page);
	if (huge && a >= huge && a < huge + 2 * hpage)
		EXPECT("libuffd_page_size(hugetlb)", r == (long long)hpage);
}

static int on_test_memory(const char *a, size_t len)
{
	uintptr_t s = (uintptr_t)a, e = s + len;
	return (s < (uintptr_t)anon + ANON_PAGES * page && e > (uintptr_t)anon) ||
	       (s < (uintptr_t)shm + SHM_PAGES * page && e > (uintptr_t)shm);
}

/*
 * A registration covers every mapping inside its range, holes or not (the
 * kernel skips the gaps: a range that runs past our reservation registers
 * whatever lies beyond, the sanitizers' allocator included, and their next
 * touch of a fresh page waits for ever; seen). Ranges that the kernel
 * would accept and that leave our memory are cut at its end: the
 * reservation, or the unmapped `hole` page. Ranges the kernel refuses
 * anyway (wrapping, past the user address space, unaligned) are kept.
 */
static size_t keep_inside(const char *a, size_t len)
{
	uintptr_t s = (uintptr_t)a, e;
	if (__builtin_add_overflow(s, len, &e) || e > (1ULL << 47))
		return len;
	uintptr_t lo = (uintptr_t)arena, hi = lo + RESERVATION;
	if (s >= lo && s < hi)
		return e <= hi ? len : hi - s;
	if (s >= (uintptr_t)hole && s < (uintptr_t)hole + page)
		return e <= (uintptr_t)hole + page ? len : (uintptr_t)hole + page - s;
	/* NULL and anything else of the user half: at most a page. */
	return len < page ? len : page;
}

static void op_register(struct in *in)
{
	long long r;
	int s;
	libuffd_handle *h = pick_handle(in, &s);
	char *a = pick_addr(in);
	size_t len = keep_inside(a, pick_len(in));
	uint64_t mode = pick_mode(in);
	uint64_t ioctls = 0x5eed;
	int null_ioctls = u8(in) & 1;
	CALL("libuffd_register", libuffd_register(h, a, len, mode, null_ioctls ? NULL : &ioctls));
	if (!h || mode == 0 || (mode & ~(uint64_t)7))
		EXPECT("libuffd_register(NULL handle / bad mode)", r == -EINVAL);
	if (len == 0)
		EXPECT("libuffd_register(len 0)", r < 0);
	if (r < 0 && ioctls != 0x5eed)
		die("libuffd_register wrote *ioctls on failure");
	if (r > 0)
		die("libuffd_register returned %lld", r);
	if (r == 0 && on_test_memory(a, len))
		touch_unsafe = 1;
}

static void op_unregister_wake(struct in *in, int wake)
{
	long long r;
	int s;
	libuffd_handle *h = pick_handle(in, &s);
	char *a = pick_addr(in);
	size_t len = pick_len(in);
	if (wake) {
		CALL("libuffd_wake", libuffd_wake(h, a, len));
	} else {
		CALL("libuffd_unregister", libuffd_unregister(h, a, len));
		if (r == 0)
			placed_by_hand = 1;
	}
	if (!h || len == 0)
		EXPECT("unregister/wake(NULL handle, len 0)", r == -EINVAL);
	if (r > 0)
		die("unregister/wake returned %lld", r);
}

static void op_resolve(struct in *in)
{
	long long r;
	int s;
	uint8_t which = u8(in) % 6;
	libuffd_handle *h = pick_handle(in, &s);
	char *a = pick_addr(in);
	size_t len = pick_len(in);
	uint64_t mode = pick_mode(in);
	const char *what = "?";
	switch (which) {
	case 0:
		what = "libuffd_copy";
		CALL(what, libuffd_copy(h, a, pick_src(in), len, mode));
		break;
	case 1:
		what = "libuffd_zeropage";
		CALL(what, libuffd_zeropage(h, a, len, mode));
		break;
	case 2:
		what = "libuffd_writeprotect";
		CALL(what, libuffd_writeprotect(h, a, len, mode));
		if (r > 0)
			die("libuffd_writeprotect returned %lld", r);
		if (r == 0)
			touch_unsafe = 1;
		break;
	case 3:
		what = "libuffd_continue";
		CALL(what, libuffd_continue(h, a, len, mode));
		break;
	case 4:
		what = "libuffd_poison";
		CALL(what, libuffd_poison(h, a, len, mode));
		if (r > 0)
			poisoned = 1;
		break;
	default:
		what = "libuffd_move";
		CALL(what, libuffd_move(h, a, pick_src(in), len, mode));
		break;
	}
	if (!h)
		EXPECT(what, r == -EINVAL);
	if (r > 0 && (size_t)r > len)
		die("%s returned %lld bytes for a length of %zu", what, r, len);
	if (r > 0)
		placed_by_hand = 1;
}

static void op_read_events(struct in *in)
{
	long long r;
	int s;
	libuffd_handle *h = pick_handle(in, &s);
	struct libuffd_event ev[8];
	memset(ev, 0xa5, sizeof ev);
	uint8_t v = u8(in);
	size_t max = v % 9;              /* 0: -EINVAL */
	int null_events = (v & 0x80) != 0;
	int32_t timeout;
	switch (u8(in) % 4) {
	case 0:
		timeout = -2 - (int32_t)(u8(in) % 8);   /* < -1: -EINVAL */
		break;
	case 1:
		timeout = 1;
		break;
	default:
		timeout = 0;
		break;
	}
	/* -1 would wait forever when nothing comes: never asked. */
	CALL("libuffd_read_events", libuffd_read_events(h, null_events ? NULL : ev, max, timeout));
	if (!h || null_events || max == 0 || timeout < -1)
		EXPECT("libuffd_read_events(bad)", r == -EINVAL);
	if (r > (long long)max)
		die("libuffd_read_events returned %lld events for max %zu", r, max);
	for (long long i = 0; i < r; i++) {
		if (ev[i].reserved != 0)
			die("event %lld: reserved is %u", i, ev[i].reserved);
		if (ev[i].kind == LIBUFFD_EVENT_FORK && ev[i].u.fork.fd >= 0)
			close(ev[i].u.fork.fd);
	}
	/* A page-fault event the fuzzer read itself means a fault is pending
	 * that the monitor will not see: only the fuzzer's own touches fault,
	 * and they happen while a monitor serves, so there should be none. */
}

static void op_misc(struct in *in)
{
	int32_t e = (int32_t)u32(in);
	if (!libuffd_strerror(e))
		die("libuffd_strerror(%d) is NULL", e);
	if (!libuffd_last_error())
		die("libuffd_last_error() is NULL");
	if (libuffd_version() != LIBUFFD_VERSION)
		die("libuffd_version() %#x != header %#x", libuffd_version(), LIBUFFD_VERSION);
	if (!libuffd_version_string())
		die("libuffd_version_string() is NULL");
}

static void op_monitor_new(struct in *in)
{
	long long r;
	int slot = -1;
	for (int i = 0; i < NMONITORS; i++)
		if (!mons[i].m) {
			slot = i;
			break;
		}
	struct {
		struct libuffd_monitor_opts o;
		uint64_t extra[2];
	} mo;
	memset(&mo, 0, sizeof mo);
	mo.o.sz = sizeof mo.o;
	uint8_t v = u8(in);
	static const uint32_t workers[] = { 0, 0, 1, 2, 3, 0, 1, 4 };
	mo.o.workers = workers[u8(in) % 8];
	mo.o.spin_us = (u8(in) % 4 == 0) ? 50 : 0;
	uint8_t w = u8(in);
	mo.o.window_min = w & 0xf;
	mo.o.window_max = (w >> 4) * 64;
	uint8_t f = u8(in);
	mo.o.flags = f >= 0xf0 ? u32(in) : (f & 0xf);
	mo.o.error_policy = u8(in) % 4;   /* 3: unknown */
	mo.o.remove_policy = u8(in) % 3;  /* 2: unknown */
	static const uint32_t batches[] = { 0, 1, 64, 4096, 4097, 7, 0, 0 };
	mo.o.batch = batches[u8(in) % 8];
	mo.o.max_retries = u8(in) % 4 ? 0 : u32(in) % 5000;
	const struct libuffd_monitor_opts *opts = &mo.o;
	int expect_einval = 0, expect_e2big = 0;
	switch (v % 8) {
	case 0:
		opts = NULL;
		break;
	case 1:
		mo.o.sz = 0;
		expect_einval = 1;
		break;
	case 2:
		mo.o.stop_policy = 99;  /* unknown policy */
		expect_einval = 1;
		break;
	case 3:
		mo.o.sz = sizeof mo;
		mo.extra[0] = 7;
		expect_e2big = 1;
		break;
	case 4:
		mo.o.sz = sizeof mo;   /* zero tail: fine */
		break;
	default:
		break;
	}
	struct {
		struct libuffd_monitor_ops o;
		void *extra[2];
	} ops;
	memset(&ops, 0, sizeof ops);
	uint8_t ov = u8(in);
	if (ov & 1)
		ops.o.on_fault = cb_fault;
	if (ov & 2)
		ops.o.on_log = cb_log;
	const struct libuffd_monitor_ops *opsp = &ops.o;
	size_t ops_size = sizeof ops.o;
	switch ((ov >> 2) % 6) {
	case 0:
		opsp = NULL;
		ops_size = 0;
		break;
	case 1:
		ops_size = sizeof ops;   /* larger, zero tail */
		break;
	case 2:
		ops_size = 3;            /* not a whole member */
		break;
	case 3:
		opsp = NULL;
		ops_size = sizeof ops.o; /* NULL: no table, whatever the size */
		break;
	default:
		break;
	}
	void *ud = malloc(16);
	libuffd_monitor *sentinel = (libuffd_monitor *)(uintptr_t)0x5eed;
	libuffd_monitor *m = sentinel;
	int null_out = slot < 0 || u8(in) % 16 == 0;
	if (trace)
		fprintf(stderr, "  monitor opts %s: workers %u spin %u window %u..%u flags %#x policy %u/%u batch %u retries %u; ops %s size %zu\n",
			opts ? "given" : "NULL", mo.o.workers, mo.o.spin_us, mo.o.window_min, mo.o.window_max, mo.o.flags,
			mo.o.error_policy, mo.o.remove_policy, mo.o.batch, mo.o.max_retries, opsp ? "given" : "NULL", ops_size);
	if (opsp)
		ops.o.sz = ops_size;
	CALL("libuffd_monitor_new", libuffd_monitor_new(opts, opsp, ud, ud_free, null_out ? NULL : &m));
	if (null_out)
		EXPECT("libuffd_monitor_new(out NULL)", r == -EINVAL);
	if (expect_einval && opts)
		EXPECT("libuffd_monitor_new(bad opts)", r == -EINVAL);
	if (expect_e2big)
		EXPECT("libuffd_monitor_new(non-zero tail)", r == -E2BIG || r == -EINVAL);
	if (r < 0) {
		if (m != sentinel)
			die("libuffd_monitor_new wrote *out on failure");
		free(ud); /* the caller keeps ownership on failure */
		return;
	}
	if (r != 0 || !m || m == sentinel)
		die("libuffd_monitor_new returned %lld, m=%p", r, (void *)m);
	memset(&mons[slot], 0, sizeof mons[slot]);
	mons[slot].m = m;
}

static void op_monitor_add_handle(struct in *in)
{
	long long r;
	struct mon *mon = pick_mon(in);
	int s;
	libuffd_handle *h = pick_handle(in, &s);
	uint32_t id = 0x5eed;
	int null_id = u8(in) % 8 == 0;
	CALL("libuffd_monitor_add_handle",
	     libuffd_monitor_add_handle(mon ? mon->m : NULL, h, null_id ? NULL : &id));
	if (!mon || !h)
		EXPECT("libuffd_monitor_add_handle(NULL)", r == -EINVAL);
	if (r < 0) {
		if (id != 0x5eed)
			die("libuffd_monitor_add_handle wrote *id on failure");
		return;
	}
	hinfo_monitors[handle_info[s]]++;
	if (!null_id && mon->nids < NHANDLES) {
		mon->handle_ids[mon->nids] = id;
		mon->handle_slot[mon->nids] = s;
		mon->handle_hinfo[mon->nids] = handle_info[s];
		mon->nids++;
	}
}

static void op_monitor_add_region(struct in *in)
{
	long long r;
	struct mon *mon = pick_mon(in);
	uint8_t v = u8(in);
	uint32_t id;
	int hslot = -1, hinfo = -1;
	if (mon && mon->nids && v % 4) {
		int i = v % mon->nids;
		id = mon->handle_ids[i];
		hslot = mon->handle_slot[i];
		hinfo = mon->handle_hinfo[i];
	} else {
		id = u32(in) % 8 == 0 ? 0xffffffffu : u8(in);
	}
	char *a = pick_addr(in);
	size_t len = keep_inside(a, pick_len(in));
	struct {
		struct libuffd_region_opts o;
		uint64_t extra[2];
	} ro;
	memset(&ro, 0, sizeof ro);
	ro.o.sz = sizeof ro.o;
	uint8_t sv = u8(in);
	ro.o.source = sv >= 0xf8 ? u32(in) : sv % 5;
	uint8_t fl = u8(in);
	ro.o.flags = fl >= 0xf0 ? u32(in) : 0;  /* PREFETCH not asked: see below */
	ro.o.register_mode = pick_mode(in);
	ro.o.buffer = (u8(in) % 8) ? buffer_src : NULL;
	ro.o.buffer_len = (u8(in) % 4) ? 16 * page : (uint64_t)u8(in) * 100;
	uint8_t fv = u8(in);
	ro.o.fd = fv % 4 == 0 ? -1 : fv % 4 == 1 ? null_fd : data_fd;
	ro.o.fd_offset = fv & 0x80 ? (uint64_t)u8(in) * page : 0;
	ro.o.stop_policy = (fv & 0x40) ? (fv & 0x20 ? 99 : (uint32_t)(fv & 3)) : 0;
	const struct libuffd_region_opts *opts = &ro.o;
	uint8_t ov = u8(in);
	switch (ov % 8) {
	case 0:
		opts = NULL;
		break;
	case 1:
		ro.o.sz = 0;
		break;
	case 2:
		ro.o.sz = sizeof ro;
		ro.extra[1] = 9;
		break;
	default:
		break;
	}
	CALL("libuffd_monitor_add_region", libuffd_monitor_add_region(mon ? mon->m : NULL, id, a, len, opts));
	if (trace && opts)
		fprintf(stderr, "  region [%p +%#zx) id %u source %u flags %#x mode %#" PRIx64 " buffer_len %#" PRIx64
			" fd %d off %#" PRIx64 "\n", (void *)a, len, id, opts->source, opts->flags, opts->register_mode,
			opts->buffer_len, opts->fd, opts->fd_offset);
	if (!mon)
		EXPECT("libuffd_monitor_add_region(NULL)", r == -EINVAL);
	if (r > 0)
		die("libuffd_monitor_add_region returned %lld", r);
	if (r < 0 || !mon)
		return;
	uint32_t src0 = opts ? opts->source : LIBUFFD_SOURCE_ZERO;
	if (src0 != LIBUFFD_SOURCE_ZERO || (opts && opts->flags))
		nonzero_source_seen = 1;
	if (hslot < 0)
		return;
	/* Remember regions the fuzzer may touch: served from ZERO or BUFFER
	 * (a source that cannot fail), registered here for missing faults
	 * only, on our 4 KiB test memory, on a handle without SIGBUS. */
	uint32_t source = opts ? opts->source : LIBUFFD_SOURCE_ZERO;
	uint64_t rmode = opts ? opts->register_mode : 0;
	int ours = (a >= anon && a + len <= anon + ANON_PAGES * page) ||
		   (a >= shm && a + len <= shm + SHM_PAGES * page);
	if (rmode == LIBUFFD_REGISTER_MISSING && ours &&
	    (source == LIBUFFD_SOURCE_ZERO || (source == LIBUFFD_SOURCE_BUFFER && opts->buffer == buffer_src)) &&
	    handles[hslot] && !(handle_feats[hslot] & LIBUFFD_FEATURE_SIGBUS) && mon->nregions < NREGIONS) {
		struct region *rg = &mon->regions[mon->nregions++];
		rg->start = a;
		rg->len = len;
		rg->source = source;
		rg->before_start = !mon->running && mon->starts == 0;
		rg->hinfo = hinfo;
		(void)ro.o.buffer_len;
		if (source == LIBUFFD_SOURCE_BUFFER)
			rg->len = len < opts->buffer_len ? len : (size_t)(opts->buffer_len & ~(page - 1));
	}
}

static void op_monitor_control(struct in *in)
{
	long long r;
	struct mon *mon = pick_mon(in);
	libuffd_monitor *m = mon ? mon->m : NULL;
	switch (u8(in) % 6) {
	case 0:
		CALL("libuffd_monitor_start", libuffd_monitor_start(m));
		if (!m)
			EXPECT("libuffd_monitor_start(NULL)", r == -EINVAL);
		if (m && mon->running)
			EXPECT("libuffd_monitor_start(running)", r == -EBUSY);
		if (r == 0) {
			mon->running = 1;
			mon->started = 1;
			mon->starts++;
			mon->stop_asked = 0;
		}
		break;
	case 1:
	case 2:
		CALL("libuffd_monitor_stop", libuffd_monitor_stop(m));
		if (!m)
			EXPECT("libuffd_monitor_stop(NULL)", r == -EINVAL);
		else
			EXPECT("libuffd_monitor_stop", r == 0);
		if (m) {
			mon->stop_asked = 1;
			mon->stopped_ever = 1;
			mon->running = 0;
		}
		break;
	case 3:
		/* wait only when it cannot block forever */
		if (m && mon->started && !mon->stop_asked)
			break;
		CALL("libuffd_monitor_wait", libuffd_monitor_wait(m));
		if (!m)
			EXPECT("libuffd_monitor_wait(NULL)", r == -EINVAL);
		if (m && !mon->started)
			EXPECT("libuffd_monitor_wait(not started)", r == -EINVAL);
		if (m)
			mon->started = 0;
		break;
	case 4: {
		int32_t t = u8(in) % 3 == 0 ? 1 : 0;
		CALL("libuffd_monitor_dispatch", libuffd_monitor_dispatch(m, t));
		if (!m)
			EXPECT("libuffd_monitor_dispatch(NULL)", r == -EINVAL);
		if (m && mon->running)
			EXPECT("libuffd_monitor_dispatch(running)", r == -EBUSY || r >= 0);
		break;
	}
	default:
		CALL("libuffd_monitor_fd", libuffd_monitor_fd(m));
		if (!m)
			EXPECT("libuffd_monitor_fd(NULL)", r == -EINVAL);
		else
			EXPECT("libuffd_monitor_fd", r >= 0 && fcntl((int)r, F_GETFD) >= 0);
		break;
	}
}

static void op_monitor_stats(struct in *in)
{
	long long r;
	struct mon *mon = pick_mon(in);
	struct {
		struct libuffd_monitor_stats s;
		uint64_t guard[4];
	} st;
	memset(&st, 0xa5, sizeof st);
	static const size_t sizes[] = { 0, 4, 8, 16, 64, sizeof(struct libuffd_monitor_stats),
					sizeof(struct libuffd_monitor_stats) + 16, 24 };
	size_t sz = sizes[u8(in) % 8];
	st.s.sz = sz;
	int null_ptr = u8(in) % 8 == 0;
	CALL("libuffd_monitor_get_stats", libuffd_monitor_get_stats(mon ? mon->m : NULL, null_ptr ? NULL : &st.s));
	if (!mon || null_ptr || sz < sizeof(size_t))
		EXPECT("libuffd_monitor_get_stats(bad)", r == -EINVAL);
	else
		EXPECT("libuffd_monitor_get_stats", r == 0);
	/* Nothing written past sz. */
	const unsigned char *b = (const unsigned char *)&st;
	size_t limit = sz > sizeof st.s ? sizeof st.s : sz;
	if (limit < sizeof(size_t))
		limit = sizeof(size_t);
	for (size_t i = limit; i < sizeof st; i++)
		if (b[i] != 0xa5)
			die("libuffd_monitor_get_stats(sz=%zu) wrote byte %zu", sz, i);
	if (r == 0 && sz >= sizeof st.s && st.s.resolved > st.s.faults + st.s.prefetched_bytes / page + 1000000)
		die("stats: resolved %" PRIu64 " > faults %" PRIu64, st.s.resolved, st.s.faults);
}

static void op_monitor_resolve_bad(struct in *in)
{
	long long r;
	struct mon *mon = pick_mon(in);
	libuffd_monitor *m = mon ? mon->m : NULL;
	/* Only NULLs: a fault not from this monitor is outside the contract. */
	switch (u8(in) % 6) {
	case 0:
		CALL("libuffd_monitor_copy", libuffd_monitor_copy(m, NULL, scratch));
		break;
	case 1:
		CALL("libuffd_monitor_zero", libuffd_monitor_zero(m, NULL));
		break;
	case 2:
		CALL("libuffd_monitor_continue", libuffd_monitor_continue(m, NULL));
		break;
	case 3:
		CALL("libuffd_monitor_unprotect", libuffd_monitor_unprotect(m, NULL));
		break;
	case 4:
		CALL("libuffd_monitor_poison", libuffd_monitor_poison(m, NULL));
		break;
	default:
		CALL("libuffd_monitor_move", libuffd_monitor_move(m, NULL, scratch));
		break;
	}
	EXPECT("libuffd_monitor_*(NULL fault)", r == -EINVAL);
}

/* The engine's functions (issue 12) with fuzzed arguments: dirty scans,
 * write-backs, range resolvers with a NULL fault, snapshots of test
 * memory, and the hand-off's receiver fed fuzzed bytes (with or without a
 * descriptor): every refusal a clean -errno, every received descriptor
 * closed or handed over. */
static void op_engine(struct in *in)
{
	long long r;
	struct mon *mon = pick_mon(in);
	libuffd_monitor *m = mon ? mon->m : NULL;
	uint32_t id = u32(in) % 6;
	switch (u8(in) % 6) {
	case 0: {
		uint64_t bits[8];
		size_t words = u8(in) % 9;
		int null_bits = u8(in) % 8 == 0;
		char *a = pick_addr(in);
		size_t len = pick_len(in);
		CALL("libuffd_monitor_dirty_scan",
		     libuffd_monitor_dirty_scan(m, id, a, len, u8(in) % 3, null_bits ? NULL : bits, words));
		if (!m || null_bits)
			EXPECT("libuffd_monitor_dirty_scan(bad)", r == -EINVAL);
		break;
	}
	case 1: {
		char *a = pick_addr(in);
		size_t len = pick_len(in);
		CALL("libuffd_monitor_writeback", libuffd_monitor_writeback(m, id, a, len));
		if (!m)
			EXPECT("libuffd_monitor_writeback(NULL)", r == -EINVAL);
		break;
	}
	case 2:
		switch (u8(in) % 4) {
		case 0:
			CALL("libuffd_monitor_copy_range",
			     libuffd_monitor_copy_range(m, NULL, scratch, pick_len(in), pick_mode(in)));
			break;
		case 1:
			CALL("libuffd_monitor_zero_range", libuffd_monitor_zero_range(m, NULL, pick_len(in)));
			break;
		case 2:
			CALL("libuffd_monitor_continue_range",
			     libuffd_monitor_continue_range(m, NULL, pick_len(in), pick_mode(in)));
			break;
		default:
			CALL("libuffd_monitor_move_range",
			     libuffd_monitor_move_range(m, NULL, scratch, pick_len(in), pick_mode(in)));
			break;
		}
		EXPECT("libuffd_monitor_*_range(NULL fault)", r == -EINVAL);
		break;
	case 3: {
		/* A snapshot of test memory into the scratch pages (or a bad
		 * destination), waited for with a bound, then freed. */
		char *a = pick_addr(in);
		size_t len = pick_len(in);
		if (!on_test_memory(a, len) || len > 16 * page)
			len = page;
		LIBUFFD_OPTS(libuffd_snapshot_opts, so, .dest = u8(in) % 3, .buffer = scratch,
			     .fd = null_fd);
		libuffd_snapshot *snap = NULL;
		CALL("libuffd_snapshot_begin", libuffd_snapshot_begin(a, len, &so, &snap));
		if (r == 0) {
			CALL("libuffd_snapshot_wait", libuffd_snapshot_wait(snap, 2000));
			if (r == -ETIMEDOUT)
				die("libuffd_snapshot_wait: %zu bytes not copied in 2 s", len);
			uint64_t copied = 0, total = 0;
			CALL("libuffd_snapshot_progress", libuffd_snapshot_progress(snap, &copied, &total));
			libuffd_snapshot_free(snap);
		}
		break;
	}
	default: {
		/* libuffd_recv on fuzzed bytes, with a descriptor attached or
		 * not (a pipe's, or a userfaultfd's). */
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
			break;
		unsigned char msg[256];
		size_t n = u8(in) % sizeof msg;
		for (size_t i = 0; i < n; i++)
			msg[i] = u8(in);
		if (n >= 8 && u8(in) % 2) { /* a plausible header now and then */
			uint32_t magic = 0x4f484655;
			memcpy(msg, &magic, 4);
			msg[4] = 1;
			msg[5] = 0;
		}
		int pfd[2] = { -1, -1 };
		int attach = -1;
		switch (u8(in) % 3) {
		case 0:
			if (pipe2(pfd, O_CLOEXEC) == 0)
				attach = pfd[0];
			break;
		case 1:
			attach = raw_uffd(O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
			break;
		default:
			break;
		}
		struct iovec iov = { msg, n ? n : 1 };
		union {
			struct cmsghdr h;
			char buf[CMSG_SPACE(sizeof(int))];
		} c;
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
		if (attach >= 0) {
			mh.msg_control = c.buf;
			mh.msg_controllen = sizeof c.buf;
			struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
			ch->cmsg_level = SOL_SOCKET;
			ch->cmsg_type = SCM_RIGHTS;
			ch->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(ch), &attach, sizeof(int));
		}
		if (sendmsg(sv[0], &mh, MSG_NOSIGNAL) >= 0) {
			libuffd_handle *got = NULL;
			libuffd_region_desc regions[4];
			LIBUFFD_OPTS(libuffd_recv_opts, ro, .timeout_ms = 100);
			CALL("libuffd_recv", libuffd_recv(sv[1], &ro, &got, regions, u8(in) % 5, NULL));
			if (r >= 0 && got)
				libuffd_handle_free(got);
			else if (r >= 0)
				die("libuffd_recv returned %lld without a handle", r);
		}
		if (attach >= 0)
			close(attach);
		if (pfd[1] >= 0)
			close(pfd[1]);
		close(sv[0]);
		close(sv[1]);
		break;
	}
	}
}

static void op_monitor_free(struct in *in)
{
	struct mon *mon = pick_mon(in);
	if (!mon) {
		libuffd_monitor_free(NULL);
		return;
	}
	libuffd_monitor_free(mon->m);
	memset(mon, 0, sizeof *mon);
}

/* Touch one page of a region a running monitor serves; check its bytes. */
static void op_touch(struct in *in)
{
	struct mon *mon = pick_mon(in);
	if (!mon || !mon->running || mon->nregions == 0 || poisoned || touch_unsafe)
		return;
	struct region *rg = &mon->regions[u8(in) % mon->nregions];
	/* A region added while running must be served too (issue 14 item 2).
	 * After a stop, whether a later start serves depends on when the stop
	 * was asked (a stop asked before a start ends that run at once, by
	 * design), which this driver does not model: those touches only with
	 * FUZZ_STRICT=1. */
	if ((mon->starts > 1 || mon->stopped_ever) && !strict)
		return;
	if (rg->len < page || hinfo_monitors[rg->hinfo] != 1)
		return;
	size_t pg = (u8(in) % (rg->len / page)) * page;
	volatile const unsigned char *p = (volatile const unsigned char *)rg->start + pg;
	unsigned char got[64];
	for (size_t i = 0; i < sizeof got; i++)
		got[i] = p[i * (page / sizeof got)];
	n_touches++;
	if (trace)
		fprintf(stderr, "touched %p (region %p +%#zx, source %u)\n", (void *)p, (void *)rg->start, rg->len, rg->source);
	if (placed_by_hand || nonzero_source_seen)
		return;
	/* Where the region's bytes come from: zeros, or the buffer at the same
	 * offset. A page of shm may have been populated by an earlier region
	 * of another monitor: only zero-source regions on anonymous memory
	 * that nothing else placed are checked byte for byte. */
	size_t off = (size_t)((char *)p - rg->start);
	for (size_t i = 0; i < sizeof got; i++) {
		unsigned char want = rg->source == LIBUFFD_SOURCE_BUFFER
					     ? (unsigned char)buffer_src[off + i * (page / sizeof got)]
					     : 0;
		if (got[i] != want && rg->source == LIBUFFD_SOURCE_ZERO)
			die("touched page %p of a ZERO region: byte %zu is %#x", (void *)p, i, got[i]);
		(void)want;
	}
}

/* ---- hang watchdog ----------------------------------------------------- */

/*
 * libFuzzer's -timeout is a SIGALRM handled by the fuzzing thread. It does
 * not fire when that thread sits in a wait a signal does not end (a killable
 * kernel wait, e.g. a page fault taken inside a system call on memory no one
 * serves) and it can itself deadlock (it allocates and symbolizes). This
 * thread watches each input instead, with nothing but system calls: when one
 * input runs longer than FUZZ_HANG_SECONDS (default 20) it saves the input
 * as artifacts/hang-watchdog-<pid>, writes every thread's name, kernel wait
 * channel, system call and kernel stack to stderr, and ends the process with
 * exit status 70. run.sh reports that as a failure with the reproducer.
 */
static const uint8_t *volatile wd_data;
static volatile size_t wd_size;
static atomic_ulong wd_started;   /* CLOCK_MONOTONIC seconds at input start, 0 when idle */
static unsigned wd_limit = 20;

static void wd_puts(const char *s)
{
	ssize_t r = write(2, s, strlen(s));
	(void)r;
}

static void wd_cat(const char *path, const char *label)
{
	char buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = 0;
	wd_puts(label);
	wd_puts(buf);
	if (buf[n - 1] != '\n')
		wd_puts("\n");
}

static void wd_dump_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	char path[sizeof e->d_name + 32];
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		wd_puts("-- thread ");
		wd_puts(e->d_name);
		wd_puts("\n");
		snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
		wd_cat(path, "   comm: ");
		snprintf(path, sizeof path, "/proc/self/task/%s/wchan", e->d_name);
		wd_cat(path, "   wchan: ");
		snprintf(path, sizeof path, "/proc/self/task/%s/syscall", e->d_name);
		wd_cat(path, "   syscall: ");
		snprintf(path, sizeof path, "/proc/self/task/%s/stack", e->d_name);
		wd_cat(path, "   kernel stack:\n");
	}
	if (d)
		closedir(d);
}

static unsigned long wd_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long)ts.tv_sec;
}

static void *wd_thread(void *arg)
{
	(void)arg;
	for (;;) {
		sleep(1);
		unsigned long t0 = atomic_load(&wd_started);
		if (t0 == 0 || wd_now() - t0 < wd_limit)
			continue;
		char name[64];
		snprintf(name, sizeof name, "artifacts/hang-watchdog-%d", (int)getpid());
		int fd = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0) {
			ssize_t r = write(fd, (const void *)wd_data, wd_size);
			(void)r;
			close(fd);
		}
		wd_puts("fuzz_capi: WATCHDOG: one input has run for too long; saved as ");
		wd_puts(fd >= 0 ? name : "(could not save: no artifacts/ directory here)");
		wd_puts("\n");
		wd_dump_threads();
		_exit(70);
	}
	return NULL;
}

static void wd_start(void)
{
	const char *s = getenv("FUZZ_HANG_SECONDS");
	if (s && atoi(s) > 0)
		wd_limit = (unsigned)atoi(s);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	if (pthread_create(&t, NULL, wd_thread, NULL) == 0)
		pthread_detach(t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- the driver -------------------------------------------------------- */

static void setup(void)
{
	if (page)
		return;
	page = (size_t)sysconf(_SC_PAGESIZE);
	/*
	 * The memory inputs may register lives in one 16 MiB reservation of
	 * our own, bordered by unmapped pages, and registrations are cut at
	 * its end (keep_inside): a registration covers every mapping in its
	 * range, gaps or not, and one that reached the sanitizers' or
	 * libFuzzer's memory made their next touch of an unpopulated page
	 * wait forever (seen as hangs inside malloc). The copy sources
	 * (scratch, buffer_src) stay outside, where no input can register them.
	 */
	const size_t res = RESERVATION;
	char *base = NULL;
	for (uintptr_t a = 0x40000000; a < 0x7f000000 && !base; a += res) {
		char *p = mmap((char *)a - page, res + 2 * page, PROT_NONE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
		if (p == MAP_FAILED)
			continue;
		if (p != (char *)a - page) {
			munmap(p, res + 2 * page);
			continue;
		}
		munmap(p, page);
		munmap((char *)a + res, page);
		base = (char *)a;
	}
	if (!base)
		abort();
	arena = base;                      /* PROT_NONE filler: [0, 1 MiB) */
	anon = mmap(base + (1 << 20), ANON_PAGES * page, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	shm_fd = memfd_create("fuzz-shm", MFD_CLOEXEC);
	if (shm_fd < 0 || ftruncate(shm_fd, SHM_PAGES * page) != 0)
		abort();
	shm = mmap(base + (2 << 20), SHM_PAGES * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, shm_fd, 0);
	scratch = mmap(NULL, 16 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	buffer_src = mmap(NULL, 16 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED || shm == MAP_FAILED || scratch == MAP_FAILED || buffer_src == MAP_FAILED)
		abort();
	/* An unmapped page that nothing will map later: a hole punched among
	 * our own mappings could be filled by any one-page mmap (the fuzzer's,
	 * the sanitizers', the library's) and then registered by an input.
	 * Low addresses are never chosen by mmap (top-down) nor by ASan. */
	for (uintptr_t a = 0x10000000; a < 0x80000000 && !hole; a += 0x10000000) {
		unsigned char vec;
		if (mincore((void *)a, page, &vec) != 0 && errno == ENOMEM)
			hole = (char *)a;
	}
	if (!hole)
		abort();
	for (size_t i = 0; i < 16 * page; i++)
		buffer_src[i] = (char)(i * 7 + i / page + 1);
	data_fd = memfd_create("fuzz-data", MFD_CLOEXEC);
	if (data_fd < 0 || write(data_fd, buffer_src, 16 * page) != (ssize_t)(16 * page))
		abort();
	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	strict = getenv("FUZZ_STRICT") && atoi(getenv("FUZZ_STRICT")) > 0;
	trace = getenv("FUZZ_TRACE") && atoi(getenv("FUZZ_TRACE")) > 0;
	wd_start();
	/* Huge pages: 2 of the default size, if any are reserved. */
	FILE *mi = fopen("/proc/meminfo", "r");
	char line[256];
	size_t hsz = 0;
	while (mi && fgets(line, sizeof line, mi))
		if (sscanf(line, "Hugepagesize: %zu kB", &hsz) == 1)
			break;
	if (mi)
		fclose(mi);
	if (hsz) {
		hpage = hsz * 1024;
		/* At 4 MiB into the reservation (aligned to the huge page). */
		char *at = base + ((4 << 20) + hpage - 1) / hpage * hpage;
		huge = NULL;
		if (at + 2 * hpage <= base + res)
			huge = mmap(at, 2 * hpage, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_FIXED, -1, 0);
		if (huge == MAP_FAILED || huge == NULL) {
			/* keep the reservation whole */
			if (at + 2 * hpage <= base + res)
				mmap(at, 2 * hpage, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
			huge = NULL;
			hpage = 0;
		}
	}
}

static void teardown(void)
{
	for (int i = 0; i < NMONITORS; i++) {
		if (mons[i].m)
			libuffd_monitor_free(mons[i].m);
		memset(&mons[i], 0, sizeof mons[i]);
	}
	for (int i = 0; i < NHANDLES; i++) {
		libuffd_handle_free(handles[i]);
		handles[i] = NULL;
		handle_feats[i] = 0;
	}
	/* Drop every page placed, so that the next input starts afresh. */
	madvise(anon, ANON_PAGES * page, MADV_DONTNEED);
	/* DONTNEED first: UFFDIO_POISON markers in the shared mapping survive
	 * the hole punch of MADV_REMOVE (it zaps only what the file backs). */
	madvise(shm, SHM_PAGES * page, MADV_DONTNEED);
	madvise(shm, SHM_PAGES * page, MADV_REMOVE);
	if (huge)
		madvise(huge, 2 * hpage, MADV_DONTNEED);
	if (poisoned) {
		/* Poisoned PTEs go with DONTNEED too; nothing else to undo. */
		poisoned = 0;
	}
	placed_by_hand = 0;
	nonzero_source_seen = 0;
	touch_unsafe = 0;
	hinfo_next = 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setup();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	wd_data = data;
	wd_size = size;
	atomic_store(&wd_started, wd_now());
	struct in in = { data, size };
	int ops = 0;
	while (in.n > 0 && ops++ < MAX_OPS) {
		uint8_t op = u8(&in);
		double t_op = mono();
		switch (op % 20) {
		case 0:
		case 1:
			op_open(&in);
			break;
		case 2:
			op_from_fd(&in);
			break;
		case 3:
			op_handle_free(&in);
			break;
		case 4:
			op_handle_query(&in);
			break;
		case 5:
			op_probe(&in);
			break;
		case 6:
			op_page_size(&in);
			break;
		case 7:
		case 8:
			op_register(&in);
			break;
		case 9:
			op_unregister_wake(&in, u8(&in) & 1);
			break;
		case 10:
		case 11:
			op_resolve(&in);
			break;
		case 12:
			op_read_events(&in);
			break;
		case 13:
			op_misc(&in);
			break;
		case 14:
			op_monitor_new(&in);
			break;
		case 15:
			op_monitor_add_handle(&in);
			break;
		case 16:
			op_monitor_add_region(&in);
			break;
		case 17:
			op_monitor_control(&in);
			break;
		case 18:
			switch (u8(&in) % 5) {
			case 0:
				op_monitor_stats(&in);
				break;
			case 1:
				op_monitor_resolve_bad(&in);
				break;
			case 2:
				op_monitor_free(&in);
				break;
			case 3:
				op_engine(&in);
				break;
			default:
				op_touch(&in);
				break;
			}
			break;
		default:
			op_touch(&in);
			break;
		}
		/* Nothing hangs, but a call may wait for a bounded time: say
		 * which operation took long (libFuzzer's -timeout judges). */
		double dt = mono() - t_op;
		if (dt > 2.0)
			fprintf(stderr, "fuzz_capi: operation %u (op %d of the input) took %.1f s\n", op % 20, ops, dt);
	}
	double t_td = mono();
	teardown();
	if (mono() - t_td > 2.0)
		fprintf(stderr, "fuzz_capi: teardown (monitor and handle frees) took %.1f s\n", mono() - t_td);
	atomic_store(&wd_started, 0);
	return 0;
}

#ifdef FUZZ_STANDALONE
/* Replay: each argument is an input file (or a directory of them). */
#include <sys/stat.h>

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "fuzz_capi: %s: %s\n", path, strerror(errno));
		return 1;
	}
	static uint8_t buf[1 << 16];
	size_t n = fread(buf, 1, sizeof buf, f);
	fclose(f);
	LLVMFuzzerTestOneInput(buf, n);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0, bad = 0;
	LLVMFuzzerInitialize(&argc, &argv);
	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			DIR *d = opendir(argv[i]);
			struct dirent *e;
			while (d && (e = readdir(d))) {
				if (e->d_name[0] == '.')
					continue;
				char p[4096];
				snprintf(p, sizeof p, "%s/%s", argv[i], e->d_name);
				bad += replay_file(p);
				files++;
			}
			if (d)
				closedir(d);
		} else {
			bad += replay_file(argv[i]);
			files++;
		}
	}
	printf("fuzz_capi: replayed %d inputs (%lu libuffd calls, %lu pages served to touches), all invariants held\n",
	       files - bad, n_calls, n_touches);
	return bad ? 1 : 0;
}
#endif
