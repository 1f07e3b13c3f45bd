#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/unprivileged.sh: libuffd as an unprivileged user (make test-unprivileged).
#
#   BUILD=<absolute build dir> CC=cc bash tests/unprivileged.sh
#
# Runs a small C program as uid/gid 65534 (setpriv --reuid=65534
# --regid=65534 --clear-groups), with copies of the program and of
# libuffd.so.1 in a private directory every user can read (the repository
# may not be traversable by that user). The program checks that
#  - libuffd_open(NULL) (the default: kernel-mode faults trapped too, like
#    the raw syscall) fails with -EPERM or -EACCES, and libuffd_last_error()
#    names both "userfaultfd(2)" and "/dev/userfaultfd" and both fixes
#    (CAP_SYS_PTRACE / the sysctl, and LIBUFFD_OPEN_USER_ONLY);
#  - LIBUFFD_OPEN_USER_ONLY works and resolves a real fault, and
#    kernel-mode accesses are not trapped (EFAULT);
#  - EVENT_FORK (needs CAP_SYS_PTRACE) is dropped when only wanted, and
#    fails the open when required.
# Prints "unprivileged: N passed, N failed"; exits 1 on any failure.
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
BUILD=${BUILD:-$ROOT/build}
CC=${CC:-cc}
USER_ID=65534

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR=${VERSION%%.*}
REALNAME=libuffd.so.$VERSION
SONAME=libuffd.so.$MAJOR

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok      $*"; }
notok() { failed=$((failed + 1)); echo "NOT OK  $*"; }
finish() {
  echo
  echo "unprivileged: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

for tool in setpriv timeout "$CC"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    notok "$tool is installed"
    finish
  fi
done
if [ "$(id -u)" -ne 0 ]; then
  notok "this test runs as root (it switches to uid $USER_ID with setpriv)"
  finish
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lib" "$work/bin"

cat > "$work/unpriv.c" <<'EOF'
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <libuffd.h>

static int failures;
#define CHECK(cond, ...)                                                    \
	do {                                                                \
		char m_[2048];                                               \
		snprintf(m_, sizeof m_, __VA_ARGS__);                       \
		if (cond) {                                                 \
			printf("ok      %s\n", m_);                         \
		} else {                                                    \
			failures++;                                         \
			printf("NOT OK  %s  [%s:%d: %s]\n", m_, __FILE__, __LINE__, #cond); \
		}                                                           \
		fflush(stdout);                                             \
	} while (0)

static volatile char *mem;
static char seen;

static void *toucher(void *arg)
{
	(void)arg;
	seen = mem[321];
	return NULL;
}

static long cap_eff(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	while (f && fgets(line, sizeof line, f))
		if (strncmp(line, "CapEff:", 7) == 0)
			v = strtol(line + 7, NULL, 16);
	if (f)
		fclose(f);
	return v;
}

int main(void)
{
	long page = sysconf(_SC_PAGESIZE);
	CHECK(getuid() == 65534 && geteuid() == 65534 && getgid() == 65534,
	      "running as uid %d euid %d gid %d", (int)getuid(), (int)geteuid(), (int)getgid());
	CHECK(cap_eff() == 0, "no effective capabilities (CapEff %#lx)", cap_eff());

	/* User-mode-only, allowed to everyone. */
	libuffd_handle *h = NULL;
	struct libuffd_open_opts uo = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_USER_ONLY);
	int rc = libuffd_open(&uo, &h);
	CHECK(rc == 0 && h != NULL, "libuffd_open(USER_ONLY) = %d (%s)", rc, rc ? libuffd_last_error() : "ok");
	if (!h)
		return 1;
	uint64_t f = 0;
	rc = libuffd_probe_features(&f);
	CHECK(rc == 0, "libuffd_probe_features = %d, features %#llx", rc, (unsigned long long)f);

	mem = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *src = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || src == MAP_FAILED)
		return 1;
	memset(src, 'U', page);
	rc = libuffd_register(h, (void *)mem, 2 * page, LIBUFFD_REGISTER_MISSING, NULL);
	CHECK(rc == 0, "libuffd_register = %d (%s)", rc, rc ? libuffd_last_error() : "ok");

	/* A real fault from another thread, read (blocking) and resolved. */
	pthread_t t;
	if (pthread_create(&t, NULL, toucher, NULL) != 0)
		return 1;
	struct libuffd_event ev[1];
	int n = libuffd_read_events(h, ev, 1, -1);
	CHECK(n == 1 && ev[0].kind == LIBUFFD_EVENT_PAGEFAULT &&
	      ev[0].u.fault.address == (void *)mem,
	      "fault event read: n %d kind %#x address %p (expected %p)", n, ev[0].kind,
	      ev[0].u.fault.address, (void *)mem);
	int64_t done = libuffd_copy(h, (void *)mem, src, page, 0);
	CHECK(done == page, "libuffd_copy resolved the fault: %lld", (long long)done);
	pthread_join(t, NULL);
	CHECK(seen == 'U', "the faulting thread read the copied data ('%c')", seen);

	/* Kernel-mode accesses are not trapped on a user-mode-only fd. */
	int p[2];
	if (pipe(p) != 0)
		return 1;
	errno = 0;
	ssize_t w = write(p[1], (const void *)(mem + page), 16);
	CHECK(w == -1 && errno == EFAULT,
	      "a system call reading registered missing memory fails with EFAULT (got %zd, %s)",
	      w, strerror(errno));
	close(p[0]);
	close(p[1]);
	libuffd_handle_free(h);

	/* The default traps kernel faults: that needs privileges this
	 * process does not have, and the error says both ways out. */
	struct libuffd_open_opts o;
	libuffd_handle *k = (libuffd_handle *)(uintptr_t)0x1234;
	errno = 0;
	rc = libuffd_open(NULL, &k);
	int err = errno;
	const char *le = libuffd_last_error();
	char last[1024];
	snprintf(last, sizeof last, "%s", le ? le : "(null)");
	CHECK(rc == -EPERM || rc == -EACCES, "libuffd_open(NULL) = %d (%s)", rc,
	      libuffd_strerror(rc));
	CHECK(err == -rc, "errno is %d after libuffd_open returned %d", err, rc);
	CHECK(k == (libuffd_handle *)(uintptr_t)0x1234, "out-pointer not written on failure");
	CHECK(strstr(last, "libuffd_open") != NULL, "libuffd_last_error() names libuffd_open: %s", last);
	CHECK(strstr(last, "userfaultfd(2)") != NULL, "libuffd_last_error() names userfaultfd(2)");
	CHECK(strstr(last, "/dev/userfaultfd") != NULL, "libuffd_last_error() names /dev/userfaultfd");
	CHECK(strstr(last, "CAP_SYS_PTRACE") != NULL && strstr(last, "vm.unprivileged_userfaultfd") != NULL,
	      "libuffd_last_error() names the capability and the sysctl: %s", last);
	CHECK(strstr(last, "LIBUFFD_OPEN_USER_ONLY") != NULL,
	      "libuffd_last_error() names LIBUFFD_OPEN_USER_ONLY: %s", last);
	if (rc == 0)
		libuffd_handle_free(k);
	/* Each path alone says why. */
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts,
			      .flags = LIBUFFD_OPEN_NO_DEV);
	k = NULL;
	rc = libuffd_open(&o, &k);
	CHECK(rc == -EPERM, "libuffd_open(NO_DEV) = %d (%s): %s", rc,
	      libuffd_strerror(rc), libuffd_last_error());
	if (rc == 0)
		libuffd_handle_free(k);
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts,
			      .flags = LIBUFFD_OPEN_NO_SYSCALL);
	k = NULL;
	rc = libuffd_open(&o, &k);
	CHECK(rc == -EACCES, "libuffd_open(NO_SYSCALL) = %d (%s): %s", rc,
	      libuffd_strerror(rc), libuffd_last_error());
	if (rc == 0)
		libuffd_handle_free(k);

	/* EVENT_FORK needs CAP_SYS_PTRACE: dropped when wanted, fatal when required. */
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_USER_ONLY,
			      .features = LIBUFFD_FEATURE_EVENT_FORK | LIBUFFD_FEATURE_THREAD_ID);
	k = NULL;
	rc = libuffd_open(&o, &k);
	f = 0;
	if (rc == 0)
		libuffd_handle_features(k, &f);
	CHECK(rc == 0 && !(f & LIBUFFD_FEATURE_EVENT_FORK) && (f & LIBUFFD_FEATURE_THREAD_ID),
	      "EVENT_FORK wanted: open %d, negotiated %#llx (EVENT_FORK dropped)", rc,
	      (unsigned long long)f);
	if (rc == 0)
		libuffd_handle_free(k);
	o = LIBUFFD_OPTS_INIT(libuffd_open_opts, .flags = LIBUFFD_OPEN_USER_ONLY,
			      .required_features = LIBUFFD_FEATURE_EVENT_FORK);
	k = NULL;
	rc = libuffd_open(&o, &k);
	CHECK(rc == -EPERM, "EVENT_FORK required: libuffd_open = %d (%s): %s", rc, libuffd_strerror(rc),
	      libuffd_last_error());
	if (rc == 0)
		libuffd_handle_free(k);

	return failures ? 1 : 0;
}
EOF

