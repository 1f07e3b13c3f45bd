/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/* The host program's own helpers (see uffd.h), written on raw system calls. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "uffd.h"

int host_uffd_calls;

int uffd_open(int flags)
{
	host_uffd_calls++;
	int fd = (int)syscall(SYS_userfaultfd, flags);
	if (fd < 0)
		return -errno;
	struct uffdio_api api = { .api = UFFD_API };
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int uffd_read_events(int fd, struct uffd_msg *msgs, int count)
{
	host_uffd_calls++;
	ssize_t n = read(fd, msgs, sizeof(*msgs) * (size_t)count);
	return n < 0 ? -errno : (int)(n / (ssize_t)sizeof(*msgs));
}

bool uffd_poll_events(int fd, int timeout_ms)
{
	host_uffd_calls++;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, timeout_ms) == 1;
}

int uffd_register(int fd, void *addr, uint64_t len, bool miss, bool wp, bool minor)
{
	host_uffd_calls++;
	struct uffdio_register r = { .range = { (uintptr_t)addr, len } };
	if (miss)
		r.mode |= UFFDIO_REGISTER_MODE_MISSING;
	if (wp)
		r.mode |= UFFDIO_REGISTER_MODE_WP;
	if (minor)
		r.mode |= UFFDIO_REGISTER_MODE_MINOR;
	return ioctl(fd, UFFDIO_REGISTER, &r) < 0 ? -errno : 0;
}

int uffd_unregister(int fd, void *addr, uint64_t len)
{
	host_uffd_calls++;
	struct uffdio_range r = { (uintptr_t)addr, len };
	return ioctl(fd, UFFDIO_UNREGISTER, &r) < 0 ? -errno : 0;
}

int uffd_copy(int fd, void *dst, const void *src, uint64_t len)
{
	host_uffd_calls++;
	struct uffdio_copy c = { .dst = (uintptr_t)dst, .src = (uintptr_t)src, .len = len };
	return ioctl(fd, UFFDIO_COPY, &c) < 0 ? -errno : 0;
}

int uffd_wake(int fd, void *addr, uint64_t len)
{
	host_uffd_calls++;
	struct uffdio_range r = { (uintptr_t)addr, len };
	return ioctl(fd, UFFDIO_WAKE, &r) < 0 ? -errno : 0;
}

int uffd_zero(int fd, void *addr, uint64_t len)
{
	host_uffd_calls++;
	struct uffdio_zeropage z = { .range = { (uintptr_t)addr, len } };
	return ioctl(fd, UFFDIO_ZEROPAGE, &z) < 0 ? -errno : 0;
}
