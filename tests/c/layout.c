/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * layout: the ABI of include/libuffd.h pinned at compile time. Sizes,
 * offsets, alignments and field types of every public struct are frozen
 * at 1.0; constants equal the kernel's where <linux/userfaultfd.h> (6.1
 * headers on Debian 12) has them, and the 6.18 literal values where it
 * does not. A mistake here is a compile error, reported by run.sh.
 */
#include "harness.h"

#include <stdalign.h>
#include <stddef.h>
#include <linux/userfaultfd.h>

#define SA(cond) _Static_assert(cond, #cond)
#define TYPE_IS(expr, T) _Generic((expr), T: 1, default: 0)
#define FIELD(S, f) (((struct S *)0)->f)

/* ---------------------------------------------------------- structs */

/* struct libuffd_fault_info: 24 bytes. */
SA(sizeof(struct libuffd_fault_info) == 24);
SA(alignof(struct libuffd_fault_info) == 8);
SA(offsetof(struct libuffd_fault_info, address) == 0);
SA(offsetof(struct libuffd_fault_info, exact_address) == 8);
SA(offsetof(struct libuffd_fault_info, flags) == 16);
SA(offsetof(struct libuffd_fault_info, thread_id) == 20);
SA(TYPE_IS(FIELD(libuffd_fault_info, address), void *));
SA(TYPE_IS(FIELD(libuffd_fault_info, exact_address), void *));
SA(TYPE_IS(FIELD(libuffd_fault_info, flags), uint32_t));
SA(TYPE_IS(FIELD(libuffd_fault_info, thread_id), uint32_t));

/* struct libuffd_fork_info: 8 bytes. */
SA(sizeof(struct libuffd_fork_info) == 8);
SA(alignof(struct libuffd_fork_info) == 4);
SA(offsetof(struct libuffd_fork_info, fd) == 0);
SA(offsetof(struct libuffd_fork_info, reserved) == 4);
SA(TYPE_IS(FIELD(libuffd_fork_info, fd), int32_t));
SA(TYPE_IS(FIELD(libuffd_fork_info, reserved), uint32_t));

/* struct libuffd_remap_info: 24 bytes. */
SA(sizeof(struct libuffd_remap_info) == 24);
SA(alignof(struct libuffd_remap_info) == 8);
SA(offsetof(struct libuffd_remap_info, from) == 0);
SA(offsetof(struct libuffd_remap_info, to) == 8);
SA(offsetof(struct libuffd_remap_info, len) == 16);
SA(TYPE_IS(FIELD(libuffd_remap_info, from), void *));
SA(TYPE_IS(FIELD(libuffd_remap_info, to), void *));
SA(TYPE_IS(FIELD(libuffd_remap_info, len), uint64_t));

/* struct libuffd_range_info: 16 bytes. */
SA(sizeof(struct libuffd_range_info) == 16);
SA(alignof(struct libuffd_range_info) == 8);
SA(offsetof(struct libuffd_range_info, start) == 0);
SA(offsetof(struct libuffd_range_info, end) == 8);
SA(TYPE_IS(FIELD(libuffd_range_info, start), void *));
SA(TYPE_IS(FIELD(libuffd_range_info, end), void *));

/* union libuffd_event_data: 24 bytes, every member at 0. */
SA(sizeof(union libuffd_event_data) == 24);
SA(alignof(union libuffd_event_data) == 8);
SA(offsetof(union libuffd_event_data, fault) == 0);
SA(offsetof(union libuffd_event_data, fork) == 0);
SA(offsetof(union libuffd_event_data, remap) == 0);
SA(offsetof(union libuffd_event_data, range) == 0);
SA(offsetof(union libuffd_event_data, raw) == 0);
SA(sizeof(FIELD(libuffd_event, u.raw)) == 24);
SA(TYPE_IS(FIELD(libuffd_event, u.raw[0]), uint64_t));

