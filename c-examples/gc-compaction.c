/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * gc-compaction: a concurrent compacting garbage collector's page moves,
 * with UFFDIO_MOVE, while mutator threads keep reading the objects.
 *
 * The heap's from-space holds pages of live objects interleaved with pages
 * of garbage. Compaction packs the live pages into a new, dense to-space:
 * live page 2k of from-space becomes page k of to-space. The pages are
 * moved, not copied (libuffd_move(): the kernel re-points the page table
 * entry, the data never moves), in the background by a compactor thread,
 * while mutators read objects through the to-space already:
 *
 *  1. to-space is registered for missing-page faults and served by a
 *     monitor whose on_fault callback moves the page a mutator needs
 *     first (libuffd_monitor_move()): a mutator never waits for the
 *     compactor to reach its page, and never sees an empty one;
 *  2. the flip (mutators switch from from-space addresses to to-space
 *     addresses) happens at a safepoint: a rwlock the mutators hold while
 *     they use an address, taken for writing by the collector; after it no
 *     mutator holds a from-space address, so the pages can leave it;
 *  3. the compactor and the fault callback claim each page (an atomic flag)
 *     so that exactly one of them moves it. A fault on a page the compactor
 *     has claimed is answered LIBUFFD_ON_FAULT_RESOLVED_BY_CALLER: the
 *     compactor's move wakes the thread (and if the thread runs before the
 *     move is done, it faults again and comes back).
 *
 * Each object carries a checksum of its contents that the mutators verify
 * on every read: a torn or zero object would be counted. At the end, every
 * object of to-space is verified and the moved from-space pages are gone
 * (they read as zeros: the pages left from-space).
 *
 * Prints the moves by faults and by the compactor, the reads, "0 torn
 * objects" and "verified N objects". Usage: gc-compaction
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
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

#define LIVE_PAGES 256 /* to-space pages; from-space has twice as many */
#define MUTATORS 3

/* An object: its id, a payload, and a checksum over both. */
struct object {
	uint64_t id;
	uint64_t payload[6];
	uint64_t checksum;
};

static size_t page_size, objs_per_page;
static char *from_space, *to_space;
static libuffd_handle *handle;

/* Writer-preferring, so that the flip is not starved by the mutators. */
static pthread_rwlock_t safepoint = PTHREAD_RWLOCK_WRITER_NONRECURSIVE_INITIALIZER_NP;
static int flipped; /* under safepoint */
static atomic_bool stop_mutators;
static atomic_uchar claimed[LIVE_PAGES];
static atomic_ulong moved_by_fault, moved_by_compactor, reads, torn;

