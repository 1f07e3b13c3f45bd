/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * fd_source.c: LIBUFFD_SOURCE_FD never lies. This program defines pread()
 * and pread64() itself, so the library's reads of the source file (linked
 * statically or dynamically: the executable's definition comes first)
 * go through an interposer that returns short reads, EINTR, or EIO for a
 * range of the file. Real memory (anonymous, memfd, hugetlb) is faulted
 * in by 4 threads and every page is checked byte by byte: a page is
 * either exactly the file's bytes, or its thread got SIGBUS and the
 * monitor's `failed` counter counts it; never zeros the file does not
 * hold. Also: a file shorter than the region (with and without
 * LIBUFFD_REGION_ZERO_PAST_EOF), a file truncated while the monitor runs,
 * and a file offset that overflows.
 */
#include "harness.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define THREADS 4

/* ---------------------------------------------------------- interposer */

enum mode { PASS, SHORT, EINTR_SHORT, EIO_RANGE };

static atomic_int mode = PASS;
/* The source file, by identity: the monitor reads its own duplicate of
 * the descriptor, under another number. */
static atomic_int target_set;
static _Atomic uint64_t target_dev, target_ino;
static atomic_long calls, shorts, eintrs, eios;
static _Atomic int64_t eio_from, eio_to; /* file offsets that fail with EIO */

static int is_target(int fd)
{
	struct stat st;
	if (!atomic_load(&target_set) || fstat(fd, &st) != 0)
		return 0;
	return (uint64_t)st.st_dev == atomic_load(&target_dev) &&
	       (uint64_t)st.st_ino == atomic_load(&target_ino);
}

static void set_target(int fd)
{
	struct stat st;
	if (fd < 0) {
		atomic_store(&target_set, 0);
		return;
	}
	if (fstat(fd, &st) != 0)
		FATAL("fstat: %s", strerror(errno));
	atomic_store(&target_dev, (uint64_t)st.st_dev);
	atomic_store(&target_ino, (uint64_t)st.st_ino);
	atomic_store(&target_set, 1);
}

static ssize_t fake_pread(int fd, void *buf, size_t n, int64_t off)
{
	if (atomic_load(&mode) == PASS || n == 0 || !is_target(fd))
		return syscall(SYS_pread64, fd, buf, n, off);
	long c = atomic_fetch_add(&calls, 1);
	switch (atomic_load(&mode)) {
	case EINTR_SHORT:
		if (c % 2 == 0) {
			atomic_fetch_add(&eintrs, 1);
			errno = EINTR;
			return -1;
		}
		/* the other calls are short */
		__attribute__((fallthrough));
	case SHORT:
		if (n > 1) {
			/* About half, never page-aligned. */
			size_t half = n / 2 > 7 ? n / 2 - 7 : 1;
			atomic_fetch_add(&shorts, 1);
			n = half;
		}
		return syscall(SYS_pread64, fd, buf, n, off);
	case EIO_RANGE: {
		int64_t a = atomic_load(&eio_from), b = atomic_load(&eio_to);
		if (off >= a && off < b) {
			atomic_fetch_add(&eios, 1);
			errno = EIO;
			return -1;
		}
		/* A read that reaches the bad range stops short before it, as
		 * a disk does at a bad sector. */
		if (off < a && off + (int64_t)n > a)
			n = (size_t)(a - off);
		return syscall(SYS_pread64, fd, buf, n, off);
	}
	default:
		return syscall(SYS_pread64, fd, buf, n, off);
	}
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	return fake_pread(fd, buf, n, (int64_t)off);
}

ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
	return fake_pread(fd, buf, n, (int64_t)off);
}

/* ------------------------------------------------------------- memory */

struct kind {
	const char *name;
	size_t ps;
	size_t pages;
	int shmem, huge;
	uint64_t feature;
};

static const struct kind KINDS[] = {
	{ "anon", 4096, 64, 0, 0, 0 },
	{ "memfd", 4096, 64, 1, 0, LIBUFFD_FEATURE_MISSING_SHMEM },
	{ "hugetlb", 2UL << 20, 4, 0, 1, LIBUFFD_FEATURE_MISSING_HUGETLBFS },
};

