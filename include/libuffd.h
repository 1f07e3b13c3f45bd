/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * libuffd.h: libuffd, Linux userfaultfd made safe and fast for C and C++.
 *
 * Conventions (every function):
 *  - success is 0 or a non-negative count, failure a negative errno
 *    (errno is set as well); libuffd_last_error() gives the detail;
 *  - NULL handles and pointers give -EINVAL, never a crash;
 *  - out-parameters are written only on success;
 *  - addresses are void * everywhere: parameters, struct members and
 *    callback arguments;
 *  - every options struct, the callback table too, starts with size_t sz
 *    and means the defaults when all its other bytes are zero: declare it
 *    with LIBUFFD_OPTS(), which sets sz and zeroes the rest;
 *  - names are libuffd_* and LIBUFFD_*: this header can be included together
 *    with <linux/userfaultfd.h>;
 *  - thread cancellation: libuffd_read_events(), libuffd_monitor_run() and
 *    libuffd_monitor_wait() are cancellation points (like read(2)); every
 *    other function runs with cancellation disabled and is not one.
 *
 * Link with: pkg-config --cflags --libs uffd
 *
 * Contents: 1. version  2. errors  (options structs: LIBUFFD_OPTS)
 *           3. handles and features  4. registration and operations
 *           5. events  6. the monitor: options, callbacks, lifecycle,
 *           resolution, stats, dirty tracking  7. hand-off to a handler
 *           process, remote page sources  8. write-protect snapshots
 */
/* Generated from src/ffi by cbindgen, laid out by src/ffi/libuffd.h.in:
 * do not edit. Run make header. */
#ifndef LIBUFFD_H
#define LIBUFFD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ================================================================ *
 * 1. Version                                                       *
 * ================================================================ */

/**
 * Major version of this header (the soname's number).
 */
#define LIBUFFD_VERSION_MAJOR 1

/**
 * Minor version of this header; a minor release only adds.
 */
#define LIBUFFD_VERSION_MINOR 0

/**
 * Patch version of this header.
 */
#define LIBUFFD_VERSION_PATCH 0

/** The header's version as one number, comparable with libuffd_version(). */
#define LIBUFFD_VERSION \
  ((LIBUFFD_VERSION_MAJOR << 16) | (LIBUFFD_VERSION_MINOR << 8) | LIBUFFD_VERSION_PATCH)

/**
 * The version of the loaded library as (major << 16) | (minor << 8) |
 * patch; compare with LIBUFFD_VERSION_MAJOR/MINOR/PATCH of the header.
 *
 * Thread safety: may be called from any thread.
 */
uint32_t libuffd_version(void);

/**
 * The version of the loaded library as a static string, "1.0.0".
 *
 * Thread safety: may be called from any thread.
 */
const char *libuffd_version_string(void);

/* ================================================================ *
 * 2. Errors                                                        *
 * ================================================================ */

/**
 * A static description of an error code. Accepts -errno as the
 * functions return it, or a positive errno.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: a static, NUL-terminated string; never NULL.
 */
const char *libuffd_strerror(int32_t err);

/**
 * The detail of the calling thread's most recent libuffd failure: the
 * function, the operation, the address range and the kernel's answer,
 * with the usual cause ("libuffd_copy: UFFDIO_COPY [0x7f..., +0x1000): EEXIST:
 * File exists (the range is already populated ...)").
 *
 * For a refused registration or resolving operation the text also says
 * which argument or mapping the kernel objected to ("nothing is mapped
 * in [...)", "not aligned to the 2048 KiB pages of the hugetlb mapping
 * [...)", "length is 0", ...). That diagnosis is worked out here, not
 * when the operation failed (a failure costs only the ioctl), from the
 * arguments and from this process's mappings as they are at this call.
 *
 * Thread safety: the text is per thread.
 *
 * Returns: a NUL-terminated string valid until the thread's next call to
 * libuffd_last_error(); "no error" if nothing failed yet. Never NULL.
 */
const char *libuffd_last_error(void);

/* ================================================================ *
 * Options structs (sections 3 and 6)                               *
 * ================================================================ */

/*
 * Every options struct (libuffd_open_opts, libuffd_monitor_opts,
 * libuffd_region_opts, libuffd_monitor_ops) starts with size_t sz, set to
 * the sizeof the caller was compiled with: a library newer than the
 * caller gives the defaults to the fields the caller does not know, an
 * older one accepts a longer struct as long as the fields it does not know
 * are zero (else -E2BIG). Zero means the default for every field.
 */

#if defined(__cplusplus)
#define LIBUFFD_OPTS_PUSH_                                                     \
  _Pragma("GCC diagnostic push")                                              \
  _Pragma("GCC diagnostic ignored \"-Wmissing-field-initializers\"")
#define LIBUFFD_OPTS_POP_ _Pragma("GCC diagnostic pop")
#else
#define LIBUFFD_OPTS_PUSH_
#define LIBUFFD_OPTS_POP_
#endif

/**
 * Declare NAME, an options struct of type struct TYPE, with sz set, every
 * byte zeroed, then the given designated initialisers applied (libbpf's
 * LIBBPF_OPTS pattern):
 *
 *     LIBUFFD_OPTS(libuffd_open_opts, o, .flags = LIBUFFD_OPEN_NONBLOCK);
 *     libuffd_open(&o, &h);
 *
 * Works in C (C99 and later) and in C++ (C++11 and later, where the
 * initialisers must follow the order of the struct's fields), with GCC and
 * Clang: it uses statement expressions.
 */
#define LIBUFFD_OPTS(TYPE, NAME, ...)                                          \
  struct TYPE NAME = ({                                                       \
    __builtin_memset(&NAME, 0, sizeof(struct TYPE));                          \
    LIBUFFD_OPTS_INIT(TYPE, __VA_ARGS__);                                     \
  })

/**
 * The value of an options struct of type struct TYPE with sz set, the
 * given designated initialisers applied and every other field zero, for
 * an assignment: o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = 0);
 * C and C++ as LIBUFFD_OPTS().
 */
#define LIBUFFD_OPTS_INIT(TYPE, ...)                                           \
  ({                                                                          \
    LIBUFFD_OPTS_PUSH_                                                        \
    struct TYPE libuffd_opts_ = { .sz = sizeof(struct TYPE), __VA_ARGS__ };   \
    LIBUFFD_OPTS_POP_                                                         \
    libuffd_opts_;                                                            \
  })

/* ================================================================ *
 * 3. Handles and features                                          *
 * ================================================================ */

/**
 * A userfaultfd: the descriptor, its negotiated features, and nothing
 * else. Create with libuffd_open() or libuffd_handle_from_fd(); release with
 * libuffd_handle_free(). Every function taking a handle may be called from
 * several threads at once.
 */
typedef struct libuffd_handle libuffd_handle;

/* Open flags (libuffd_open_opts.flags) */

/**
 * Open flag: make the descriptor O_NONBLOCK. Needed to poll/epoll it and
 * for libuffd_read_events() with a timeout other than -1.
 */
#define LIBUFFD_OPEN_NONBLOCK 0x1

/**
 * Open flag: trap only faults taken in user mode (UFFD_USER_MODE_ONLY).
 * Without it, as with the raw userfaultfd(2) call, faults taken in kernel
 * mode are trapped too: read(2)/write(2)/O_DIRECT into registered memory,
 * KVM guest accesses, vhost. A VMM or a lazy restore needs that (the
 * default); it requires CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1 or
 * access to /dev/userfaultfd. A program whose memory is only touched by
 * its own user-space code (a garbage collector, a snapshot) can pass this
 * flag, which any process may use; kernel accesses to missing pages then
 * fail with EFAULT instead of waiting.
 */
#define LIBUFFD_OPEN_USER_ONLY 0x2

/**
 * Open flag: do not set close-on-exec (it is set by default).
 */
#define LIBUFFD_OPEN_NO_CLOEXEC 0x4

/**
 * Open flag: do not try the userfaultfd(2) system call.
 */
#define LIBUFFD_OPEN_NO_SYSCALL 0x8

/**
 * Open flag: do not try /dev/userfaultfd.
 */
#define LIBUFFD_OPEN_NO_DEV 0x10

/* Handle flags (libuffd_handle_flags(): the open flags, and:) */

/**
 * libuffd_handle_flags(): the handle adopted a descriptor made elsewhere,
 * whose user-mode-only setting the kernel does not report. Never an open
 * flag.
 */
#define LIBUFFD_HANDLE_MODE_UNKNOWN 0x100

/* Features (libuffd_open_opts.features, libuffd_handle_features()) */

/**
 * Feature: write-protect faults (register with LIBUFFD_REGISTER_WP).
 */
#define LIBUFFD_FEATURE_PAGEFAULT_FLAG_WP 0x1

/**
 * Feature: fork() of the monitored process sends a FORK event carrying a
 * new fd for the child. Requesting it needs CAP_SYS_PTRACE.
 */
#define LIBUFFD_FEATURE_EVENT_FORK 0x2

/**
 * Feature: mremap() of a registered range sends a REMAP event.
 */
#define LIBUFFD_FEATURE_EVENT_REMAP 0x4

/**
 * Feature: madvise(DONTNEED/FREE/REMOVE) sends a REMOVE event.
 */
#define LIBUFFD_FEATURE_EVENT_REMOVE 0x8

/**
 * Feature (probe only): MISSING mode works on hugetlbfs.
 */
#define LIBUFFD_FEATURE_MISSING_HUGETLBFS 0x10

/**
 * Feature (probe only): MISSING mode works on shmem.
 */
#define LIBUFFD_FEATURE_MISSING_SHMEM 0x20

/**
 * Feature: munmap() of a registered range sends an UNMAP event.
 */
#define LIBUFFD_FEATURE_EVENT_UNMAP 0x40

/**
 * Feature: no fault messages; the faulting thread gets SIGBUS instead.
 */
#define LIBUFFD_FEATURE_SIGBUS 0x80

/**
 * Feature: fault events carry the faulting thread's id.
 */
#define LIBUFFD_FEATURE_THREAD_ID 0x100

/**
 * Feature: MINOR mode on hugetlbfs.
 */
#define LIBUFFD_FEATURE_MINOR_HUGETLBFS 0x200

/**
 * Feature: MINOR mode on shmem.
 */
#define LIBUFFD_FEATURE_MINOR_SHMEM 0x400

/**
 * Feature: fault addresses are exact instead of page-aligned.
 */
#define LIBUFFD_FEATURE_EXACT_ADDRESS 0x800

/**
 * Feature: WP mode on shmem and hugetlbfs.
 */
#define LIBUFFD_FEATURE_WP_HUGETLBFS_SHMEM 0x1000

/**
 * Feature: write-protecting anonymous memory also protects pages not yet
 * populated.
 */
#define LIBUFFD_FEATURE_WP_UNPOPULATED 0x2000

/**
 * Feature: libuffd_poison() is available.
 */
#define LIBUFFD_FEATURE_POISON 0x4000

/**
 * Feature: WP faults are resolved by the kernel without a message (dirty
 * tracking); implies WP_UNPOPULATED.
 */
#define LIBUFFD_FEATURE_WP_ASYNC 0x8000

/**
 * Feature: libuffd_move() is available.
 */
#define LIBUFFD_FEATURE_MOVE 0x10000

/**
 * Every feature this header knows (Linux 6.18). Newer kernels may offer
 * more bits; libuffd passes them through untouched.
 */
#define LIBUFFD_FEATURES_KNOWN 0x1ffff

/**
 * Options for libuffd_open() and libuffd_handle_from_fd().
 *
 * Set sz to sizeof(struct libuffd_open_opts) and every unused field to
 * zero (LIBUFFD_OPTS does both). All zero, or NULL instead of a struct,
 * means the defaults: close-on-exec, blocking, faults from user and
 * kernel mode trapped, no features.
 */
typedef struct libuffd_open_opts {
  /**
   * sizeof(struct libuffd_open_opts) as the caller was compiled with.
   */
  size_t sz;
  /**
   * LIBUFFD_OPEN_* flags.
   */
  uint32_t flags;
  /**
   * Must be zero.
   */
  uint32_t reserved;
  /**
   * Features wanted if the kernel offers them (LIBUFFD_FEATURE_*; unknown
   * bits are passed to the kernel as they are). Those it lacks are left
   * out of the negotiated set, without error.
   */
  uint64_t features;
  /**
   * Features without which the call fails with -EOPNOTSUPP.
   */
  uint64_t required_features;
} libuffd_open_opts;

/**
 * Create a userfaultfd and negotiate its features.
 *
 * Tries the userfaultfd(2) system call, then /dev/userfaultfd (unless
 * opts->flags excludes one of them). By default the fd is close-on-exec,
 * blocking, and traps faults taken in user and in kernel mode, like the
 * raw system call; LIBUFFD_OPEN_USER_ONLY asks for user-mode-only (see
 * libuffd_handle_flags() for which one a handle has).
 * opts->features are enabled where the kernel offers them;
 * opts->required_features must all be offered.
 *
 * Ownership: on success *out is a new handle that the caller frees with
 * libuffd_handle_free(); on failure *out is not written.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: 0, or a negative errno:
 * -EINVAL (NULL out, bad opts, unknown flags), -E2BIG (opts from a newer
 * libuffd set fields this one lacks), -EOPNOTSUPP (a required feature is
 * missing; libuffd_last_error() names it), -EPERM / -EACCES (no path allowed
 * this process to create a userfaultfd; libuffd_last_error() lists each path
 * tried and why, and when kernel-mode faults were the obstacle names both
 * ways out: CAP_SYS_PTRACE or vm.unprivileged_userfaultfd=1, or
 * LIBUFFD_OPEN_USER_ONLY), -ENOSYS, -EMFILE, -ENOMEM.
 *
 * Pointers: opts must be NULL or a libuffd_open_opts of opts->sz readable
 * bytes; out NULL or writable.
 *
 * Example: a userfaultfd for the process's own faults (any user may), with
 * MOVE required; libuffd_last_error() says what was missing.
 *
 *     libuffd_handle *open_for_gc(void)
 *     {
 *             LIBUFFD_OPTS(libuffd_open_opts, o,
 *                          .flags = LIBUFFD_OPEN_USER_ONLY,
 *                          .features = LIBUFFD_FEATURE_MOVE,
 *                          .required_features = LIBUFFD_FEATURE_MOVE);
 *             libuffd_handle *h;
 *             int rc = libuffd_open(&o, &h);
 *
 *             if (rc < 0) {
 *                     fprintf(stderr, "%s\n", libuffd_last_error());
 *                     return NULL;
 *             }
 *             return h;
 *     }
 */
