/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * tests/c/uffd.h: a host program's own userfaultfd helpers, declared under
 * the names such programs really give theirs: QEMU's util/userfaultfd.c
 * (uffd_open, uffd_read_events, uffd_poll_events), the kernel selftests'
 * vm_util.h (uffd_register, uffd_unregister), far-memory runtimes
 * (uffd_copy, uffd_wake, uffd_zero). The signatures are this test's own.
 *
 * collide.c includes this header next to <libuffd.h>; collide_tu2.c
 * defines the functions. Both must compile, link (shared and static) and
 * work side by side with libuffd.
 */
#ifndef HOST_UFFD_H
#define HOST_UFFD_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/userfaultfd.h>

/* How many times the host's helpers were called: libuffd never calls them. */
extern int host_uffd_calls;

int uffd_open(int flags);
int uffd_read_events(int fd, struct uffd_msg *msgs, int count);
bool uffd_poll_events(int fd, int timeout_ms);
int uffd_register(int fd, void *addr, uint64_t len, bool miss, bool wp, bool minor);
int uffd_unregister(int fd, void *addr, uint64_t len);
int uffd_copy(int fd, void *dst, const void *src, uint64_t len);
int uffd_wake(int fd, void *addr, uint64_t len);
int uffd_zero(int fd, void *addr, uint64_t len);

#endif
