#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/c/run.sh: build and run the C tests of libuffd.
#
#   BUILD=<absolute build dir> CC=cc bash tests/c/run.sh      (make test-c)
#
# Every tests/c/*.c is a test program (a *_tu2.c file is the second
# translation unit of the test of the same name, linked in with it). Each
# is compiled with the flags below, linked against $BUILD/libuffd.so and
# run under `timeout 60`; then linked again against $BUILD/libuffd.a and
# run again. collide.c (with its own uffd.h) also runs with its helpers in
# a shared object of their own. bad_input and cancel also run under
# valgrind, and the hygiene_*.c
# files are also checked as C++17 and as pedantic C11. opts_macro.c is
# also built and run as C99, C++11 and C++17 (GCC, and Clang if present).
#
# Exit codes of a test: 0 pass, 77 skip (the kernel lacks a feature; the
# test prints why), anything else fail; a timeout is a failure.
# Prints "C tests: N passed, N failed[, N skipped]"; exits 1 on any failure.
set -u

cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
BUILD=${BUILD:-$ROOT/build}
CC=${CC:-cc}
CXX=${CXX:-g++}
VALGRIND=${VALGRIND:-/usr/bin/valgrind}
TIMEOUT=${C_TEST_TIMEOUT:-60}

CFLAGS=(-std=c11 -Wall -Wextra -Werror -O1 -g -Iinclude)
SHARED_LIBS=(-L"$BUILD" -luffd -Wl,-rpath,"$BUILD" -lpthread)

passed=0
failed=0
skipped=0
failed_names=()

OUT=$BUILD/tests-c
rm -rf "$OUT"
mkdir -p "$OUT" || exit 2

if [ ! -e "$BUILD/libuffd.so" ] || [ ! -e "$BUILD/libuffd.a" ]; then
  echo "run.sh: $BUILD has no libuffd.so / libuffd.a: run 'make lib' first" >&2
  exit 2
fi
NATIVE_LIBS=$(cat "$BUILD/native-static-libs.txt" 2>/dev/null || echo "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc")

pass() { passed=$((passed + 1)); printf 'PASS  %s%s\n' "$1" "${2:+  ($2)}"; }
skip() { skipped=$((skipped + 1)); printf 'SKIP  %s: %s\n' "$1" "$2"; }
fail() {
  failed=$((failed + 1))
  failed_names+=("$1")
  printf 'FAIL  %s: %s\n' "$1" "$2"
}

# Show a log indented, without valgrind's noise about the userfaultfd
# system call and ioctls it does not know.
show_log() {
  grep -v -e 'unhandled amd64-linux syscall' -e 'You may be able to write your own handler' \
          -e 'README_MISSING_SYSCALL_OR_IOCTL' -e 'Nevertheless we consider this a bug' \
          -e 'valgrind.org/support/bug_reports' -e 'noted but unhandled ioctl' \
          -e 'This could cause spurious value errors' "$1" | sed 's/^/    | /'
}

# compile NAME LOG CMD...: run a compiler command; on failure report NAME.
compile() {
  local name=$1 log=$2
  shift 2
  if ! "$@" >"$log" 2>&1; then
    fail "$name" "does not compile: $*"
    show_log "$log"
    return 1
  fi
  return 0
}

# The summary lines of a test's log: its checks, and valgrind's verdict.
summary_of() {
  local s v
  s=$(grep -E '^[0-9]+ checks, ' "$1" | tail -n 1)
  v=$(sed -n 's/^==[0-9]*== ERROR SUMMARY: \([0-9]* errors from [0-9]* contexts\).*/valgrind: \1/p' "$1" | tail -n 1)
  [ -n "$v" ] && s="${s:+$s; }$v"
  printf '%s' "$s"
}