int32_t libuffd_open(const struct libuffd_open_opts *opts, struct libuffd_handle **out);

/**
 * Adopt an existing userfaultfd descriptor: the handle works on its own
 * duplicate of it.
 *
 * For a descriptor received from another process or carried by a
 * LIBUFFD_EVENT_FORK event. If its API handshake was already done, its
 * negotiated features are read from /proc/self/fdinfo and checked against
 * opts->required_features; otherwise the handshake is done here with
 * opts (features and required_features). opts->flags must be 0: the
 * descriptor keeps its own flags.
 *
 * Ownership: fd stays the caller's, always: the handle duplicates it
 * (F_DUPFD_CLOEXEC: a new descriptor number, close-on-exec, sharing the
 * same open file and its status flags) and closes only its duplicate when
 * freed. Close your fd when you no longer need it, at once if you like:
 * a number closed and reused meanwhile never reaches the handle. On failure
 * the duplicate is closed again and *out is not written.
 * libuffd_handle_fd() returns the duplicate.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: 0, or -EINVAL (negative fd, not a userfaultfd, NULL out,
 * non-zero opts->flags), -EBADF, -E2BIG, -EOPNOTSUPP (a required feature
 * is not enabled on this fd), -EMFILE (no descriptor left for the
 * duplicate).
 *
 * Pointers: opts must be NULL or a libuffd_open_opts of opts->sz readable
 * bytes; out NULL or writable. fd may be any number.
 */
int32_t libuffd_handle_from_fd(int32_t fd, const struct libuffd_open_opts *opts, struct libuffd_handle **out);

/**
 * Free a handle, closing its descriptor (faulting threads then resume
 * without userfaultfd and registrations vanish, as on close()).
 *
 * NULL is accepted and ignored. Call it exactly once per handle, when no
 * other thread is using it. A pointer that is not a live handle (a
 * monitor, or a handle already freed, where its type tag tells) is left
 * alone: errno is set to EINVAL and libuffd_last_error() says why.
 *
 * Cancellation: not a cancellation point; it always completes (a
 * pending cancellation acts at the thread's next cancellation point).
 *
 * Pointers: h must be NULL or a handle not yet freed.
 */
void libuffd_handle_free(struct libuffd_handle *h);

/**
 * The handle's file descriptor, borrowed: valid until libuffd_handle_free();
 * do not close it. Use it with poll/epoll (open with LIBUFFD_OPEN_NONBLOCK).
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: the descriptor (>= 0), or -EINVAL for a NULL handle.
 *
 * Pointers: h must be NULL or a live handle.
 */
int32_t libuffd_handle_fd(const struct libuffd_handle *h);

/**
 * How the handle's descriptor behaves: a mask of LIBUFFD_OPEN_NONBLOCK
 * (the descriptor is O_NONBLOCK now), LIBUFFD_OPEN_NO_CLOEXEC (it is not
 * close-on-exec now) and LIBUFFD_OPEN_USER_ONLY (it traps user-mode faults
 * only), plus LIBUFFD_HANDLE_MODE_UNKNOWN when the handle adopted a
 * descriptor made elsewhere (libuffd_handle_from_fd()), whose
 * user-mode-only setting the kernel does not report.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: the mask (>= 0), or -EINVAL (NULL handle), -EBADF.
 *
 * Pointers: h must be NULL or a live handle.
 */
int32_t libuffd_handle_flags(const struct libuffd_handle *h);

/**
 * The features negotiated for this handle (LIBUFFD_FEATURE_* bits plus
 * any newer bits the kernel enabled), written to *features.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: 0, or -EINVAL (NULL handle or pointer).
 *
 * Pointers: h must be NULL or a live handle; features NULL or writable.
 */
int32_t libuffd_handle_features(const struct libuffd_handle *h, uint64_t *features);

/**
 * Report every feature the running kernel offers, without spending a
 * caller's descriptor.
 *
 * The first call creates a throwaway user-mode-only userfaultfd, does the
 * API handshake on it and closes it (the handshake can be done only once
 * per descriptor); the answer is cached for the process.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: 0 with *features written, or -EINVAL (NULL pointer), or the
 * error libuffd_open() would give (-EPERM, -EACCES, -ENOSYS ...).
 *
 * Pointers: features must be NULL or writable.
 */
int32_t libuffd_probe_features(uint64_t *features);

/**
 * Whether the running kernel offers every feature in mask.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: 1 (all offered), 0 (some missing; libuffd_last_error() is not
 * set), -EINVAL (mask is 0), or a probing error as libuffd_probe_features().
 */
int32_t libuffd_feature_supported(uint64_t mask);

/**
 * The name of one feature bit, as in its LIBUFFD_FEATURE_* constant
 * without the prefix: "MOVE" for LIBUFFD_FEATURE_MOVE. For tools that
 * print or parse feature lists (libuffd-probe(1)): loop over the 64 bits
 * of libuffd_probe_features()'s answer, or find a name's bit.
 *
 * The names are the library's own list (the one libuffd_last_error()
 * texts use), so a program and the library never disagree on them.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: a static, NUL-terminated string, or NULL when bit is not
 * exactly one bit this library names (0, several bits, or a bit of a
 * newer kernel); libuffd_last_error() is not set.
 *
 * Example: print the features this kernel offers, one per line.
 *
 *     void print_features(void)
 *     {
 *             uint64_t f;
 *
 *             if (libuffd_probe_features(&f) < 0)
 *                     return;
 *             for (int i = 0; i < 64; i++)
 *                     if (f & (1ULL << i)) {
 *                             const char *name = libuffd_feature_name(1ULL << i);
 *                             printf("%s\n", name ? name : "(newer than this libuffd)");
 *                     }
 *     }
 */
const char *libuffd_feature_name(uint64_t bit);

/**
 * The page size of the memory mapped at addr in this process: 4096, or
 * the huge-page size of a hugetlb mapping. Registration and resolving
 * operations on hugetlb memory must be aligned to it.
 *
 * Cost: one PROCMAP_QUERY ioctl on /proc/self/maps (Linux 6.11+), which
 * does not grow with the size of the process; older kernels fall back to
 * reading /proc/self/smaps up to the mapping.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: the page size in bytes, or -ENOMEM (nothing mapped at addr).
 */
int64_t libuffd_page_size(const void *addr);

/* ================================================================ *
 * 4. Registration and operations                                   *
 * ================================================================ */

/* Register modes (libuffd_register(), libuffd_region_opts.register_mode) */

/**
 * Register mode: trap accesses to missing pages.
 */
#define LIBUFFD_REGISTER_MISSING 0x1

/**
 * Register mode: trap writes to write-protected pages.
 */
#define LIBUFFD_REGISTER_WP 0x2

/**
 * Register mode: trap accesses to pages present in the page cache but not
 * mapped (shmem, hugetlbfs).
 */
#define LIBUFFD_REGISTER_MINOR 0x4

/* The operations a registered range allows (libuffd_register()'s ioctls) */

/**
 * Bit in the ioctl mask of libuffd_register(): libuffd_wake() allowed.
 */
#define LIBUFFD_IOCTL_WAKE 0x4

/**
 * Bit in the ioctl mask of libuffd_register(): libuffd_copy() allowed.
 */
#define LIBUFFD_IOCTL_COPY 0x8

/**
 * Bit in the ioctl mask of libuffd_register(): libuffd_zeropage() allowed.
 */
#define LIBUFFD_IOCTL_ZEROPAGE 0x10

/**
 * Bit in the ioctl mask of libuffd_register(): libuffd_move() allowed.
 */
#define LIBUFFD_IOCTL_MOVE 0x20

/**
 * Bit in the ioctl mask of libuffd_register(): libuffd_writeprotect() allowed.
 */
#define LIBUFFD_IOCTL_WRITEPROTECT 0x40

/**
 * Bit in the ioctl mask of libuffd_register(): libuffd_continue() allowed.
 */
#define LIBUFFD_IOCTL_CONTINUE 0x80

/**
 * Bit in the ioctl mask of libuffd_register(): libuffd_poison() allowed.
 */
#define LIBUFFD_IOCTL_POISON 0x100

/**
 * Register [start, start+len) with this userfaultfd (UFFDIO_REGISTER).
 *
 * mode is any non-empty combination of LIBUFFD_REGISTER_MISSING, _WP
 * and _MINOR the memory supports. The range must be page-aligned; for
 * hugetlb memory, aligned to its huge-page size. Costs the ioctl alone:
 * only when the kernel refuses does libuffd look at the mappings, to say
 * in libuffd_last_error() which one was misaligned, unmapped or
 * unsuitable. On success the LIBUFFD_IOCTL_* mask of operations the
 * kernel allows on the range is written to *ioctls (which may be NULL;
 * it is not written on failure).
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: 0, or the kernel's -errno: -EINVAL (mode 0 or unknown mode
 * bits, checked before the range; len 0, misaligned, wrapping or
 * out-of-range range; nothing mapped there; hugetlb range not aligned to
 * its huge pages; memory or mode userfaultfd does not support; also a
 * NULL handle), -EBUSY (registered with another userfaultfd), -EPERM
 * (shared mapping not writable: read-only file or write-sealed memfd),
 * -ENOMEM (the process owning the memory is exiting).
 *
 * Pointers: h must be NULL or a live handle; ioctls NULL or writable.
 *
 * Example: map anonymous memory and register it for missing-page faults;
 * the kernel's answer says which operations the range allows.
 *
 *     void *map_registered(libuffd_handle *h, size_t len)
 *     {
 *             void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
 *                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
 *             uint64_t ioctls;
 *
 *             if (p == MAP_FAILED)
 *                     return NULL;
 *             if (libuffd_register(h, p, len, LIBUFFD_REGISTER_MISSING, &ioctls) < 0 ||
 *                 !(ioctls & LIBUFFD_IOCTL_COPY)) {
 *                     fprintf(stderr, "%s\n", libuffd_last_error());
 *                     munmap(p, len);
 *                     return NULL;
 *             }
 *             return p;
 *     }
 */
int32_t libuffd_register(struct libuffd_handle *h, void *start, size_t len, uint64_t mode, uint64_t *ioctls);

/**
 * Unregister [start, start+len) (UFFDIO_UNREGISTER); threads waiting on
 * missing-page faults there are woken. Costs the ioctl alone.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: 0, or the kernel's -errno: -EINVAL (len 0, misaligned,
 * wrapping or out-of-range range, nothing mapped there, hugetlb range
 * starting off a huge-page boundary, part of it registered with another
 * userfaultfd; also a NULL handle), -ENOMEM (the process owning the
 * memory is exiting).
 *
 * Pointers: h must be NULL or a live handle.
 */
int32_t libuffd_unregister(struct libuffd_handle *h, void *start, size_t len);

/**
 * Wake the threads waiting on faults in [start, start+len), after
 * operations done with a DONTWAKE mode, or after -EEXIST.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: 0, or the kernel's -errno: -EINVAL (len 0, misaligned,
 * wrapping or out-of-range range; also a NULL handle).
 *
 * Pointers: h must be NULL or a live handle.
 */
int32_t libuffd_wake(struct libuffd_handle *h, void *start, size_t len);

/* Operation modes, one family per operation */

/**
 * libuffd_copy() mode: do not wake the faulting threads (wake later).
 */
#define LIBUFFD_COPY_DONTWAKE 0x1

/**
 * libuffd_copy() mode: map the pages write-protected (needs a WP
 * registration).
 */
#define LIBUFFD_COPY_WP 0x2

/**
 * Resolve missing-page faults by copying len bytes from src into
 * [dst, dst+len), atomically per page, then waking the waiters.
 *
 * Modes: LIBUFFD_COPY_DONTWAKE, LIBUFFD_COPY_WP (map write-protected;
 * needs a WP registration).
 *
 * Signal handlers: not async-signal-safe (no function taking a handle is):
 * its error path allocates and it changes the thread's cancellation
 * state. A SIGBUS handler of a LIBUFFD_FEATURE_SIGBUS handle issues the
 * UFFDIO_COPY ioctl itself on libuffd_handle_fd(), fetched beforehand.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: bytes done (len, or fewer: continue at dst+n, src+n), or
 * the kernel's -errno, in its order: -EAGAIN (an event is queued unread:
 * read events, then retry; checked before anything else, so even a zero
 * length gets it), -EINVAL (len 0 or not page-sized, src or dst range
 * wrapping or out of range, dst misaligned, unknown mode bits, a mode the
 * registration does not allow, hugetlb misalignment; also a NULL
 * handle), -EEXIST (already populated: resolved by someone else; call
 * libuffd_wake()), -ENOENT (no registered mapping at dst), -EFAULT (src
 * unreadable), -ESRCH (owning process exited).
 *
 * Pointers: h must be NULL or a live handle. src need not be valid: the
 * kernel reads it and reports -EFAULT.
 *
 * Example: resolve a missing-page fault on page (page_size bytes) with
 * the contents at src. -EEXIST means another thread placed it first: wake
 * the waiters; -EAGAIN that an event (fork, mremap, ...) must be read
 * first.
 *
 *     int place_page(libuffd_handle *h, void *page, const void *src, size_t page_size)
 *     {
 *             int64_t n = libuffd_copy(h, page, src, page_size, 0);
 *
 *             if (n == -EEXIST)
 *                     return libuffd_wake(h, page, page_size);
 *             return n < 0 ? (int)n : 0;
 *     }
 */
int64_t libuffd_copy(struct libuffd_handle *h, void *dst, const void *src, size_t len, uint64_t mode);

/**
 * libuffd_zeropage() mode: do not wake the faulting threads.
 */
#define LIBUFFD_ZEROPAGE_DONTWAKE 0x1

/**
 * Resolve missing-page faults in [start, start+len) with zero-filled
 * pages. Mode: LIBUFFD_ZEROPAGE_DONTWAKE. Not supported on hugetlb.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: bytes done, as libuffd_copy(), or the kernel's -errno: -EAGAIN
 * (first, as for libuffd_copy()), -EINVAL (bad range, unknown mode bits,
 * hugetlb memory), -EEXIST, -ENOENT, -ESRCH.
 *
 * Pointers: h must be NULL or a live handle.
 */
int64_t libuffd_zeropage(struct libuffd_handle *h, void *start, size_t len, uint64_t mode);

/**
 * libuffd_writeprotect() mode: protect (without it: unprotect and wake).
 */
#define LIBUFFD_WRITEPROTECT_WP 0x1

/**
 * libuffd_writeprotect() mode: when unprotecting, do not wake.
 */
