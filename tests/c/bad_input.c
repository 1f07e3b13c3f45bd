/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * bad_input: every exported function of libuffd (the 22 of include/libuffd.h)
 * fed bad input. Each failure must come back as the documented negative
 * errno, with errno set to its positive value and libuffd_last_error() naming
 * the function; out-parameters must stay unwritten; nothing may crash.
 *
 * Also run under valgrind by tests/c/run.sh.
 *
 * Two checks fail against the current library, where include/libuffd.h
 * documents an errno the library does not return (see the comments at
 * "libuffd_unregister(h, unmapped" and "dst not registered").
 */
#include "harness.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>

#define SENTINEL_HANDLE ((libuffd_handle *)(uintptr_t)0x5eed5eedUL)
#define SENTINEL_U64 0xa5a5a5a5a5a5a5a5ULL

static size_t page;
/* Addresses whose range wraps past the end of the address space. */
static void *wrap_start;
static const size_t wrap_len = 8192;

static int fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/*
 * A page-aligned address with nothing mapped: the middle page of a fresh
 * three-page mapping, unmapped, so that only a one-page mmap could fill the
 * hole again (nothing between hole() and its use maps one page).
 */
static char *hole(void)
{
	char *p = h_map_anon(3 * page);
	if (munmap(p + page, page) != 0)
		FATAL("munmap: %s", strerror(errno));
	return p + page;
}
#define unmapped hole()

/* A raw userfaultfd made without libuffd (handshake not done). */
static int raw_uffd(void)
{
	/* 1 is UFFD_USER_MODE_ONLY (not including <linux/userfaultfd.h> here). */
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1);
	if (fd >= 0)
		return fd;
	/* valgrind does not know the system call: use the device. */
	int err = errno;
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, 0xAA00 /* USERFAULTFD_IOC_NEW */, O_CLOEXEC | 1);
		err = errno;
		close(dev);
		if (fd >= 0)
			return fd;
	}
	FATAL("userfaultfd(2) and /dev/userfaultfd: %s", strerror(err));
}

static void test_strerror_and_versions(void)
{
	SECTION("libuffd_strerror / libuffd_last_error / libuffd_version*");
	const int weird[] = { 0, 1, -1, EEXIST, -EEXIST, -EINVAL, 4095, -4095,
			      4096, -4096, 133, -133, 100000, -100000, INT_MAX,
			      INT_MIN, INT_MIN + 1 };
	for (size_t i = 0; i < sizeof weird / sizeof weird[0]; i++) {
		const char *s = libuffd_strerror(weird[i]);
		CHECK_MSG(s != NULL, "libuffd_strerror(%d) is NULL", weird[i]);
		if (s)
			CHECK_MSG(strlen(s) < 4096, "libuffd_strerror(%d) too long", weird[i]);
		if (weird[i] != 0 && weird[i] != INT_MIN && s)
			CHECK_MSG(s[0] != '\0', "libuffd_strerror(%d) is empty", weird[i]);
	}
	/* -errno and errno give the same text. */
	CHECK_STREQ(libuffd_strerror(-EEXIST), libuffd_strerror(EEXIST));
	CHECK_STREQ(libuffd_strerror(-E2BIG), libuffd_strerror(E2BIG));

	CHECK(libuffd_last_error() != NULL);
	CHECK(libuffd_last_error() != NULL); /* twice in a row */

	CHECK_EQ(libuffd_version(), LIBUFFD_VERSION);
	CHECK(libuffd_version_string() != NULL);
	CHECK_STREQ(libuffd_version_string(), "1.0.0");

	libuffd_handle_free(NULL); /* harmless */
	libuffd_handle_free(NULL);
	CHECK(1);
}

