/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * handoff.c: libuffd_send / libuffd_recv / libuffd_monitor_add_received /
 * libuffd_monitor_watch_peer from C. A child process (the "VMM") maps
 * memory (anonymous, memfd, hugetlb memfd), registers it and sends the
 * userfaultfd with its two ranges to this process (the handler), which
 * serves them from a file with a monitor; the child checks every byte.
 * Then the bad-input matrix (each refusal's errno and text, the
 * descriptors of a refused message closed) and a handler whose peer is
 * killed ending within a bound.
 */
#include "harness.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#define PAGES 8

enum kind { ANON, SHMEM, HUGETLB };
static const char *kind_name[] = { "anon", "shmem", "hugetlb" };

static size_t page_of(enum kind k)
{
	return k == HUGETLB ? (2u << 20) : 4096;
}

static unsigned char byte_at(size_t i)
{
	return (unsigned char)((i * 131 + i / 4096 * 7 + 1) | 1);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int name_counter;

/* A listening SOCK_SEQPACKET socket at a fresh abstract address. */
static int listener(struct sockaddr_un *addr, socklen_t *len)
{
	int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (l < 0)
		FATAL("socket: %s", strerror(errno));
	memset(addr, 0, sizeof *addr);
	addr->sun_family = AF_UNIX;
	int n = snprintf(addr->sun_path + 1, sizeof addr->sun_path - 1, "libuffd-c-handoff-%d-%d",
			 (int)getpid(), name_counter++);
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
	if (bind(l, (struct sockaddr *)addr, *len) || listen(l, 4))
		FATAL("bind/listen: %s", strerror(errno));
	return l;
}

static int connect_to(const struct sockaddr_un *addr, socklen_t len)
{
	int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (s < 0 || connect(s, (const struct sockaddr *)addr, len))
		_exit(20);
	return s;
}

static void *map_kind(enum kind k, size_t len)
{
	int fd = -1;
	if (k == SHMEM)
		fd = memfd_create("vmm", MFD_CLOEXEC);
	else if (k == HUGETLB)
		fd = memfd_create("vmm", MFD_CLOEXEC | MFD_HUGETLB);
	if (k != ANON && (fd < 0 || ftruncate(fd, (off_t)len)))
		return MAP_FAILED;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       k == ANON ? MAP_PRIVATE | MAP_ANONYMOUS : MAP_SHARED, fd, 0);
	if (fd >= 0)
		close(fd);
	return p;
}

static uint64_t features_of(enum kind k)
{
	return k == SHMEM ? LIBUFFD_FEATURE_MISSING_SHMEM
	       : k == HUGETLB ? LIBUFFD_FEATURE_MISSING_HUGETLBFS : 0;
}

/* The child: map, register, send, wait for 'g', check every byte. */
static int vmm(enum kind k, const struct sockaddr_un *addr, socklen_t alen, int hang)
{
	int s = connect_to(addr, alen);
	size_t ps = page_of(k), len = PAGES * ps;
	unsigned char *mem = map_kind(k, len);
	if (mem == MAP_FAILED)
		return 21;
	LIBUFFD_OPTS(libuffd_open_opts, o, .flags = LIBUFFD_OPEN_NONBLOCK,
		     .features = features_of(k), .required_features = features_of(k));
	struct libuffd_handle *h;
	if (libuffd_open(&o, &h) < 0 || libuffd_register(h, mem, len, LIBUFFD_REGISTER_MISSING, NULL) < 0)
		return 22;
	struct libuffd_region_desc d[2] = {
		{ .start = mem, .len = len / 2, .page_size = ps, .source_offset = 0, .tag = 1 },
		{ .start = mem + len / 2, .len = len / 2, .page_size = ps, .source_offset = len / 2, .tag = 2 },
	};
	if (libuffd_send(s, h, d, 2) != 0)
		return 23;
	if (hang)
		return mem[0]; /* blocks: the handler never serves it */
	char go;
	if (read(s, &go, 1) != 1 || go != 'g')
		return 24;
	for (size_t i = 0; i < len; i++)
		if (mem[i] != byte_at(i))
			return 25;
	return 0;
}

static int source_file(size_t len)
{
	int fd = memfd_create("src", MFD_CLOEXEC);
	unsigned char *buf = malloc(len);
	for (size_t i = 0; i < len; i++)
		buf[i] = byte_at(i);
	if (fd < 0 || pwrite(fd, buf, len, 0) != (ssize_t)len)
		FATAL("source file");
	free(buf);
	return fd;
}

