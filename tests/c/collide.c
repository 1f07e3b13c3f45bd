/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * collide: libuffd next to the code it replaces. The program has its own
 * uffd.h and its own uffd_open/uffd_register/uffd_copy/... (QEMU's,
 * CRIU's, the kernel selftests' and far-memory runtimes' helper names,
 * defined in collide_tu2.c), includes <libuffd.h> as well, and uses both:
 * its helpers alone, libuffd alone, and one fd ported a call site at a
 * time (registered by the host's helper, resolved by libuffd). It is built
 * and run against libuffd.so and libuffd.a by tests/c/run.sh, and once more
 * with the host's helpers in a shared object of their own.
 */
#include "harness.h"
#include "uffd.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>

static long page;

struct toucher {
	pthread_t thr;
	volatile char *addr;
	char seen;
};

static void *touch_main(void *arg)
{
	struct toucher *t = arg;
	t->seen = t->addr[7];
	return NULL;
}

static void start_toucher(struct toucher *t, char *addr)
{
	t->addr = addr;
	t->seen = 0;
	if (pthread_create(&t->thr, NULL, touch_main, t) != 0) {
		fprintf(stderr, "pthread_create failed\n");
		exit(1);
	}
}

int main(void)
{
	page = sysconf(_SC_PAGESIZE);
	char *src = h_map_anon(page);
	memset(src, 'S', page);

	SECTION("the host's own helpers, alone");
	int fd = uffd_open(O_CLOEXEC | O_NONBLOCK);
	CHECK(fd >= 0);
	char *mem = h_map_anon(page);
	CHECK_RET(uffd_register(fd, mem, page, true, false, false), 0);
	struct toucher t;
	start_toucher(&t, mem);
	CHECK(uffd_poll_events(fd, 10000));
	struct uffd_msg msg;
	CHECK_RET(uffd_read_events(fd, &msg, 1), 1);
	CHECK_EQ(msg.event, UFFD_EVENT_PAGEFAULT);
	CHECK_RET(uffd_copy(fd, mem, src, page), 0);
	pthread_join(t.thr, NULL);
	CHECK_EQ(t.seen, 'S');
	CHECK_RET(uffd_unregister(fd, mem, page), 0);
	close(fd);
	munmap(mem, page);
	CHECK_EQ(host_uffd_calls, 6);

	SECTION("libuffd alone, in the same program");
	libuffd_handle *h = NULL;
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_NONBLOCK);
	CHECK_RET(libuffd_open(&o, &h), 0);
	if (!h)
		return h_finish();
	mem = h_map_anon(page);
	CHECK_RET(libuffd_register(h, mem, page, LIBUFFD_REGISTER_MISSING, NULL), 0);
	memset(src, 'L', page);
	start_toucher(&t, mem);
	struct libuffd_event ev;
	int n = 0;
	for (int i = 0; i < 1000 && n == 0; i++)
		n = libuffd_read_events(h, &ev, 1, 10);
	CHECK_EQ(n, 1);
	CHECK_EQ(ev.kind, LIBUFFD_EVENT_PAGEFAULT);
	CHECK_RET(libuffd_copy(h, mem, src, page, 0), (int64_t)page);
	pthread_join(t.thr, NULL);
	CHECK_EQ(t.seen, 'L');
	CHECK_RET(libuffd_unregister(h, mem, page), 0);
	libuffd_handle_free(h);
	munmap(mem, page);
	/* libuffd never reached the host's functions of the same names. */
	CHECK_EQ(host_uffd_calls, 6);

	SECTION("one fd ported a call site at a time");
	fd = uffd_open(O_CLOEXEC | O_NONBLOCK);
	CHECK(fd >= 0);
	mem = h_map_anon(2 * page);
	CHECK_RET(uffd_register(fd, mem, 2 * page, true, false, false), 0);
	int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	h = NULL;
	CHECK_RET(libuffd_handle_from_fd(dup_fd, NULL, &h), 0);
	if (!h)
		return h_finish();
	memset(src, 'P', page);
	start_toucher(&t, mem);
	CHECK(uffd_poll_events(fd, 10000));
	CHECK_RET(uffd_read_events(fd, &msg, 1), 1);
	CHECK_EQ_HEX(msg.arg.pagefault.address, (uintptr_t)mem);
	/* The new call site resolves; the old ones still read and register. */
	CHECK_RET(libuffd_copy(h, mem, src, page, 0), (int64_t)page);
	pthread_join(t.thr, NULL);
	CHECK_EQ(t.seen, 'P');
	/* The second page: the host's zero helper, then libuffd sees EEXIST. */
	CHECK_RET(uffd_zero(fd, mem + page, page), 0);
	CHECK_RET(libuffd_zeropage(h, mem + page, page, 0), -EEXIST);
	CHECK_RET(uffd_wake(fd, mem + page, page), 0);
	CHECK_EQ(mem[page + 3], 0);
	libuffd_handle_free(h);
	CHECK_RET(uffd_unregister(fd, mem, 2 * page), 0);
	close(fd);
	munmap(mem, 2 * page);
	CHECK_EQ(host_uffd_calls, 6 + 7);

	munmap(src, page);
	return h_finish();
}
