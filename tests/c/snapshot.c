/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * snapshot.c: libuffd_snapshot_begin/wait/progress/free. With 4 writer
 * threads running, a snapshot equals the memory at begin byte for byte
 * (writers paused, reference copied, begin, writers resumed; compared
 * after wait), on anonymous (with never-touched pages), shmem and hugetlb
 * memory, into a buffer and into a file. A destination that cannot be
 * written ends the snapshot with an error from wait and releases the
 * writers. Bad input on every function: a clear -errno and message.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>

#define HUGE (2UL << 20)
#define WRITERS 4

enum kind { ANON, SHMEM, HUGETLB };
static const char *kind_name[] = { "anon", "shmem", "hugetlb" };

static void *map_kind(enum kind k, size_t len)
{
	if (k == ANON)
		return h_map_anon(len);
	int fd = memfd_create("snap", MFD_CLOEXEC | (k == HUGETLB ? MFD_HUGETLB : 0));
	if (fd < 0 || ftruncate(fd, (off_t)len) != 0)
		return NULL;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	return p == MAP_FAILED ? NULL : p;
}

struct ws {
	unsigned char *mem;
	size_t len, first;
	atomic_int stop, pause, paused;
	atomic_long writes;
};

struct warg {
	struct ws *s;
	unsigned w;
};

static void *writer(void *p)
{
	struct warg *a = p;
	struct ws *s = a->s;
	uint64_t x = 0x2545F4914F6CDD1DULL * (a->w + 3);
	while (!atomic_load(&s->stop)) {
		if (atomic_load(&s->pause)) {
			atomic_fetch_add(&s->paused, 1);
			while (atomic_load(&s->pause) && !atomic_load(&s->stop))
				sched_yield();
			atomic_fetch_sub(&s->paused, 1);
			continue;
		}
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		size_t off = s->first + (size_t)(x % (s->len - s->first));
		((volatile unsigned char *)s->mem)[off] = (unsigned char)((x >> 8) | 1);
		atomic_fetch_add(&s->writes, 1);
	}
	return NULL;
}

static void exact(enum kind k, int to_fd)
{
	char name[64];
	snprintf(name, sizeof name, "exact %s %s", kind_name[k], to_fd ? "fd" : "buffer");
	SECTION(name);
	size_t ps = k == HUGETLB ? HUGE : 4096, pages = k == HUGETLB ? 6 : 2048;
	size_t len = pages * ps;
	unsigned char *mem = map_kind(k, len);
	if (!mem) {
		printf("SKIP: %s: no memory of this kind (%s)\n", name, strerror(errno));
		return;
	}
	/* Anonymous: the first eighth never touched (zeros). */
	size_t untouched = k == ANON ? pages / 8 : 0;
	for (size_t i = untouched * ps; i < len; i++)
		mem[i] = (unsigned char)(i * 13 + 7);
	struct ws s = { .mem = mem, .len = len, .first = 0 };
	pthread_t t[WRITERS];
	struct warg a[WRITERS];
	atomic_store(&s.pause, 1);
	for (unsigned i = 0; i < WRITERS; i++) {
		a[i] = (struct warg){ &s, i };
		pthread_create(&t[i], NULL, writer, &a[i]);
	}
	while (atomic_load(&s.paused) < WRITERS)
		sched_yield();
	unsigned char *ref = malloc(len);
	memset(ref, 0, untouched * ps);
	memcpy(ref + untouched * ps, mem + untouched * ps, len - untouched * ps);
	unsigned char *buf = h_map_anon(len);
	int fd = memfd_create("snap-dest", MFD_CLOEXEC);
	LIBUFFD_OPTS(libuffd_snapshot_opts, o);
	if (to_fd) {
		o.dest = LIBUFFD_SNAPSHOT_TO_FD;
		o.fd = fd;
		o.fd_offset = 8192;
	} else {
		o.dest = LIBUFFD_SNAPSHOT_TO_BUFFER;
		o.buffer = buf;
	}
	struct libuffd_snapshot *snap = NULL;
	long before = atomic_load(&s.writes);
	CHECK_OK(libuffd_snapshot_begin(mem, len, &o, &snap));
	if (!snap)
		FATAL("%s: no snapshot: %s", name, libuffd_last_error());
	atomic_store(&s.pause, 0);
	uint64_t copied = 0, total = 0;
	CHECK_OK(libuffd_snapshot_progress(snap, &copied, &total));
	CHECK_EQ(total, pages);
	CHECK_RET(libuffd_snapshot_wait(snap, 60000), 0);
	CHECK_OK(libuffd_snapshot_progress(snap, &copied, NULL));
	CHECK_EQ(copied, pages);
	usleep(20000);
	atomic_store(&s.stop, 1);
	for (unsigned i = 0; i < WRITERS; i++)
		pthread_join(t[i], NULL);
	CHECK_MSG(atomic_load(&s.writes) - before > 100, "%s: writers wrote only %ld times",
		  name, atomic_load(&s.writes) - before);
	unsigned char *img = buf;
	if (to_fd) {
		img = malloc(len);
		size_t got = 0;
		while (got < len) {
			ssize_t n = pread(fd, img + got, len - got, (off_t)(8192 + got));
			if (n <= 0)
				FATAL("pread: %s", strerror(errno));
			got += (size_t)n;
		}
	}
	int bad = -1;
	for (size_t p = 0; p < pages && bad < 0; p++)
		if (memcmp(img + p * ps, ref + p * ps, ps) != 0)
			bad = (int)p;
	CHECK_MSG(bad < 0, "%s: page %d of the snapshot differs from the memory at begin", name, bad);
	CHECK(memcmp(mem, ref, len) != 0);
	mem[0] = 1; /* un-protected */
	libuffd_snapshot_free(snap);
	if (to_fd)
		free(img);
	close(fd);
	free(ref);
	munmap(buf, len);
	munmap(mem, len);
}