static void test_open(void)
{
	SECTION("libuffd_open");
	libuffd_handle *out = SENTINEL_HANDLE;

	/* NULL out-pointer, with and without options. */
	CHECK_FAILS(libuffd_open(NULL, NULL), -EINVAL, "libuffd_open");
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = 0);
	CHECK_FAILS(libuffd_open(&o, NULL), -EINVAL, "libuffd_open");

	/* Unknown open flags. */
	const uint32_t bad_flags[] = { 1u << 5, 1u << 6, 1u << 16, 1u << 31,
				       LIBUFFD_OPEN_NONBLOCK | (1u << 7), UINT32_MAX };
	for (size_t i = 0; i < sizeof bad_flags / sizeof bad_flags[0]; i++) {
		o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = bad_flags[i]);
		out = SENTINEL_HANDLE;
		CHECK_FAILS(libuffd_open(&o, &out), -EINVAL, "libuffd_open");
		CHECK(out == SENTINEL_HANDLE);
	}

	/* Both ways of creating a userfaultfd excluded. */
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts,
			      .flags = LIBUFFD_OPEN_NO_SYSCALL | LIBUFFD_OPEN_NO_DEV);
	CHECK_FAILS(libuffd_open(&o, &out), -EINVAL, "libuffd_open");
	CHECK(out == SENTINEL_HANDLE);

	/* reserved != 0. */
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .reserved = 1);
	CHECK_FAILS(libuffd_open(&o, &out), -EINVAL, "libuffd_open");
	CHECK(out == SENTINEL_HANDLE);
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .reserved = 0x80000000u);
	CHECK_FAILS(libuffd_open(&o, &out), -EINVAL, "libuffd_open");
	CHECK(out == SENTINEL_HANDLE);

	/* sz smaller than a size_t. */
	for (size_t sz = 0; sz < sizeof(size_t); sz++) {
		o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = 0);
		o.sz = sz;
		CHECK_FAILS(libuffd_open(&o, &out), -EINVAL, "libuffd_open");
		CHECK(out == SENTINEL_HANDLE);
	}

	/* A struct from a "newer" caller: bigger, with a tail. */
	struct {
		struct libuffd_open_opts o;
		uint64_t tail[3];
	} big;
	memset(&big, 0, sizeof big);
	big.o.sz = sizeof big;
	big.tail[2] = 1;
	CHECK_FAILS(libuffd_open(&big.o, &out), -E2BIG, "libuffd_open");
	CHECK(out == SENTINEL_HANDLE);
	big.tail[2] = 0;
	big.tail[0] = 1ULL << 63;
	CHECK_FAILS(libuffd_open(&big.o, &out), -E2BIG, "libuffd_open");
	CHECK(out == SENTINEL_HANDLE);
	/* An odd size, one non-zero byte just past the known struct. */
	memset(&big, 0, sizeof big);
	big.o.sz = sizeof(struct libuffd_open_opts) + 1;
	((unsigned char *)&big)[sizeof(struct libuffd_open_opts)] = 0xff;
	CHECK_FAILS(libuffd_open(&big.o, &out), -E2BIG, "libuffd_open");
	CHECK(out == SENTINEL_HANDLE);
	/* ... and the same with an all-zero tail is accepted. */
	memset(&big, 0, sizeof big);
	big.o.sz = sizeof big;
	CHECK_RET(libuffd_open(&big.o, &out), 0);
	CHECK(out != SENTINEL_HANDLE && out != NULL);
	if (out != SENTINEL_HANDLE)
		libuffd_handle_free(out);
	out = SENTINEL_HANDLE;
	/* An older caller's struct (only sz) is accepted with defaults. */
	memset(&big, 0, sizeof big);
	big.o.sz = sizeof(size_t);
	big.o.flags = 0xffffffffu; /* beyond its size: must be ignored */
	CHECK_RET(libuffd_open(&big.o, &out), 0);
	CHECK(out != SENTINEL_HANDLE && out != NULL);
	if (out != SENTINEL_HANDLE)
		libuffd_handle_free(out);
	out = SENTINEL_HANDLE;

	/* A required feature no kernel has. */
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .required_features = 1ULL << 40);
	CHECK_FAILS(libuffd_open(&o, &out), -EOPNOTSUPP, "libuffd_open");
	CHECK(out == SENTINEL_HANDLE);
	/* Wanted (not required) unknown features are dropped, not an error. */
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .features = 1ULL << 40 | LIBUFFD_FEATURE_THREAD_ID);
	CHECK_RET(libuffd_open(&o, &out), 0);
	if (out != SENTINEL_HANDLE) {
		uint64_t f = 0;
		CHECK_RET(libuffd_handle_features(out, &f), 0);
		CHECK_EQ_HEX(f & (1ULL << 40), 0);
		CHECK_EQ_HEX(f & LIBUFFD_FEATURE_THREAD_ID, LIBUFFD_FEATURE_THREAD_ID);
		libuffd_handle_free(out);
	}
}