#define LIBUFFD_WRITEPROTECT_DONTWAKE 0x2

/**
 * Write-protect [start, start+len) (mode LIBUFFD_WRITEPROTECT_WP), or
 * remove the protection and wake the waiters (mode 0; add
 * LIBUFFD_WRITEPROTECT_DONTWAKE to skip the wake). The range must be
 * registered with LIBUFFD_REGISTER_WP.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: 0, or the kernel's -errno: -EAGAIN (an event is queued unread;
 * checked first), -EINVAL (bad range, unknown mode bits, WP together with
 * DONTWAKE; also a NULL handle), -ENOENT (not WP-registered on this
 * handle), -ESRCH.
 *
 * Pointers: h must be NULL or a live handle.
 */
int32_t libuffd_writeprotect(struct libuffd_handle *h, void *start, size_t len, uint64_t mode);

/**
 * libuffd_continue() mode: do not wake the faulting threads.
 */
#define LIBUFFD_CONTINUE_DONTWAKE 0x1

/**
 * libuffd_continue() mode: map the pages write-protected.
 */
#define LIBUFFD_CONTINUE_WP 0x2

/**
 * Resolve minor faults in [start, start+len) by mapping the pages that
 * already exist in the page cache (shmem, hugetlbfs; register with
 * LIBUFFD_REGISTER_MINOR). Modes: LIBUFFD_CONTINUE_DONTWAKE,
 * LIBUFFD_CONTINUE_WP.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: bytes done, as libuffd_copy(), or the kernel's -errno: -EAGAIN
 * (first), -EINVAL (bad range or mode, memory that is not shmem/hugetlb),
 * -EEXIST, -ENOENT, -EFAULT (no page-cache page there), -ESRCH.
 *
 * Pointers: h must be NULL or a live handle.
 */
int64_t libuffd_continue(struct libuffd_handle *h, void *start, size_t len, uint64_t mode);

/**
 * libuffd_poison() mode: do not wake the faulting threads.
 */
#define LIBUFFD_POISON_DONTWAKE 0x1

/**
 * Resolve faults in [start, start+len) by marking the pages poisoned:
 * later accesses raise SIGBUS. Mode: LIBUFFD_POISON_DONTWAKE. Needs
 * LIBUFFD_FEATURE_POISON from the kernel.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: bytes done, as libuffd_copy(), or the kernel's -errno: -EAGAIN
 * (first), -EINVAL (bad range or mode), -EEXIST, -ENOENT, -ESRCH.
 *
 * Pointers: h must be NULL or a live handle.
 */
int64_t libuffd_poison(struct libuffd_handle *h, void *start, size_t len, uint64_t mode);

/**
 * libuffd_move() mode: do not wake the faulting threads.
 */
#define LIBUFFD_MOVE_DONTWAKE 0x1

/**
 * libuffd_move() mode: holes in the source count as moved instead of
 * failing with -ENOENT.
 */
#define LIBUFFD_MOVE_ALLOW_SRC_HOLES 0x2

/**
 * Resolve missing-page faults at [dst, dst+len) by moving the pages of
 * [src, src+len) there, without copying. Both ranges must be anonymous
 * private memory of the calling process with the same protections; dst
 * registered with this handle. Modes: LIBUFFD_MOVE_DONTWAKE,
 * LIBUFFD_MOVE_ALLOW_SRC_HOLES. Needs LIBUFFD_FEATURE_MOVE.
 *
 * Thread safety: may be called from any thread; only one thread should
 * resolve a given address at a time.
 *
 * Returns: bytes done, as libuffd_copy(), or the kernel's -errno: -EAGAIN
 * (first), -EINVAL (bad dst or src range, unknown mode bits, dst not
 * registered with this handle, not anonymous private memory, another
 * process's uffd), -EEXIST (dst populated), -ENOENT (a src hole without
 * ALLOW_SRC_HOLES, or nothing mapped at dst), -EBUSY (a src page is
 * shared, e.g. after fork), -ESRCH.
 *
 * Pointers: h must be NULL or a live handle.
 */
int64_t libuffd_move(struct libuffd_handle *h, void *dst, void *src, size_t len, uint64_t mode);

/* ================================================================ *
 * 5. Events                                                        *
 * ================================================================ */

/* Event kinds (libuffd_event.kind) */

/**
 * Event kind: a thread faulted on registered memory (u.fault).
 */
#define LIBUFFD_EVENT_PAGEFAULT 0x12

/**
 * Event kind: the monitored process forked (u.fork).
 */
#define LIBUFFD_EVENT_FORK 0x13

/**
 * Event kind: a registered range was moved by mremap() (u.remap).
 */
#define LIBUFFD_EVENT_REMAP 0x14

/**
 * Event kind: madvise() is dropping the pages of a range (u.range).
 */
#define LIBUFFD_EVENT_REMOVE 0x15

/**
 * Event kind: a range was unmapped (u.range).
 */
#define LIBUFFD_EVENT_UNMAP 0x16

/* Page-fault flags (libuffd_fault_info.flags, libuffd_fault.flags) */

/**
 * Fault flag: the access was a write.
 */
#define LIBUFFD_PAGEFAULT_FLAG_WRITE 0x1

/**
 * Fault flag: a write to a write-protected page.
 */
#define LIBUFFD_PAGEFAULT_FLAG_WP 0x2

/**
 * Fault flag: a minor fault (page in the page cache, not mapped).
 */
#define LIBUFFD_PAGEFAULT_FLAG_MINOR 0x4

/**
 * A page fault (event kind LIBUFFD_EVENT_PAGEFAULT).
 */
typedef struct libuffd_fault_info {
  /**
   * The faulting address, page-aligned (without EXACT_ADDRESS on
   * hugetlb, aligned to the huge page, as the kernel reports it).
   */
  void *address;
  /**
   * The exact faulting address when LIBUFFD_FEATURE_EXACT_ADDRESS was
   * negotiated; otherwise equal to address.
   */
  void *exact_address;
  /**
   * LIBUFFD_PAGEFAULT_FLAG_* bits. Neither WP nor MINOR: a missing-page fault.
   */
  uint32_t flags;
  /**
   * The faulting thread's id with LIBUFFD_FEATURE_THREAD_ID, else 0.
   */
  uint32_t thread_id;
} libuffd_fault_info;

/**
 * A fork of the monitored process (event kind LIBUFFD_EVENT_FORK).
 */
typedef struct libuffd_fork_info {
  /**
   * A new userfaultfd serving the child's memory, owned by the caller:
   * close() it, after adopting it with libuffd_handle_from_fd() (which
   * works on its own duplicate) if it is to be served.
   */
  int32_t fd;
  /**
   * Zero.
   */
  uint32_t reserved;
} libuffd_fork_info;

/**
 * A move of registered memory (event kind LIBUFFD_EVENT_REMAP).
 */
typedef struct libuffd_remap_info {
  /**
   * Old start address.
   */
  void *from;
  /**
   * New start address.
   */
  void *to;
  /**
   * Old length in bytes.
   */
  uint64_t len;
} libuffd_remap_info;

/**
 * An address range [start, end) (events LIBUFFD_EVENT_REMOVE, _UNMAP).
 */
typedef struct libuffd_range_info {
  /**
   * First byte.
   */
  void *start;
  /**
   * One past the last byte.
   */
  void *end;
} libuffd_range_info;

/**
 * The payload of a libuffd_event; which member is valid depends on kind.
 */
typedef union libuffd_event_data {
  /**
   * LIBUFFD_EVENT_PAGEFAULT.
   */
  struct libuffd_fault_info fault;
  /**
   * LIBUFFD_EVENT_FORK.
   */
  struct libuffd_fork_info fork;
  /**
   * LIBUFFD_EVENT_REMAP.
   */
  struct libuffd_remap_info remap;
  /**
   * LIBUFFD_EVENT_REMOVE and LIBUFFD_EVENT_UNMAP.
   */
  struct libuffd_range_info range;
  /**
   * For a kind this header does not know: the kernel's three argument
   * words as they came. For known kinds: the decoded member's bytes,
   * then zeros.
   */
  uint64_t raw[3];
} libuffd_event_data;

/**
 * One decoded userfaultfd event (32 bytes).
 */
typedef struct libuffd_event {
  /**
   * LIBUFFD_EVENT_*; a newer kernel's unknown code is passed as it is.
   */
  uint32_t kind;
  /**
   * Zero.
   */
  uint32_t reserved;
  /**
   * The payload, selected by kind.
   */
  union libuffd_event_data u;
} libuffd_event;

/**
 * Read up to max events into events, decoded.
 *
 * timeout_ms: -1 waits until at least one event arrives; 0 returns at
 * once; > 0 waits at most that long. Any value but -1 needs a handle
 * opened with LIBUFFD_OPEN_NONBLOCK (the kernel cannot poll a blocking
 * userfaultfd). Finding nothing is not an error: the call returns 0. A
 * fault message may be stale (already resolved by another thread):
 * resolving it again gives -EEXIST, which is harmless.
 *
 * A LIBUFFD_EVENT_FORK event carries a new descriptor that the caller
 * owns from then on (adopt it with libuffd_handle_from_fd() or close it).
 *
 * Waiting for something else too (a shutdown pipe or eventfd, other
 * descriptors): open the handle with LIBUFFD_OPEN_NONBLOCK, poll(2) or
 * epoll its libuffd_handle_fd() for POLLIN together with the other
 * descriptors, and when it is readable call
 * libuffd_read_events(h, events, max, 0) (it may return 0: another
 * thread read the events first):
 *
 *     struct pollfd fds[2] = { { libuffd_handle_fd(h), POLLIN, 0 },
 *                              { shutdown_fd, POLLIN, 0 } };
 *     while (poll(fds, 2, -1) >= 0 || errno == EINTR) {
 *             if (fds[1].revents)
 *                     break;
 *             if (fds[0].revents & POLLIN)
 *                     n = libuffd_read_events(h, events, max, 0);
 *     }
 *
 * Cancellation: a cancellation point, like read(2). A thread blocked here
 * (or entering with a cancel pending) that is pthread_cancel()ed unwinds
 * out of the call without reading anything; the handle stays usable. On
 * a non-blocking handle the call waits in poll(2) and reads with
 * cancellation disabled, so a cancellation never loses an event; on a
 * blocking handle it waits in read(2) itself, as the raw fd would.
 *
 * Thread safety: may be called from several threads at once; each event
 * goes to exactly one of them.
 *
 * Returns: the number of events written (0 to max), or -EINVAL (NULL
 * handle or events, max 0, timeout < -1, a timeout on a blocking handle),
 * -EINTR (a signal arrived while waiting).
 *
 * Pointers: h must be NULL or a live handle; events NULL or room for max
 * events.
 *
 * Example: a fault-handling thread that fills every faulting page with
 * zeros (anonymous memory, base pages), until the handle reports an error.
 *
 *     void *zero_filler(void *arg)
 *     {
 *             libuffd_handle *h = arg;
 *             size_t ps = (size_t)sysconf(_SC_PAGESIZE);
 *             struct libuffd_event ev[16];
 *
 *             for (;;) {
 *                     int n = libuffd_read_events(h, ev, 16, -1);
 *                     if (n == -EINTR)
 *                             continue;
 *                     if (n < 0)
 *                             return NULL;
 *                     for (int i = 0; i < n; i++) {
 *                             if (ev[i].kind != LIBUFFD_EVENT_PAGEFAULT)
 *                                     continue;
 *                             void *page = ev[i].u.fault.address;
 *                             if (libuffd_zeropage(h, page, ps, 0) == -EEXIST)
 *                                     libuffd_wake(h, page, ps);
 *                     }
 *             }
 *     }
 */
int32_t libuffd_read_events(struct libuffd_handle *h, struct libuffd_event *events, size_t max, int32_t timeout_ms);

/* ================================================================ *
 * 6. The monitor                                                   *
 * ================================================================ */

/**
 * A fault-handling engine over one or more handles. Create with
 * libuffd_monitor_new(); free with libuffd_monitor_free().
 */
typedef struct libuffd_monitor libuffd_monitor;

/* ---------------------------------------------- 6.1 options */

/* Monitor flags (libuffd_monitor_opts.flags) */

/**
 * libuffd_monitor_opts.flags: keep the fault-around window fixed at
 * window_min instead of adapting it to the access pattern.
 */
#define LIBUFFD_MONITOR_FIXED_WINDOW 0x1

/**
 * libuffd_monitor_opts.flags: do not serve forked children (their
 * userfaultfds are closed unless on_fork takes them).
 */
#define LIBUFFD_MONITOR_NO_FORK_SERVE 0x2

/**
 * libuffd_monitor_opts.flags: the same as stop_policy LIBUFFD_ON_STOP_BLOCK
 * (kept for older callers; with it, stop_policy must be 0 or BLOCK).
 */
#define LIBUFFD_MONITOR_NO_RELEASE_ON_STOP 0x4

/**
 * libuffd_monitor_opts.flags: hand every fault to the workers, however cheap
 * (without it they take only faults that may wait: a callback, a pread).
 * A copy from memory is faster done by the reader than handed off, unless
 * the machine has CPUs to spare for copying in parallel.
 */
#define LIBUFFD_MONITOR_HAND_OFF_ALL 0x8

/* Error policies (libuffd_monitor_opts.error_policy) */

/**
 * Error policy: poison the page, so the faulting thread gets SIGBUS.
 * Where the poison fails too (memory without POISON support, a wrong
 * page size), the thread is woken to fault again; if the same fault
 * comes back failing 8 times, the monitor stops with the error
 * (libuffd_monitor_run()/libuffd_monitor_wait() return it) and its stop
 * releases the faulting threads, rather than serve the failure for ever.
 */
#define LIBUFFD_ON_ERROR_SIGBUS 0

/**
 * Error policy: try the fault again (on_fault is called again, or the
 * source read again) while its thread stays blocked, after a pause of 1 ms
 * doubled after each failed try (at most 64 ms); each failed try counts in
 * failed. After 8 failed tries (about 127 ms) LIBUFFD_ON_ERROR_SIGBUS
 * applies to that fault: the page is poisoned and the thread gets SIGBUS.
 * A fault still waiting for its next try when the monitor stops is
 * released as the stop releases every blocked thread.
 */
#define LIBUFFD_ON_ERROR_RETRY 1

/**
 * Error policy: poison the page and stop the monitor with the error.
 */
#define LIBUFFD_ON_ERROR_STOP 2

/* Stop policies (libuffd_monitor_opts.stop_policy, libuffd_region_opts.stop_policy) */

