/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * buffer-pool: the out-of-core database pattern. A data file four times
 * larger than the memory the process may use (64 MiB of records, a
 * 16 MiB budget) is used as ordinary memory: an anonymous mapping of the
 * file's size whose pages the monitor places from the file on first
 * touch (LIBUFFD_SOURCE_FD), keeping at most max_resident bytes of them.
 * Before a fault would place more, the monitor evicts the least recently
 * faulted pages, writing the dirty ones back to the same file first
 * (LIBUFFD_REGION_WRITEBACK_FD); an evicted page comes back from the
 * file, with what was written back, at its next fault. The application
 * has no buffer manager, no page table of its own, no pin counts: it
 * reads and writes records with plain loads and stores.
 *
 * The file holds 128-byte records: an id, a version, a payload derived
 * from both, and a checksum over all of it. Four threads read and update
 * random records, each its own (id % 4), so the records of one page are
 * shared by all of them; every read checks the record's checksum and that
 * its version is the one the thread last wrote (its model: one version
 * number per record). A lost write-back, a stale page or a torn record
 * fails the run.
 *
 * At the end, with the threads quiet (nothing faults, so nothing moves):
 *  - the file plus the resident memory equal the model (each page's
 *    latest bytes are in memory if it is resident, else in the file);
 *  - a checkpoint: libuffd_monitor_writeback() writes the dirty resident
 *    pages back without evicting them (the monitor knows which are dirty);
 *    the file then equals the model on its own;
 *  - every record, read back through the memory (evicted pages come back
 *    from the file, evicting others), equals the model.
 *
 * Prints the resident peak against the budget (libuffd_monitor_stats
 * .resident_pages sampled every millisecond: the library keeps no
 * high-water mark), the evictions, write-backs and faults per second.
 *
 * Needs write-protection of anonymous memory (Linux 5.7+); no privilege.
 *
 * Usage: buffer-pool [OPERATIONS_PER_THREAD]   (default 20000)
 *        The data file is a temporary file in $TMPDIR (or /tmp), removed
 *        at exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
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

#define FILE_BYTES (64UL << 20)
#define BUDGET_BYTES (16UL << 20)
#define THREADS 4

/* A record: 128 bytes, so records never straddle a page. */
struct record {
	uint64_t id;
	uint64_t version;
	uint64_t payload[13];
	uint64_t checksum;
};

#define RECORDS (FILE_BYTES / sizeof(struct record))

static struct record *db;  /* the file's contents, as memory */
static uint32_t *model;    /* the version each record must have */
static atomic_bool done;

static void die(const char *what, long err)
{
	fprintf(stderr, "buffer-pool: %s: %s\n  %s\n", what, libuffd_strerror((int)err),
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

static uint64_t checksum(const struct record *r)
{
	uint64_t c = mix(r->id ^ 0xb0f);
	c = mix(c ^ r->version);
	for (int i = 0; i < 13; i++)
		c = mix(c ^ r->payload[i]);
	return c;
}

/* The record `id` at `version`: what the file, the memory and the model
 * agree on. */
static void make_record(struct record *r, uint64_t id, uint64_t version)
{
	r->id = id;
	r->version = version;
	for (int i = 0; i < 13; i++)
		r->payload[i] = mix(id * 31 + version * 7 + (uint64_t)i);
	r->checksum = checksum(r);
}

/* Is `r` whole and at the model's version? */
static bool record_ok(const struct record *r, uint64_t id)
{
	return r->id == id && r->version == model[id] && r->checksum == checksum(r);
}

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ------------------------------------------------------------ the threads */

struct worker {
	uint64_t t, ops, writes, bad;
};

/* Thread t reads and updates random records of its own (id % THREADS ==
 * t): read, check, and one time in two write the next version. */
static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t seed = (w->t + 1) * 0x9e3779b97f4a7c15ULL;
	for (uint64_t i = 0; i < w->ops; i++) {
		seed = mix(seed + i);
		uint64_t id = (seed % (RECORDS / THREADS)) * THREADS + w->t;
		struct record r;
		memcpy(&r, &db[id], sizeof r); /* may fault: the page comes from the file */
		if (!record_ok(&r, id) && w->bad++ < 3)
			fprintf(stderr, "buffer-pool: thread %llu: record %llu has version %llu "
				"(model %u)%s\n", (unsigned long long)w->t, (unsigned long long)id,
				(unsigned long long)r.version, model[id],
				r.checksum == checksum(&r) ? "" : ", bad checksum");
		if (seed & (1ULL << 40)) {
			make_record(&r, id, model[id] + 1ULL);
			memcpy(&db[id], &r, sizeof r); /* may fault: first write marks it dirty */
			model[id]++;
			w->writes++;
		}
	}
	return NULL;
}

/* Samples the monitor's resident_pages while the workers run: its peak. */
static void *sampler(void *arg)
{
	libuffd_monitor *m = arg;
	uint64_t peak = 0;
	while (!atomic_load(&done)) {
		struct libuffd_monitor_stats st = { .sz = sizeof st };
		if (libuffd_monitor_get_stats(m, &st) == 0 && st.resident_pages > peak)
			peak = st.resident_pages;
		nanosleep(&(struct timespec){ 0, 1000000 }, NULL);
	}
	return (void *)(uintptr_t)peak;
}

/* ------------------------------------------------------------------ main */

static void read_all(int fd, void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)got);
		if (n <= 0) {
			perror("buffer-pool: pread");
			exit(EXIT_FAILURE);
		}
		got += (size_t)n;
	}
}

