/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * budget.c: resident-set budgets through the C API
 * (libuffd_region_opts.max_resident). A region four times its budget is
 * read and written at random by 2 threads, each checking its own bytes
 * against a model: with LIBUFFD_REGION_WRITEBACK_FD (the source file,
 * pages dropped in place) and with LIBUFFD_REGION_WRITEBACK_CALLBACK over
 * a buffer source (REMOVE events on: the monitor's evictor thread drops
 * the pages); on anonymous, memfd and hugetlb memory. At the end the file
 * (or buffer) plus the resident memory equal the model, and reading
 * everything back through the monitor does too; evictions and write-backs
 * are counted. Also LIBUFFD_ON_REMOVE_REFILL after the application's
 * madvise, and bad options (-EINVAL with a reason).
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#define THREADS 2

struct kind {
	const char *name;
	size_t ps, pages;
	int shmem, huge;
	uint64_t features;
};

static const struct kind KINDS[] = {
	{ "anon", 4096, 32, 0, 0, LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP },
	{ "memfd", 4096, 32, 1, 0,
	  LIBUFFD_FEATURE_MISSING_SHMEM | LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP |
		  LIBUFFD_FEATURE_WP_HUGETLBFS_SHMEM },
	{ "hugetlb", 2UL << 20, 8, 0, 1,
	  LIBUFFD_FEATURE_MISSING_HUGETLBFS | LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP |
		  LIBUFFD_FEATURE_WP_HUGETLBFS_SHMEM },
};

static char *map_kind(const struct kind *k, size_t len)
{
	void *p;
	if (k->huge) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	} else if (k->shmem) {
		int fd = memfd_create("libuffd-budget-mem", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)len) < 0)
			FATAL("memfd: %s", strerror(errno));
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		close(fd);
	} else {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	return p == MAP_FAILED ? NULL : p;
}

static unsigned char byte_at(uint64_t off)
{
	return (unsigned char)(1 + (off * 131 + (off >> 12) * 7) % 255);
}

static int make_file(size_t len, unsigned char *copy)
{
	int fd = memfd_create("libuffd-budget-file", MFD_CLOEXEC);
	if (fd < 0)
		FATAL("memfd_create: %s", strerror(errno));
	for (size_t i = 0; i < len; i++)
		copy[i] = byte_at(i);
	if (pwrite(fd, copy, len, 0) != (ssize_t)len)
		FATAL("pwrite: %s", strerror(errno));
	return fd;
}

/* ----------------------------------------------------- the sink callback */

/* The buffer source of the callback case: on_writeback stores the page
 * there, where the region's source reads it again. */
static unsigned char *sink_buffer;
static atomic_long callback_writebacks;

static int on_writeback(void *ud, libuffd_monitor *m, const libuffd_fault *f)
{
	(void)ud;
	(void)m;
	if (!sink_buffer || f->flags != 0 || f->page != f->address)
		return -EINVAL;
	memcpy(sink_buffer + f->region_offset, f->page, f->page_size);
	atomic_fetch_add(&callback_writebacks, 1);
	return 0;
}

static atomic_int error_logs;

static void on_log(void *ud, libuffd_monitor *m, const char *msg)
{
	(void)ud;
	(void)m;
	fprintf(stderr, "   monitor log: %s\n", msg);
	atomic_fetch_add(&error_logs, 1);
}

/* --------------------------------------------------- reading and writing */

struct worker {
	int t;
	unsigned char *mem, *model;
	size_t ps, pages, ops;
	long bad;
};

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void *work(void *arg)
{
	struct worker *w = arg;
	uint64_t x = 0x9e3779b97f4a7c15ULL ^ (uint64_t)(w->t + 1) * 0x1234567ULL;
	for (size_t i = 0; i < w->ops; i++) {
		size_t page = (size_t)(xorshift(&x) % w->pages);
		size_t slots[3] = { 0, w->ps / THREADS - 1, (size_t)(xorshift(&x) % (w->ps / THREADS)) };
		int write = xorshift(&x) % 2 == 0;
		for (int s = 0; s < 3; s++) {
			size_t off = page * w->ps + slots[s] * THREADS + (size_t)w->t;
			unsigned char got = ((volatile unsigned char *)w->mem)[off];
			if (got != w->model[off] && w->bad++ < 5)
				fprintf(stderr, "   thread %d: %#x at offset %#zx, model %#x\n", w->t, got, off,
					w->model[off]);
			if (write) {
				unsigned char v = (unsigned char)(xorshift(&x) | 1);
				((volatile unsigned char *)w->mem)[off] = v;
				w->model[off] = v;
			}
		}
	}
	return NULL;
}