/**
 * Stop policy (libuffd_monitor_opts.stop_policy,
 * libuffd_region_opts.stop_policy): what the end of a run (stop, an
 * error, LIBUFFD_ON_FAULT_STOP) does to a region's memory, for the threads
 * blocked in faults the monitor no longer serves and the pages not yet
 * placed. The default: LIBUFFD_ON_STOP_SIGBUS for regions with a buffer,
 * fd or callback source (pages not yet restored hold data: they never
 * silently read as zeros), LIBUFFD_ON_STOP_ZERO for ZERO and PAGE_CACHE
 * regions. In a region's options, 0 means the monitor's policy.
 */
#define LIBUFFD_ON_STOP_DEFAULT 0

/**
 * Stop policy: leave the region registered. Threads blocked in its faults
 * stay blocked until the monitor runs again (libuffd_monitor_run() or
 * libuffd_monitor_start() after the stop: the new run wakes them to fault
 * afresh, and serves them) or the handle is freed. With it as the
 * monitor's policy, a stop wakes nothing.
 */
#define LIBUFFD_ON_STOP_BLOCK 1

/**
 * Stop policy: poison every page of the region not yet placed
 * (UFFDIO_POISON), unregister it and wake its threads: they, and every
 * later access to those pages, get SIGBUS; pages already placed stay
 * readable. Where the kernel refuses the poison (no POISON support), the
 * documented fallback is LIBUFFD_ON_STOP_BLOCK, with a log line.
 */
#define LIBUFFD_ON_STOP_SIGBUS 2

/**
 * Stop policy: unregister the region and wake its threads: pages not yet
 * placed read as zeros from then on (the behaviour of 1.0's
 * release-on-stop, now only on request for regions whose pages hold data).
 */
#define LIBUFFD_ON_STOP_ZERO 3

/* REMOVE policies (libuffd_monitor_opts.remove_policy) */

/**
 * REMOVE policy: later faults in the removed range get zero pages.
 */
#define LIBUFFD_ON_REMOVE_ZERO 0

/**
 * REMOVE policy: unregister the removed range.
 */
#define LIBUFFD_ON_REMOVE_UNREGISTER 1

/**
 * REMOVE policy: refill from the source. Later faults in the removed
 * range re-read the region's source (buffer, file) as if the pages had
 * never been placed; ZERO and CALLBACK regions are unchanged by it. The
 * pages a budgeted region evicts always come back this way.
 */
#define LIBUFFD_ON_REMOVE_REFILL 2

/**
 * Monitor options (all zero: the defaults). Set sz to the struct's size.
 */
typedef struct libuffd_monitor_opts {
  /**
   * sizeof(struct libuffd_monitor_opts).
   */
  size_t sz;
  /**
   * Worker threads resolving faults in parallel (0: the monitor's
   * thread does). They take turns to read; faults whose resolution may
   * wait (those of CALLBACK regions, missing-page faults of FD regions:
   * a pread) run side by side, the worker that read one passing the
   * reading on and resolving it. Other faults (copies from memory, zero
   * pages, CONTINUE, write-protect faults) the reading worker resolves
   * in place, which costs less than a hand-off (see
   * LIBUFFD_MONITOR_HAND_OFF_ALL).
   */
  uint32_t workers;
  /**
   * Busy-poll this many microseconds before sleeping (0: never).
   */
  uint32_t spin_us;
  /**
   * Fault-around window in pages, minimum (0: 1).
   */
  uint32_t window_min;
  /**
   * Fault-around window in pages, maximum (0: 512); a fault never places
   * more than 4 MiB.
   */
  uint32_t window_max;
  /**
   * LIBUFFD_MONITOR_* flags.
   */
  uint32_t flags;
  /**
   * LIBUFFD_ON_ERROR_*.
   */
  uint32_t error_policy;
  /**
   * LIBUFFD_ON_REMOVE_*.
   */
  uint32_t remove_policy;
  /**
   * Messages per read (0: 64; at most 4096).
   */
  uint32_t batch;
  /**
   * EAGAIN retries before a thread is woken to fault afresh (0: 1000).
   */
  uint32_t max_retries;
  /**
   * LIBUFFD_ON_STOP_* (0: the default, see LIBUFFD_ON_STOP_DEFAULT).
   * Unless it is LIBUFFD_ON_STOP_BLOCK, a stop also wakes every thread
   * blocked in a fault the monitor read and never resolved (a deferred
   * fault never completed, even one whose range was unmapped since).
   */
  uint32_t stop_policy;
} libuffd_monitor_opts;

/* Region sources (libuffd_region_opts.source) */

/**
 * Region source: zero-filled pages.
 */
#define LIBUFFD_SOURCE_ZERO 0

/**
 * Region source: a buffer of this process (buffer, buffer_len).
 */
#define LIBUFFD_SOURCE_BUFFER 1

/**
 * Region source: pread() from fd at fd_offset. Short reads and EINTR
 * are retried until each page is complete. A page that the file ends
 * inside or before (end-of-file inside the region, a file truncated while
 * the monitor runs) and a read error (EIO...) fail that fault: the error
 * policy applies, the failed counter counts it and on_log names the file
 * offset; no page is ever made of zeros the file does not hold, unless the
 * region has LIBUFFD_REGION_ZERO_PAST_EOF.
 */
#define LIBUFFD_SOURCE_FD 2

/**
 * Region source: the on_fault callback resolves every fault.
 */
#define LIBUFFD_SOURCE_CALLBACK 3

/**
 * Region source: the page cache (MINOR faults, resolved by CONTINUE).
 */
#define LIBUFFD_SOURCE_PAGE_CACHE 4

/**
 * Region source: a page server at the other end of the connected socket
 * fd (Unix or TCP), fd_offset its offset of the region's first byte, at
 * most max_in_flight requests outstanding (0: 16). Faults are deferred
 * and completed as replies arrive: the monitor never waits on the
 * network. The socket is duplicated; regions naming one socket share the
 * connection; the monitor reads the socket while it lives (nobody else
 * may meanwhile; it is the caller's again after libuffd_monitor_free()).
 * A fault asks for its fault-around window (whole pages, at most 4 MiB).
 * On a TCP socket the monitor sets TCP_NODELAY (on the socket the
 * caller shares): a request must not wait for the ACK of an earlier one.
 * With LIBUFFD_REGION_PREFETCH the monitor also pulls the pages nobody
 * touched, in the background: first-touched pages first, the rest in
 * order (the post-copy pattern, c-examples/postcopy.c; see the flag).
 * A refused request or a lost connection (the server died)
 * fails the faults concerned (SIGBUS, counted in failed). Protocol, and a
 * server: libuffd_page_server_serve().
 */
#define LIBUFFD_SOURCE_REMOTE 5

/* Region flags (libuffd_region_opts.flags) */

/**
 * libuffd_region_opts.flags: populate the region in the background, under
 * libuffd_monitor_run()/start() (not libuffd_monitor_dispatch()); a region
 * added while the monitor runs is prefetched too. Pages already present
 * (faulted first) are skipped; the bytes placed are counted in
 * prefetched_bytes. A LIBUFFD_SOURCE_REMOTE region is fetched in order,
 * in requests of 256 KiB (at least a page), one at a time per
 * connection, counted in max_in_flight and sent only when no fault's
 * request waits: faults' requests go first. A failed prefetch request
 * (the server refused it, e.g. ENODATA past the end of its file) is
 * logged and leaves the rest of the region to its faults, which succeed
 * or fail on their own. The prefetch ends with the run: a stop does not
 * wait for it. The flag is accepted and does nothing for
 * LIBUFFD_SOURCE_CALLBACK regions, whose pages come only with their
 * faults. Done: the prefetch_done_regions counter
 * (libuffd_monitor_get_stats()) counts each PREFETCH region whose
 * prefetch ended; with no REMOVE, UNMAP or mremap splitting them, the
 * prefetch of n regions is done when it reaches n.
 */
#define LIBUFFD_REGION_PREFETCH 0x1

/**
 * libuffd_region_opts.flags, LIBUFFD_SOURCE_FD: bytes past end-of-file
 * read as zeros (a page the file ends inside is padded with zeros, a page
 * past it is a zero page) instead of failing the fault.
 */
#define LIBUFFD_REGION_ZERO_PAST_EOF 0x2

/**
 * libuffd_region_opts.flags: track which pages are written
 * (libuffd_monitor_dirty_scan()). The range is registered MISSING|WP
 * (LIBUFFD_REGISTER_WP is added to register_mode; with register_mode 0
 * the caller's own registration must include WP, else -EINVAL), pages
 * already present are write-protected by libuffd_monitor_add_region()
 * (tracking starts clean: their data stays, their next writes are
 * recorded), every page the monitor places there is placed
 * write-protected, and writes are recorded: with LIBUFFD_FEATURE_WP_ASYNC on the handle by the kernel
 * (read with PAGEMAP_SCAN, no fault reaches the monitor), else by the
 * monitor on each first write's WP fault (on_write, then un-protect). A
 * range the caller registered WP without MISSING on anonymous memory needs
 * LIBUFFD_FEATURE_WP_UNPOPULATED for the latter: without it pages never
 * touched are not protected, and their first writes are not seen.
 */
#define LIBUFFD_REGION_TRACK_DIRTY 0x4

/**
 * libuffd_region_opts.flags, with LIBUFFD_REGION_TRACK_DIRTY: insist on
 * the synchronous path (WP faults through the monitor); -EINVAL on a
 * handle with LIBUFFD_FEATURE_WP_ASYNC, whose WP faults the kernel
 * resolves itself.
 */
#define LIBUFFD_REGION_DIRTY_SYNC 0x8

/**
 * libuffd_region_opts.flags, with max_resident: dirty pages are written
 * back to writeback_fd (pwrite at the page's source offset) before they
 * are evicted. It must be the LIBUFFD_SOURCE_FD source's file (checked:
 * -EINVAL otherwise, and with a buffer source), so that evicted pages
 * come back with what was written back. Duplicated like fd.
 */
#define LIBUFFD_REGION_WRITEBACK_FD 0x10

/**
 * libuffd_region_opts.flags, with max_resident: dirty pages are written
 * back by ops->on_writeback (which must be set: -EINVAL otherwise).
 */
#define LIBUFFD_REGION_WRITEBACK_CALLBACK 0x20

/**
 * libuffd_region_opts.flags, with max_resident and no write-back sink:
 * the caller declares that the application does not write the region. A
 * page written anyway is never evicted (it stays resident, over the
 * budget if need be): nothing is lost. A budgeted region with neither a
 * sink nor this flag is refused (-EINVAL).
 */
#define LIBUFFD_REGION_READ_ONLY 0x40

/**
 * How a region is served (libuffd_monitor_add_region()). Set sz; every
 * other field zero means its default: zero pages, the range registered
 * already, the monitor's stop policy, the page size asked.
 */
typedef struct libuffd_region_opts {
  /**
   * sizeof(struct libuffd_region_opts).
   */
  size_t sz;
  /**
   * LIBUFFD_SOURCE_*.
   */
  uint32_t source;
  /**
   * LIBUFFD_REGION_* flags.
   */
  uint32_t flags;
  /**
   * Register the range with these LIBUFFD_REGISTER_* modes first; 0 if
   * the caller registered it already.
   */
  uint64_t register_mode;
  /**
   * LIBUFFD_SOURCE_BUFFER: the first byte of the region's contents.
   */
  const void *buffer;
  /**
   * LIBUFFD_SOURCE_BUFFER: bytes available at buffer (pages past them
   * are zero-filled).
   */
  uint64_t buffer_len;
  /**
   * LIBUFFD_SOURCE_FD: the file to pread; LIBUFFD_SOURCE_REMOTE: the
   * connected socket to the page server (only these two sources read
   * this field: for the others any value, 0 included, is ignored).
   * For LIBUFFD_SOURCE_FD, libuffd_monitor_add_region()
   * duplicates it (F_DUPFD_CLOEXEC) and reads its duplicate, closed
   * with the monitor: the caller may close its own at once. The file's
   * end inside the region fails faults there, unless
   * LIBUFFD_REGION_ZERO_PAST_EOF.
   */
  int32_t fd;
  /**
   * LIBUFFD_ON_STOP_* for this region (0: the monitor's stop_policy).
   */
  uint32_t stop_policy;
  /**
   * LIBUFFD_SOURCE_FD: file offset of the region's first byte
   * (LIBUFFD_SOURCE_REMOTE: the server's offset of it). An offset
   * that overflows (past 2^63 - 1) fails the faults it concerns with
   * EOVERFLOW.
   */
  uint64_t fd_offset;
  /**
   * Handed to on_fault as region_data.
   */
  void *data;
  /**
   * The page size of the memory (0: ask). For a handle of this
   * process's own memory the monitor reads the mapping's page size
   * itself, and a different value here is refused (-EINVAL). For a
   * descriptor adopted from another process (libuffd_handle_from_fd())
   * the monitor cannot know it beforehand: give it here (2 MiB for a
   * 2 MiB hugetlb guest); with 0 it is asked of the faulting thread's
   * mappings at the region's first fault when the descriptor has
   * LIBUFFD_FEATURE_THREAD_ID, else the base page size is assumed.
   * Added in 1.0: older, shorter structs (see sz) mean 0.
   */
  uint64_t page_size;
  /**
   * LIBUFFD_SOURCE_REMOTE: requests outstanding at most on the
   * connection (0: 16); the first region naming a socket sets it.
   * Older, shorter structs (see sz) mean 0.
   */
  uint32_t max_in_flight;
  /**
   * Must be 0.
   */
  uint32_t reserved1;
  /**
   * Resident-set budget in bytes (0: none; rounded down to whole pages,
   * at least one). Before a fault would place more, the monitor evicts
   * the least-recently-faulted resident pages of the region, writing
   * dirty ones back first (LIBUFFD_REGION_WRITEBACK_FD or
   * LIBUFFD_REGION_WRITEBACK_CALLBACK; or LIBUFFD_REGION_READ_ONLY),
   * then dropping them (MADV_REMOVE for shared memory, MADV_DONTNEED
   * for private and hugetlb memory); an evicted page comes back from
   * the source at its next fault. A full budget is brought down by a
   * batch (1/256 of it, 1 to 16 pages) dropped in one system call;
   * faults in sequence (a scan) place the following pages too, as many
   * as the budget has room for (fault-around within the budget).
   * Pages faulted by a read are placed write-protected (their first
   * write is seen once, to mark them dirty); pages faulted by a write
   * are placed writable and counted dirty at once: register_mode gets
   * LIBUFFD_REGISTER_WP added, and a caller that registered the range
   * itself registers it MISSING|WP. Only LIBUFFD_SOURCE_BUFFER and
   * LIBUFFD_SOURCE_FD regions, without LIBUFFD_REGION_PREFETCH or MINOR
   * registration, with a known page size. With LIBUFFD_FEATURE_EVENT_REMOVE on the handle the
   * drops are made by the monitor's evictor thread (a madvise on the
   * monitor's own thread would wait for itself to read the REMOVE
   * event): the resident set may then exceed the budget by up to 64
   * pages while they are made. Counted in libuffd_monitor_stats
   * (evictions, writebacks, writeback_bytes, writeback_failures,
   * resident_pages).
   *
   * Dirty pages are written back when they are evicted, and by
   * libuffd_monitor_writeback() (a checkpoint: written back in place,
   * kept resident). Neither a stop, libuffd_monitor_remove_region() nor
   * libuffd_monitor_free() writes them: an application that needs the
   * file complete (a clean shutdown) calls libuffd_monitor_writeback()
   * first. After a stop the evicted pages are poisoned by the default
   * stop policy (their data is in the source); after
   * libuffd_monitor_remove_region() they read as the memory does without
   * userfaultfd (zeros for anonymous memory).
   */
  uint64_t max_resident;
  /**
   * LIBUFFD_REGION_WRITEBACK_FD: the file dirty pages are written to.
   */
  int32_t writeback_fd;
  /**
   * Must be 0.
   */
  uint32_t reserved2;
} libuffd_region_opts;