static unsigned char byte_at(uint64_t off)
{
	/* Never 0, so a zero byte is always a lie. */
	return (unsigned char)(1 + (off * 131 + (off >> 12) * 7 + (off >> 21) * 3) % 255);
}

static char *map_kind(const struct kind *k, size_t len)
{
	void *p;
	if (k->huge) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	} else if (k->shmem) {
		int fd = memfd_create("libuffd-fd-source-mem", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)len) < 0)
			FATAL("memfd: %s", strerror(errno));
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
	} else {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	return p == MAP_FAILED ? NULL : p;
}

/* The source file: `len` bytes of byte_at(). */
static int make_file(size_t len)
{
	int fd = memfd_create("libuffd-fd-source", MFD_CLOEXEC);
	if (fd < 0)
		FATAL("memfd_create: %s", strerror(errno));
	unsigned char *b = malloc(len ? len : 1);
	for (size_t i = 0; i < len; i++)
		b[i] = byte_at(i);
	size_t done = 0;
	while (done < len) {
		ssize_t w = write(fd, b + done, len - done);
		if (w <= 0)
			FATAL("write: %s", strerror(errno));
		done += (size_t)w;
	}
	free(b);
	return fd;
}

/* ----------------------------------------------------- faulting threads */

static __thread sigjmp_buf jb;
static __thread volatile int armed;

static void on_sigbus(int sig)
{
	(void)sig;
	if (!armed)
		abort();
	siglongjmp(jb, 1);
}

struct toucher {
	char *base;
	size_t ps, first, count;
	unsigned char *sigbus; /* per page: 1 if its access raised SIGBUS */
};

static void *touch(void *arg)
{
	struct toucher *t = arg;
	for (volatile size_t p = t->first; p < t->first + t->count; p++) {
		volatile char *a = t->base + p * t->ps + (p * 97) % t->ps;
		if (sigsetjmp(jb, 1) == 0) {
			armed = 1;
			(void)*a;
			armed = 0;
		} else {
			armed = 0;
			t->sigbus[p] = 1;
		}
	}
	return NULL;
}