static void *write_one(void *p)
{
	((volatile unsigned char *)p)[1] = 9;
	return NULL;
}

static void errors(void)
{
	SECTION("errors end the snapshot");
	size_t len = 64 * 4096;
	unsigned char *mem = h_map_anon(len);
	memset(mem, 7, len);
	unsigned char *buf = h_map_anon(len);
	mprotect(buf, len, PROT_READ);
	LIBUFFD_OPTS(libuffd_snapshot_opts, o, .dest = LIBUFFD_SNAPSHOT_TO_BUFFER, .buffer = buf);
	struct libuffd_snapshot *snap = NULL;
	CHECK_OK(libuffd_snapshot_begin(mem, len, &o, &snap));
	pthread_t t;
	pthread_create(&t, NULL, write_one, mem + 63 * 4096);
	CHECK_FAILS(libuffd_snapshot_wait(snap, 10000), -EFAULT, "libuffd_snapshot_wait");
	CHECK_CONTAINS(libuffd_last_error(), "incomplete");
	pthread_join(t, NULL);
	CHECK_EQ(mem[63 * 4096 + 1], 9);
	libuffd_snapshot_free(snap);

	char path[] = "/tmp/libuffd-snap-XXXXXX";
	int w = mkstemp(path);
	int ro = open(path, O_RDONLY);
	unlink(path);
	close(w);
	LIBUFFD_OPTS(libuffd_snapshot_opts, f, .dest = LIBUFFD_SNAPSHOT_TO_FD, .fd = ro);
	CHECK_OK(libuffd_snapshot_begin(mem, len, &f, &snap));
	CHECK_FAILS(libuffd_snapshot_wait(snap, 10000), -EBADF, "libuffd_snapshot_wait");
	CHECK_CONTAINS(libuffd_last_error(), "pwrite");
	libuffd_snapshot_free(snap);
	close(ro);
	mem[5] = 1;
	munmap(buf, len);
	munmap(mem, len);
}