static void serve_case(enum kind k)
{
	char title[64];
	snprintf(title, sizeof title, "hand-off %s", kind_name[k]);
	SECTION(title);
	size_t ps = page_of(k), len = PAGES * ps;
	int file = source_file(len);
	struct sockaddr_un addr;
	socklen_t alen;
	int l = listener(&addr, &alen);
	pid_t pid = fork();
	if (pid == 0)
		_exit(vmm(k, &addr, alen, 0));
	int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	CHECK(s >= 0);
	LIBUFFD_OPTS(libuffd_recv_opts, ro, .flags = LIBUFFD_RECV_CHECK_PID | LIBUFFD_RECV_CHECK_UID,
		     .pid = pid, .uid = getuid(), .timeout_ms = 10000);
	struct libuffd_handle *h = NULL;
	struct libuffd_region_desc d[4];
	struct libuffd_peer peer;
	CHECK_RET(libuffd_recv(s, &ro, &h, d, 4, &peer), 2);
	CHECK_EQ(peer.pid, pid);
	CHECK(peer.pidfd >= 0);
	CHECK_EQ(d[1].page_size, ps);
	CHECK_EQ(d[1].source_offset, len / 2);
	struct libuffd_monitor *m;
	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	LIBUFFD_OPTS(libuffd_region_opts, rg, .source = LIBUFFD_SOURCE_FD, .fd = file);
	CHECK_OK(libuffd_monitor_add_received(m, id, d, 2, &rg));
	CHECK_OK(libuffd_monitor_watch_peer(m, peer.pidfd, s));
	CHECK_OK(libuffd_monitor_start(m));
	CHECK(write(s, "g", 1) == 1);
	int status = 0;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the VMM exited with status %#x", status);
	/* The VMM is gone: the watch stops the monitor. */
	double t0 = now_s();
	CHECK_OK(libuffd_monitor_wait(m));
	CHECK_MSG(now_s() - t0 < 3, "the monitor stopped %.2f s after the VMM exited", now_s() - t0);
	struct libuffd_monitor_stats st = { .sz = sizeof st };
	CHECK_OK(libuffd_monitor_get_stats(m, &st));
	CHECK(st.faults >= PAGES / 2);
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	close(peer.pidfd);
	close(s);
	close(l);
	close(file);
}

/* ------------------------------------------------------- bad input */

static void send_raw(int s, const void *buf, size_t len, const int *fds, int nfds)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char buf[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds) {
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	if (sendmsg(s, &msg, MSG_NOSIGNAL) != (ssize_t)len)
		FATAL("sendmsg: %s", strerror(errno));
}

static size_t good_message(unsigned char *b)
{
	memset(b, 0, 72);
	uint32_t magic = 0x4f484655, count = 1, esize = 40;
	uint16_t version = 1, hsize = 32;
	memcpy(b, &magic, 4);
	memcpy(b + 4, &version, 2);
	memcpy(b + 6, &hsize, 2);
	memcpy(b + 8, &count, 4);
	memcpy(b + 12, &esize, 4);
	uint64_t r[5] = { 0x40000000, 0x4000, 4096, 0, 7 };
	memcpy(b + 32, r, 40);
	return 72;
}

/* Send the message with fds, expect libuffd_recv to refuse it with
 * `expected`, its text containing `words`; *probe_closed tells whether a
 * pipe read end sent along was closed by the refusal. */
static void refused(const unsigned char *msg, size_t len, const int *fds, int nfds, int expected,
		    const char *words)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv))
		FATAL("socketpair");
	send_raw(sv[0], msg, len, fds, nfds);
	struct libuffd_handle *h = NULL;
	struct libuffd_region_desc d[2];
	CHECK_FAILS(libuffd_recv(sv[1], NULL, &h, d, 2, NULL), expected, "libuffd_recv");
	CHECK_CONTAINS(libuffd_last_error(), words);
	CHECK(h == NULL);
	close(sv[0]);
	close(sv[1]);
}

/* A pipe whose read end travels; after the refusal (and our own read end
 * closed) a write fails with EPIPE if the receiver closed its copy. */
static int reader_left(int wfd)
{
	return write(wfd, "x", 1) == 1;
}