/* Fault pages [first, first + count) in from THREADS threads. */
static void touch_range(char *base, size_t ps, size_t first, size_t count, unsigned char *sigbus)
{
	pthread_t th[THREADS];
	struct toucher t[THREADS];
	size_t per = (count + THREADS - 1) / THREADS;
	for (int i = 0; i < THREADS; i++) {
		size_t a = first + i * per, e = a + per;
		if (a > first + count)
			a = first + count;
		if (e > first + count)
			e = first + count;
		t[i] = (struct toucher){ base, ps, a, e - a, sigbus };
		pthread_create(&th[i], NULL, touch, &t[i]);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
}

static atomic_int offset_logs;

static void on_log(void *ud, libuffd_monitor *m, const char *msg)
{
	(void)ud;
	(void)m;
	if (msg && strstr(msg, "pread") && strstr(msg, "offset 0x"))
		atomic_fetch_add(&offset_logs, 1);
}

/* -------------------------------------------------------------- a case */

struct scenario {
	const char *name;
	enum mode mode;
	size_t file_len;       /* bytes of the source file */
	int zero_past_eof;     /* LIBUFFD_REGION_ZERO_PAST_EOF */
	size_t first_pages;    /* touched before the truncation (0: none) */
	size_t truncate_to;    /* file length after them */
	uint64_t fd_offset;
	size_t eio_page, eio_pages; /* EIO_RANGE: the bad pages */
	int prefetch;          /* LIBUFFD_REGION_PREFETCH, awaited before the faults */
};

/* What page `p` must read: 1 if the file's bytes (with zeros past `eof`
 * when zero_past_eof), 0 if it must have failed. */
static int page_readable(const struct scenario *s, size_t ps, size_t p, size_t eof)
{
	if (s->fd_offset > INT64_MAX - (uint64_t)(64 * ps))
		return 0;
	if (s->mode == EIO_RANGE && p >= s->eio_page && p < s->eio_page + s->eio_pages)
		return 0;
	if ((p + 1) * ps > eof && !s->zero_past_eof)
		return 0;
	return 1;
}

static void run_scenario(const struct kind *k, const struct scenario *s)
{
	char section[160];
	snprintf(section, sizeof section, "%s: %s", k->name, s->name);
	SECTION(section);
	size_t ps = k->ps, len = k->pages * ps;
	char *mem = map_kind(k, len);
	if (!mem) {
		printf("   (no %s memory: %s; case not run)\n", k->name, strerror(errno));
		return;
	}
	int fd = make_file(s->file_len);
	struct libuffd_open_opts oo = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK,
							.features = k->feature, .required_features = k->feature);
	libuffd_handle *h = NULL;
	int rc = libuffd_open(&oo, &h);
	if (rc == -EOPNOTSUPP) {
		printf("   (kernel lacks %s missing faults; case not run)\n", k->name);
		munmap(mem, len);
		close(fd);
		return;
	}
	if (rc < 0)
		FATAL("libuffd_open: %s", libuffd_last_error());
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_log = on_log);
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, &ops, NULL, NULL, &m));
	uint32_t id = 0;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	libuffd_handle_free(h);
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(
		libuffd_region_opts, .source = LIBUFFD_SOURCE_FD, .fd = fd, .fd_offset = s->fd_offset,
		.register_mode = LIBUFFD_REGISTER_MISSING,
		.flags = (s->zero_past_eof ? LIBUFFD_REGION_ZERO_PAST_EOF : 0) |
			 (s->prefetch ? LIBUFFD_REGION_PREFETCH : 0));
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, len, &r));

	atomic_store(&calls, 0);
	atomic_store(&shorts, 0);
	atomic_store(&eintrs, 0);
	atomic_store(&eios, 0);
	atomic_store(&offset_logs, 0);
	atomic_store(&eio_from, (int64_t)(s->eio_page * ps + ps / 3));
	atomic_store(&eio_to, (int64_t)((s->eio_page + s->eio_pages) * ps));
	set_target(fd);
	atomic_store(&mode, s->mode);
	CHECK_OK(libuffd_monitor_start(m));

	if (s->prefetch) {
		/* The prefetcher places every whole page the file holds (all
		 * of them with ZERO_PAST_EOF) and nothing else; wait for it. */
		uint64_t want = s->zero_past_eof ? len : (s->file_len < len ? s->file_len : len) / ps * ps;
		struct libuffd_monitor_stats st = { .sz = sizeof st };
		for (int i = 0; i < 5000; i++) {
			CHECK_OK(libuffd_monitor_get_stats(m, &st));
			if (st.prefetched_bytes >= want)
				break;
			usleep(1000);
		}
		usleep(20000); /* nothing more comes */
		CHECK_OK(libuffd_monitor_get_stats(m, &st));
		CHECK_EQ(st.prefetched_bytes, want);
		CHECK_EQ(st.faults, 0);
	}
	unsigned char *sigbus = calloc(k->pages, 1);
	size_t eof = s->file_len;
	size_t first = s->first_pages;
	if (first) {
		touch_range(mem, ps, 0, first, sigbus);
		if (ftruncate(fd, (off_t)s->truncate_to) < 0)
			FATAL("ftruncate: %s", strerror(errno));
	}
	touch_range(mem, ps, first, k->pages - first, sigbus);
	CHECK_OK(libuffd_monitor_stop(m));
	CHECK_RET(libuffd_monitor_wait(m), 0);
	atomic_store(&mode, PASS);
	set_target(-1);

	/* Every page, byte by byte. */
	size_t want_failed = 0, bad_pages = 0, zero_lies = 0;
	for (size_t p = 0; p < k->pages; p++) {
		size_t page_eof = p < first ? s->file_len : s->truncate_to ? s->truncate_to : eof;
		int ok = page_readable(s, ps, p, page_eof);
		if (!ok) {
			want_failed++;
			CHECK_MSG(sigbus[p], "page %zu must fail (SIGBUS), but read", p);
			continue;
		}
		if (sigbus[p]) {
			CHECK_MSG(0, "page %zu got SIGBUS", p);
			bad_pages++;
			continue;
		}
		const unsigned char *b = (const unsigned char *)mem + p * ps;
		size_t wrong = 0, first_wrong = 0;
		for (size_t i = 0; i < ps; i++) {
			uint64_t off = s->fd_offset + p * ps + i;
			unsigned char want = off < page_eof ? byte_at(off) : 0;
			if (b[i] != want) {
				if (!wrong++)
					first_wrong = i;
				if (b[i] == 0)
					zero_lies++;
			}
		}
		if (wrong) {
			bad_pages++;
			CHECK_MSG(0, "page %zu: %zu bytes wrong, the first at +%#zx (%#x, expected %#x)", p, wrong,
				  first_wrong, b[first_wrong],
				  s->fd_offset + p * ps + first_wrong < page_eof
					  ? byte_at(s->fd_offset + p * ps + first_wrong)
					  : 0);
		}
	}
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	CHECK_EQ(st.failed, want_failed);
	if (want_failed)
		CHECK(atomic_load(&offset_logs) >= 1); /* on_log named the offset */
	if (s->mode == SHORT || s->mode == EINTR_SHORT)
		CHECK(atomic_load(&shorts) > 0);
	if (s->mode == EINTR_SHORT)
		CHECK(atomic_load(&eintrs) > 0);
	if (s->mode == EIO_RANGE)
		CHECK(atomic_load(&eios) > 0);
	printf("   %zu pages, %zu must fail; failed=%" PRIu64 " resolved=%" PRIu64
	       "; wrong pages %zu (zero bytes where data was due: %zu); preads %ld (short %ld, EINTR %ld, EIO %ld)\n",
	       k->pages, want_failed, st.failed, st.resolved, bad_pages, zero_lies, atomic_load(&calls),
	       atomic_load(&shorts), atomic_load(&eintrs), atomic_load(&eios));
	free(sigbus);
	libuffd_monitor_free(m);
	munmap(mem, len);
	close(fd);
}