static void test_handle_from_fd(void)
{
	SECTION("libuffd_handle_from_fd");
	libuffd_handle *out = SENTINEL_HANDLE;

	CHECK_FAILS(libuffd_handle_from_fd(-1, NULL, &out), -EINVAL, "libuffd_handle_from_fd");
	CHECK(out == SENTINEL_HANDLE);
	CHECK_FAILS(libuffd_handle_from_fd(INT_MIN, NULL, &out), -EINVAL, "libuffd_handle_from_fd");
	CHECK(out == SENTINEL_HANDLE);

	/* A pipe is not a userfaultfd; the fd stays the caller's. */
	int p[2];
	if (pipe(p) != 0)
		FATAL("pipe: %s", strerror(errno));
	CHECK_FAILS(libuffd_handle_from_fd(p[0], NULL, &out), -EINVAL, "libuffd_handle_from_fd");
	CHECK(out == SENTINEL_HANDLE);
	CHECK(fd_is_open(p[0]));
	CHECK_FAILS(libuffd_handle_from_fd(p[1], NULL, &out), -EINVAL, "libuffd_handle_from_fd");
	CHECK(fd_is_open(p[1]));
	CHECK_EQ(write(p[1], "x", 1), 1); /* both ends still work */
	char c = 0;
	CHECK_EQ(read(p[0], &c, 1), 1);
	CHECK_EQ(c, 'x');
	/* NULL out with an otherwise acceptable call. */
	CHECK_FAILS(libuffd_handle_from_fd(p[0], NULL, NULL), -EINVAL, "libuffd_handle_from_fd");
	CHECK(fd_is_open(p[0]));

	/* A regular file. */
	int dn = open("/dev/null", O_RDWR | O_CLOEXEC);
	CHECK(dn >= 0);
	CHECK_FAILS(libuffd_handle_from_fd(dn, NULL, &out), -EINVAL, "libuffd_handle_from_fd");
	CHECK(fd_is_open(dn));
	CHECK(out == SENTINEL_HANDLE);

	/* A descriptor that is not open. */
	int closed = dn;
	close(dn);
	CHECK_FAILS(libuffd_handle_from_fd(closed, NULL, &out), -EBADF, "libuffd_handle_from_fd");
	CHECK(out == SENTINEL_HANDLE);
	CHECK_FAILS(libuffd_handle_from_fd(INT_MAX, NULL, &out), -EBADF, "libuffd_handle_from_fd");
	CHECK(out == SENTINEL_HANDLE);
	close(p[0]);
	close(p[1]);

	/* A real userfaultfd with bad options: the fd stays the caller's. */
	int ufd = raw_uffd();
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK);
	CHECK_FAILS(libuffd_handle_from_fd(ufd, &o, &out), -EINVAL, "libuffd_handle_from_fd");
	CHECK(out == SENTINEL_HANDLE);
	CHECK(fd_is_open(ufd));
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = 1u << 20);
	CHECK_FAILS(libuffd_handle_from_fd(ufd, &o, &out), -EINVAL, "libuffd_handle_from_fd");
	CHECK(fd_is_open(ufd));
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .reserved = 7);
	CHECK_FAILS(libuffd_handle_from_fd(ufd, &o, &out), -EINVAL, "libuffd_handle_from_fd");
	CHECK(fd_is_open(ufd));
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = 0);
	o.sz = 3;
	CHECK_FAILS(libuffd_handle_from_fd(ufd, &o, &out), -EINVAL, "libuffd_handle_from_fd");
	CHECK(fd_is_open(ufd));
	struct {
		struct libuffd_open_opts o;
		uint64_t tail;
	} big;
	memset(&big, 0, sizeof big);
	big.o.sz = sizeof big;
	big.tail = 1;
	CHECK_FAILS(libuffd_handle_from_fd(ufd, &big.o, &out), -E2BIG, "libuffd_handle_from_fd");
	CHECK(fd_is_open(ufd));
	CHECK(out == SENTINEL_HANDLE);
	CHECK_FAILS(libuffd_handle_from_fd(ufd, NULL, NULL), -EINVAL, "libuffd_handle_from_fd");
	CHECK(fd_is_open(ufd));
	/* Handshake done here, but a required feature is missing. */
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .required_features = 1ULL << 40);
	CHECK_FAILS(libuffd_handle_from_fd(ufd, &o, &out), -EOPNOTSUPP, "libuffd_handle_from_fd");
	CHECK(out == SENTINEL_HANDLE);
	CHECK(fd_is_open(ufd));
	/* Now adopt it properly: the handle works on its own duplicate, and
	 * freeing it leaves the caller's descriptor open (the caller closes it). */
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .features = LIBUFFD_FEATURE_THREAD_ID);
	CHECK_RET(libuffd_handle_from_fd(ufd, &o, &out), 0);
	if (out != SENTINEL_HANDLE) {
		CHECK(libuffd_handle_fd(out) != ufd);
		libuffd_handle_free(out);
	}
	CHECK(fd_is_open(ufd));
	close(ufd);
	out = SENTINEL_HANDLE;

	/* An fd whose handshake was already done, lacking a required feature. */
	libuffd_handle *h = NULL;
	CHECK_RET(libuffd_open(NULL, &h), 0);
	if (h) {
		int dup_fd = fcntl(libuffd_handle_fd(h), F_DUPFD_CLOEXEC, 0);
		CHECK(dup_fd >= 0);
		o = LIBUFFD_OPTS_INIT(libuffd_open_opts,
				      .required_features = LIBUFFD_FEATURE_THREAD_ID);
		CHECK_FAILS(libuffd_handle_from_fd(dup_fd, &o, &out), -EOPNOTSUPP,
			    "libuffd_handle_from_fd");
		CHECK(out == SENTINEL_HANDLE);
		CHECK(fd_is_open(dup_fd));
		close(dup_fd);
		libuffd_handle_free(h);
	}
}

static void test_handle_queries(void)
{
	SECTION("libuffd_handle_fd / libuffd_handle_features / probe / feature_supported");
	uint64_t f = SENTINEL_U64;

	CHECK_FAILS(libuffd_handle_fd(NULL), -EINVAL, "libuffd_handle_fd");
	CHECK_FAILS(libuffd_handle_features(NULL, &f), -EINVAL, "libuffd_handle_features");
	CHECK_EQ_HEX(f, SENTINEL_U64);
	CHECK_FAILS(libuffd_handle_features(NULL, NULL), -EINVAL, "libuffd_handle_features");

	libuffd_handle *h = NULL;
	CHECK_RET(libuffd_open(NULL, &h), 0);
	if (!h)
		FATAL("libuffd_open(NULL) failed: %s", libuffd_last_error());
	CHECK_FAILS(libuffd_handle_features(h, NULL), -EINVAL, "libuffd_handle_features");
	libuffd_handle_free(h);

	CHECK_FAILS(libuffd_probe_features(NULL), -EINVAL, "libuffd_probe_features");

	CHECK_FAILS(libuffd_feature_supported(0), -EINVAL, "libuffd_feature_supported");
	/* A missing feature is 0, not an error, and leaves the last error. */
	CHECK_FAILS(libuffd_feature_supported(0), -EINVAL, "libuffd_feature_supported");
	char before[1024];
	snprintf(before, sizeof before, "%s", libuffd_last_error());
	CHECK_RET(libuffd_feature_supported(1ULL << 40), 0);
	CHECK_RET(libuffd_feature_supported(LIBUFFD_FEATURE_THREAD_ID | (1ULL << 63)), 0);
	CHECK_STREQ(libuffd_last_error(), before);
}