# run NAME LOG CMD...: run a test program under timeout and judge it.
run() {
  local name=$1 log=$2 rc
  shift 2
  # (The braces keep bash's "Segmentation fault" report out of the output.)
  { timeout -k 5 "$TIMEOUT" "$@" >"$log" 2>&1 </dev/null; } 2>/dev/null
  rc=$?
  case $rc in
    0)
      pass "$name" "$(summary_of "$log")"
      # Parts a test skipped (e.g. hugetlb without huge pages), visibly.
      grep '^SKIP:' "$log" | sed 's/^/      /'
      ;;
    77)
      skip "$name" "$(grep -m1 '^SKIP' "$log" | sed 's/^SKIP: *//')"
      ;;
    124 | 137)
      fail "$name" "TIMED OUT after ${TIMEOUT} s"
      show_log "$log"
      ;;
    *)
      if [ "$rc" -gt 128 ]; then
        fail "$name" "killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null))"
      else
        fail "$name" "exit status $rc$(summary_of "$log" | sed 's/^./ (&/; s/.$/&)/')"
      fi
      show_log "$log"
      ;;
  esac
}

# The sources of test NAME: NAME.c and its companion NAME_tu2.c if any.
sources_of() {
  local name=$1
  printf '%s\n' "tests/c/$name.c"
  [ -f "tests/c/${name}_tu2.c" ] && printf '%s\n' "tests/c/${name}_tu2.c"
  return 0
}