/* ---------------------------------------------- 6.2 callbacks */

/**
 * A fault handed to on_fault. Copy it to defer the fault; the copy is
 * what libuffd_monitor_copy() and friends take.
 */
typedef struct libuffd_fault {
  /**
   * The faulting address as reported (page-aligned).
   */
  void *address;
  /**
   * The exact address with LIBUFFD_FEATURE_EXACT_ADDRESS, else address.
   */
  void *exact_address;
  /**
   * LIBUFFD_PAGEFAULT_FLAG_* bits.
   */
  uint32_t flags;
  /**
   * Faulting thread id with LIBUFFD_FEATURE_THREAD_ID, else 0.
   */
  uint32_t thread_id;
  /**
   * The faulting page, aligned to page_size.
   */
  void *page;
  /**
   * The page size of the memory at the fault (4096, or the hugetlb
   * size): the region's; for a fault in no region, the mapping's, as
   * the memory's owner maps it (the base page size when that cannot
   * be learnt).
   */
  uint64_t page_size;
  /**
   * Start of the region the fault is in (NULL if in none).
   */
  void *region_start;
  /**
   * Offset of page in the region's source.
   */
  uint64_t region_offset;
  /**
   * The region's data pointer.
   */
  void *region_data;
  /**
   * Which of the monitor's handles the fault came from.
   */
  uint32_t handle_id;
  /**
   * Zero.
   */
  uint32_t reserved;
} libuffd_fault;

/* on_fault verdicts */

/**
 * on_fault return: the callback resolved the fault (libuffd_monitor_copy()
 * and friends).
 */
#define LIBUFFD_ON_FAULT_HANDLED 0

/**
 * on_fault return: serve the fault from the region's source.
 */
#define LIBUFFD_ON_FAULT_USE_SOURCE 1

/**
 * on_fault return: the callback kept a copy of the fault and will resolve
 * it later, from any thread.
 */
#define LIBUFFD_ON_FAULT_DEFER 2

/**
 * on_fault return: stop the monitor.
 */
#define LIBUFFD_ON_FAULT_STOP 3

/**
 * on_fault return: the callback placed the page itself with the handle's
 * own operations (libuffd_copy(), libuffd_zeropage(), ... on the handle
 * the fault came from), as a client with its own resolution code does. The
 * monitor trusts it: it wakes the page (a copy with LIBUFFD_COPY_DONTWAKE
 * left the thread waiting) and counts the fault resolved. A page that was
 * not in fact placed makes the thread fault again and on_fault is called
 * again: nothing is lost, but a callback that keeps returning this
 * without placing the page loops.
 */
#define LIBUFFD_ON_FAULT_RESOLVED_BY_CALLER 4

/* on_fork verdicts */

/**
 * on_fork return: serve the child with the parent's regions.
 */
#define LIBUFFD_ON_FORK_SERVE 0

/**
 * on_fork return: the callback took ownership of the descriptor.
 */
#define LIBUFFD_ON_FORK_TAKEN 1

/**
 * on_fork return: close the child's descriptor.
 */
#define LIBUFFD_ON_FORK_CLOSE 2

/**
 * Monitor callbacks (libuffd_monitor_new()). Every callback may be NULL;
 * set sz to sizeof(struct libuffd_monitor_ops) (LIBUFFD_OPTS does), as for
 * every options struct: callbacks are only ever appended. Every callback
 * receives the user_data given to libuffd_monitor_new() and the monitor.
 *
 * Callbacks run on the monitor's threads (faults on workers, when there
 * are workers): they must be thread-safe, and must not fork, mremap,
 * munmap or madvise registered memory (the kernel would wait on the
 * monitor: deadlock).
 *
 * A callback must return normally: it must not throw a C++ exception out
 * of itself (mark C++ callbacks noexcept, or catch everything inside),
 * nor longjmp/siglongjmp out of it, nor end its thread (pthread_exit).
 * Any of these unwinds or jumps over the library's frames: the fault in
 * hand is never released, locks stay held, and the process may abort.
 * libuffd_monitor_free() and libuffd_monitor_wait() of the same monitor
 * from inside a callback fail with EDEADLK.
 */
typedef struct libuffd_monitor_ops {
  /**
   * sizeof(struct libuffd_monitor_ops).
   */
  size_t sz;
  /**
   * A fault in a LIBUFFD_SOURCE_CALLBACK region, or in no region.
   * Returns LIBUFFD_ON_FAULT_* or a negative errno (the error policy then
   * releases the thread). NULL: such faults fall to the error policy.
   */
  int32_t (*on_fault)(void *user_data, struct libuffd_monitor *m, const struct libuffd_fault *f);
  /**
   * The monitored process forked; fd is the child's userfaultfd.
   * Returns LIBUFFD_ON_FORK_*. NULL: serve the child.
   */
  int32_t (*on_fork)(void *user_data, struct libuffd_monitor *m, uint32_t handle_id, int32_t fd);
  /**
   * A registered range moved (mremap()): the len bytes that were at
   * from are now at to, and its regions moved with them.
   */
  void (*on_remap)(void *user_data, struct libuffd_monitor *m, uint32_t handle_id, void *from, void *to, uint64_t len);
  /**
   * The pages of the registered range [start, end) are being dropped by
   * madvise().
   */
  void (*on_remove)(void *user_data, struct libuffd_monitor *m, uint32_t handle_id, void *start, void *end);
  /**
   * The registered range [start, end) was unmapped (its regions are
   * gone).
   */
  void (*on_unmap)(void *user_data, struct libuffd_monitor *m, uint32_t handle_id, void *start, void *end);
  /**
   * An error the monitor handled, as text valid during the call.
   */
  void (*on_log)(void *user_data, struct libuffd_monitor *m, const char *msg);
  /**
   * The first write to a page of a LIBUFFD_REGION_TRACK_DIRTY region on
   * the synchronous path (handle without LIBUFFD_FEATURE_WP_ASYNC): the
   * page [page, page + page_size) is about to be marked dirty and
   * un-protected; the writing thread waits until this returns.
   * region_data is the region's libuffd_region_opts.data. It must not
   * write the page (still protected: it would wait for itself). NULL:
   * just mark and un-protect. Added in 1.0 (older, shorter tables, see
   * sz, have none).
   */
  void (*on_write)(void *user_data, struct libuffd_monitor *m, uint32_t handle_id, void *page, uint64_t page_size, void *region_data);
  /**
   * Write back a dirty page of a LIBUFFD_REGION_WRITEBACK_CALLBACK
   * region before it is evicted: page->page (readable, write-protected
   * while the callback runs) holds page->page_size bytes to store where
   * the region's source reads them (page->region_offset). The fault
   * fields say which page: address and page are the page,
   * region_start, region_offset, region_data and handle_id the region's,
   * flags 0. Returns 0, or a negative errno: the page then stays
   * resident and dirty (writeback_failures, on_log) and is tried again
   * at a later eviction. Runs on the thread whose fault needs the room.
   */
  int32_t (*on_writeback)(void *user_data, struct libuffd_monitor *m, const struct libuffd_fault *page);
} libuffd_monitor_ops;

/* ---------------------------------------------- 6.3 lifecycle */

/**
 * Create a monitor.
 *
 * opts may be NULL (defaults: the reader resolves faults itself, an
 * adaptive 1..512-page fault-around window, SIGBUS on errors, zero-fill
 * after REMOVE, forked children served, and on stop: SIGBUS for pages of
 * buffer, fd and callback regions never restored, zeros for the others;
 * see LIBUFFD_ON_STOP_DEFAULT).
 * ops, the callback table (its sz set as for every options struct), may
 * be NULL when every region has a page source. user_data is passed to every
 * callback; user_data_free, if not NULL, is called with it exactly once,
 * by libuffd_monitor_free(). On failure it is not called (the caller keeps
 * ownership) and *out is not written.
 *
 * The monitor applies the events of each batch it reads before serving
 * the batch's faults, and serves a fault reported several times in a
 * batch once: libuffd(7), MONITOR DELIVERY ORDER, says why.
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: 0, or -EINVAL (NULL out, bad opts, an ops->sz too small or
 * not a whole number of members), -E2BIG, -EMFILE.
 *
 * Pointers: opts must be NULL or a libuffd_monitor_opts of opts->sz
 * readable bytes; ops NULL or a libuffd_monitor_ops of ops->sz readable
 * bytes; out NULL or writable.
 *
 * Example: a monitor whose on_fault callback fills each page of a
 * LIBUFFD_SOURCE_CALLBACK region (4 KiB pages) with its page number; the
 * callback's buffer is the user_data, freed with the monitor (no workers:
 * one thread runs the callback).
 *
 *     static int32_t fill(void *user_data, libuffd_monitor *m, const libuffd_fault *f)
 *     {
 *             char *page = user_data;
 *
 *             if (f->page_size > 4096)
 *                     return -EINVAL;
 *             memset(page, (int)(f->region_offset / 4096), 4096);
 *             return libuffd_monitor_copy(m, f, page) < 0 ? -EIO : LIBUFFD_ON_FAULT_HANDLED;
 *     }
 *
 *     libuffd_monitor *new_filling_monitor(void)
 *     {
 *             LIBUFFD_OPTS(libuffd_monitor_ops, ops, .on_fault = fill);
 *             libuffd_monitor *m;
 *             char *page = malloc(4096);
 *
 *             if (!page || libuffd_monitor_new(NULL, &ops, page, free, &m) < 0) {
 *                     free(page);
 *                     return NULL;
 *             }
 *             return m;
 *     }
 */
int32_t libuffd_monitor_new(const struct libuffd_monitor_opts *opts, const struct libuffd_monitor_ops *ops, void *user_data, void (*user_data_free)(void*), struct libuffd_monitor **out);

/**
 * Serve a handle's faults and events with this monitor (the monitor
 * keeps its own reference: the handle may be freed by the caller
 * afterwards). Blocking and non-blocking handles are served alike, and
 * the descriptor's file status flags are left as they are (the file may
 * be shared with another process): a blocking one is read with
 * RWF_NOWAIT, so no read of the monitor ever waits. *id (may be NULL)
 * receives the handle's id, used by regions, faults and events. For a
 * handle with LIBUFFD_FEATURE_EVENT_FORK (unless
 * LIBUFFD_MONITOR_NO_FORK_SERVE) it starts the monitor's reserve thread,
 * which keeps what serving a fork needs ready (see
 * libuffd_monitor_dispatch()); libuffd_monitor_free() ends it.
 *
 * Thread safety: may be called from any thread, also while running.
 *
 * Returns: 0, or -EINVAL (NULL monitor or handle; a blocking handle on a
 * kernel whose userfaultfd does not take RWF_NOWAIT: set O_NONBLOCK).
 *
 * Pointers: m must be NULL or a live monitor; h NULL or a live handle; id
 * NULL or writable.
 */
int32_t libuffd_monitor_add_handle(struct libuffd_monitor *m, struct libuffd_handle *h, uint32_t *id);

/**
 * Stop serving the handle with id handle_id (one added by
 * libuffd_monitor_add_handle(), or a forked child's), at once, running or
 * not: its regions are forgotten, its messages are no longer read (a
 * fault on it after this returns is for whoever reads the descriptor),
 * and the monitor's reader is woken so that it polls it no more. A
 * forked child's descriptor, which the monitor owns, is closed; an added
 * handle's stays open (the caller's handle, if not freed, still works).
 * Faults already read and deferred (LIBUFFD_ON_FAULT_DEFER) are the
 * caller's to complete.
 *
 * A forked child's descriptor is also closed by the monitor on its own
 * once the child has exited (or exec'd).
 *
 * Thread safety: may be called from any thread, also while running, and
 * from inside a callback.
 *
 * Returns: 0, or -EINVAL (NULL monitor; no handle with that id is
 * served: never added, or removed already).
 *
 * Pointers: m must be NULL or a live monitor.
 */
int32_t libuffd_monitor_remove_handle(struct libuffd_monitor *m, uint32_t handle_id);

