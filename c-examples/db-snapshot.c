/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * db-snapshot: save a consistent image of an in-memory table to a file
 * while writer threads keep updating it, without fork() and without
 * stopping the writers for the copy (libuffd_snapshot_begin/_wait).
 *
 * The "table" is an array of rows in anonymous memory; each row holds its
 * id, a version, a payload derived from both, and a checksum over all of
 * it. Writer threads update rows all the time (version + 1, new payload,
 * new checksum), each writer its own rows, so every row is always whole
 * between two updates.
 *
 * The snapshot:
 *  1. libuffd_snapshot_begin() write-protects the whole table at once:
 *     that call is the snapshot's instant, and the image is the table as
 *     it is when the call returns;
 *  2. from then on, a writer's first write to a page waits until the
 *     library has copied that page to the file (a write-protect fault,
 *     served by the snapshot's own thread), then goes on; a background
 *     thread copies the pages nobody writes, in order;
 *  3. libuffd_snapshot_wait() returns when every page is in the file; the
 *     table is then un-protected and unregistered, as it was.
 *
 * To prove that the file is the table at the snapshot's instant, this
 * example pauses the writers, copies the table to a reference buffer,
 * calls libuffd_snapshot_begin(), and resumes the writers as soon as it
 * returns, so that they run during the whole copy to the file. The pause
 * exists only for that proof (the reference copy): a real database needs
 * no reference, only its writers between two row updates while
 * libuffd_snapshot_begin() runs (mostly one write-protect of the range:
 * the call's time is printed), e.g. with a write barrier held across that
 * one call. The updates the writers made while the snapshot was being
 * written are counted, and the longest time one of them waited.
 *
 * Checks: the file equals the reference byte for byte, every row in it has
 * a valid checksum, the writers made updates during the snapshot, and the
 * table differs from the file afterwards (the writers' updates went to
 * memory, never into the image).
 *
 * Needs Linux 6.4+ (userfaultfd write-protection of never-touched pages,
 * UFFD_FEATURE_WP_UNPOPULATED); no privilege.
 *
 * Usage: db-snapshot [FILE]   (default: a temporary file, removed at exit)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <libuffd.h>

#define ROWS (256 * 1024) /* 16 MiB of 64-byte rows */
#define WRITERS 3

/* A row: 64 bytes, so rows never straddle a page. */
struct row {
	uint64_t id;
	uint64_t version;
	uint64_t payload[5];
	uint64_t checksum;
};

static struct row *table;
static atomic_bool stop, pause_req;
static atomic_int paused;
static atomic_ulong updates;
static atomic_ulong longest_ns; /* the longest single update (a wait for a page's copy) */

static void die(const char *what, long err)
{
	fprintf(stderr, "db-snapshot: %s: %s\n  %s\n", what, libuffd_strerror((int)err),
		libuffd_last_error());
	exit(EXIT_FAILURE);
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

static uint64_t checksum(const struct row *r)
{
	uint64_t c = mix(r->id ^ 0xdb);
	c = mix(c ^ r->version);
	for (int i = 0; i < 5; i++)
		c = mix(c ^ r->payload[i]);
	return c;
}

static void set_row(struct row *r, uint64_t id, uint64_t version)
{
	r->id = id;
	r->version = version;
	for (int i = 0; i < 5; i++)
		r->payload[i] = mix(id * 31 + version * 7 + (uint64_t)i);
	r->checksum = checksum(r);
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Writer w updates random rows of its own (row % WRITERS == w), one whole
 * row at a time; between two rows it may be paused. */
static void *writer(void *arg)
{
	uint64_t w = (uintptr_t)arg, seed = w * 0x9e3779b97f4a7c15ULL + 1;
	while (!atomic_load(&stop)) {
		if (atomic_load(&pause_req)) {
			atomic_fetch_add(&paused, 1);
			while (atomic_load(&pause_req) && !atomic_load(&stop))
				sched_yield();
			atomic_fetch_sub(&paused, 1);
			continue;
		}
		seed = mix(seed);
		uint64_t n = (seed % (ROWS / WRITERS)) * WRITERS + w;
		uint64_t t0 = now_ns();
		set_row(&table[n], n, table[n].version + 1); /* may wait for its page's copy */
		uint64_t took = now_ns() - t0;
		atomic_fetch_add_explicit(&updates, 1, memory_order_relaxed);
		unsigned long seen = atomic_load(&longest_ns);
		while (took > seen && !atomic_compare_exchange_weak(&longest_ns, &seen, took))
			;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	size_t len = ROWS * sizeof(struct row);
	table = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (table == MAP_FAILED) {
		perror("mmap");
		return EXIT_FAILURE;
	}
	for (uint64_t n = 0; n < ROWS; n++)
		set_row(&table[n], n, 1);

	/* The file the snapshot goes to. */
	char tmp[] = "/tmp/db-snapshot-XXXXXX";
	const char *path = argc > 1 ? argv[1] : tmp;
	int fd = argc > 1 ? open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : mkstemp(tmp);
	if (fd < 0) {
		perror(path);
		return EXIT_FAILURE;
	}
	if (argc <= 1)
		unlink(tmp); /* removed at exit; the descriptor keeps it */

	pthread_t t[WRITERS];
	for (uintptr_t w = 0; w < WRITERS; w++)
		if (pthread_create(&t[w], NULL, writer, (void *)w) != 0)
			return EXIT_FAILURE;
	printf("db-snapshot: table of %d rows (%zu MiB), %d writer threads updating it\n", ROWS,
	       len >> 20, WRITERS);
	nanosleep(&(struct timespec){ 0, 50000000 }, NULL); /* let them run a while */

	/* Pause the writers: only to take the reference copy (see above). */
	atomic_store(&pause_req, true);
	while (atomic_load(&paused) < WRITERS)
		sched_yield();
	struct row *ref = malloc(len);
	if (!ref)
		return EXIT_FAILURE;
	memcpy(ref, table, len);

	/* The snapshot's instant: the table is write-protected whole. */
	LIBUFFD_OPTS(libuffd_snapshot_opts, so, .dest = LIBUFFD_SNAPSHOT_TO_FD, .fd = fd,
		     .fd_offset = 0);
	libuffd_snapshot *snap;
	uint64_t t0 = now_ns();
	int rc = libuffd_snapshot_begin(table, len, &so, &snap);
	uint64_t t1 = now_ns();
	if (rc < 0)
		die("libuffd_snapshot_begin", rc);

	/* Resume the writers before the copy to the file runs. */
	unsigned long before = atomic_load(&updates);
	atomic_store(&longest_ns, 0);
	atomic_store(&pause_req, false);

	/* Wait for the image, looking at its progress now and then. */
	uint64_t copied = 0, total = 0, at_half = 0;
	unsigned long updates_at_half = 0;
	while ((rc = libuffd_snapshot_wait(snap, 2)) == -ETIMEDOUT) {
		libuffd_snapshot_progress(snap, &copied, &total);
		if (!at_half && copied * 2 >= total) {
			at_half = copied;
			updates_at_half = atomic_load(&updates) - before;
		}
	}
	uint64_t t2 = now_ns();
	unsigned long during = atomic_load(&updates) - before;
	uint64_t longest = atomic_load(&longest_ns);
	if (rc < 0)
		die("libuffd_snapshot_wait", rc);
	libuffd_snapshot_progress(snap, &copied, &total);
	libuffd_snapshot_free(snap);

	/* Let the writers go on a little after the snapshot, then stop them. */
	nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
	atomic_store(&stop, true);
	for (int w = 0; w < WRITERS; w++)
		pthread_join(t[w], NULL);

	printf("db-snapshot: snapshot begun in %.1f us (the table write-protected: its instant); "
	       "writers resumed\n", (double)(t1 - t0) / 1e3);
	printf("db-snapshot: saved %llu of %llu pages to %s in %.1f ms; writers made %lu updates "
	       "meanwhile (%lu by the time half the pages were saved)\n",
	       (unsigned long long)copied, (unsigned long long)total, argc > 1 ? path : "a temporary file",
	       (double)(t2 - t1) / 1e6, during, updates_at_half);
	printf("db-snapshot: the longest a writer waited for a page's copy: %.0f us\n",
	       (double)longest / 1e3);

	/* Check the file: the reference byte for byte, every row whole. */
	struct row *img = malloc(len);
	if (!img)
		return EXIT_FAILURE;
	size_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, (char *)img + got, len - got, (off_t)got);
		if (n <= 0) {
			perror("pread");
			return EXIT_FAILURE;
		}
		got += (size_t)n;
	}
	close(fd);
	size_t torn = 0, differ = 0, changed = 0;
	for (uint64_t n = 0; n < ROWS; n++) {
		if (img[n].id != n || img[n].checksum != checksum(&img[n]))
			torn++;
		if (memcmp(&img[n], &ref[n], sizeof(struct row)) != 0)
			differ++;
		if (table[n].version != img[n].version)
			changed++;
	}
	printf("db-snapshot: file equals the table at the snapshot instant: %s "
	       "(%zu rows differ, %zu rows torn)\n", differ ? "NO" : "yes", differ, torn);
	printf("db-snapshot: %zu rows updated in memory since the snapshot, none of them in the file\n",
	       changed);
	if (differ || torn || during == 0 || changed == 0 || copied != total) {
		printf("db-snapshot: FAILED\n");
		return EXIT_FAILURE;
	}
	printf("db-snapshot: verified %d rows\n", ROWS);
	free(img);
	free(ref);
	munmap(table, len);
	return EXIT_SUCCESS;
}