/* ------------------------------------------------------------- a case */

enum sinkkind { SINK_FD, SINK_CALLBACK };

static void run_case(const struct kind *k, enum sinkkind sink)
{
	char section[128];
	snprintf(section, sizeof section, "%s, %s", k->name,
		 sink == SINK_FD ? "write-back fd, drops in place" : "on_writeback, evictor thread");
	SECTION(section);
	size_t ps = k->ps, pages = k->pages, len = ps * pages;
	char *mem = map_kind(k, len);
	if (!mem) {
		printf("   (no %s memory: %s; case not run)\n", k->name, strerror(errno));
		return;
	}
	unsigned char *data = malloc(len);
	int fd = make_file(len, data);
	uint64_t features = k->features | (sink == SINK_CALLBACK ? LIBUFFD_FEATURE_EVENT_REMOVE : 0);
	struct libuffd_open_opts oo = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK,
							.features = features, .required_features = features);
	libuffd_handle *h = NULL;
	int rc = libuffd_open(&oo, &h);
	if (rc == -EOPNOTSUPP) {
		printf("   (kernel lacks write-protect on %s; case not run)\n", k->name);
		munmap(mem, len);
		close(fd);
		free(data);
		return;
	}
	if (rc < 0)
		FATAL("libuffd_open: %s", libuffd_last_error());
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_writeback = on_writeback, .on_log = on_log);
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, &ops, NULL, NULL, &m));
	uint32_t id = 0;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	libuffd_handle_free(h);

	unsigned char *buffer = NULL;
	struct libuffd_region_opts r = LIBUFFD_OPTS_INIT(libuffd_region_opts,
							 .register_mode = LIBUFFD_REGISTER_MISSING,
							 .max_resident = (pages / 4) * ps);
	if (sink == SINK_FD) {
		r.source = LIBUFFD_SOURCE_FD;
		r.fd = fd;
		r.flags = LIBUFFD_REGION_WRITEBACK_FD;
		r.writeback_fd = fd;
	} else {
		buffer = malloc(len);
		memcpy(buffer, data, len);
		sink_buffer = buffer;
		r.source = LIBUFFD_SOURCE_BUFFER;
		r.buffer = buffer;
		r.buffer_len = len;
		r.flags = LIBUFFD_REGION_WRITEBACK_CALLBACK;
	}
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, len, &r));
	atomic_store(&error_logs, 0);
	atomic_store(&callback_writebacks, 0);
	CHECK_OK(libuffd_monitor_start(m));

	pthread_t th[THREADS];
	struct worker w[THREADS];
	for (int t = 0; t < THREADS; t++) {
		w[t] = (struct worker){ t, (unsigned char *)mem, malloc(len), ps, pages,
					k->huge ? 300 : 10000, 0 };
		memcpy(w[t].model, data, len);
		pthread_create(&th[t], NULL, work, &w[t]);
	}
	for (int t = 0; t < THREADS; t++) {
		pthread_join(th[t], NULL);
		CHECK_EQ(w[t].bad, 0);
	}
	unsigned char *model = malloc(len);
	for (size_t off = 0; off < len; off++)
		model[off] = w[off % THREADS].model[off];
	usleep(100 * 1000); /* queued drops settle */

	struct libuffd_monitor_stats st = { .sz = sizeof st };
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	CHECK_MSG(st.evictions > 0, "evictions %" PRIu64, st.evictions);
	CHECK_MSG(st.writebacks > 0, "writebacks %" PRIu64, st.writebacks);
	CHECK_EQ(st.writeback_bytes, st.writebacks * ps);
	CHECK_EQ(st.writeback_failures, 0);
	CHECK_EQ(st.failed, 0);
	CHECK_MSG(st.resident_pages <= pages / 4 + 1, "resident %" PRIu64, st.resident_pages);
	if (sink == SINK_CALLBACK)
		CHECK_EQ(atomic_load(&callback_writebacks), (long)st.writebacks);
	CHECK_EQ(atomic_load(&error_logs), 0);

	/* Where the data is now: the resident pages, and the file (or the
	 * buffer) for the others. */
	unsigned char *stored = malloc(len);
	if (sink == SINK_FD)
		CHECK_EQ(pread(fd, stored, len, 0), (ssize_t)len);
	else
		memcpy(stored, buffer, len);
	unsigned char *inc = malloc(len / 4096);
	CHECK_OK(mincore(mem, len, inc));
	size_t resident = 0, wrong = 0;
	for (size_t p = 0; p < pages; p++) {
		int res = inc[p * ps / 4096] & 1;
		resident += res;
		const unsigned char *have = res ? (unsigned char *)mem + p * ps : stored + p * ps;
		if (memcmp(have, model + p * ps, ps) != 0 && wrong++ < 3)
			fprintf(stderr, "   page %zu (%s) differs from the model\n", p,
				res ? "resident" : "evicted");
	}
	CHECK_EQ(wrong, 0);
	CHECK_MSG(resident <= pages / 4 + 1, "%zu pages resident", resident);
	/* A checkpoint without eviction (libuffd_monitor_writeback): then the
	 * file (or the buffer) alone holds the model, nothing was evicted. */
	uint64_t evicted = st.evictions;
	int64_t wb = libuffd_monitor_writeback(m, id, mem, len);
	CHECK_MSG(wb >= 0, "libuffd_monitor_writeback: %lld (%s)", (long long)wb, libuffd_last_error());
	if (sink == SINK_FD)
		CHECK_EQ(pread(fd, stored, len, 0), (ssize_t)len);
	else
		memcpy(stored, buffer, len);
	CHECK(memcmp(stored, model, len) == 0);
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	CHECK_EQ(st.evictions, evicted);
	CHECK_EQ(libuffd_monitor_writeback(m, id, mem, len), 0); /* all clean now */
	CHECK_FAILS(libuffd_monitor_writeback(m, id + 7, mem, len), -EINVAL, "libuffd_monitor_writeback");
	CHECK_FAILS(libuffd_monitor_writeback(NULL, id, mem, len), -EINVAL, "libuffd_monitor_writeback");
	CHECK_FAILS(libuffd_monitor_writeback(m, id, mem + 1, ps), -EINVAL, "libuffd_monitor_writeback");
	/* Everything, read back through the monitor. */
	CHECK(memcmp(mem, model, len) == 0);

	CHECK_OK(libuffd_monitor_stop(m));
	CHECK_OK(libuffd_monitor_wait(m));
	libuffd_monitor_free(m);
	sink_buffer = NULL;
	for (int t = 0; t < THREADS; t++)
		free(w[t].model);
	free(model);
	free(stored);
	free(inc);
	free(buffer);
	free(data);
	close(fd);
	munmap(mem, len);
}