/* struct libuffd_event: 32 bytes, like the kernel's struct uffd_msg. */
SA(sizeof(struct libuffd_event) == 32);
SA(sizeof(struct libuffd_event) == sizeof(struct uffd_msg));
SA(alignof(struct libuffd_event) == 8);
SA(offsetof(struct libuffd_event, kind) == 0);
SA(offsetof(struct libuffd_event, reserved) == 4);
SA(offsetof(struct libuffd_event, u) == 8);
SA(offsetof(struct libuffd_event, u.fault.address) == 8);
SA(offsetof(struct libuffd_event, u.fault.thread_id) == 28);
SA(offsetof(struct libuffd_event, u.fork.fd) == 8);
SA(offsetof(struct libuffd_event, u.remap.len) == 24);
SA(offsetof(struct libuffd_event, u.range.end) == 16);
SA(TYPE_IS(FIELD(libuffd_event, kind), uint32_t));
SA(TYPE_IS(FIELD(libuffd_event, reserved), uint32_t));

/* struct libuffd_open_opts: 32 bytes, size first. */
SA(sizeof(struct libuffd_open_opts) == 32);
SA(alignof(struct libuffd_open_opts) == 8);
SA(offsetof(struct libuffd_open_opts, sz) == 0);
SA(offsetof(struct libuffd_open_opts, flags) == 8);
SA(offsetof(struct libuffd_open_opts, reserved) == 12);
SA(offsetof(struct libuffd_open_opts, features) == 16);
SA(offsetof(struct libuffd_open_opts, required_features) == 24);
SA(TYPE_IS(FIELD(libuffd_open_opts, sz), size_t));
SA(TYPE_IS(FIELD(libuffd_open_opts, flags), uint32_t));
SA(TYPE_IS(FIELD(libuffd_open_opts, reserved), uint32_t));
SA(TYPE_IS(FIELD(libuffd_open_opts, features), uint64_t));
SA(TYPE_IS(FIELD(libuffd_open_opts, required_features), uint64_t));

/* struct libuffd_region_opts: 96 bytes, size first, then page_size, the
 * remote source's and the budget's fields appended (a shorter, older
 * struct means 0 for each). */
SA(sizeof(struct libuffd_region_opts) == 96);
SA(offsetof(struct libuffd_region_opts, max_in_flight) == 72);
SA(offsetof(struct libuffd_region_opts, reserved1) == 76);
SA(offsetof(struct libuffd_region_opts, sz) == 0);
SA(offsetof(struct libuffd_region_opts, data) == 56);
SA(offsetof(struct libuffd_region_opts, page_size) == 64);
SA(TYPE_IS(FIELD(libuffd_region_opts, page_size), uint64_t));
SA(offsetof(struct libuffd_region_opts, max_resident) == 80);
SA(offsetof(struct libuffd_region_opts, writeback_fd) == 88);
SA(offsetof(struct libuffd_region_opts, reserved2) == 92);
SA(TYPE_IS(FIELD(libuffd_region_opts, max_resident), uint64_t));
SA(TYPE_IS(FIELD(libuffd_region_opts, writeback_fd), int32_t));
/* stop_policy (1.1) took the place of 1.0's reserved zero. */
SA(offsetof(struct libuffd_region_opts, stop_policy) == 44);
SA(TYPE_IS(FIELD(libuffd_region_opts, stop_policy), uint32_t));
SA(offsetof(struct libuffd_monitor_opts, stop_policy) == 44);
SA(TYPE_IS(FIELD(libuffd_monitor_opts, stop_policy), uint32_t));
/* Stats: the stop counters are appended (sz says what an older caller has). */
SA(offsetof(struct libuffd_monitor_stats, stop_blocked) ==
   offsetof(struct libuffd_monitor_stats, handed_off) + 8);
/* The dirty-tracking counters (issue 12) are appended after children_dropped. */
SA(offsetof(struct libuffd_monitor_stats, dirty_writes) ==
   offsetof(struct libuffd_monitor_stats, children_dropped) + 8);
/* Then the budgets' counters. */
SA(offsetof(struct libuffd_monitor_stats, evictions) ==
   offsetof(struct libuffd_monitor_stats, dirty_scans_async) + 8);
SA(offsetof(struct libuffd_monitor_stats, resident_pages) + 8 ==
   offsetof(struct libuffd_monitor_stats, prefetch_done_regions));
SA(offsetof(struct libuffd_monitor_stats, prefetch_done_regions) + 8 == sizeof(struct libuffd_monitor_stats));