/**
 * Serve [start, start+len) of handle handle_id as opts says
 * (NULL: zero-fill, already registered). With opts->register_mode the
 * range is registered first. Regions of one handle may not overlap.
 *
 * Thread safety: may be called from any thread, also while running, and
 * from inside any callback (on_fault, on_fork, on_remap, on_remove,
 * on_unmap, on_log): the region is served from the next fault on.
 *
 * The region's page size is the mapping's for this process's own memory;
 * for an adopted descriptor's, give it in opts->page_size (see there).
 *
 * Returns: 0, or -EINVAL (NULL monitor, unknown handle id, bad range,
 * misaligned for the page size, a page size that is not a power of two
 * of at least the base page size or not the mapping's, overlap, unknown
 * source, stop_policy or flags, NULL buffer, negative fd;
 * LIBUFFD_REGION_TRACK_DIRTY on a range the caller registered without
 * LIBUFFD_REGISTER_WP, LIBUFFD_REGION_DIRTY_SYNC on a handle with
 * LIBUFFD_FEATURE_WP_ASYNC, or WP_ASYNC tracking on another process's
 * handle, or together with max_resident; with max_resident: less than one
 * page, a source other than BUFFER or FD, PREFETCH, MINOR registration,
 * no write-back sink and no LIBUFFD_REGION_READ_ONLY, both sinks,
 * WRITEBACK_CALLBACK without ops->on_writeback, a writeback_fd that is
 * not the FD source's file or with a BUFFER source; a sink or READ_ONLY
 * without max_resident; reserved1 or reserved2 not 0), -EBADF (a source or
 * write-back fd that is not open), -EMFILE (no descriptor left for its
 * duplicate),
 * and libuffd_register()'s errors.
 *
 * Pointers: m must be NULL or a live monitor; opts NULL or a
 * libuffd_region_opts of opts->sz readable bytes; opts->buffer readable
 * for opts->buffer_len bytes for as long as the monitor serves the region
 * (opts->fd is duplicated: the caller may close it once this returns).
 *
 * Example: restore a snapshot file lazily: new memory of the file's size,
 * each page read from the file at its first touch and the rest in the
 * background (the monitor, with the handle id from
 * libuffd_monitor_add_handle(), is running or started later).
 *
 *     void *lazy_restore(libuffd_monitor *m, uint32_t id, int fd, size_t len)
 *     {
 *             void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
 *                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
 *             LIBUFFD_OPTS(libuffd_region_opts, ro,
 *                          .source = LIBUFFD_SOURCE_FD,
 *                          .flags = LIBUFFD_REGION_PREFETCH,
 *                          .register_mode = LIBUFFD_REGISTER_MISSING,
 *                          .fd = fd);
 *
 *             if (p == MAP_FAILED)
 *                     return NULL;
 *             if (libuffd_monitor_add_region(m, id, p, len, &ro) < 0) {
 *                     munmap(p, len);
 *                     return NULL;
 *             }
 *             return p; // fd may be closed: the monitor reads its own duplicate
 *     }
 */
int32_t libuffd_monitor_add_region(struct libuffd_monitor *m, uint32_t handle_id, void *start, size_t len, const struct libuffd_region_opts *opts);

/**
 * Stop serving [start, start+len) of handle handle_id, running or not:
 * the regions there are forgotten (the parts of a region outside the range
 * stay served) and the range is unregistered from the userfaultfd, which
 * wakes the threads waiting there; with nobody serving it, a registered
 * range would leave later faults waiting for ever. The memory is the
 * caller's again: a page never placed now faults as without userfaultfd
 * (zeros for anonymous memory). Faults of the range being served from a
 * page source are waited out first; a fault a callback deferred resolves
 * as LIBUFFD_RESOLVE_GONE.
 *
 * Thread safety: may be called from any thread, also while running, and
 * from inside a callback.
 *
 * Returns: 0, or -EINVAL (NULL monitor; no handle with that id; a range
 * that wraps or is not page-aligned; no region of the handle in the
 * range), or the kernel's error from the unregister.
 *
 * Pointers: m must be NULL or a live monitor. The range is only looked
 * at, never touched.
 */
int32_t libuffd_monitor_remove_region(struct libuffd_monitor *m, uint32_t handle_id, void *start, size_t len);

/**
 * Run the monitor on the calling thread until libuffd_monitor_stop().
 *
 * Callbacks (without workers) run on the calling thread, with thread
 * cancellation disabled.
 *
 * Cancellation: a cancellation point, like read(2). A thread blocked here
 * (or entering with a cancel pending) that is pthread_cancel()ed unwinds
 * out of the call; a cancel that arrives while a callback runs acts once
 * the thread waits again. A run cancelled mid-way ends as if
 * libuffd_monitor_stop() had been called: the monitor is stopped and the
 * stop policy applied to its regions (libuffd_monitor_opts.stop_policy).
 * That ending is done when the cancelled thread exits (the main thread
 * too), or earlier by its next libuffd_monitor_* call (a cleanup handler
 * may call libuffd_monitor_free()); libuffd_monitor_free() from another
 * thread waits for it. A cancel pending at entry ends the thread before
 * the run begins: the monitor is left as it was.
 *
 * Thread safety: one run (or start) at a time per monitor.
 *
 * Returns: 0 when stopped, -EBUSY if already running, -EAGAIN (a thread,
 * or the thread-specific key that makes the run cancellable, could not
 * be created), or the errno that stopped it (LIBUFFD_ON_ERROR_STOP, a
 * fault that could be neither resolved nor poisoned, see
 * LIBUFFD_ON_ERROR_SIGBUS, or a failure reading events).
 *
 * Pointers: m must be NULL or a live monitor.
 */
int32_t libuffd_monitor_run(struct libuffd_monitor *m);

/**
 * Run the monitor on a thread of its own (plus its workers); returns at
 * once. libuffd_monitor_wait() joins it. Every thread the library creates
 * (this one, workers, the prefetcher, the reserve thread) blocks all
 * signals, so a signal sent to the process is handled on the host's
 * threads only.
 *
 * Thread safety: any thread; one run (or start) at a time.
 *
 * Returns: 0, -EBUSY (already running), -EAGAIN (no thread).
 *
 * Pointers: m must be NULL or a live monitor.
 *
 * Example: the whole life of a monitor: new memory whose len bytes (whole
 * pages) are served from data by the monitor's own thread at each first
 * touch, read back, then the monitor stopped and freed.
 *
 *     int restore_and_check(const char *data, size_t len)
 *     {
 *             LIBUFFD_OPTS(libuffd_open_opts, oo, .flags = LIBUFFD_OPEN_USER_ONLY);
 *             LIBUFFD_OPTS(libuffd_region_opts, ro,
 *                          .source = LIBUFFD_SOURCE_BUFFER,
 *                          .register_mode = LIBUFFD_REGISTER_MISSING,
 *                          .buffer = data, .buffer_len = len);
 *             libuffd_handle *h = NULL;
 *             libuffd_monitor *m = NULL;
 *             uint32_t id;
 *             char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
 *                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
 *             int rc = p == MAP_FAILED ? -ENOMEM : libuffd_open(&oo, &h);
 *
 *             if (rc == 0)
 *                     rc = libuffd_monitor_new(NULL, NULL, NULL, NULL, &m);
 *             if (rc == 0)
 *                     rc = libuffd_monitor_add_handle(m, h, &id);
 *             if (rc == 0)
 *                     rc = libuffd_monitor_add_region(m, id, p, len, &ro);
 *             if (rc == 0)
 *                     rc = libuffd_monitor_start(m);
 *             if (rc == 0 && memcmp(p, data, len) != 0) // faults, served
 *                     rc = -EIO;
 *             libuffd_monitor_free(m); // stops the run, joins its thread
 *             libuffd_handle_free(h);
 *             if (p != MAP_FAILED)
 *                     munmap(p, len);
 *             return rc;
 *     }
 */
int32_t libuffd_monitor_start(struct libuffd_monitor *m);

/**
 * Ask the monitor to stop; returns at once. Safe from any thread,
 * including from inside a callback; calling it again does nothing more.
 * When the loop ends, each region's stop policy decides what becomes of
 * the threads still blocked in its faults and of its pages not yet
 * placed (LIBUFFD_ON_STOP_*: by default SIGBUS for buffer, fd and
 * callback regions, never silent zeros; zeros for the others); the
 * counters stop_blocked, stop_sigbus and stop_zeroed of
 * libuffd_monitor_get_stats() say how many pending faults went each way.
 *
 * Restart: once the run has ended (libuffd_monitor_wait() returned, or
 * libuffd_monitor_run() did), libuffd_monitor_start() or
 * libuffd_monitor_run() runs the monitor again: regions the stop
 * unregistered (SIGBUS, ZERO) are gone from it (add them again), those
 * left registered (BLOCK) are served, and the threads the stop left
 * blocked are woken to fault again. A stop asked while no run is active
 * ends the next run at once.
 *
 * Returns: 0, or -EINVAL for NULL (or not a monitor).
 *
 * Pointers: m must be NULL or a live monitor.
 */
int32_t libuffd_monitor_stop(struct libuffd_monitor *m);

/**
 * Wait for a monitor started with libuffd_monitor_start() to stop.
 *
 * Cancellation: a cancellation point, like pthread_join(3). A thread
 * blocked here (or entering with a cancel pending) that is
 * pthread_cancel()ed unwinds out of the call and the monitor runs on, as
 * a thread waited for by a cancelled pthread_join() does: stop, wait for
 * and free it later as usual.
 *
 * Thread safety: any thread but the monitor's own (not from a callback:
 * -EDEADLK there).
 *
 * Returns: what the run returned (0 or -errno), -EINVAL if it was not
 * started (or m is not a monitor), -EDEADLK from inside one of its
 * callbacks.
 *
 * Pointers: m must be NULL or a live monitor.
 */
int32_t libuffd_monitor_wait(struct libuffd_monitor *m);

/**
 * The monitor's descriptor, for callers with their own event loop: it
 * becomes readable when libuffd_monitor_dispatch() has work. Borrowed: do not
 * close it.
 *
 * Returns: the descriptor, or -EINVAL for NULL.
 *
 * Pointers: m must be NULL or a live monitor.
 */
int32_t libuffd_monitor_fd(const struct libuffd_monitor *m);

/**
 * Handle whatever is ready, waiting up to timeout_ms (0: do not wait;
 * -1: wait). For callers that poll libuffd_monitor_fd() themselves; workers
 * and prefetch run only under libuffd_monitor_run()/start(). Forked
 * children are served as by the monitor's own thread, without allocating
 * while the forking thread holds the C library's malloc locks: a helper
 * thread (started by libuffd_monitor_add_handle() for a handle with
 * LIBUFFD_FEATURE_EVENT_FORK, signals blocked) keeps what that needs
 * ready, so a storm of forks does not deadlock the dispatching thread.
 *
 * Thread safety: one dispatcher at a time; not while running.
 *
 * Cancellation: not a cancellation point, even when it waits. For a wait
 * that can be cancelled, poll(2) libuffd_monitor_fd() yourself and call
 * this with timeout 0.
 *
 * Stop: libuffd_monitor_stop() (from any thread, a callback included)
 * ends dispatching as it ends a run. The dispatch that sees the stop
 * releases the waiting faults and the regions per the stop policies (as
 * a run's end does) and returns -ECANCELED, or the error that stopped the
 * monitor (e.g. -EIO under LIBUFFD_ON_ERROR_STOP), so that a loop
 * while (libuffd_monitor_dispatch(m, -1) >= 0) ends. The next dispatch
 * serves again.
 *
 * Returns: the number of ready sources handled (0 on timeout), -EBUSY
 * (running, or another thread dispatching), -EINTR, -ECANCELED (stopped),
 * or the error the monitor stopped on.
 *
 * Pointers: m must be NULL or a live monitor.
 */
int32_t libuffd_monitor_dispatch(struct libuffd_monitor *m, int32_t timeout_ms);

/**
 * Stop the monitor, wait for its threads, apply the stop policy to its
 * regions (libuffd_monitor_opts.stop_policy), call user_data_free, and
 * free it. NULL is ignored.
 *
 * Misuse is refused, not acted on (the function returns nothing: errno is
 * set and libuffd_last_error() says why): from inside one of this
 * monitor's callbacks, EDEADLK (it would wait for, and free, the running
 * callback); a pointer that is not a live monitor (a handle, or a monitor
 * already freed, where its type tag tells), EINVAL.
 *
 * A libuffd_monitor_run() cancelled on another thread is ended first: this
 * waits until that thread has exited (or called into the monitor again).
 *
 * Cancellation: not a cancellation point; it always completes (a
 * pending cancellation acts at the thread's next cancellation point).
 *
 * Pointers: m must be NULL or a live monitor, freed at most once.
 */
void libuffd_monitor_free(struct libuffd_monitor *m);

/* ---------------------------------------------- 6.4 resolution */

/* Results of the resolving functions below */

/**
 * Resolution result: resolved now.
 */
#define LIBUFFD_RESOLVE_DONE 0

/**
 * Resolution result: it had been resolved by someone else; the waiter was
 * woken.
 */
#define LIBUFFD_RESOLVE_ALREADY_DONE 1

/**
 * Resolution result: the range or the process went away.
 */
#define LIBUFFD_RESOLVE_GONE 2

/**
 * Resolve a fault by copying f->page_size bytes from src. From the
 * on_fault callback, or later from any thread for a deferred fault.
 *
 * Returns: LIBUFFD_RESOLVE_DONE, LIBUFFD_RESOLVE_ALREADY_DONE (someone had; the
 * waiter was woken), LIBUFFD_RESOLVE_GONE (range or process gone), or -EINVAL,
 * -EFAULT (bad src), -EAGAIN (an event is pending: inside on_fault the
 * monitor retries the fault and calls the callback again; elsewhere it
 * was retried for 2 s first), and the kernel's other errors.
 *
 * Pointers: m must be NULL or a live monitor; f NULL or a fault from this
 * monitor.
 */
int32_t libuffd_monitor_copy(struct libuffd_monitor *m, const struct libuffd_fault *f, const void *src);

/**
 * Resolve a fault by copying len bytes from src to f->page and the pages
 * after it, with the kernel's mode bits: LIBUFFD_COPY_WP places them
 * write-protected (the first write to each then faults with
 * LIBUFFD_PAGEFAULT_FLAG_WP: dirty tracking, in a region registered with
 * LIBUFFD_REGISTER_WP as well), LIBUFFD_COPY_DONTWAKE leaves the thread
 * waiting. len is a whole number of f->page_size pages inside the fault's
 * region (one page for a fault in no region). From the on_fault callback,
 * or later from any thread for a deferred fault.
 *
 * Returns: as libuffd_monitor_copy(), and -EINVAL for a len of no whole
 * pages or past the region's end; -EINVAL, -EPERM or -EOPNOTSUPP from the
 * kernel for mode bits it refuses.
 *
 * Pointers: m must be NULL or a live monitor; f NULL or a fault from this
 * monitor; src readable for len bytes.
 */
int32_t libuffd_monitor_copy_range(struct libuffd_monitor *m, const struct libuffd_fault *f, const void *src, size_t len, uint64_t mode);

/**
 * Resolve a fault with zeros (hugetlb too). Returns as libuffd_monitor_copy().
 *
 * Pointers: m must be NULL or a live monitor; f NULL or a fault from this
 * monitor.
 */
int32_t libuffd_monitor_zero(struct libuffd_monitor *m, const struct libuffd_fault *f);

/**
 * Resolve a fault with zeros over len bytes from f->page (hugetlb too):
 * len as for libuffd_monitor_copy_range(). Returns as
 * libuffd_monitor_copy_range().
 *
 * Pointers: m must be NULL or a live monitor; f NULL or a fault from this
 * monitor.
 */