static void test_page_size(void)
{
	SECTION("libuffd_page_size");
	CHECK_FAILS(libuffd_page_size(NULL), -ENOMEM, "libuffd_page_size");
	CHECK_FAILS(libuffd_page_size((void *)UINTPTR_MAX), -ENOMEM, "libuffd_page_size");
	CHECK_FAILS(libuffd_page_size(wrap_start), -ENOMEM, "libuffd_page_size");
	char *p = hole();
	CHECK_FAILS(libuffd_page_size(p), -ENOMEM, "libuffd_page_size");
	CHECK_FAILS(libuffd_page_size(p + page - 1), -ENOMEM, "libuffd_page_size");
	/* Fine on the stack and in the middle of a page. */
	int local = 0;
	CHECK_RET(libuffd_page_size(&local), (int64_t)page);
	CHECK_RET(libuffd_page_size((char *)&local + 1), (int64_t)page);
}

static void test_read_events(void)
{
	SECTION("libuffd_read_events");
	struct libuffd_event ev[4], pristine[4];
	memset(ev, 0xa5, sizeof ev);
	memcpy(pristine, ev, sizeof ev);

	CHECK_FAILS(libuffd_read_events(NULL, ev, 4, 0), -EINVAL, "libuffd_read_events");
	CHECK_FAILS(libuffd_read_events(NULL, NULL, 0, -2), -EINVAL, "libuffd_read_events");

	libuffd_handle *hb = NULL, *hn = NULL;
	CHECK_RET(libuffd_open(NULL, &hb), 0);
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK);
	CHECK_RET(libuffd_open(&o, &hn), 0);
	if (!hb || !hn)
		FATAL("libuffd_open failed: %s", libuffd_last_error());

	libuffd_handle *hs[2] = { hb, hn };
	for (int i = 0; i < 2; i++) {
		libuffd_handle *h = hs[i];
		CHECK_FAILS(libuffd_read_events(h, NULL, 4, 0), -EINVAL, "libuffd_read_events");
		CHECK_FAILS(libuffd_read_events(h, NULL, 0, -1), -EINVAL, "libuffd_read_events");
		CHECK_FAILS(libuffd_read_events(h, ev, 0, 0), -EINVAL, "libuffd_read_events");
		CHECK_FAILS(libuffd_read_events(h, ev, 0, -1), -EINVAL, "libuffd_read_events");
		CHECK_FAILS(libuffd_read_events(h, ev, 4, -2), -EINVAL, "libuffd_read_events");
		CHECK_FAILS(libuffd_read_events(h, ev, 4, INT_MIN), -EINVAL, "libuffd_read_events");
		CHECK(memcmp(ev, pristine, sizeof ev) == 0);
	}
	/* A timeout on a blocking handle. */
	CHECK_FAILS(libuffd_read_events(hb, ev, 4, 0), -EINVAL, "libuffd_read_events");
	CHECK_FAILS(libuffd_read_events(hb, ev, 4, 10), -EINVAL, "libuffd_read_events");
	CHECK_FAILS(libuffd_read_events(hb, ev, 4, INT_MAX), -EINVAL, "libuffd_read_events");
	CHECK(memcmp(ev, pristine, sizeof ev) == 0);
	/* Nothing to read on a non-blocking handle is 0, not an error. */
	CHECK_RET(libuffd_read_events(hn, ev, 4, 0), 0);
	CHECK_RET(libuffd_read_events(hn, ev, 4, 20), 0);

	libuffd_handle_free(hb);
	libuffd_handle_free(hn);
}

/* A handle with every feature an op might need, and memory to test on. */
static libuffd_handle *h;
static char *mem;          /* 4 pages: [0,2) registered MISSING|WP, [2,4) not */
static char srcbuf[65536] __attribute__((aligned(65536)));

static void setup_ops(void)
{
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts,
		.flags = LIBUFFD_OPEN_NONBLOCK,
		.features = LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP | LIBUFFD_FEATURE_MOVE |
			    LIBUFFD_FEATURE_POISON | LIBUFFD_FEATURE_MINOR_SHMEM);
	CHECK_RET(libuffd_open(&o, &h), 0);
	if (!h)
		FATAL("libuffd_open: %s", libuffd_last_error());
	mem = h_map_anon(4 * page);
	CHECK_RET(libuffd_register(h, mem, 2 * page,
				LIBUFFD_REGISTER_MISSING | LIBUFFD_REGISTER_WP, NULL), 0);
	memset(srcbuf, 'S', sizeof srcbuf);
}