int main(void)
{
	struct sigaction sa = { .sa_handler = on_sigbus };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);

	for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++) {
		const struct kind *k = &KINDS[i];
		size_t ps = k->ps, len = k->pages * ps;
		const struct scenario sc[] = {
			{ .name = "whole file, plain preads", .mode = PASS, .file_len = len },
			{ .name = "short reads (about half, unaligned)", .mode = SHORT, .file_len = len },
			{ .name = "EINTR every other call, short reads between", .mode = EINTR_SHORT,
			  .file_len = len },
			{ .name = "EIO on two pages", .mode = EIO_RANGE, .file_len = len,
			  .eio_page = k->pages / 2 + 1, .eio_pages = 2 },
			{ .name = "file ends inside the region (mid-page): those pages fail", .mode = PASS,
			  .file_len = len * 5 / 8 + ps / 2 },
			{ .name = "file ends inside the region, LIBUFFD_REGION_ZERO_PAST_EOF", .mode = SHORT,
			  .file_len = len * 5 / 8 + ps / 2, .zero_past_eof = 1 },
			{ .name = "file truncated mid-run", .mode = SHORT, .file_len = len,
			  .first_pages = k->pages / 2, .truncate_to = len * 3 / 4 + ps / 3 },
			{ .name = "fd_offset + page offset overflows", .mode = PASS, .file_len = len,
			  .fd_offset = UINT64_MAX - ps + 1 },
			{ .name = "prefetch, short reads", .mode = SHORT, .file_len = len, .prefetch = 1 },
			{ .name = "prefetch, EINTR and short reads", .mode = EINTR_SHORT, .file_len = len,
			  .prefetch = 1 },
			{ .name = "prefetch, file ends inside the region: demand faults there fail",
			  .mode = SHORT, .file_len = len * 5 / 8 + ps / 2, .prefetch = 1 },
			{ .name = "prefetch, file ends inside the region, LIBUFFD_REGION_ZERO_PAST_EOF",
			  .mode = SHORT, .file_len = len * 5 / 8 + ps / 2, .prefetch = 1, .zero_past_eof = 1 },
		};
		for (size_t j = 0; j < sizeof sc / sizeof sc[0]; j++)
			run_scenario(k, &sc[j]);
	}
	return h_finish();
}