# Build as root, against the build tree; no rpath into the repository.
if "$CC" -std=c11 -Wall -Wextra -Werror -O1 -g -Iinclude -o "$work/bin/unpriv" "$work/unpriv.c" \
     -L"$BUILD" -luffd -lpthread >"$work/cc.log" 2>&1; then
  ok "test program builds"
else
  notok "test program builds"
  sed 's/^/    | /' "$work/cc.log"
  finish
fi

# The user may not reach $BUILD (e.g. /work not traversable): copy.
if setpriv --reuid=$USER_ID --regid=$USER_ID --clear-groups test -r "$BUILD/$REALNAME" 2>/dev/null; then
  echo "   (uid $USER_ID can read $BUILD; copying anyway)"
else
  echo "   (uid $USER_ID cannot read $BUILD/$REALNAME: using a copy)"
fi
cp "$BUILD/$REALNAME" "$work/lib/$REALNAME"
ln -s "$REALNAME" "$work/lib/$SONAME"
chmod 755 "$work" "$work/lib" "$work/bin" "$work/lib/$REALNAME" "$work/bin/unpriv"
# Every directory above $work must be searchable too ($TMPDIR could be private).
d=$work
while [ "$d" != / ]; do
  d=$(dirname "$d")
  if ! setpriv --reuid=$USER_ID --regid=$USER_ID --clear-groups test -x "$d"; then
    notok "uid $USER_ID can reach $work ($d is not searchable; set TMPDIR)"
    finish
  fi