/* Do the `page`'s records in `p` equal the model? */
static bool page_ok(const struct record *p, size_t page, size_t per_page)
{
	for (size_t k = 0; k < per_page; k++)
		if (!record_ok(&p[k], page * per_page + k))
			return false;
	return true;
}

int main(int argc, char **argv)
{
	uint64_t ops = argc > 1 ? strtoull(argv[1], NULL, 10) : 20000;
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), pages = FILE_BYTES / ps;
	size_t per_page = ps / sizeof(struct record);

	/* The data file: every record at version 0. */
	const char *dir = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof path, "%s/buffer-pool-XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0) {
		perror(path);
		return EXIT_FAILURE;
	}
	unlink(path); /* removed at exit; the descriptor keeps it */
	struct record *chunk = malloc(1 << 20);
	model = calloc(RECORDS, sizeof *model);
	if (!chunk || !model)
		return EXIT_FAILURE;
	size_t per_chunk = (1 << 20) / sizeof(struct record);
	for (size_t c = 0; c < RECORDS / per_chunk; c++) {
		for (size_t k = 0; k < per_chunk; k++)
			make_record(&chunk[k], c * per_chunk + k, 0);
		if (pwrite(fd, chunk, 1 << 20, (off_t)(c << 20)) != 1 << 20) {
			perror("buffer-pool: pwrite");
			return EXIT_FAILURE;
		}
	}
	free(chunk);

	/* The memory: anonymous, the file's size; nothing in it yet. */
	db = mmap(NULL, FILE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (db == MAP_FAILED) {
		perror("buffer-pool: mmap");
		return EXIT_FAILURE;
	}

	/* A userfaultfd with write-protection (how the monitor sees a page's
	 * first write, to know it is dirty), and a monitor with two workers
	 * (a missing fault preads the file: they read side by side). */
	LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_NONBLOCK,
		     .features = LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP,
		     .required_features = LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP);
	libuffd_handle *h;
	int rc = libuffd_open(&oo, &h);
	if (rc < 0)
		die("libuffd_open", rc);
	LIBUFFD_OPTS(libuffd_monitor_opts, mo, .workers = 2);
	libuffd_monitor *m;
	if ((rc = libuffd_monitor_new(&mo, NULL, NULL, NULL, &m)) < 0)
		die("libuffd_monitor_new", rc);
	uint32_t id;
	if ((rc = libuffd_monitor_add_handle(m, h, &id)) < 0)
		die("libuffd_monitor_add_handle", rc);
	libuffd_handle_free(h);

	/* The budgeted region: pages from the file, at most 16 MiB of them
	 * resident, dirty ones written back to the same file. */
	LIBUFFD_OPTS(libuffd_region_opts, r, .source = LIBUFFD_SOURCE_FD, .fd = fd,
		     .register_mode = LIBUFFD_REGISTER_MISSING, .max_resident = BUDGET_BYTES,
		     .flags = LIBUFFD_REGION_WRITEBACK_FD, .writeback_fd = fd);
	if ((rc = libuffd_monitor_add_region(m, id, db, FILE_BYTES, &r)) < 0)
		die("libuffd_monitor_add_region", rc);
	if ((rc = libuffd_monitor_start(m)) < 0)
		die("libuffd_monitor_start", rc);
	printf("buffer-pool: %lu MiB file of %zu records (%zu bytes), %lu MiB budget "
	       "(%lu of %zu pages), %d threads\n", FILE_BYTES >> 20, (size_t)RECORDS,
	       sizeof(struct record), BUDGET_BYTES >> 20, BUDGET_BYTES / ps, pages, THREADS);

	/* The workload. */
	pthread_t th[THREADS], samp;
	struct worker w[THREADS];
	pthread_create(&samp, NULL, sampler, m);
	uint64_t t0 = now_ns();
	for (int t = 0; t < THREADS; t++) {
		w[t] = (struct worker){ .t = (uint64_t)t, .ops = ops };
		if (pthread_create(&th[t], NULL, work, &w[t]) != 0)
			return EXIT_FAILURE;
	}
	uint64_t writes = 0, bad = 0;
	for (int t = 0; t < THREADS; t++) {
		pthread_join(th[t], NULL);
		writes += w[t].writes;
		bad += w[t].bad;
	}
	uint64_t t1 = now_ns();
	atomic_store(&done, true);
	void *peak_p;
	pthread_join(samp, &peak_p);
	uint64_t peak = (uintptr_t)peak_p;
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	libuffd_monitor_get_stats(m, &st);
	double secs = (double)(t1 - t0) / 1e9;
	printf("buffer-pool: %llu operations (%llu writes) in %.0f ms: %llu faults, %.0f faults/s, "
	       "%llu bad reads\n", (unsigned long long)ops * THREADS, (unsigned long long)writes,
	       secs * 1e3, (unsigned long long)st.faults, (double)st.faults / secs,
	       (unsigned long long)bad);
	printf("buffer-pool: resident peak %llu pages of a %lu-page budget (sampled every ms); "
	       "%llu resident now\n", (unsigned long long)peak, BUDGET_BYTES / ps,
	       (unsigned long long)st.resident_pages);
	printf("buffer-pool: %llu evictions, %llu write-backs (%llu MiB), %llu write-back failures, "
	       "%llu failed faults\n", (unsigned long long)st.evictions,
	       (unsigned long long)st.writebacks, (unsigned long long)(st.writeback_bytes >> 20),
	       (unsigned long long)st.writeback_failures, (unsigned long long)st.failed);

	/* Check 1: the file plus the resident memory equal the model. Nothing
	 * faults now, so nothing moves: a resident page holds the record's
	 * latest bytes, an evicted (or never touched) page's are in the file. */
	struct record *file = malloc(FILE_BYTES);
	unsigned char *inc = malloc(pages);
	if (!file || !inc || mincore(db, FILE_BYTES, inc) < 0)
		return EXIT_FAILURE;
	read_all(fd, file, FILE_BYTES);
	size_t resident = 0, newer = 0, wrong = 0;
	for (size_t p = 0; p < pages; p++) {
		const struct record *mem = db + p * per_page, *disk = file + p * per_page;
		bool res = inc[p] & 1;
		resident += res;
		if (res && memcmp(mem, disk, ps) != 0)
			newer++; /* dirty: only the memory has its latest bytes */
		if (!page_ok(res ? mem : disk, p, per_page))
			wrong++;
	}
	printf("buffer-pool: file + resident memory equal the model: %s (%zu pages resident, %zu of "
	       "them newer than the file, %zu pages wrong)\n", wrong ? "NO" : "yes", resident, newer,
	       wrong);

	/* The checkpoint: the dirty resident pages written back, kept
	 * resident (clean, write-protected: their next write marks them dirty
	 * again). It works with the threads running too; quiet here, so that
	 * the file can be compared with the model below. */
	int64_t flushed = libuffd_monitor_writeback(m, id, db, FILE_BYTES);
	if (flushed < 0) {
		fprintf(stderr, "buffer-pool: libuffd_monitor_writeback: %s\n", libuffd_last_error());
		return EXIT_FAILURE;
	}
	if (fdatasync(fd) < 0)
		perror("buffer-pool: fdatasync");
	printf("buffer-pool: checkpoint: libuffd_monitor_writeback wrote %lld dirty pages back (%zu "
	       "resident pages were newer than the file), none evicted\n", (long long)flushed, newer);
	if ((size_t)flushed < newer)
		wrong++;

	/* Check 2: the file alone equals the model. */
	read_all(fd, file, FILE_BYTES);
	size_t file_bad = 0;
	for (size_t i = 0; i < RECORDS; i++)
		file_bad += !record_ok(&file[i], i);
	printf("buffer-pool: file equals the model: %s (%zu records differ)\n",
	       file_bad ? "NO" : "yes", file_bad);

	/* Check 3: every record read back through the memory (the evicted
	 * pages fault back in from the file, evicting others). */
	size_t bad_records = 0;
	for (size_t i = 0; i < RECORDS; i++) {
		struct record rec;
		memcpy(&rec, &db[i], sizeof rec);
		bad_records += !record_ok(&rec, i);
	}
	printf("buffer-pool: every record read back through the memory: %zu verified, %zu bad\n",
	       (size_t)RECORDS - bad_records, bad_records);

	struct libuffd_monitor_stats end = { .sz = sizeof end };
	libuffd_monitor_get_stats(m, &end);
	if ((rc = libuffd_monitor_stop(m)) < 0 || (rc = libuffd_monitor_wait(m)) < 0)
		die("libuffd_monitor_stop", rc);
	libuffd_monitor_free(m);

	if (bad || wrong || bad_records || file_bad || peak > BUDGET_BYTES / ps ||
	    resident > BUDGET_BYTES / ps || st.evictions == 0 || st.writebacks == 0 ||
	    end.resident_pages > BUDGET_BYTES / ps || end.writeback_failures || end.failed) {
		printf("buffer-pool: FAILED\n");
		return EXIT_FAILURE;
	}
	printf("buffer-pool: verified %zu records (%llu evictions, %llu write-backs)\n",
	       (size_t)RECORDS, (unsigned long long)end.evictions, (unsigned long long)end.writebacks);
	free(file);
	free(inc);
	free(model);
	close(fd);
	munmap(db, FILE_BYTES);
	return EXIT_SUCCESS;
}