static void bad_input(void)
{
	SECTION("bad input");
	signal(SIGPIPE, SIG_IGN);
	struct libuffd_handle *u;
	LIBUFFD_OPTS(libuffd_open_opts, o, .flags = LIBUFFD_OPEN_NONBLOCK);
	CHECK_OK(libuffd_open(&o, &u));
	int ufd = libuffd_handle_fd(u);
	unsigned char msg[72], bad[72];
	size_t len = good_message(msg);
	int p[2];

	/* truncated */
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	refused(msg, len - 8, &p[0], 1, -EBADMSG, "must have");
	close(p[0]);
	CHECK_MSG(!reader_left(p[1]), "the descriptor of a truncated message was kept open");
	close(p[1]);
	/* wrong magic */
	memcpy(bad, msg, len);
	bad[1] ^= 0x5a;
	refused(bad, len, &ufd, 1, -EPROTO, "bad magic");
	/* wrong version */
	memcpy(bad, msg, len);
	bad[4] = 2;
	refused(bad, len, &ufd, 1, -EPROTO, "version 2");
	/* a pipe instead of a userfaultfd */
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	refused(msg, len, &p[0], 1, -EBADF, "not a userfaultfd");
	close(p[0]);
	CHECK_MSG(!reader_left(p[1]), "the non-uffd descriptor was kept open");
	close(p[1]);
	/* no descriptor */
	refused(msg, len, NULL, 0, -EBADF, "0 descriptors");
	/* two descriptors */
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	int two[2] = { ufd, p[0] };
	refused(msg, len, two, 2, -EBADF, "2 descriptors");
	close(p[0]);
	CHECK_MSG(!reader_left(p[1]), "the second descriptor was kept open");
	close(p[1]);
	/* oversized count */
	memcpy(bad, msg, len);
	uint32_t huge = 100000;
	memcpy(bad + 8, &huge, 4);
	refused(bad, len, &ufd, 1, -EMSGSIZE, "100000 regions");
	/* unaligned region */
	memcpy(bad, msg, len);
	bad[32] = 0x10;
	refused(bad, len, &ufd, 1, -EBADMSG, "not aligned");

	/* cap too small: ENOBUFS */
	{
		int sv[2];
		CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
		send_raw(sv[0], msg, len, &ufd, 1);
		struct libuffd_handle *h = NULL;
		CHECK_FAILS(libuffd_recv(sv[1], NULL, &h, NULL, 0, NULL), -ENOBUFS, "libuffd_recv");
		CHECK_CONTAINS(libuffd_last_error(), "room for 0");
		close(sv[0]);
		close(sv[1]);
	}
	/* peer checks, timeout, closed peer */
	{
		int sv[2];
		CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
		struct libuffd_handle *h = NULL;
		LIBUFFD_OPTS(libuffd_recv_opts, ro, .flags = LIBUFFD_RECV_CHECK_UID, .uid = getuid() + 1);
		CHECK_FAILS(libuffd_recv(sv[1], &ro, &h, NULL, 0, NULL), -EPERM, "libuffd_recv");
		CHECK_CONTAINS(libuffd_last_error(), "required");
		LIBUFFD_OPTS(libuffd_recv_opts, rt, .timeout_ms = 50);
		CHECK_FAILS(libuffd_recv(sv[1], &rt, &h, NULL, 0, NULL), -ETIMEDOUT, "libuffd_recv");
		LIBUFFD_OPTS(libuffd_recv_opts, rf, .flags = 0x80);
		CHECK_FAILS(libuffd_recv(sv[1], &rf, &h, NULL, 0, NULL), -EINVAL, "libuffd_recv");
		CHECK_CONTAINS(libuffd_last_error(), "unknown flags");
		close(sv[0]);
		CHECK_FAILS(libuffd_recv(sv[1], NULL, &h, NULL, 0, NULL), -ECONNRESET, "libuffd_recv");
		close(sv[1]);
	}
	/* arguments */
	struct libuffd_handle *h = NULL;
	struct libuffd_region_desc d[1] = { { .start = (void *)0x40000000, .len = 4096, .page_size = 4096 } };
	CHECK_FAILS(libuffd_recv(-1, NULL, &h, NULL, 0, NULL), -EINVAL, "libuffd_recv");
	CHECK_FAILS(libuffd_recv(0, NULL, NULL, NULL, 0, NULL), -EINVAL, "libuffd_recv");
	CHECK_FAILS(libuffd_recv(0, NULL, &h, NULL, 3, NULL), -EINVAL, "libuffd_recv");
	CHECK(pipe2(p, O_CLOEXEC) == 0);
	CHECK_FAILS(libuffd_recv(p[0], NULL, &h, NULL, 0, NULL), -ENOTSOCK, "libuffd_recv");
	CHECK_FAILS(libuffd_send(p[1], u, d, 1), -ENOTSOCK, "libuffd_send");
	close(p[0]);
	close(p[1]);
	CHECK_FAILS(libuffd_send(0, NULL, d, 1), -EINVAL, "libuffd_send");
	CHECK_FAILS(libuffd_send(-1, u, d, 1), -EINVAL, "libuffd_send");
	CHECK_FAILS(libuffd_send(0, u, NULL, 1), -EINVAL, "libuffd_send");
	CHECK_FAILS(libuffd_send(0, u, d, LIBUFFD_HANDOFF_MAX_REGIONS + 1), -EINVAL, "libuffd_send");
	struct libuffd_region_desc un[1] = { { .start = (void *)0x40000100, .len = 4096, .page_size = 4096 } };
	CHECK_FAILS(libuffd_send(0, u, un, 1), -EINVAL, "libuffd_send");
	CHECK_CONTAINS(libuffd_last_error(), "not aligned");

	struct libuffd_monitor *m;
	CHECK_OK(libuffd_monitor_new(NULL, NULL, NULL, NULL, &m));
	CHECK_FAILS(libuffd_monitor_add_received(NULL, 0, d, 1, NULL), -EINVAL, "libuffd_monitor_add_received");
	CHECK_FAILS(libuffd_monitor_add_received(m, 0, NULL, 1, NULL), -EINVAL, "libuffd_monitor_add_received");
	CHECK_FAILS(libuffd_monitor_add_received(m, 9, d, 1, NULL), -EINVAL, "libuffd_monitor_add_received");
	CHECK_CONTAINS(libuffd_last_error(), "region 0 of 1");
	CHECK_FAILS(libuffd_monitor_watch_peer(NULL, 0, 0), -EINVAL, "libuffd_monitor_watch_peer");
	CHECK_FAILS(libuffd_monitor_watch_peer(m, -1, -1), -EINVAL, "libuffd_monitor_watch_peer");
	CHECK_FAILS(libuffd_monitor_watch_peer(m, 999, -1), -EBADF, "libuffd_monitor_watch_peer");
	libuffd_monitor_free(m);
	libuffd_handle_free(u);
}