done
if setpriv --reuid=$USER_ID --regid=$USER_ID --clear-groups test -r "$work/lib/$REALNAME" -a -x "$work/bin/unpriv"; then
  ok "uid $USER_ID can read the library copy and run the program"
else
  notok "uid $USER_ID can read the library copy and run the program"
  finish
fi
lib_used=$(LD_LIBRARY_PATH=$work/lib ldd "$work/bin/unpriv" | awk '$1 == "'"$SONAME"'" { print $3 }')
if [ "$lib_used" = "$work/lib/$SONAME" ]; then
  ok "the program loads the copy: $lib_used"
else
  notok "the program loads $work/lib/$SONAME (ldd says '$lib_used')"
fi

echo "== as uid $USER_ID: $(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null | sed 's/^/vm.unprivileged_userfaultfd=/'), $(ls -l /dev/userfaultfd 2>/dev/null | awk '{print "/dev/userfaultfd " $1 " " $3}')"
LD_LIBRARY_PATH=$work/lib timeout -k 5 60 \
  setpriv --reuid=$USER_ID --regid=$USER_ID --clear-groups "$work/bin/unpriv" >"$work/run.log" 2>&1
rc=$?
cat "$work/run.log"
passed=$((passed + $(grep -c '^ok ' "$work/run.log")))
failed=$((failed + $(grep -c '^NOT OK ' "$work/run.log")))
case $rc in
  0) ok "the program exits 0" ;;
  124 | 137) notok "the program TIMED OUT after 60 s" ;;
  *) notok "the program exits 0 (status $rc)" ;;
esac

finish