/* LIBUFFD_ON_REMOVE_REFILL: after the application's madvise(DONTNEED),
 * the page is the file's again (not zeros, not what was written). */
static void refill(void)
{
	SECTION("LIBUFFD_ON_REMOVE_REFILL");
	size_t ps = 4096, len = 4 * ps;
	char *mem = map_kind(&KINDS[0], len);
	unsigned char *data = malloc(len);
	int fd = make_file(len, data);
	struct libuffd_open_opts oo = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK,
							.features = LIBUFFD_FEATURE_EVENT_REMOVE,
							.required_features = LIBUFFD_FEATURE_EVENT_REMOVE);
	libuffd_handle *h = NULL;
	CHECK_OK(libuffd_open(&oo, &h));
	LIBUFFD_OPTS(libuffd_monitor_opts, mo, .remove_policy = LIBUFFD_ON_REMOVE_REFILL);
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(&mo, NULL, NULL, NULL, &m));
	uint32_t id = 0;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	libuffd_handle_free(h);
	LIBUFFD_OPTS(libuffd_region_opts, r, .source = LIBUFFD_SOURCE_FD, .fd = fd,
		     .register_mode = LIBUFFD_REGISTER_MISSING);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, len, &r));
	CHECK_OK(libuffd_monitor_start(m));
	CHECK_EQ((unsigned char)mem[ps + 9], data[ps + 9]);
	mem[ps + 9] = (char)~data[ps + 9];
	CHECK_OK(madvise(mem + ps, ps, MADV_DONTNEED));
	CHECK(memcmp(mem, data, len) == 0);
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	CHECK_EQ(st.removes, 1);
	CHECK_OK(libuffd_monitor_stop(m));
	CHECK_OK(libuffd_monitor_wait(m));
	libuffd_monitor_free(m);
	free(data);
	close(fd);
	munmap(mem, len);
}