static void die(const char *what, long err)
{
	fprintf(stderr, "gc-compaction: %s: %s\n  %s\n", what, libuffd_strerror((int)err),
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

static uint64_t checksum(const struct object *o)
{
	uint64_t c = mix(o->id + 0x51);
	for (int i = 0; i < 6; i++)
		c = mix(c ^ o->payload[i]);
	return c;
}

/* Where live object n is: in from-space page 2k before the flip, in
 * to-space page k after it (k = n / objs_per_page). */
static struct object *object_at(uint64_t n)
{
	size_t k = n / objs_per_page, slot = n % objs_per_page;
	char *page = flipped ? to_space + k * page_size : from_space + 2 * k * page_size;
	return (struct object *)page + slot;
}

static void *mutator(void *arg)
{
	uint64_t seed = (uintptr_t)arg * 0x9e3779b97f4a7c15ULL + 1;
	uint64_t n_objects = LIVE_PAGES * objs_per_page;
	while (!atomic_load(&stop_mutators)) {
		/* Hold the safepoint lock while using object addresses. */
		pthread_rwlock_rdlock(&safepoint);
		for (int i = 0; i < 64; i++) {
			seed = mix(seed);
			uint64_t n = seed % n_objects;
			struct object copy = *object_at(n); /* may fault: moved in */
			if (copy.id != n || copy.checksum != checksum(&copy))
				atomic_fetch_add(&torn, 1);
			atomic_fetch_add_explicit(&reads, 1, memory_order_relaxed);
		}
		pthread_rwlock_unlock(&safepoint);
	}
	return NULL;
}

/* A mutator touched a to-space page not moved yet: move it now, unless
 * the compactor has claimed it. */
static int32_t on_fault(void *user_data, libuffd_monitor *m, const libuffd_fault *f)
{
	(void)user_data;
	size_t k = (size_t)f->region_offset / page_size;
	if (atomic_exchange(&claimed[k], 1))
		return LIBUFFD_ON_FAULT_RESOLVED_BY_CALLER; /* the compactor's move wakes it */
	int32_t rc = libuffd_monitor_move(m, f, from_space + 2 * k * page_size);
	if (rc < 0)
		return rc; /* the monitor's error policy releases the thread */
	atomic_fetch_add(&moved_by_fault, 1);
	return LIBUFFD_ON_FAULT_HANDLED;
}

/* The compactor: moves every live page it can claim, in order. */
static void *compactor(void *arg)
{
	(void)arg;
	for (size_t k = 0; k < LIVE_PAGES; k++) {
		if (atomic_exchange(&claimed[k], 1))
			continue; /* a fault moved it */
		int64_t done;
		int tries = 0;
		do /* -EAGAIN: the kernel met a transient state of the page; retry */
			done = libuffd_move(handle, to_space + k * page_size,
					    from_space + 2 * k * page_size, page_size, 0);
		while (done == -EAGAIN && ++tries < 1000);
		if (done != (int64_t)page_size)
			die("libuffd_move", done);
		atomic_fetch_add(&moved_by_compactor, 1);
		if (k % 16 == 0) /* let the mutators fault on some pages first */
			nanosleep(&(struct timespec){ 0, 2000000 }, NULL);
	}
	return NULL;
}

int main(void)
{
	page_size = (size_t)sysconf(_SC_PAGESIZE);
	objs_per_page = page_size / sizeof(struct object);

	/* MOVE needs anonymous private memory on both sides. Keep them out of
	 * transparent huge pages so that each move is one base page. */
	size_t from_len = 2 * LIVE_PAGES * page_size, to_len = LIVE_PAGES * page_size;
	from_space = mmap(NULL, from_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	to_space = mmap(NULL, to_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (from_space == MAP_FAILED || to_space == MAP_FAILED) {
		perror("mmap");
		return EXIT_FAILURE;
	}
	madvise(from_space, from_len, MADV_NOHUGEPAGE);
	madvise(to_space, to_len, MADV_NOHUGEPAGE);

	/* Allocate: live objects on even pages, garbage on odd ones. */
	for (size_t p = 0; p < 2 * LIVE_PAGES; p++) {
		struct object *o = (struct object *)(from_space + p * page_size);
		for (size_t s = 0; s < objs_per_page; s++) {
			o[s].id = p % 2 ? ~0ULL : (p / 2) * objs_per_page + s;
			for (int i = 0; i < 6; i++)
				o[s].payload[i] = mix(o[s].id * 7 + i);
			o[s].checksum = p % 2 ? 0 : checksum(&o[s]);
		}
	}

	/* The collector's userfaultfd: MOVE is required. Only this process's
	 * code touches the heap: user-mode faults only, no privilege. */
	LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_USER_ONLY,
		     .features = LIBUFFD_FEATURE_MOVE, .required_features = LIBUFFD_FEATURE_MOVE);
	int rc = libuffd_open(&oo, &handle);
	if (rc < 0)
		die("libuffd_open", rc);

	/* The monitor: to-space is one region whose faults go to on_fault. */
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = on_fault);
	libuffd_monitor *m;
	if ((rc = libuffd_monitor_new(NULL, &ops, NULL, NULL, &m)) < 0)
		die("libuffd_monitor_new", rc);
	uint32_t id;
	if ((rc = libuffd_monitor_add_handle(m, handle, &id)) < 0)
		die("libuffd_monitor_add_handle", rc);
	LIBUFFD_OPTS(libuffd_region_opts, ro, .source = LIBUFFD_SOURCE_CALLBACK,
		     .register_mode = LIBUFFD_REGISTER_MISSING);
	if ((rc = libuffd_monitor_add_region(m, id, to_space, to_len, &ro)) < 0)
		die("libuffd_monitor_add_region", rc);
	if ((rc = libuffd_monitor_start(m)) < 0)
		die("libuffd_monitor_start", rc);

	/* Mutators run on from-space... */
	pthread_t mut[MUTATORS], comp;
	for (int t = 0; t < MUTATORS; t++)
		if (pthread_create(&mut[t], NULL, mutator, (void *)(uintptr_t)t) != 0)
			return EXIT_FAILURE;
	nanosleep(&(struct timespec){ 0, 20000000 }, NULL);

	/* ...the flip, at a safepoint... */
	pthread_rwlock_wrlock(&safepoint);
	flipped = 1;
	pthread_rwlock_unlock(&safepoint);

	/* ...and on to-space while the compactor moves the pages in. */
	if (pthread_create(&comp, NULL, compactor, NULL) != 0)
		return EXIT_FAILURE;
	pthread_join(comp, NULL);
	nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
	atomic_store(&stop_mutators, true);
	for (int t = 0; t < MUTATORS; t++)
		pthread_join(mut[t], NULL);

	libuffd_monitor_stop(m);
	if ((rc = libuffd_monitor_wait(m)) < 0)
		die("monitor run", rc);
	libuffd_monitor_free(m);

	/* Check the whole to-space, and that the live pages left from-space. */
	size_t bad = 0, left_behind = 0;
	for (uint64_t n = 0; n < LIVE_PAGES * objs_per_page; n++) {
		const struct object *o = object_at(n);
		if (o->id != n || o->checksum != checksum(o))
			bad++;
	}
	for (size_t k = 0; k < LIVE_PAGES; k++) {
		const uint64_t *w = (const uint64_t *)(from_space + 2 * k * page_size);
		for (size_t i = 0; i < page_size / 8; i++)
			if (w[i]) {
				left_behind++;
				break;
			}
	}
	libuffd_handle_free(handle);

	unsigned long f = atomic_load(&moved_by_fault), c = atomic_load(&moved_by_compactor);
	printf("gc-compaction: moved %lu pages (%lu on a mutator's fault, %lu by the compactor); "
	       "%lu garbage pages left behind\n", f + c, f, c, (unsigned long)LIVE_PAGES);
	printf("gc-compaction: %lu mutator reads, %lu torn objects\n",
	       atomic_load(&reads), atomic_load(&torn));
	if (bad || atomic_load(&torn) || left_behind || f + c != LIVE_PAGES) {
		printf("gc-compaction: FAILED: %zu bad objects, %zu live pages still in from-space\n",
		       bad, left_behind);
		return EXIT_FAILURE;
	}
	printf("gc-compaction: verified %zu objects in %d compacted pages\n",
	       (size_t)LIVE_PAGES * objs_per_page, LIVE_PAGES);
	return EXIT_SUCCESS;
}