static void test_register(void)
{
	SECTION("libuffd_register");
	uint64_t ioctls = SENTINEL_U64;
	char *free_pages = mem + 2 * page;

	CHECK_FAILS(libuffd_register(NULL, free_pages, page, LIBUFFD_REGISTER_MISSING, &ioctls),
		    -EINVAL, "libuffd_register");
	CHECK_FAILS(libuffd_register(h, free_pages, 0, LIBUFFD_REGISTER_MISSING, &ioctls),
		    -EINVAL, "libuffd_register");
	CHECK_FAILS(libuffd_register(h, free_pages + 1, page, LIBUFFD_REGISTER_MISSING, &ioctls),
		    -EINVAL, "libuffd_register");
	CHECK_FAILS(libuffd_register(h, free_pages + page / 2, page, LIBUFFD_REGISTER_MISSING, &ioctls),
		    -EINVAL, "libuffd_register");
	CHECK_FAILS(libuffd_register(h, free_pages, page + 1, LIBUFFD_REGISTER_MISSING, &ioctls),
		    -EINVAL, "libuffd_register");
	CHECK_FAILS(libuffd_register(h, free_pages, page - 1, LIBUFFD_REGISTER_MISSING, &ioctls),
		    -EINVAL, "libuffd_register");
	CHECK_FAILS(libuffd_register(h, wrap_start, wrap_len, LIBUFFD_REGISTER_MISSING, &ioctls),
		    -EINVAL, "libuffd_register");
	CHECK_FAILS(libuffd_register(h, free_pages, SIZE_MAX - page + 1, LIBUFFD_REGISTER_MISSING, &ioctls),
		    -EINVAL, "libuffd_register");
	/* Empty and unknown modes. */
	CHECK_FAILS(libuffd_register(h, free_pages, page, 0, &ioctls), -EINVAL, "libuffd_register");
	CHECK_FAILS(libuffd_register(h, free_pages, page, 8, &ioctls), -EINVAL, "libuffd_register");
	CHECK_FAILS(libuffd_register(h, free_pages, page, LIBUFFD_REGISTER_MISSING | 16, &ioctls),
		    -EINVAL, "libuffd_register");
	CHECK_FAILS(libuffd_register(h, free_pages, page, 1ULL << 63, &ioctls), -EINVAL, "libuffd_register");
	CHECK_CONTAINS(libuffd_last_error(), "mode");
	/* MINOR on anonymous memory: the kernel refuses. */
	CHECK_FAILS(libuffd_register(h, free_pages, page, LIBUFFD_REGISTER_MINOR, &ioctls),
		    -EINVAL, "libuffd_register");
	/* Nothing mapped there: the kernel's EINVAL; the text says why. */
	CHECK_FAILS(libuffd_register(h, unmapped, page, LIBUFFD_REGISTER_MISSING, &ioctls),
		    -EINVAL, "libuffd_register");
	CHECK_CONTAINS(libuffd_last_error(), "nothing is mapped");
	CHECK_EQ_HEX(ioctls, SENTINEL_U64);

	/* A shared mapping that cannot be written (read-only shmem fd). */
	int mfd = memfd_create("bad-input", MFD_CLOEXEC);
	CHECK(mfd >= 0);
	if (mfd >= 0 && ftruncate(mfd, (off_t)page) == 0) {
		char path[64];
		snprintf(path, sizeof path, "/proc/self/fd/%d", mfd);
		int ro = open(path, O_RDONLY | O_CLOEXEC);
		CHECK(ro >= 0);
		void *rom = ro >= 0 ? mmap(NULL, page, PROT_READ, MAP_SHARED, ro, 0) : MAP_FAILED;
		CHECK(rom != MAP_FAILED);
		if (rom != MAP_FAILED) {
			CHECK_FAILS(libuffd_register(h, rom, page, LIBUFFD_REGISTER_MISSING, &ioctls),
				    -EPERM, "libuffd_register");
			CHECK_EQ_HEX(ioctls, SENTINEL_U64);
			munmap(rom, page);
		}
		if (ro >= 0)
			close(ro);
	}
	if (mfd >= 0)
		close(mfd);

	/* Registered with another userfaultfd. */
	libuffd_handle *other = NULL;
	CHECK_RET(libuffd_open(NULL, &other), 0);
	if (other) {
		CHECK_FAILS(libuffd_register(other, mem, page, LIBUFFD_REGISTER_MISSING, &ioctls),
			    -EBUSY, "libuffd_register");
		CHECK_EQ_HEX(ioctls, SENTINEL_U64);
		libuffd_handle_free(other);
	}

	/* hugetlb memory needs huge-page alignment (pages are reserved, see basic). */
	void *huge = mmap(NULL, 2u << 20, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (huge != MAP_FAILED) {
		CHECK_FAILS(libuffd_register(h, huge, page, LIBUFFD_REGISTER_MISSING, &ioctls),
			    -EINVAL, "libuffd_register");
		CHECK_FAILS(libuffd_register(h, (char *)huge + page, (2u << 20) - page,
					  LIBUFFD_REGISTER_MISSING, &ioctls),
			    -EINVAL, "libuffd_register");
		CHECK_EQ_HEX(ioctls, SENTINEL_U64);
		munmap(huge, 2u << 20);
	} else {
		printf("note: no hugetlb mapping (%s); hugetlb alignment not checked here\n",
		       strerror(errno));
	}
}

static void test_unregister_wake(void)
{
	SECTION("libuffd_unregister / libuffd_wake");
	char *p = mem + 2 * page;

	CHECK_FAILS(libuffd_unregister(NULL, p, page), -EINVAL, "libuffd_unregister");
	CHECK_FAILS(libuffd_unregister(h, p, 0), -EINVAL, "libuffd_unregister");
	CHECK_FAILS(libuffd_unregister(h, p + 8, page), -EINVAL, "libuffd_unregister");
	CHECK_FAILS(libuffd_unregister(h, p, page + 8), -EINVAL, "libuffd_unregister");
	CHECK_FAILS(libuffd_unregister(h, wrap_start, wrap_len), -EINVAL, "libuffd_unregister");
	/* Nothing mapped there: the kernel's EINVAL; the text says why. */
	CHECK_FAILS(libuffd_unregister(h, unmapped, page), -EINVAL, "libuffd_unregister");
	CHECK_CONTAINS(libuffd_last_error(), "nothing is mapped");

	CHECK_FAILS(libuffd_wake(NULL, mem, page), -EINVAL, "libuffd_wake");
	CHECK_FAILS(libuffd_wake(h, mem, 0), -EINVAL, "libuffd_wake");
	CHECK_FAILS(libuffd_wake(h, mem + 1, page), -EINVAL, "libuffd_wake");
	CHECK_FAILS(libuffd_wake(h, mem, page * 2 - 1), -EINVAL, "libuffd_wake");
	CHECK_FAILS(libuffd_wake(h, wrap_start, wrap_len), -EINVAL, "libuffd_wake");
	/* Waking with nobody waiting is fine. */
	CHECK_RET(libuffd_wake(h, mem, page), 0);
}

static void test_copy(void)
{
	SECTION("libuffd_copy");
	char *unreg = mem + 2 * page;

	CHECK_FAILS(libuffd_copy(NULL, mem, srcbuf, page, 0), -EINVAL, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, mem, srcbuf, 0, 0), -EINVAL, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, mem + 1, srcbuf, page, 0), -EINVAL, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, mem, srcbuf, page + 1, 0), -EINVAL, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, mem, srcbuf, 100, 0), -EINVAL, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, wrap_start, srcbuf, wrap_len, 0), -EINVAL, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, mem, wrap_start, wrap_len, 0), -EINVAL, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, mem, srcbuf, SIZE_MAX, 0), -EINVAL, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, mem, srcbuf, SIZE_MAX - page + 1, 0), -EINVAL, "libuffd_copy");
	/* Unknown mode bits. */
	CHECK_FAILS(libuffd_copy(h, mem, srcbuf, page, 4), -EINVAL, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, mem, srcbuf, page, LIBUFFD_COPY_DONTWAKE | 8), -EINVAL, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, mem, srcbuf, page, 1ULL << 63), -EINVAL, "libuffd_copy");
	CHECK_CONTAINS(libuffd_last_error(), "mode");
	/* Not registered: mapped, or not mapped at all. */
	CHECK_FAILS(libuffd_copy(h, unreg, srcbuf, page, 0), -ENOENT, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, unmapped, srcbuf, page, 0), -ENOENT, "libuffd_copy");
	/* Crossing the end of the registered range. */
	CHECK_FAILS(libuffd_copy(h, mem + page, srcbuf, 2 * page, 0), -ENOENT, "libuffd_copy");
	/* Unreadable source: the kernel says EFAULT. */
	CHECK_FAILS(libuffd_copy(h, mem, NULL, page, 0), -EFAULT, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, mem, unmapped, page, 0), -EFAULT, "libuffd_copy");
	/* A mode the registration does not allow: COPY_WP without MODE_WP. */
	char *missing_only = h_map_anon(page);
	CHECK_RET(libuffd_register(h, missing_only, page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	CHECK_FAILS(libuffd_copy(h, missing_only, srcbuf, page, LIBUFFD_COPY_WP), -EINVAL, "libuffd_copy");
	/* ... and the other operations on that registration. */
	CHECK_FAILS(libuffd_writeprotect(h, missing_only, page, LIBUFFD_WRITEPROTECT_WP), -ENOENT,
		    "libuffd_writeprotect");
	CHECK_FAILS(libuffd_continue(h, missing_only, page, 0), -EINVAL, "libuffd_continue");
	CHECK_FAILS(libuffd_continue(h, missing_only, page, LIBUFFD_CONTINUE_WP), -EINVAL,
		    "libuffd_continue");
	munmap(missing_only, page);
	/* The failed calls populated nothing: a real copy still works. */
	CHECK_RET(libuffd_copy(h, mem, srcbuf, page, 0), (int64_t)page);
	CHECK_EQ(mem[0], 'S');
	CHECK_FAILS(libuffd_copy(h, mem, srcbuf, page, 0), -EEXIST, "libuffd_copy");
	CHECK_FAILS(libuffd_copy(h, mem, srcbuf, page, LIBUFFD_COPY_DONTWAKE), -EEXIST, "libuffd_copy");
	CHECK_CONTAINS(libuffd_last_error(), "EEXIST");
}

static void test_zeropage(void)
{
	SECTION("libuffd_zeropage");
	char *p = mem + page; /* registered, still missing */

	CHECK_FAILS(libuffd_zeropage(NULL, p, page, 0), -EINVAL, "libuffd_zeropage");
	CHECK_FAILS(libuffd_zeropage(h, p, 0, 0), -EINVAL, "libuffd_zeropage");
	CHECK_FAILS(libuffd_zeropage(h, p + 16, page, 0), -EINVAL, "libuffd_zeropage");
	CHECK_FAILS(libuffd_zeropage(h, p, page + 16, 0), -EINVAL, "libuffd_zeropage");
	CHECK_FAILS(libuffd_zeropage(h, wrap_start, wrap_len, 0), -EINVAL, "libuffd_zeropage");
	CHECK_FAILS(libuffd_zeropage(h, p, SIZE_MAX, 0), -EINVAL, "libuffd_zeropage");
	CHECK_FAILS(libuffd_zeropage(h, p, page, 2), -EINVAL, "libuffd_zeropage");
	CHECK_FAILS(libuffd_zeropage(h, p, page, 1ULL << 40), -EINVAL, "libuffd_zeropage");
	CHECK_CONTAINS(libuffd_last_error(), "mode");
	CHECK_FAILS(libuffd_zeropage(h, mem + 2 * page, page, 0), -ENOENT, "libuffd_zeropage");
	CHECK_FAILS(libuffd_zeropage(h, unmapped, page, 0), -ENOENT, "libuffd_zeropage");
	/* Already populated by test_copy. */
	CHECK_FAILS(libuffd_zeropage(h, mem, page, 0), -EEXIST, "libuffd_zeropage");
}

static void test_writeprotect(void)
{
	SECTION("libuffd_writeprotect");
	CHECK_FAILS(libuffd_writeprotect(NULL, mem, page, LIBUFFD_WRITEPROTECT_WP), -EINVAL,
		    "libuffd_writeprotect");
	CHECK_FAILS(libuffd_writeprotect(h, mem, 0, LIBUFFD_WRITEPROTECT_WP), -EINVAL,
		    "libuffd_writeprotect");
	CHECK_FAILS(libuffd_writeprotect(h, mem + 2, page, LIBUFFD_WRITEPROTECT_WP), -EINVAL,
		    "libuffd_writeprotect");
	CHECK_FAILS(libuffd_writeprotect(h, mem, 3, LIBUFFD_WRITEPROTECT_WP), -EINVAL,
		    "libuffd_writeprotect");
	CHECK_FAILS(libuffd_writeprotect(h, wrap_start, wrap_len, LIBUFFD_WRITEPROTECT_WP), -EINVAL,
		    "libuffd_writeprotect");
	CHECK_FAILS(libuffd_writeprotect(h, mem, page, 4), -EINVAL, "libuffd_writeprotect");
	CHECK_FAILS(libuffd_writeprotect(h, mem, page, LIBUFFD_WRITEPROTECT_WP | 4), -EINVAL,
		    "libuffd_writeprotect");
	CHECK_FAILS(libuffd_writeprotect(h, mem, page, 1ULL << 63), -EINVAL, "libuffd_writeprotect");
	CHECK_CONTAINS(libuffd_last_error(), "mode");
	/* WP together with DONTWAKE. */
	CHECK_FAILS(libuffd_writeprotect(h, mem, page,
				      LIBUFFD_WRITEPROTECT_WP | LIBUFFD_WRITEPROTECT_DONTWAKE),
		    -EINVAL, "libuffd_writeprotect");
	/* Not WP-registered. */
	CHECK_FAILS(libuffd_writeprotect(h, mem + 2 * page, page, LIBUFFD_WRITEPROTECT_WP), -ENOENT,
		    "libuffd_writeprotect");
	CHECK_FAILS(libuffd_writeprotect(h, unmapped, page, LIBUFFD_WRITEPROTECT_WP), -ENOENT,
		    "libuffd_writeprotect");
}

static void test_continue_poison(void)
{
	SECTION("libuffd_continue");
	char *p = mem + page;

	CHECK_FAILS(libuffd_continue(NULL, p, page, 0), -EINVAL, "libuffd_continue");
	CHECK_FAILS(libuffd_continue(h, p, 0, 0), -EINVAL, "libuffd_continue");
	CHECK_FAILS(libuffd_continue(h, p + 1, page, 0), -EINVAL, "libuffd_continue");
	CHECK_FAILS(libuffd_continue(h, p, page - 1, 0), -EINVAL, "libuffd_continue");
	CHECK_FAILS(libuffd_continue(h, wrap_start, wrap_len, 0), -EINVAL, "libuffd_continue");
	CHECK_FAILS(libuffd_continue(h, p, SIZE_MAX, 0), -EINVAL, "libuffd_continue");
	CHECK_FAILS(libuffd_continue(h, p, page, 4), -EINVAL, "libuffd_continue");
	CHECK_FAILS(libuffd_continue(h, p, page, 1ULL << 63), -EINVAL, "libuffd_continue");
	CHECK_CONTAINS(libuffd_last_error(), "mode");
	CHECK_FAILS(libuffd_continue(h, mem + 2 * page, page, 0), -ENOENT, "libuffd_continue");
	CHECK_FAILS(libuffd_continue(h, unmapped, page, 0), -ENOENT, "libuffd_continue");

	SECTION("libuffd_poison");
	CHECK_FAILS(libuffd_poison(NULL, p, page, 0), -EINVAL, "libuffd_poison");
	CHECK_FAILS(libuffd_poison(h, p, 0, 0), -EINVAL, "libuffd_poison");
	CHECK_FAILS(libuffd_poison(h, p + 1, page, 0), -EINVAL, "libuffd_poison");
	CHECK_FAILS(libuffd_poison(h, p, page * 3 / 2, 0), -EINVAL, "libuffd_poison");
	CHECK_FAILS(libuffd_poison(h, wrap_start, wrap_len, 0), -EINVAL, "libuffd_poison");
	CHECK_FAILS(libuffd_poison(h, p, SIZE_MAX, 0), -EINVAL, "libuffd_poison");
	CHECK_FAILS(libuffd_poison(h, p, page, 2), -EINVAL, "libuffd_poison");
	CHECK_FAILS(libuffd_poison(h, p, page, 1ULL << 63), -EINVAL, "libuffd_poison");
	CHECK_CONTAINS(libuffd_last_error(), "mode");
	CHECK_FAILS(libuffd_poison(h, mem + 2 * page, page, 0), -ENOENT, "libuffd_poison");
	CHECK_FAILS(libuffd_poison(h, unmapped, page, 0), -ENOENT, "libuffd_poison");
	CHECK_FAILS(libuffd_poison(h, mem, page, 0), -EEXIST, "libuffd_poison");
}

static void test_move(void)
{
	SECTION("libuffd_move");
	char *dst = mem + page; /* registered, missing */
	char *src = h_map_anon(2 * page);
	memset(src, 'M', 2 * page);

	CHECK_FAILS(libuffd_move(NULL, dst, src, page, 0), -EINVAL, "libuffd_move");
	CHECK_FAILS(libuffd_move(h, dst, src, 0, 0), -EINVAL, "libuffd_move");
	CHECK_FAILS(libuffd_move(h, dst + 1, src, page, 0), -EINVAL, "libuffd_move");
	CHECK_FAILS(libuffd_move(h, dst, src + 1, page, 0), -EINVAL, "libuffd_move");
	CHECK_FAILS(libuffd_move(h, dst, src, page + 1, 0), -EINVAL, "libuffd_move");
	CHECK_FAILS(libuffd_move(h, wrap_start, src, wrap_len, 0), -EINVAL, "libuffd_move");
	CHECK_FAILS(libuffd_move(h, dst, wrap_start, wrap_len, 0), -EINVAL, "libuffd_move");
	CHECK_FAILS(libuffd_move(h, dst, src, SIZE_MAX, 0), -EINVAL, "libuffd_move");
	CHECK_FAILS(libuffd_move(h, dst, src, page, 4), -EINVAL, "libuffd_move");
	CHECK_FAILS(libuffd_move(h, dst, src, page, 1ULL << 63), -EINVAL, "libuffd_move");
	CHECK_CONTAINS(libuffd_last_error(), "mode");
	/* Source and destination the same range. */
	CHECK(libuffd_move(h, dst, dst, page, 0) < 0);
	/* Source holes (not mapped at all, or a hole in a mapping). */
	CHECK_FAILS(libuffd_move(h, dst, unmapped, page, 0), -ENOENT, "libuffd_move");
	char *holey = h_map_anon(page);
	CHECK_FAILS(libuffd_move(h, dst, holey, page, 0), -ENOENT, "libuffd_move");
	munmap(holey, page);
	/* Destination mapped but not registered with this handle: the kernel
	 * says EINVAL (include/libuffd.h documents it so); nothing mapped at the
	 * destination: ENOENT. */
	CHECK_FAILS(libuffd_move(h, mem + 2 * page, src, page, 0), -EINVAL, "libuffd_move");
	CHECK_CONTAINS(libuffd_last_error(), "registered");
	CHECK_FAILS(libuffd_move(h, unmapped, src, page, 0), -ENOENT, "libuffd_move");
	/* Destination populated already. */
	CHECK_FAILS(libuffd_move(h, mem, src, page, 0), -EEXIST, "libuffd_move");
	/* Nothing was moved by the failures. */
	CHECK_EQ(src[0], 'M');
	CHECK_EQ(src[page], 'M');
	munmap(src, 2 * page);
}

int main(void)
{
	page = h_page();
	wrap_start = (void *)(UINTPTR_MAX - 4095);

	printf("libuffd_last_error() before any failure: \"%s\"\n", libuffd_last_error());
	CHECK_STREQ(libuffd_last_error(), "no error");

	test_strerror_and_versions();
	test_open();
	test_handle_from_fd();
	test_handle_queries();
	test_page_size();
	test_read_events();
	setup_ops();
	test_register();
	test_unregister_wake();
	test_copy();
	test_zeropage();
	test_writeprotect();
	test_continue_poison();
	test_move();

	/* The handle still works after all that. */
	SECTION("handle still usable");
	CHECK_RET(libuffd_unregister(h, mem, 2 * page), 0);
	libuffd_handle_free(h);
	munmap(mem, 4 * page);
	return h_finish();
}
