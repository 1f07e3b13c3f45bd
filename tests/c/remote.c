/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * remote.c: LIBUFFD_SOURCE_REMOTE regions from C. A page server process
 * on 127.0.0.1 (libuffd_page_server_serve) serves a file; 4 threads fault
 * a region whose pages come from it, at most 2 requests in flight, and
 * every byte must equal the file's. A LIBUFFD_REGION_PREFETCH region added
 * while the monitor runs, on the same connection, arrives whole without a
 * fault (prefetch_done_regions says when). Bad input: negative descriptors, a
 * request that is not of the protocol, a source fd that is not a socket.
 */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define PAGES 32
#define PS 4096

static unsigned char *mem;
static unsigned char byte_at(size_t i)
{
	return (unsigned char)((i * 37 + i / PS) | 1);
}

static void *toucher(void *arg)
{
	long t = (long)arg, bad = 0;
	for (size_t i = (size_t)t; i < PAGES; i += 4)
		for (size_t j = 0; j < PS; j += 512)
			bad += mem[i * PS + j] != byte_at(i * PS + j);
	return (void *)bad;
}

int main(void)
{
	SECTION("a region served by a page server on 127.0.0.1");
	int file = memfd_create("pages", MFD_CLOEXEC);
	unsigned char buf[PAGES * PS];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = byte_at(i);
	CHECK(pwrite(file, buf, sizeof buf, 0) == (ssize_t)sizeof buf);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof a;
	CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0);
	CHECK(getsockname(l, (struct sockaddr *)&a, &alen) == 0);
	pid_t pid = fork();
	if (pid == 0) {
		int s = accept(l, NULL, NULL);
		_exit(libuffd_page_server_serve(s, file) >= 1 ? 0 : 1);
	}
	close(l);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);

	mem = mmap(NULL, PAGES * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct libuffd_handle *h;
	LIBUFFD_OPTS(libuffd_open_opts, o, .flags = LIBUFFD_OPEN_NONBLOCK);
	CHECK_OK(libuffd_open(&o, &h));
	struct libuffd_monitor *m;
	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	LIBUFFD_OPTS(libuffd_region_opts, r, .source = LIBUFFD_SOURCE_REMOTE, .fd = c,
		     .max_in_flight = 2, .register_mode = LIBUFFD_REGISTER_MISSING);
	CHECK_OK(libuffd_monitor_add_region(m, id, mem, PAGES * PS, &r));
	CHECK_OK(libuffd_monitor_start(m));
	pthread_t t[4];
	for (long i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, toucher, (void *)i);
	long bad = 0;
	for (int i = 0; i < 4; i++) {
		void *rv;
		pthread_join(t[i], &rv);
		bad += (long)rv;
	}
	CHECK_EQ(bad, 0);
	CHECK(memcmp(mem, buf, sizeof buf) == 0);
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	CHECK_EQ(st.failed, 0);
	CHECK_EQ(st.prefetched_bytes, 0);

	SECTION("a PREFETCH region added while running arrives without a fault");
	unsigned char *pre =
		mmap(NULL, PAGES * PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	LIBUFFD_OPTS(libuffd_region_opts, pr, .source = LIBUFFD_SOURCE_REMOTE, .fd = c,
		     .register_mode = LIBUFFD_REGISTER_MISSING, .flags = LIBUFFD_REGION_PREFETCH);
	CHECK_OK(libuffd_monitor_add_region(m, id, pre, PAGES * PS, &pr));
	close(c); /* the monitor has its own duplicate */
	for (int ms = 0; ms < 10000; ms++) {
		CHECK_OK(libuffd_monitor_get_stats(m, &st));
		if (st.prefetch_done_regions == 1)
			break;
		usleep(1000);
	}
	CHECK_EQ(st.prefetch_done_regions, 1);
	CHECK_EQ(st.prefetched_bytes, PAGES * PS);
	uint64_t faults = st.faults;
	CHECK(memcmp(pre, buf, sizeof buf) == 0);
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	CHECK_EQ(st.faults, faults);

	SECTION("bad input");
	CHECK_FAILS(libuffd_page_server_serve(-1, file), -EINVAL, "libuffd_page_server_serve");
	CHECK_FAILS(libuffd_page_server_serve(3, -1), -EINVAL, "libuffd_page_server_serve");
	int sv[2];
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	char junk[24] = "GET / HTTP/1.0\r\n\r\n";
	CHECK(write(sv[0], junk, sizeof junk) == (ssize_t)sizeof junk);
	CHECK_FAILS(libuffd_page_server_serve(sv[1], file), -EPROTO, "libuffd_page_server_serve");
	CHECK_CONTAINS(libuffd_last_error(), "magic");
	close(sv[0]);
	close(sv[1]);
	void *other = mmap(NULL, PS, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	LIBUFFD_OPTS(libuffd_region_opts, nf, .source = LIBUFFD_SOURCE_REMOTE, .fd = file);
	CHECK_FAILS(libuffd_monitor_add_region(m, id, other, PS, &nf), -ENOTSOCK, "libuffd_monitor_add_region");
	CHECK_CONTAINS(libuffd_last_error(), "not a socket");
	LIBUFFD_OPTS(libuffd_region_opts, neg, .source = LIBUFFD_SOURCE_REMOTE, .fd = -1);
	CHECK_FAILS(libuffd_monitor_add_region(m, id, other, PS, &neg), -EINVAL, "libuffd_monitor_add_region");

	libuffd_monitor_stop(m);
	libuffd_monitor_wait(m);
	libuffd_monitor_free(m);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "page server status %#x", status);
	libuffd_handle_free(h);
	return h_finish();
}