tests=()
for src in tests/c/*.c; do
  base=$(basename "$src" .c)
  case $base in *_tu2) continue ;; esac
  tests+=("$base")
done

echo "== C tests against $BUILD/libuffd.so ($("$CC" --version | head -n 1))"
for t in "${tests[@]}"; do
  mapfile -t srcs < <(sources_of "$t")
  compile "$t" "$OUT/$t.build.log" "$CC" "${CFLAGS[@]}" -o "$OUT/$t" "${srcs[@]}" "${SHARED_LIBS[@]}" \
    && run "$t" "$OUT/$t.log" "$OUT/$t"
done

echo "== C tests linked statically against $BUILD/libuffd.a"
for t in "${tests[@]}"; do
  mapfile -t srcs < <(sources_of "$t")
  # shellcheck disable=SC2086 # NATIVE_LIBS is a list of linker flags
  compile "static:$t" "$OUT/$t-static.build.log" "$CC" "${CFLAGS[@]}" -o "$OUT/$t-static" "${srcs[@]}" \
      "$BUILD/libuffd.a" $NATIVE_LIBS -lpthread \
    && run "static:$t" "$OUT/$t-static.log" "$OUT/$t-static"
done
# The static binaries must not need libuffd.so.
if [ -x "$OUT/basic-static" ]; then
  if readelf -d "$OUT/basic-static" | grep -q 'NEEDED.*libuffd'; then
    fail "static:no-libuffd.so" "basic-static still needs libuffd.so"
  else
    pass "static:no-libuffd.so" "basic-static does not need libuffd.so"
  fi
fi

echo "== collide: the host's own uffd_* helpers in a shared object of their own"
# QEMU-style: the program's helpers live in one shared object, libuffd in
# another; each call must reach its own definition.
compile "collide:host-so" "$OUT/collide-host.build.log" \
    "$CC" "${CFLAGS[@]}" -fPIC -shared -o "$OUT/libhostuffd.so" tests/c/collide_tu2.c \
  && compile "collide:host-so" "$OUT/collide-so.build.log" \
    "$CC" "${CFLAGS[@]}" -o "$OUT/collide-so" tests/c/collide.c \
      -L"$OUT" -lhostuffd -Wl,-rpath,"$OUT" "${SHARED_LIBS[@]}" \
  && run "collide:host-so" "$OUT/collide-so.log" "$OUT/collide-so"

echo "== bad_input under valgrind"
if [ ! -x "$VALGRIND" ]; then
  skip "valgrind:bad_input" "valgrind not installed at $VALGRIND (optional; Debian: valgrind)"
elif [ -x "$OUT/bad_input" ]; then
  run "valgrind:bad_input" "$OUT/bad_input.valgrind.log" \
    "$VALGRIND" --error-exitcode=1 --leak-check=full "$OUT/bad_input"
else
  fail "valgrind:bad_input" "bad_input was not built"
fi

echo "== cancel under valgrind (no faults served: see tests/c/cancel.c)"
if [ ! -x "$VALGRIND" ]; then
  skip "valgrind:cancel" "valgrind not installed at $VALGRIND (optional; Debian: valgrind)"
elif [ -x "$OUT/cancel" ]; then
  run "valgrind:cancel" "$OUT/cancel.valgrind.log" \
    env CANCEL_VALGRIND=1 CANCEL_CYCLES=20 "$VALGRIND" --error-exitcode=1 --leak-check=full "$OUT/cancel"
else
  fail "valgrind:cancel" "cancel was not built"
fi

echo "== header hygiene: C++17 and pedantic C11"
for src in tests/c/hygiene_*.c; do
  base=$(basename "$src" .c)
  if ! command -v "$CXX" >/dev/null 2>&1; then
    skip "c++17:$base" "$CXX not installed (optional; Debian: g++)"
  else
    compile "c++17:$base" "$OUT/$base.cxx.log" \
        "$CXX" -std=c++17 -x c++ -fsyntax-only -Wall -Wextra -Werror -Iinclude "$src" \
      && pass "c++17:$base"
  fi
  compile "pedantic:$base" "$OUT/$base.pedantic.log" \
      "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -Iinclude "$src" \
    && pass "pedantic:$base"
done
# libuffd.h alone, as the first and only include, in both languages.
printf '#include <libuffd.h>\nint main(void) { return libuffd_version() == LIBUFFD_VERSION ? 0 : 1; }\n' \
  > "$OUT/alone.c"
compile "c11:libuffd.h-alone" "$OUT/alone.c.log" \
    "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -Iinclude "$OUT/alone.c" \
  && pass "c11:libuffd.h-alone"
if ! command -v "$CXX" >/dev/null 2>&1; then
  skip "c++17:libuffd.h-alone" "$CXX not installed (optional; Debian: g++)"
else
  compile "c++17:libuffd.h-alone" "$OUT/alone.cxx.log" \
      "$CXX" -std=c++17 -x c++ -fsyntax-only -Wall -Wextra -Werror -Iinclude "$OUT/alone.c" \
    && pass "c++17:libuffd.h-alone"
fi

echo "== LIBUFFD_OPTS and LIBUFFD_OPTS_INIT in C99, C11, C++11 and C++17 (-Wall -Wextra -Werror)"
# opts_macro.c already ran as C11 with $CC above; here every language
# standard, with GCC and, when installed, Clang.
opts_builds=("$CC -std=c99" "$CC -std=c11" "$CXX -x c++ -std=c++11" "$CXX -x c++ -std=c++17")
if command -v clang >/dev/null && command -v clang++ >/dev/null; then
  opts_builds+=("clang -std=c99" "clang -std=c11" "clang++ -x c++ -std=c++11" "clang++ -x c++ -std=c++17")
fi
for b in "${opts_builds[@]}"; do
  tag=$(printf '%s' "$b" | sed 's/ -x c++//; s/ -std=/:/; s/[^A-Za-z0-9:+]/_/g')
  # shellcheck disable=SC2086 # $b is a compiler and its flags
  compile "opts_macro:$tag" "$OUT/opts_macro-$tag.build.log" \
      $b -Wall -Wextra -Werror -O1 -g -Iinclude -o "$OUT/opts_macro-$tag" tests/c/opts_macro.c "${SHARED_LIBS[@]}" \
    && run "opts_macro:$tag" "$OUT/opts_macro-$tag.log" "$OUT/opts_macro-$tag"
done

echo
if [ "$failed" -gt 0 ]; then
  echo "failed: ${failed_names[*]}"
fi
summary="C tests: $passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