int32_t libuffd_monitor_zero_range(struct libuffd_monitor *m, const struct libuffd_fault *f, size_t len);

/**
 * Resolve a minor fault by mapping the page-cache page. Returns as
 * libuffd_monitor_copy().
 *
 * Pointers: m must be NULL or a live monitor; f NULL or a fault from this
 * monitor.
 */
int32_t libuffd_monitor_continue(struct libuffd_monitor *m, const struct libuffd_fault *f);

/**
 * Resolve a minor fault by mapping the page-cache pages over len bytes
 * from f->page, with the kernel's mode bits (LIBUFFD_CONTINUE_WP maps them
 * write-protected). len as for libuffd_monitor_copy_range(). Returns as
 * libuffd_monitor_copy_range().
 *
 * Pointers: m must be NULL or a live monitor; f NULL or a fault from this
 * monitor.
 */
int32_t libuffd_monitor_continue_range(struct libuffd_monitor *m, const struct libuffd_fault *f, size_t len, uint64_t mode);

/**
 * Resolve a write-protect fault by removing the protection from the page.
 * Returns as libuffd_monitor_copy().
 *
 * Pointers: m must be NULL or a live monitor; f NULL or a fault from this
 * monitor.
 */
int32_t libuffd_monitor_unprotect(struct libuffd_monitor *m, const struct libuffd_fault *f);

/**
 * Resolve a fault by poisoning the page: the thread gets SIGBUS. Returns
 * as libuffd_monitor_copy().
 *
 * Pointers: m must be NULL or a live monitor; f NULL or a fault from this
 * monitor.
 */
int32_t libuffd_monitor_poison(struct libuffd_monitor *m, const struct libuffd_fault *f);

/**
 * Resolve a fault by moving the page at src (anonymous private memory
 * of this process) into place. Returns as libuffd_monitor_copy().
 *
 * Pointers: m must be NULL or a live monitor; f NULL or a fault from this
 * monitor.
 */
int32_t libuffd_monitor_move(struct libuffd_monitor *m, const struct libuffd_fault *f, void *src);

/**
 * Resolve a fault by moving len bytes of pages at src (anonymous private
 * memory of this process; the pages leave it) to f->page and the pages
 * after it, with the kernel's mode bits (LIBUFFD_MOVE_DONTWAKE,
 * LIBUFFD_MOVE_ALLOW_SRC_HOLES). len as for libuffd_monitor_copy_range():
 * whole pages of the fault's size, inside the fault's region.
 *
 * Returns: as libuffd_monitor_copy(), and -EINVAL for a NULL src or a len
 * of no whole pages or past the region's end; otherwise the kernel's
 * errno for UFFDIO_MOVE with these arguments (-ENOENT for a hole in src
 * without LIBUFFD_MOVE_ALLOW_SRC_HOLES, -EBUSY for a source page shared
 * with another process, ...).
 *
 * Pointers: m must be NULL or a live monitor; f NULL or a fault from this
 * monitor; src NULL or len bytes of the caller's anonymous memory.
 */
int32_t libuffd_monitor_move_range(struct libuffd_monitor *m, const struct libuffd_fault *f, void *src, size_t len, uint64_t mode);

/* ---------------------------------------------- 6.5 stats */

/**
 * Number of buckets of libuffd_monitor_stats.latency_log2_ns.
 */
#define LIBUFFD_LATENCY_BUCKETS 32

/**
 * Monitor counters (libuffd_monitor_get_stats()). Set sz before the call.
 */
typedef struct libuffd_monitor_stats {
  /**
   * sizeof(struct libuffd_monitor_stats).
   */
  size_t sz;
  /**
   * Page-fault messages read.
   */
  uint64_t faults;
  /**
   * FORK events.
   */
  uint64_t forks;
  /**
   * REMAP events.
   */
  uint64_t remaps;
  /**
   * REMOVE events.
   */
  uint64_t removes;
  /**
   * UNMAP events.
   */
  uint64_t unmaps;
  /**
   * Faults resolved.
   */
  uint64_t resolved;
  /**
   * Faults found already resolved (EEXIST) and woken.
   */
  uint64_t eexist;
  /**
   * EAGAIN retries.
   */
  uint64_t retried;
  /**
   * Faults deferred by the callback.
   */
  uint64_t deferred;
  /**
   * Faults that failed (the error policy released the thread).
   */
  uint64_t failed;
  /**
   * Faults dropped: their range went away or their process exited.
   */
  uint64_t dropped;
  /**
   * Duplicate messages for a page already handled in the same batch.
   */
  uint64_t coalesced;
  /**
   * Bytes placed by fault handling (fault-around included).
   */
  uint64_t bytes;
  /**
   * Bytes placed by the background prefetcher.
   */
  uint64_t prefetched_bytes;
  /**
   * read() calls that returned messages.
   */
  uint64_t reads;
  /**
   * Fault latency (message read to resolved): bucket i counts latencies
   * in [2^i, 2^(i+1)) nanoseconds; the last bucket holds the rest.
   */
  uint64_t latency_log2_ns[32];
  /**
   * Faults the reader handed to the workers (see
   * libuffd_monitor_opts.workers).
   */
  uint64_t handed_off;
  /**
   * Faults pending when a run ended (still queued, waiting for a retry,
   * or deferred by on_fault and not completed) whose threads the stop policy left blocked
   * (LIBUFFD_ON_STOP_BLOCK, or SIGBUS where the poison was refused).
   */
  uint64_t stop_blocked;
  /**
   * Such faults released into SIGBUS (LIBUFFD_ON_STOP_SIGBUS).
   */
  uint64_t stop_sigbus;
  /**
   * Such faults released to zero pages (LIBUFFD_ON_STOP_ZERO), or to an
   * ordinary fault (a fault whose range was unmapped or moved since:
   * the stop wakes it unless the monitor's policy is
   * LIBUFFD_ON_STOP_BLOCK).
   */
  uint64_t stop_zeroed;
  /**
   * Reads of a userfaultfd that failed for want of a descriptor
   * (EMFILE/ENFILE while a FORK message waited): counted, logged and
   * read again, never fatal.
   */
  uint64_t read_failures;
  /**
   * Forked children's userfaultfds closed because the child exited.
   */
  uint64_t children_closed;
  /**
   * Forked children left unserved because no room was ready for them
   * (logged): their memory faults as without userfaultfd.
   */
  uint64_t children_dropped;
  /**
   * First writes to pages of synchronously dirty-tracked regions (WP
   * faults marked dirty and un-protected; on_write calls).
   */
  uint64_t dirty_writes;
  /**
   * libuffd_monitor_dirty_scan() calls that got past their argument
   * checks.
   */
  uint64_t dirty_scans;
  /**
   * Of those, scans of asynchronous (LIBUFFD_FEATURE_WP_ASYNC) regions:
   * one PAGEMAP_SCAN ioctl each.
   */
  uint64_t dirty_scans_async;
  /**
   * Pages of budgeted regions evicted (libuffd_region_opts.max_resident).
   */
  uint64_t evictions;
  /**
   * Dirty pages written back before their eviction.
   */
  uint64_t writebacks;
  /**
   * Bytes written back.
   */
  uint64_t writeback_bytes;
  /**
   * Write-backs that failed: the page stayed resident and dirty (logged).
   */
  uint64_t writeback_failures;
  /**
   * Pages of budgeted regions resident now, all regions together (a
   * level, not a count; no peak is kept: sample it for one).
   */
  uint64_t resident_pages;
  /**
   * LIBUFFD_REGION_PREFETCH regions whose background prefetch ended:
   * every page placed or found present, or the rest given up after an
   * error (logged; those pages come with their faults). Each region
   * counts once; a piece an event (REMOVE, UNMAP, mremap) split off
   * before the prefetch got there counts on its own, a removed piece not
   * at all. With no such event, the prefetch of n PREFETCH regions is
   * done when this reaches n.
   */
  uint64_t prefetch_done_regions;
} libuffd_monitor_stats;

/**
 * Copy the monitor's counters into *stats (set stats->sz first; a
 * smaller, older struct gets the members it has). Readable at any time.
 *
 * A fault is counted (resolved, bytes, latency) when its resolution has
 * returned, which can be after the faulting thread resumed: counters read
 * right after an access may not include that access's fault yet. Once
 * the run has ended (libuffd_monitor_wait() returned) they are complete.
 *
 * Returns: 0, or -EINVAL (NULL, or sz smaller than sizeof(size_t)).
 *
 * Pointers: m must be NULL or a live monitor; stats NULL or writable for
 * stats->sz bytes.
 */
int32_t libuffd_monitor_get_stats(const struct libuffd_monitor *m, struct libuffd_monitor_stats *stats);

/* ---------------------------------------------- 6.6 dirty tracking */

/* libuffd_monitor_dirty_scan() flags */

/**
 * libuffd_monitor_dirty_scan() flags: re-arm (write-protect again) the
 * pages reported, in the same call.
 */
#define LIBUFFD_DIRTY_CLEAR 0x1

/**
 * Which pages of [addr, addr + len) were written since the last clearing
 * scan, in a region of handle handle_id added with
 * LIBUFFD_REGION_TRACK_DIRTY. Bit i of bitmap (word i / 64, bit i % 64)
 * is page i of the range, in the region's page size (2 MiB pages on
 * 2 MiB hugetlb memory); the first ceil(pages / 64) words are written,
 * bits past the last page zero. With LIBUFFD_DIRTY_CLEAR the reported
 * pages are re-armed in the same call: a write after this returns is
 * reported by a later scan, never lost, with writers running concurrently
 * (a write racing with the scan is reported by this scan or the next).
 *
 * The path is the region's: with LIBUFFD_FEATURE_WP_ASYNC on the handle,
 * one PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7+;
 * PAGE_IS_WRITTEN, with LIBUFFD_DIRTY_CLEAR also PM_SCAN_WP_MATCHING |
 * PM_SCAN_CHECK_WPASYNC: written pages found and re-protected in one page
 * table walk); without it, the bitmap the monitor fills on WP faults, and
 * UFFDIO_WRITEPROTECT to re-arm. libuffd_monitor_stats counts both
 * (dirty_scans) and the asynchronous ones (dirty_scans_async).
 *
 * Thread safety: any thread, running or not, concurrently with writers
 * and other scans (scans of one region are serialised).
 *
 * Returns: the number of written pages (>= 0), or -EINVAL (NULL monitor
 * or bitmap, unknown flags, unknown handle id, a range not inside one
 * tracked region or not aligned to its pages), -ERANGE (words is less
 * than ceil(pages / 64): the result does not fit, as the kernel says for
 * a buffer too small), or the errno of the ioctl that failed (a failed
 * clearing scan keeps every page it would have reported for the next).
 *
 * Pointers: m must be NULL or a live monitor; bitmap NULL or writable
 * for words uint64_t.
 */
int64_t libuffd_monitor_dirty_scan(struct libuffd_monitor *m, uint32_t handle_id, void *addr, size_t len, uint32_t flags, uint64_t *bitmap, size_t words);

/* ------------------------------- 6.7 budgets: write-back without eviction */

/**
 * Write back the dirty resident pages of the budgeted regions
 * (libuffd_region_opts.max_resident) of handle handle_id in
 * [addr, addr + len) through their sinks (writeback_fd or
 * on_writeback), without evicting them: a checkpoint of the region's
 * file while the application runs. When this returns 0 or more, the file
 * holds every byte written to the range before the call. The pages stay
 * resident, clean and write-protected (a later write marks them dirty
 * again); a write racing with its page's write-back waits for it, then
 * lands, and is in the next write-back or eviction. Counted in
 * libuffd_monitor_stats (writebacks, writeback_bytes,
 * writeback_failures).
 *
 * Thread safety: any thread but the monitor's own callbacks, while the
 * monitor runs or not (a stopped monitor's budgeted pages are written
 * back too).
 *
 * Returns: the number of pages written back (>= 0), or -EINVAL (NULL
 * monitor, unknown handle id, a bad range, no budgeted region with a
 * write-back sink in the range), -EAGAIN (a page kept busy by faults for
 * 2 s, not written back), or the errno of the first write-back that
 * failed (that page stays dirty; the others are written back).
 *
 * Pointers: m must be NULL or a live monitor.
 *
 * Example: checkpoint a buffer pool's file, then make it durable.
 *
 *     int checkpoint(libuffd_monitor *m, uint32_t id, void *pool,
 *                    size_t len, int file_fd)
 *     {
 *             int64_t n = libuffd_monitor_writeback(m, id, pool, len);
 *
 *             if (n < 0)
 *                     return (int)n;
 *             return fsync(file_fd) == 0 ? 0 : -errno;
 *     }
 */
int64_t libuffd_monitor_writeback(struct libuffd_monitor *m, uint32_t handle_id, void *addr, size_t len);

/* ================================================================ *
 * 7. Hand-off to a handler process                                 *
 * ================================================================ */

/*
 * The process that owns the memory sends its userfaultfd and the
 * description of its ranges over a Unix socket (libuffd_send); a handler
 * process receives and checks them (libuffd_recv), serves them with a
 * monitor (libuffd_monitor_add_received) and stops when the owner dies
 * (libuffd_monitor_watch_peer). Wire format: libuffd(7), HAND-OFF.
 */

/**
 * The most regions one hand-off message describes.
 */
#define LIBUFFD_HANDOFF_MAX_REGIONS 1024

/**
 * The hand-off wire format's version (the one this library speaks).
 */
#define LIBUFFD_HANDOFF_VERSION 1

/**
 * libuffd_recv_opts.flags: refuse a peer whose uid (SO_PEERCRED) is not
 * libuffd_recv_opts.uid.
 */
#define LIBUFFD_RECV_CHECK_UID 1

/**
 * libuffd_recv_opts.flags: refuse a peer whose pid (SO_PEERCRED) is not
 * libuffd_recv_opts.pid.
 */
#define LIBUFFD_RECV_CHECK_PID 2

/**
 * One range of the sender's memory in a hand-off: what the handler needs
 * to serve it. start and len are in the sender's address space.
 */
typedef struct libuffd_region_desc {
  /**
   * The range's first address (aligned to page_size).
   */
  void *start;
  /**
   * Its length in bytes (a multiple of page_size, not 0).
   */
  uint64_t len;
  /**
   * The page size of the mapping: 4096, or 2 MiB for 2 MiB hugetlb
   * memory (the handler cannot learn it from an adopted descriptor).
   */
  uint64_t page_size;
  /**
   * Where the range's first byte is in the page source (a file offset:
   * libuffd_monitor_add_received() adds it to opts->fd_offset).
   */
  uint64_t source_offset;
  /**
   * The sender's tag, carried as is (libuffd_monitor_add_received()
   * hands a non-zero tag to on_fault as region_data).
   */
  uint64_t tag;
} libuffd_region_desc;