/* Bad options: -EINVAL (or -EBADF) and a reason. */
static void bad_input(void)
{
	SECTION("bad options");
	size_t ps = 4096, len = 4 * ps;
	char *mem = map_kind(&KINDS[0], len);
	unsigned char *data = malloc(len);
	int fd = make_file(len, data);
	int other = make_file(len, data);
	struct libuffd_open_opts oo = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK,
							.features = LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP);
	libuffd_handle *h = NULL;
	CHECK_OK(libuffd_open(&oo, &h));
	libuffd_monitor *m = NULL;
	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &m));
	uint32_t id = 0;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	libuffd_handle_free(h);
	struct libuffd_region_opts good = LIBUFFD_OPTS_INIT(
		libuffd_region_opts, .source = LIBUFFD_SOURCE_FD, .fd = fd,
		.register_mode = LIBUFFD_REGISTER_MISSING, .max_resident = 2 * ps,
		.flags = LIBUFFD_REGION_WRITEBACK_FD, .writeback_fd = fd);
	struct {
		const char *what, *text;
		struct libuffd_region_opts o;
		int err;
	} cases[16];
	int n = 0;
#define BAD(w, t, e, ...)                                                  \
	do {                                                               \
		cases[n].what = (w);                                       \
		cases[n].text = (t);                                       \
		cases[n].err = (e);                                        \
		cases[n].o = good;                                         \
		{ __VA_ARGS__; }                                           \
		n++;                                                       \
	} while (0)
	struct libuffd_region_opts *o;
	BAD("less than a page", "less than one", EINVAL, o = &cases[n].o; o->max_resident = 100);
	BAD("no sink", "write-back sink", EINVAL, o = &cases[n].o; o->flags = 0);
	BAD("both sinks", "one sink", EINVAL, o = &cases[n].o;
	    o->flags = LIBUFFD_REGION_WRITEBACK_FD | LIBUFFD_REGION_WRITEBACK_CALLBACK);
	BAD("callback without on_writeback", "on_writeback", EINVAL, o = &cases[n].o;
	    o->flags = LIBUFFD_REGION_WRITEBACK_CALLBACK);
	BAD("another file", "source's file", EINVAL, o = &cases[n].o; o->writeback_fd = other);
	BAD("closed fd", "write-back fd", EBADF, o = &cases[n].o; o->writeback_fd = 1000);
	BAD("zero source", "cannot give them back", EINVAL, o = &cases[n].o;
	    o->source = LIBUFFD_SOURCE_ZERO);
	BAD("read-only, no budget", "without max_resident", EINVAL, o = &cases[n].o;
	    o->max_resident = 0; o->flags = LIBUFFD_REGION_READ_ONLY);
	BAD("reserved2", "reserved", EINVAL, o = &cases[n].o; o->reserved2 = 1);
	BAD("reserved1", "reserved", EINVAL, o = &cases[n].o; o->reserved1 = 1);
	BAD("dirty tracking too", "together", EINVAL, o = &cases[n].o; o->flags |= LIBUFFD_REGION_TRACK_DIRTY);
	BAD("unknown flag", "unknown flags", EINVAL, o = &cases[n].o; o->flags |= 0x1000);
	for (int i = 0; i < n; i++) {
		int rc = libuffd_monitor_add_region(m, id, mem, len, &cases[i].o);
		CHECK_MSG(rc == -cases[i].err, "%s: %d (%s)", cases[i].what, rc, libuffd_last_error());
		CHECK_MSG(strstr(libuffd_last_error(), cases[i].text) != NULL, "%s: %s", cases[i].what,
			  libuffd_last_error());
	}
	/* Nothing was left behind: the good options are taken. */
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, len, &good));
	LIBUFFD_OPTS(libuffd_monitor_opts, mo, .remove_policy = 3);
	libuffd_monitor *m2 = NULL;
	CHECK_RET(libuffd_monitor_new(&mo, NULL, NULL, NULL, &m2), -EINVAL);
	CHECK(strstr(libuffd_last_error(), "remove_policy") != NULL);
	libuffd_monitor_free(m);
	free(data);
	close(fd);
	close(other);
	munmap(mem, len);
}

int main(void)
{
	setvbuf(stdout, NULL, _IONBF, 0);
	for (size_t i = 0; i < sizeof KINDS / sizeof KINDS[0]; i++) {
		run_case(&KINDS[i], SINK_FD);
		run_case(&KINDS[i], SINK_CALLBACK);
	}
	refill();
	bad_input();
	return h_finish();
}