/* struct libuffd_fault: addresses as void *, like every address of the API. */
SA(sizeof(struct libuffd_fault) == 72);
SA(offsetof(struct libuffd_fault, address) == 0);
SA(offsetof(struct libuffd_fault, page) == 24);
SA(offsetof(struct libuffd_fault, region_start) == 40);
SA(offsetof(struct libuffd_fault, handle_id) == 64);
SA(TYPE_IS(FIELD(libuffd_fault, address), void *));
SA(TYPE_IS(FIELD(libuffd_fault, exact_address), void *));
SA(TYPE_IS(FIELD(libuffd_fault, page), void *));
SA(TYPE_IS(FIELD(libuffd_fault, region_start), void *));
SA(TYPE_IS(FIELD(libuffd_fault, region_offset), uint64_t));

/* struct libuffd_monitor_ops: sized like every options struct, then the
 * callbacks in order, each receiving user_data and the monitor. */
SA(sizeof(struct libuffd_monitor_ops) == 72);
/* on_write (dirty tracking), then on_writeback (budgets), appended after on_log. */
SA(offsetof(struct libuffd_monitor_ops, on_write) == 56);
SA(offsetof(struct libuffd_monitor_ops, sz) == 0);
SA(offsetof(struct libuffd_monitor_ops, on_fault) == 8);
SA(offsetof(struct libuffd_monitor_ops, on_fork) == 16);
SA(offsetof(struct libuffd_monitor_ops, on_remap) == 24);
SA(offsetof(struct libuffd_monitor_ops, on_remove) == 32);
SA(offsetof(struct libuffd_monitor_ops, on_unmap) == 40);
SA(offsetof(struct libuffd_monitor_ops, on_log) == 48);
SA(offsetof(struct libuffd_monitor_ops, on_writeback) == 64);
SA(TYPE_IS(FIELD(libuffd_monitor_ops, sz), size_t));
SA(TYPE_IS(FIELD(libuffd_monitor_ops, on_fault),
	   int32_t (*)(void *, libuffd_monitor *, const struct libuffd_fault *)));
SA(TYPE_IS(FIELD(libuffd_monitor_ops, on_fork), int32_t (*)(void *, libuffd_monitor *, uint32_t, int32_t)));
SA(TYPE_IS(FIELD(libuffd_monitor_ops, on_remap),
	   void (*)(void *, libuffd_monitor *, uint32_t, void *, void *, uint64_t)));
SA(TYPE_IS(FIELD(libuffd_monitor_ops, on_remove), void (*)(void *, libuffd_monitor *, uint32_t, void *, void *)));
SA(TYPE_IS(FIELD(libuffd_monitor_ops, on_unmap), void (*)(void *, libuffd_monitor *, uint32_t, void *, void *)));
SA(TYPE_IS(FIELD(libuffd_monitor_ops, on_log), void (*)(void *, libuffd_monitor *, const char *)));
SA(TYPE_IS(FIELD(libuffd_monitor_ops, on_writeback),
	   int32_t (*)(void *, libuffd_monitor *, const struct libuffd_fault *)));

/* The handle is opaque (incomplete): only pointers to it exist. */
SA(sizeof(libuffd_handle *) == sizeof(void *));

/* Function types: a change of a signature is a compile error here. */
SA(TYPE_IS(&libuffd_strerror, const char *(*)(int32_t)));
SA(TYPE_IS(&libuffd_last_error, const char *(*)(void)));
SA(TYPE_IS(&libuffd_read_events, int32_t (*)(libuffd_handle *, struct libuffd_event *, size_t, int32_t)));
SA(TYPE_IS(&libuffd_open, int32_t (*)(const struct libuffd_open_opts *, libuffd_handle **)));
SA(TYPE_IS(&libuffd_handle_from_fd, int32_t (*)(int32_t, const struct libuffd_open_opts *, libuffd_handle **)));
SA(TYPE_IS(&libuffd_handle_free, void (*)(libuffd_handle *)));
SA(TYPE_IS(&libuffd_handle_fd, int32_t (*)(const libuffd_handle *)));
SA(TYPE_IS(&libuffd_handle_features, int32_t (*)(const libuffd_handle *, uint64_t *)));
SA(TYPE_IS(&libuffd_probe_features, int32_t (*)(uint64_t *)));
SA(TYPE_IS(&libuffd_feature_supported, int32_t (*)(uint64_t)));
SA(TYPE_IS(&libuffd_page_size, int64_t (*)(const void *)));
SA(TYPE_IS(&libuffd_register, int32_t (*)(libuffd_handle *, void *, size_t, uint64_t, uint64_t *)));
SA(TYPE_IS(&libuffd_unregister, int32_t (*)(libuffd_handle *, void *, size_t)));
SA(TYPE_IS(&libuffd_wake, int32_t (*)(libuffd_handle *, void *, size_t)));
SA(TYPE_IS(&libuffd_copy, int64_t (*)(libuffd_handle *, void *, const void *, size_t, uint64_t)));
SA(TYPE_IS(&libuffd_zeropage, int64_t (*)(libuffd_handle *, void *, size_t, uint64_t)));
SA(TYPE_IS(&libuffd_writeprotect, int32_t (*)(libuffd_handle *, void *, size_t, uint64_t)));
SA(TYPE_IS(&libuffd_continue, int64_t (*)(libuffd_handle *, void *, size_t, uint64_t)));
SA(TYPE_IS(&libuffd_poison, int64_t (*)(libuffd_handle *, void *, size_t, uint64_t)));
SA(TYPE_IS(&libuffd_move, int64_t (*)(libuffd_handle *, void *, void *, size_t, uint64_t)));
SA(TYPE_IS(&libuffd_monitor_new, int32_t (*)(const struct libuffd_monitor_opts *, const struct libuffd_monitor_ops *,
					    void *, void (*)(void *), libuffd_monitor **)));