/**
 * What libuffd_recv() requires of the peer (all zero: nothing, and no
 * time limit). Set sz to the struct's size.
 */
typedef struct libuffd_recv_opts {
  /**
   * sizeof(struct libuffd_recv_opts).
   */
  size_t sz;
  /**
   * LIBUFFD_RECV_CHECK_* flags.
   */
  uint32_t flags;
  /**
   * With LIBUFFD_RECV_CHECK_UID: the uid the peer must have.
   */
  uint32_t uid;
  /**
   * With LIBUFFD_RECV_CHECK_PID: the pid the peer must have.
   */
  int32_t pid;
  /**
   * Give up with -ETIMEDOUT after this many milliseconds without a
   * message (0: wait as long as the peer lives; its death or close is
   * -ECONNRESET).
   */
  uint32_t timeout_ms;
} libuffd_recv_opts;

/**
 * Who sent a hand-off (libuffd_recv()).
 */
typedef struct libuffd_peer {
  /**
   * Its pid (SO_PEERCRED; 0 if in a pid namespace not visible here).
   */
  int32_t pid;
  /**
   * Its uid.
   */
  uint32_t uid;
  /**
   * Its gid.
   */
  uint32_t gid;
  /**
   * A pidfd of it, opened as the message arrived (close-on-exec; the
   * caller closes it), for libuffd_monitor_watch_peer() or poll(2): -1
   * where the kernel has no pidfd_open(2) or the pid is not visible.
   */
  int32_t pidfd;
} libuffd_peer;

/**
 * Send userfaultfd h and the description of its ranges to a handler
 * process over the connected Unix socket sock, in one message: the
 * descriptor in an SCM_RIGHTS control message, the n regions in the
 * versioned wire format of libuffd(7) HAND-OFF (magic, version, count;
 * per region address, length, page size, source offset, tag).
 * SOCK_SEQPACKET is recommended (a message keeps its boundaries);
 * SOCK_STREAM works. The ranges should be registered on h before (the
 * handler does not register them).
 *
 * Thread safety: may be called from any thread.
 *
 * Returns: 0, or -EINVAL (NULL handle, NULL regions with n > 0, more than
 * LIBUFFD_HANDOFF_MAX_REGIONS, a region the receiver would refuse: empty,
 * unaligned, bad page size, overlapping), or sendmsg(2)'s errno (-EPIPE:
 * the peer closed; -ENOTSOCK, -EBADF...).
 *
 * Pointers: h NULL or a live handle; regions NULL or n readable elements.
 */
int32_t libuffd_send(int32_t sock, const struct libuffd_handle *h, const struct libuffd_region_desc *regions, size_t n);

/**
 * Receive a userfaultfd and the description of its ranges sent with
 * libuffd_send() on the connected Unix socket sock; on success *out is a
 * new handle of it (free it with libuffd_handle_free()), regions[0..count)
 * the ranges, checked, and *peer (if not NULL) who sent it.
 *
 * Checked, each refusal closing every descriptor that came with the
 * message and consuming it: the peer's credentials (opts->flags); the
 * message's length (-EBADMSG: shorter than its header says, or cut by the
 * kernel, MSG_TRUNC/MSG_CTRUNC); its magic, version and sizes (-EPROTO: not
 * a libuffd hand-off, or another version); the region count (-EMSGSIZE
 * above LIBUFFD_HANDOFF_MAX_REGIONS, -ENOBUFS above cap); each region
 * (-EBADMSG: empty, wrapping, not aligned to its page size, a page size
 * that is not a power of two of at least the base page size, overlapping
 * another); the descriptors (-EBADF: none, more than one, or one that is
 * not a userfaultfd, as its anonymous inode "[userfaultfd]" tells).
 *
 * Thread safety: may be called from any thread; one receiver per socket.
 *
 * Returns: the number of regions (>= 0), or -EINVAL (negative sock, NULL
 * out, NULL regions with cap > 0, unknown flags), -EPERM (the peer's uid
 * or pid is not the required one), -ECONNRESET (the peer closed without
 * sending), -ETIMEDOUT (opts->timeout_ms passed), the refusals above, or
 * recvmsg(2)'s errno (-ENOTSOCK...).
 *
 * Pointers: opts NULL or a libuffd_recv_opts of opts->sz readable bytes;
 * out NULL or writable; regions NULL or cap writable elements; peer NULL
 * or writable.
 */
int32_t libuffd_recv(int32_t sock, const struct libuffd_recv_opts *opts, struct libuffd_handle **out, struct libuffd_region_desc *regions, size_t cap, struct libuffd_peer *peer);

/**
 * Serve the n received regions of handle handle_id (a handle made by
 * libuffd_recv() and added with libuffd_monitor_add_handle()), each as
 * libuffd_monitor_add_region() would with opts, except: the page size is
 * the region's (regions[i].page_size, so hugetlb ranges need no guess),
 * LIBUFFD_SOURCE_FD reads at opts->fd_offset + regions[i].source_offset
 * (likewise LIBUFFD_SOURCE_REMOTE), LIBUFFD_SOURCE_BUFFER at opts->buffer +
 * regions[i].source_offset, and a non-zero tag is the region's on_fault
 * region_data (else opts->data). opts->register_mode is usually 0 (the
 * sender registered). Regions added before a failure stay added.
 *
 * Thread safety: as libuffd_monitor_add_region().
 *
 * Returns: 0, or libuffd_monitor_add_region()'s errors (-EINVAL: NULL
 * monitor, NULL regions with n > 0, NULL opts...).
 *
 * Pointers: m NULL or a live monitor; regions NULL or n readable
 * elements; opts NULL or a libuffd_region_opts of opts->sz readable bytes.
 */
int32_t libuffd_monitor_add_received(struct libuffd_monitor *m, uint32_t handle_id, const struct libuffd_region_desc *regions, size_t n, const struct libuffd_region_opts *opts);

/**
 * Stop monitor m when the peer that handed it its userfaultfd dies: when
 * pidfd (libuffd_peer.pidfd) becomes readable, or sock (the hand-off
 * socket) hangs up, whichever comes first. Either may be -1, not both.
 * Both are duplicated: the caller keeps (and closes) its own. A thread
 * ("uffd-peer") watches them and calls libuffd_monitor_stop(); the stop
 * policy then releases the faults still pending (the memory went with
 * its owner). The watch ends by itself when it fired, when a run of the
 * monitor it saw has ended, or when the monitor is freed.
 *
 * Thread safety: may be called from any thread, before or during a run.
 *
 * Returns: 0, or -EINVAL (NULL monitor, both -1), -EBADF (a descriptor
 * that is not open), -EMFILE, -EAGAIN (no thread).
 *
 * Pointers: m NULL or a live monitor.
 */
int32_t libuffd_monitor_watch_peer(struct libuffd_monitor *m, int32_t pidfd, int32_t sock);

/* Remote page sources: LIBUFFD_SOURCE_REMOTE regions, and their server */

/**
 * Serve pages of file_fd to a LIBUFFD_SOURCE_REMOTE region at the other
 * end of the connected socket sock, until the client closes the
 * connection: a page server in a few lines (a thread or process per
 * connection).
 *
 * Protocol (little-endian): a request is 24 bytes, magic 0x52504655,
 * length (u32), id (u64), file offset (u64); the reply is a 24-byte
 * header, magic 0x53504655, status (i32: 0 or a positive errno), the
 * request's id (u64), the length of the data that follows (u32: the
 * request's, or 0 on error) and 4 zero bytes, then the data. A request
 * past the file's end is answered ENODATA, one longer than 4 MiB EINVAL,
 * a read error with its errno. Each reply is one send(2), header and
 * data together; on a TCP socket TCP_NODELAY is set first (a reply must
 * not wait for the client's delayed ACK of the previous one).
 *
 * Thread safety: any thread; one server per connection.
 *
 * Returns: the number of requests answered (>= 0, saturated at
 * INT32_MAX) when the client closed, or -EINVAL (negative descriptor),
 * -EPROTO (a request that is not of this protocol: the service ends), or
 * recv/send's errno.
 *
 * Pointers: none.
 */
int32_t libuffd_page_server_serve(int32_t sock, int32_t file_fd);

/* ================================================================ *
 * 8. Write-protect snapshots                                       *
 * ================================================================ */

/**
 * A write-protect snapshot in progress. Create with
 * libuffd_snapshot_begin(); free with libuffd_snapshot_free().
 */
typedef struct libuffd_snapshot libuffd_snapshot;

/* Destinations (libuffd_snapshot_opts.dest) */

/**
 * libuffd_snapshot_opts.dest: copy into memory (buffer).
 */
#define LIBUFFD_SNAPSHOT_TO_BUFFER 1

/**
 * libuffd_snapshot_opts.dest: pwrite(2) to a file (fd, fd_offset).
 */
#define LIBUFFD_SNAPSHOT_TO_FD 2

/**
 * Where a snapshot goes (libuffd_snapshot_begin()). Set sz (LIBUFFD_OPTS
 * does) and dest.
 */
typedef struct libuffd_snapshot_opts {
  /**
   * sizeof(struct libuffd_snapshot_opts).
   */
  size_t sz;
  /**
   * LIBUFFD_SNAPSHOT_TO_BUFFER or LIBUFFD_SNAPSHOT_TO_FD (no default:
   * 0 is -EINVAL).
   */
  uint32_t dest;
  /**
   * LIBUFFD_SNAPSHOT_TO_FD: the file, written with pwrite(2) at
   * fd_offset + the byte's offset in the range. Duplicated
   * (F_DUPFD_CLOEXEC): the caller may close its own once begin returns.
   */
  int32_t fd;
  /**
   * LIBUFFD_SNAPSHOT_TO_BUFFER: len writable bytes, byte i of the range
   * copied to byte i; not to be used by the caller until the snapshot
   * has ended (libuffd_snapshot_wait() returned other than -ETIMEDOUT,
   * or libuffd_snapshot_free()).
   */
  void *buffer;
  /**
   * LIBUFFD_SNAPSHOT_TO_FD: file offset of the range's first byte.
   */
  uint64_t fd_offset;
} libuffd_snapshot_opts;

/**
 * Begin a write-protect snapshot of [addr, addr + len) of this process's
 * memory (anonymous, shmem or hugetlb; aligned to its mapping's pages)
 * into opts's destination: a consistent point-in-time image while the
 * process's threads keep writing.
 *
 * The range is registered on a userfaultfd of the snapshot's own in WP
 * mode (LIBUFFD_FEATURE_WP_UNPOPULATED: pages never touched are protected
 * too; LIBUFFD_FEATURE_WP_HUGETLBFS_SHMEM for shmem and hugetlb) and
 * write-protected whole: the image is the memory as it is when this
 * returns. Each page is then copied to the destination before its first
 * write is let through (the write-protect fault copies it, then
 * un-protects it), while a background thread copies the rest in order.
 * When every page is copied, the range is left un-protected and
 * unregistered, as it was. The range must not be registered on another
 * userfaultfd, nor unmapped or remapped while the snapshot runs. System
 * calls that write into the range (read(2) into it) wait for the page's
 * copy like any writer; only where kernel-mode faults may not be trapped
 * (vm.unprivileged_userfaultfd = 0 and no access to /dev/userfaultfd) is
 * the snapshot's userfaultfd user-mode only, and such a call then fails
 * with EFAULT while the snapshot runs.
 *
 * An error while copying (a page that cannot be read, a destination that
 * cannot be written, pwrite failing) ends the snapshot: the range is
 * un-protected at once (blocked writers go on) and unregistered, and
 * libuffd_snapshot_wait() returns the error. Never a silently incomplete
 * image, never a writer blocked for ever.
 *
 * Thread safety: any thread. The snapshot's threads block every signal.
 *
 * Returns: 0 and *out, or -EINVAL (NULL addr, out or opts; len 0; a
 * misaligned range; dest not one of LIBUFFD_SNAPSHOT_TO_*; a NULL buffer,
 * or one that overlaps the range;
 * a negative fd; an fd_offset + len past 2^63 - 1), -EBADF (fd not open),
 * -EOPNOTSUPP (the kernel lacks WP or WP_UNPOPULATED), -ENOMEM (addr is
 * not mapped), or the errno with which the kernel refused to register or
 * write-protect the range (the range is then left as it was).
 *
 * Pointers: addr..addr+len mapped in this process; opts a
 * libuffd_snapshot_opts of opts->sz readable bytes; opts->buffer writable
 * for len bytes until the snapshot has ended; out writable.
 */
int32_t libuffd_snapshot_begin(void *addr, size_t len, const struct libuffd_snapshot_opts *opts, struct libuffd_snapshot **out);

/**
 * Wait up to timeout_ms milliseconds (-1: no limit; 0: just look) for the
 * snapshot to end.
 *
 * Thread safety: any thread; several may wait at once.
 *
 * Returns: 0 when every page was copied (the image is complete; the range
 * is un-protected and unregistered), -ETIMEDOUT if it is still copying,
 * -EINVAL (NULL, or not a snapshot; timeout_ms below -1), or the errno
 * that ended it (-EFAULT: a page or the buffer could not be accessed; a
 * pwrite(2) errno such as -EBADF, -ENOSPC, -EIO; -ECANCELED), with the
 * detail in libuffd_last_error(): the image is then incomplete.
 *
 * Pointers: s NULL or a live snapshot.
 */
int32_t libuffd_snapshot_wait(struct libuffd_snapshot *s, int32_t timeout_ms);

/**
 * How far the snapshot is: *copied pages of *total (either pointer may
 * be NULL), in the mapping's page size.
 *
 * Returns: 0, or -EINVAL (NULL or not a snapshot).
 *
 * Pointers: s NULL or a live snapshot; copied, total NULL or writable.
 */
int32_t libuffd_snapshot_progress(const struct libuffd_snapshot *s, uint64_t *copied, uint64_t *total);

/**
 * End the snapshot (one still copying is ended with -ECANCELED: its range
 * un-protected and unregistered, its threads joined) and free it. NULL is
 * ignored; a pointer that is not a live snapshot is refused (errno
 * EINVAL, libuffd_last_error() says why).
 *
 * Pointers: s NULL or a live snapshot, not used after this.
 */
void libuffd_snapshot_free(struct libuffd_snapshot *s);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LIBUFFD_H */