/* ---------------------------------------------- the peer is killed */

static int32_t defer_all(void *user, struct libuffd_monitor *m, const struct libuffd_fault *f)
{
	(void)m;
	(void)f;
	__atomic_add_fetch((int *)user, 1, __ATOMIC_SEQ_CST);
	return LIBUFFD_ON_FAULT_DEFER;
}

static void killed_peer(void)
{
	SECTION("the peer is killed");
	struct sockaddr_un addr;
	socklen_t alen;
	int l = listener(&addr, &alen);
	pid_t pid = fork();
	if (pid == 0)
		_exit(vmm(ANON, &addr, alen, 1));
	int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	struct libuffd_handle *h = NULL;
	struct libuffd_region_desc d[2];
	struct libuffd_peer peer;
	CHECK_RET(libuffd_recv(s, NULL, &h, d, 2, &peer), 2);
	static int faults;
	LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = defer_all);
	struct libuffd_monitor *m;
	CHECK_OK(libuffd_monitor_new(NULL, &ops, &faults, NULL, &m));
	uint32_t id;
	CHECK_OK(libuffd_monitor_add_handle(m, h, &id));
	LIBUFFD_OPTS(libuffd_region_opts, rg, .source = LIBUFFD_SOURCE_CALLBACK);
	CHECK_OK(libuffd_monitor_add_received(m, id, d, 2, &rg));
	CHECK_OK(libuffd_monitor_watch_peer(m, peer.pidfd, -1));
	CHECK_OK(libuffd_monitor_start(m));
	for (int i = 0; i < 2000 && !__atomic_load_n(&faults, __ATOMIC_SEQ_CST); i++)
		usleep(1000);
	CHECK_MSG(faults >= 1, "the VMM's fault never came");
	kill(pid, SIGKILL);
	double t0 = now_s();
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_OK(libuffd_monitor_wait(m));
	double took = now_s() - t0;
	CHECK_MSG(took < 2.0, "the handler stopped %.2f s after its peer was killed", took);
	printf("handler stopped %.0f ms after SIGKILL\n", took * 1000);
	libuffd_monitor_free(m);
	libuffd_handle_free(h);
	close(peer.pidfd);
	close(s);
	close(l);
}

static int hugetlb_ok(void)
{
	void *p = mmap(NULL, 2u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (p == MAP_FAILED)
		return 0;
	munmap(p, 2u << 20);
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
	long n = 0;
	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = 0;
		fclose(f);
	}
	return n >= 8;
}

int main(void)
{
	serve_case(ANON);
	serve_case(SHMEM);
	if (hugetlb_ok())
		serve_case(HUGETLB);
	else
		printf("SKIP hand-off hugetlb: no 2 MiB huge pages reserved\n");
	bad_input();
	killed_peer();
	return h_finish();
}