static void bad_input(void)
{
	SECTION("bad input");
	size_t len = 8 * 4096;
	unsigned char *mem = h_map_anon(len);
	unsigned char *buf = h_map_anon(len);
	struct libuffd_snapshot *snap = NULL;
	LIBUFFD_OPTS(libuffd_snapshot_opts, o, .dest = LIBUFFD_SNAPSHOT_TO_BUFFER, .buffer = buf);
	CHECK_FAILS(libuffd_snapshot_begin(NULL, len, &o, &snap), -EINVAL, "libuffd_snapshot_begin");
	CHECK_FAILS(libuffd_snapshot_begin(mem, len, NULL, &snap), -EINVAL, "libuffd_snapshot_begin");
	CHECK_CONTAINS(libuffd_last_error(), "destination");
	CHECK_FAILS(libuffd_snapshot_begin(mem, len, &o, NULL), -EINVAL, "libuffd_snapshot_begin");
	CHECK_FAILS(libuffd_snapshot_begin(mem, 0, &o, &snap), -EINVAL, "libuffd_snapshot_begin");
	CHECK_FAILS(libuffd_snapshot_begin(mem + 1, 4096, &o, &snap), -EINVAL, "libuffd_snapshot_begin");
	LIBUFFD_OPTS(libuffd_snapshot_opts, nodest);
	CHECK_FAILS(libuffd_snapshot_begin(mem, len, &nodest, &snap), -EINVAL, "libuffd_snapshot_begin");
	CHECK_CONTAINS(libuffd_last_error(), "LIBUFFD_SNAPSHOT_TO_BUFFER");
	LIBUFFD_OPTS(libuffd_snapshot_opts, inside, .dest = LIBUFFD_SNAPSHOT_TO_BUFFER,
		     .buffer = mem + 4096);
	CHECK_FAILS(libuffd_snapshot_begin(mem, 4 * 4096, &inside, &snap), -EINVAL,
		    "libuffd_snapshot_begin");
	CHECK_CONTAINS(libuffd_last_error(), "overlaps");
	LIBUFFD_OPTS(libuffd_snapshot_opts, nobuf, .dest = LIBUFFD_SNAPSHOT_TO_BUFFER);
	CHECK_FAILS(libuffd_snapshot_begin(mem, len, &nobuf, &snap), -EINVAL, "libuffd_snapshot_begin");
	LIBUFFD_OPTS(libuffd_snapshot_opts, neg, .dest = LIBUFFD_SNAPSHOT_TO_FD, .fd = -1);
	CHECK_FAILS(libuffd_snapshot_begin(mem, len, &neg, &snap), -EINVAL, "libuffd_snapshot_begin");
	LIBUFFD_OPTS(libuffd_snapshot_opts, closed, .dest = LIBUFFD_SNAPSHOT_TO_FD, .fd = 9999);
	CHECK_FAILS(libuffd_snapshot_begin(mem, len, &closed, &snap), -EBADF, "libuffd_snapshot_begin");
	LIBUFFD_OPTS(libuffd_snapshot_opts, sz0, .dest = LIBUFFD_SNAPSHOT_TO_BUFFER, .buffer = buf);
	sz0.sz = 0;
	CHECK_FAILS(libuffd_snapshot_begin(mem, len, &sz0, &snap), -EINVAL, "libuffd_snapshot_begin");
	/* Not mapped. */
	munmap(mem, len);
	CHECK_FAILS(libuffd_snapshot_begin(mem, len, &o, &snap), -ENOMEM, "libuffd_snapshot_begin");
	mem = h_map_anon(len);

	CHECK_FAILS(libuffd_snapshot_wait(NULL, 0), -EINVAL, "libuffd_snapshot_wait");
	CHECK_FAILS(libuffd_snapshot_progress(NULL, NULL, NULL), -EINVAL, "libuffd_snapshot_progress");
	/* Another object of libuffd is not a snapshot. */
	struct libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &m));
	CHECK_FAILS(libuffd_snapshot_wait((struct libuffd_snapshot *)m, 0), -EINVAL,
		    "libuffd_snapshot_wait");
	CHECK_CONTAINS(libuffd_last_error(), "a libuffd_monitor");
	errno = 0;
	libuffd_snapshot_free((struct libuffd_snapshot *)m); /* refused, not freed */
	CHECK_EQ(errno, EINVAL);
	CHECK_CONTAINS(libuffd_last_error(), "libuffd_snapshot_free");
	CHECK_CONTAINS(libuffd_last_error(), "a libuffd_monitor");
	CHECK_OK(libuffd_monitor_get_stats(m, &(struct libuffd_monitor_stats){ .sz = sizeof(struct libuffd_monitor_stats) }));
	libuffd_monitor_free(m);

	CHECK_OK(libuffd_snapshot_begin(mem, len, &o, &snap));
	CHECK_FAILS(libuffd_snapshot_wait(snap, -2), -EINVAL, "libuffd_snapshot_wait");
	CHECK_RET(libuffd_snapshot_wait(snap, -1), 0);
	CHECK_RET(libuffd_snapshot_wait(snap, 0), 0);
	libuffd_snapshot_free(snap);
	libuffd_snapshot_free(NULL);
	munmap(mem, len);
	munmap(buf, len);
}

int main(void)
{
	bad_input();
	errors();
	for (int k = ANON; k <= HUGETLB; k++)
		for (int to_fd = 0; to_fd < 2; to_fd++)
			exact((enum kind)k, to_fd);
	return h_finish();
}