SA(TYPE_IS(&libuffd_version, uint32_t (*)(void)));
SA(TYPE_IS(&libuffd_version_string, const char *(*)(void)));

/* -------------------------------------------------------- constants */

/* Version. */
SA(LIBUFFD_VERSION_MAJOR == 1);
SA(LIBUFFD_VERSION_MINOR == 0);
SA(LIBUFFD_VERSION_PATCH == 0);
SA(LIBUFFD_VERSION == 0x010000);

/* Open flags: libuffd's own, distinct single bits. */
SA(LIBUFFD_OPEN_NONBLOCK == 0x1);
SA(LIBUFFD_OPEN_USER_ONLY == 0x2);
SA(LIBUFFD_HANDLE_MODE_UNKNOWN == 0x100);
SA(LIBUFFD_OPEN_NO_CLOEXEC == 0x4);
SA(LIBUFFD_OPEN_NO_SYSCALL == 0x8);
SA(LIBUFFD_OPEN_NO_DEV == 0x10);

/* Monitor flags: distinct single bits. */
SA(LIBUFFD_MONITOR_FIXED_WINDOW == 0x1);
SA(LIBUFFD_MONITOR_NO_FORK_SERVE == 0x2);
SA(LIBUFFD_MONITOR_NO_RELEASE_ON_STOP == 0x4);
SA(LIBUFFD_MONITOR_HAND_OFF_ALL == 0x8);

/* Stop policies: 0 is the default (per region: the monitor's). */
SA(LIBUFFD_ON_STOP_DEFAULT == 0);
SA(LIBUFFD_ON_STOP_BLOCK == 1);
SA(LIBUFFD_ON_STOP_SIGBUS == 2);
SA(LIBUFFD_ON_STOP_ZERO == 3);

