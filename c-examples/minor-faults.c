/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * minor-faults: memory shared by two mappings, one registered for MINOR
 * faults and served by the monitor with CONTINUE (the hugetlb post-copy
 * pattern of QEMU's live migration).
 *
 * A memfd (hugetlb when huge pages are reserved, shmem otherwise) is mapped
 * twice:
 *  - the "guest" mapping, registered with LIBUFFD_REGISTER_MINOR: a page
 *    that is in the page cache but not yet mapped here makes the guest's
 *    access a minor fault;
 *  - the "staging" mapping, through which the migration side writes each
 *    page's contents as it arrives (into the page cache, not the guest).
 * The monitor serves the guest's minor faults from the page cache
 * (LIBUFFD_SOURCE_PAGE_CACHE: UFFDIO_CONTINUE maps the page that is already
 * there, no copy). Here a receiver thread fills the pages in a shuffled
 * order while the guest reads them in address order: a guest page that has
 * not arrived yet is the receiver's to fill first, which the guest waits
 * for on a flag before touching it (in QEMU the fault itself asks the
 * source for the page; the monitor's on_fault callback would do that).
 *
 * Prints which memory it used, then "verified N pages" and the monitor's
 * counters. Usage: minor-faults [shmem|hugetlb]  (default: hugetlb when
 * huge pages are free, else shmem).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libuffd.h>

#define NPAGES 16

static void die(const char *what, long err)
{
	fprintf(stderr, "minor-faults: %s: %s\n  %s\n", what, libuffd_strerror((int)err),
		libuffd_last_error());
	exit(EXIT_FAILURE);
}

/* Free 2 MiB huge pages, from /proc/meminfo. */
static long free_huge_pages(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	long n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &n) == 1)
			break;
	fclose(f);
	return n;
}

/* The contents of page i, word by word: what the guest must see. */
static uint64_t word(size_t page, size_t w)
{
	return (page + 1) * 0x9e3779b97f4a7c15ULL ^ w;
}

static char *staging;
static size_t page_size;
static atomic_int arrived[NPAGES];

/* The migration side: pages arrive in a shuffled order and are written
 * into the page cache through the staging mapping. */
static void *receiver(void *arg)
{
	(void)arg;
	for (size_t k = 0; k < NPAGES; k++) {
		size_t i = (k * 7 + 3) % NPAGES; /* 7 is prime to 16: a permutation */
		uint64_t *p = (uint64_t *)(staging + i * page_size);
		for (size_t w = 0; w < page_size / 8; w++)
			p[w] = word(i, w);
		atomic_store_explicit(&arrived[i], 1, memory_order_release);
	}
	return NULL;
}

int main(int argc, char *argv[])
{
	int hugetlb;
	if (argc > 1 && strcmp(argv[1], "shmem") == 0)
		hugetlb = 0;
	else if (argc > 1 && strcmp(argv[1], "hugetlb") == 0)
		hugetlb = 1;
	else if (argc > 1) {
		fprintf(stderr, "usage: %s [shmem|hugetlb]\n", argv[0]);
		return 2;
	} else
		hugetlb = free_huge_pages() >= NPAGES;

	/* The shared memory: a memfd, hugetlb or shmem. */
	page_size = hugetlb ? 2UL << 20 : (size_t)sysconf(_SC_PAGESIZE);
	size_t len = NPAGES * page_size;
	int fd = memfd_create("guest-ram", MFD_CLOEXEC | (hugetlb ? MFD_HUGETLB : 0));
	if (fd < 0 || ftruncate(fd, len) < 0) {
		perror("memfd_create/ftruncate");
		return EXIT_FAILURE;
	}
	char *guest = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	staging = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (guest == MAP_FAILED || staging == MAP_FAILED) {
		perror("mmap");
		return EXIT_FAILURE;
	}
	printf("minor-faults: %s memory, %d pages of %zu KiB, mapped twice\n",
	       hugetlb ? "hugetlb" : "shmem", NPAGES, page_size >> 10);

	/* A userfaultfd with MINOR faults for this kind of memory. The guest
	 * mapping is touched only by this process's own code: user mode only
	 * is enough, and needs no privilege. */
	uint64_t minor = hugetlb ? LIBUFFD_FEATURE_MINOR_HUGETLBFS : LIBUFFD_FEATURE_MINOR_SHMEM;
	LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_USER_ONLY,
		     .features = minor, .required_features = minor);
	libuffd_handle *h;
	int rc = libuffd_open(&oo, &h);
	if (rc < 0)
		die("libuffd_open", rc);

	/* The monitor serves the guest mapping from the page cache: it
	 * registers it MINOR and resolves each fault with CONTINUE. */
	libuffd_monitor *m;
	if ((rc = libuffd_monitor_new(NULL, NULL, NULL, NULL, &m)) < 0)
		die("libuffd_monitor_new", rc);
	uint32_t id;
	if ((rc = libuffd_monitor_add_handle(m, h, &id)) < 0)
		die("libuffd_monitor_add_handle", rc);
	libuffd_handle_free(h); /* the monitor keeps its own reference */
	LIBUFFD_OPTS(libuffd_region_opts, ro, .source = LIBUFFD_SOURCE_PAGE_CACHE,
		     .register_mode = LIBUFFD_REGISTER_MINOR);
	if ((rc = libuffd_monitor_add_region(m, id, guest, len, &ro)) < 0)
		die("libuffd_monitor_add_region", rc);
	if ((rc = libuffd_monitor_start(m)) < 0)
		die("libuffd_monitor_start", rc);

	pthread_t thr;
	if (pthread_create(&thr, NULL, receiver, NULL) != 0) {
		perror("pthread_create");
		return EXIT_FAILURE;
	}

	/* The guest reads every page once it has arrived: each first access
	 * through this mapping is a minor fault, served by CONTINUE. */
	size_t bad = 0;
	for (size_t i = 0; i < NPAGES; i++) {
		while (!atomic_load_explicit(&arrived[i], memory_order_acquire))
			sched_yield();
		const uint64_t *p = (const uint64_t *)(guest + i * page_size);
		for (size_t w = 0; w < page_size / 8; w++)
			if (p[w] != word(i, w)) {
				bad++;
				break;
			}
	}
	pthread_join(thr, NULL);

	/* Shared memory: a write by the guest is in the page cache, visible
	 * through the staging mapping (nothing was copied). */
	guest[5] = 'G';
	int shared = staging[5] == 'G';

	/* The counters are complete once the run has ended: a thread may
	 * resume before its fault is counted. */
	libuffd_monitor_stop(m);
	if ((rc = libuffd_monitor_wait(m)) < 0)
		die("monitor run", rc);
	struct libuffd_monitor_stats st = { .sz = sizeof(st) };
	libuffd_monitor_get_stats(m, &st);
	libuffd_monitor_free(m);

	printf("minor-faults: %llu minor faults served with CONTINUE (%llu bytes mapped, "
	       "fault-around included), %llu failed\n",
	       (unsigned long long)st.faults, (unsigned long long)st.bytes,
	       (unsigned long long)st.failed);
	printf("minor-faults: guest writes reach the page cache: %s\n", shared ? "yes" : "NO");
	if (bad || !shared || st.faults == 0 || st.failed || st.bytes < len) {
		printf("minor-faults: FAILED: %zu pages wrong\n", bad);
		return EXIT_FAILURE;
	}
	printf("minor-faults: verified %d pages (%s)\n", NPAGES, hugetlb ? "hugetlb" : "shmem");
	return EXIT_SUCCESS;
}