/* Features: the kernel's bits. */
SA(LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP == UFFD_FEATURE_PAGEFAULT_FLAG_WP);
SA(LIBUFFD_FEATURE_EVENT_FORK == UFFD_FEATURE_EVENT_FORK);
SA(LIBUFFD_FEATURE_EVENT_REMAP == UFFD_FEATURE_EVENT_REMAP);
SA(LIBUFFD_FEATURE_EVENT_REMOVE == UFFD_FEATURE_EVENT_REMOVE);
SA(LIBUFFD_FEATURE_MISSING_HUGETLBFS == UFFD_FEATURE_MISSING_HUGETLBFS);
SA(LIBUFFD_FEATURE_MISSING_SHMEM == UFFD_FEATURE_MISSING_SHMEM);
SA(LIBUFFD_FEATURE_EVENT_UNMAP == UFFD_FEATURE_EVENT_UNMAP);
SA(LIBUFFD_FEATURE_SIGBUS == UFFD_FEATURE_SIGBUS);
SA(LIBUFFD_FEATURE_THREAD_ID == UFFD_FEATURE_THREAD_ID);
SA(LIBUFFD_FEATURE_MINOR_HUGETLBFS == UFFD_FEATURE_MINOR_HUGETLBFS);
SA(LIBUFFD_FEATURE_MINOR_SHMEM == UFFD_FEATURE_MINOR_SHMEM);
SA(LIBUFFD_FEATURE_EXACT_ADDRESS == UFFD_FEATURE_EXACT_ADDRESS);
SA(LIBUFFD_FEATURE_WP_HUGETLBFS_SHMEM == UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
/* Newer than the installed 6.1 header: compare where it has them. */
#ifdef UFFD_FEATURE_WP_UNPOPULATED
SA(LIBUFFD_FEATURE_WP_UNPOPULATED == UFFD_FEATURE_WP_UNPOPULATED);
#endif
#ifdef UFFD_FEATURE_POISON
SA(LIBUFFD_FEATURE_POISON == UFFD_FEATURE_POISON);
#endif
#ifdef UFFD_FEATURE_WP_ASYNC
SA(LIBUFFD_FEATURE_WP_ASYNC == UFFD_FEATURE_WP_ASYNC);
#endif
#ifdef UFFD_FEATURE_MOVE
SA(LIBUFFD_FEATURE_MOVE == UFFD_FEATURE_MOVE);
#endif
SA(LIBUFFD_FEATURE_WP_UNPOPULATED == 0x2000);
SA(LIBUFFD_FEATURE_POISON == 0x4000);
SA(LIBUFFD_FEATURE_WP_ASYNC == 0x8000);
SA(LIBUFFD_FEATURE_MOVE == 0x10000);
SA(LIBUFFD_FEATURES_KNOWN == 0x1FFFF);
SA(LIBUFFD_FEATURES_KNOWN ==
   (LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP | LIBUFFD_FEATURE_EVENT_FORK |
    LIBUFFD_FEATURE_EVENT_REMAP | LIBUFFD_FEATURE_EVENT_REMOVE |
    LIBUFFD_FEATURE_MISSING_HUGETLBFS | LIBUFFD_FEATURE_MISSING_SHMEM |
    LIBUFFD_FEATURE_EVENT_UNMAP | LIBUFFD_FEATURE_SIGBUS | LIBUFFD_FEATURE_THREAD_ID |
    LIBUFFD_FEATURE_MINOR_HUGETLBFS | LIBUFFD_FEATURE_MINOR_SHMEM |
    LIBUFFD_FEATURE_EXACT_ADDRESS | LIBUFFD_FEATURE_WP_HUGETLBFS_SHMEM |
    LIBUFFD_FEATURE_WP_UNPOPULATED | LIBUFFD_FEATURE_POISON | LIBUFFD_FEATURE_WP_ASYNC |
    LIBUFFD_FEATURE_MOVE));
/* Everything the installed header's kernel offers is known. */
SA((UFFD_API_FEATURES & ~(unsigned long long)LIBUFFD_FEATURES_KNOWN) == 0);

/* Registration modes. */
SA(LIBUFFD_REGISTER_MISSING == UFFDIO_REGISTER_MODE_MISSING);
SA(LIBUFFD_REGISTER_WP == UFFDIO_REGISTER_MODE_WP);
SA(LIBUFFD_REGISTER_MINOR == UFFDIO_REGISTER_MODE_MINOR);

/* ioctl mask bits: 1 << _UFFDIO_x. */
SA(LIBUFFD_IOCTL_WAKE == (1ULL << _UFFDIO_WAKE));
SA(LIBUFFD_IOCTL_COPY == (1ULL << _UFFDIO_COPY));
SA(LIBUFFD_IOCTL_ZEROPAGE == (1ULL << _UFFDIO_ZEROPAGE));
SA(LIBUFFD_IOCTL_WRITEPROTECT == (1ULL << _UFFDIO_WRITEPROTECT));
SA(LIBUFFD_IOCTL_CONTINUE == (1ULL << _UFFDIO_CONTINUE));
#ifdef _UFFDIO_MOVE
SA(LIBUFFD_IOCTL_MOVE == (1ULL << _UFFDIO_MOVE));
#endif
#ifdef _UFFDIO_POISON
SA(LIBUFFD_IOCTL_POISON == (1ULL << _UFFDIO_POISON));
#endif
SA(LIBUFFD_IOCTL_MOVE == (1ULL << 0x05));
SA(LIBUFFD_IOCTL_POISON == (1ULL << 0x08));
/* The range ioctls the installed header knows are all named. */
SA((UFFD_API_RANGE_IOCTLS & ~(unsigned long long)(LIBUFFD_IOCTL_WAKE | LIBUFFD_IOCTL_COPY |
	LIBUFFD_IOCTL_ZEROPAGE | LIBUFFD_IOCTL_MOVE | LIBUFFD_IOCTL_WRITEPROTECT |
	LIBUFFD_IOCTL_CONTINUE | LIBUFFD_IOCTL_POISON)) == 0);

/* Per-operation modes. */
SA(LIBUFFD_COPY_DONTWAKE == UFFDIO_COPY_MODE_DONTWAKE);
SA(LIBUFFD_COPY_WP == UFFDIO_COPY_MODE_WP);
SA(LIBUFFD_ZEROPAGE_DONTWAKE == UFFDIO_ZEROPAGE_MODE_DONTWAKE);
SA(LIBUFFD_WRITEPROTECT_WP == UFFDIO_WRITEPROTECT_MODE_WP);
SA(LIBUFFD_WRITEPROTECT_DONTWAKE == UFFDIO_WRITEPROTECT_MODE_DONTWAKE);
SA(LIBUFFD_CONTINUE_DONTWAKE == UFFDIO_CONTINUE_MODE_DONTWAKE);
#ifdef UFFDIO_CONTINUE_MODE_WP
SA(LIBUFFD_CONTINUE_WP == UFFDIO_CONTINUE_MODE_WP);
#endif
SA(LIBUFFD_CONTINUE_WP == 0x2);
#ifdef UFFDIO_POISON_MODE_DONTWAKE
SA(LIBUFFD_POISON_DONTWAKE == UFFDIO_POISON_MODE_DONTWAKE);
#endif
SA(LIBUFFD_POISON_DONTWAKE == 0x1);
#ifdef UFFDIO_MOVE_MODE_DONTWAKE
SA(LIBUFFD_MOVE_DONTWAKE == UFFDIO_MOVE_MODE_DONTWAKE);
SA(LIBUFFD_MOVE_ALLOW_SRC_HOLES == UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES);
#endif
SA(LIBUFFD_MOVE_DONTWAKE == 0x1);
SA(LIBUFFD_MOVE_ALLOW_SRC_HOLES == 0x2);

/* Events. */
SA(LIBUFFD_EVENT_PAGEFAULT == UFFD_EVENT_PAGEFAULT);
SA(LIBUFFD_EVENT_FORK == UFFD_EVENT_FORK);
SA(LIBUFFD_EVENT_REMAP == UFFD_EVENT_REMAP);
SA(LIBUFFD_EVENT_REMOVE == UFFD_EVENT_REMOVE);
SA(LIBUFFD_EVENT_UNMAP == UFFD_EVENT_UNMAP);

/* Fault flags. */
SA(LIBUFFD_PAGEFAULT_FLAG_WRITE == UFFD_PAGEFAULT_FLAG_WRITE);
SA(LIBUFFD_PAGEFAULT_FLAG_WP == UFFD_PAGEFAULT_FLAG_WP);
SA(LIBUFFD_PAGEFAULT_FLAG_MINOR == UFFD_PAGEFAULT_FLAG_MINOR);

/* The kernel message's layout that libuffd_event mirrors in size. */
SA(sizeof(((struct uffd_msg *)0)->arg) == sizeof(union libuffd_event_data));

int main(void)
{
	/* The same checks at run time, so that the test also counts them. */
	CHECK_EQ(sizeof(struct libuffd_event), 32);
	CHECK_EQ(sizeof(union libuffd_event_data), 24);
	CHECK_EQ(sizeof(struct libuffd_fault_info), 24);
	CHECK_EQ(sizeof(struct libuffd_open_opts), 32);
	CHECK_EQ(offsetof(struct libuffd_open_opts, required_features), 24);
	CHECK_EQ(LIBUFFD_FEATURE_MINOR_SHMEM, UFFD_FEATURE_MINOR_SHMEM);
	CHECK_EQ(LIBUFFD_IOCTL_COPY, 1ULL << _UFFDIO_COPY);

	/* LIBUFFD_OPTS and LIBUFFD_OPTS_INIT fill sz with the struct's size. */
	struct libuffd_open_opts o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = 0);
	CHECK_EQ(o.sz, 32);
	LIBUFFD_OPTS(libuffd_monitor_ops, ops);
	CHECK_EQ(ops.sz, 72);

	/* The loaded library is the one this header describes. */
	CHECK_EQ(libuffd_version(), LIBUFFD_VERSION);
	return h_finish();
}
