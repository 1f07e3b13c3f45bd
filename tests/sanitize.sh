#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/sanitize.sh: the test suites under sanitizers (make sanitize).
#
#   BUILD=<absolute build dir> CC=cc bash tests/sanitize.sh
#
# 1. Every C test of tests/c (as tests/c/run.sh builds them) compiled with
#    -fsanitize=address,undefined -fno-sanitize-recover=all and linked
#    against $BUILD/libuffd.so, then against $BUILD/libuffd.a; each run under
#    `timeout` with ASan's leak checker on. Any ASan/UBSan/LSan report is a
#    failure (halt_on_error, and the log is searched for reports as well).
# 2. The Rust tests (cargo test) built with -Zsanitizer=address, if a nightly
#    toolchain is installed (`cargo +nightly`); otherwise that part is skipped
#    with the reason printed. SANITIZE_RUST=0 skips it too.
#
# handle_sigbus=0: the tests provoke SIGBUS on purpose (error policy,
# poison) and check that the child dies of it. fast_unwind_on_malloc=0:
# ASan's frame-pointer unwinder, run on every malloc, would follow %rbp out
# of the library's code (built without frame pointers) and may dereference
# a pointer into registered memory nobody serves: a hang (seen fuzzing).
#
# Exit codes of a C test as in run.sh: 0 pass, 77 skip, else fail.
# Prints "sanitize: N passed, N failed[, N skipped]"; exits 1 on any failure.
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
BUILD=${BUILD:-$ROOT/build}
CC=${CC:-cc}
CARGO=${CARGO:-cargo}
TIMEOUT=${C_TEST_TIMEOUT:-120}
SAN=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
CFLAGS=(-std=c11 -Wall -Wextra -Werror -O1 -g -Iinclude "${SAN[@]}")
NATIVE_LIBS=$(cat "$BUILD/native-static-libs.txt" 2>/dev/null || echo "-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=0:exitcode=99:handle_sigbus=0:fast_unwind_on_malloc=0:detect_stack_use_after_return=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=98}
export LSAN_OPTIONS=${LSAN_OPTIONS:-exitcode=97}

OUT=$BUILD/sanitize
rm -rf "$OUT"
mkdir -p "$OUT" || exit 2

if [ ! -e "$BUILD/libuffd.so" ] || [ ! -e "$BUILD/libuffd.a" ]; then
  echo "sanitize.sh: $BUILD has no libuffd.so / libuffd.a: run 'make lib' first" >&2
  exit 2
fi

passed=0
failed=0
skipped=0
failed_names=()
pass() { passed=$((passed + 1)); printf 'PASS  %s%s\n' "$1" "${2:+  ($2)}"; }
skip() { skipped=$((skipped + 1)); printf 'SKIP  %s: %s\n' "$1" "$2"; }
fail() {
  failed=$((failed + 1))
  failed_names+=("$1")
  printf 'FAIL  %s: %s\n' "$1" "$2"
}
show_log() { sed 's/^/    | /' "$1" | tail -n 60; }

# A sanitizer's report in a log, even if the program's exit status hid it.
sanitizer_report() {
  grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Undefined|Leak)Sanitizer' "$1"
}

run() {
  local name=$1 log=$2 rc rep
  shift 2
  { timeout -k 5 "$TIMEOUT" "$@" >"$log" 2>&1 </dev/null; } 2>/dev/null
  rc=$?
  rep=$(sanitizer_report "$log")
  if [ -n "$rep" ]; then
    fail "$name" "sanitizer report (exit $rc): $rep"
    show_log "$log"
    return
  fi
  case $rc in
    0) pass "$name" "$(grep -E '^[0-9]+ checks, ' "$log" | tail -n 1)" ;;
    77) skip "$name" "$(grep -m1 '^SKIP' "$log" | sed 's/^SKIP: *//')" ;;
    124 | 137) fail "$name" "TIMED OUT after ${TIMEOUT} s"; show_log "$log" ;;
    *) fail "$name" "exit status $rc"; show_log "$log" ;;
  esac
}

compile() {
  local name=$1 log=$2
  shift 2
  if ! "$@" >"$log" 2>&1; then
    fail "$name" "does not compile: $*"
    show_log "$log"
    return 1
  fi
}

sources_of() {
  printf '%s\n' "tests/c/$1.c"
  [ -f "tests/c/${1}_tu2.c" ] && printf '%s\n' "tests/c/${1}_tu2.c"
  return 0
}

tests=()
for src in tests/c/*.c; do
  base=$(basename "$src" .c)
  case $base in *_tu2) continue ;; esac
  tests+=("$base")
done

echo "== C tests under ASan+UBSan against $BUILD/libuffd.so ($("$CC" --version | head -n 1))"
for t in "${tests[@]}"; do
  mapfile -t srcs < <(sources_of "$t")
  compile "asan:$t" "$OUT/$t.build.log" "$CC" "${CFLAGS[@]}" -o "$OUT/$t" "${srcs[@]}" \
      -L"$BUILD" -luffd -Wl,-rpath,"$BUILD" -lpthread \
    && run "asan:$t" "$OUT/$t.log" "$OUT/$t"
done

echo "== C tests under ASan+UBSan linked statically against $BUILD/libuffd.a"
for t in "${tests[@]}"; do
  mapfile -t srcs < <(sources_of "$t")
  # shellcheck disable=SC2086 # NATIVE_LIBS is a list of linker flags
  compile "asan-static:$t" "$OUT/$t-static.build.log" "$CC" "${CFLAGS[@]}" -o "$OUT/$t-static" \
      "${srcs[@]}" "$BUILD/libuffd.a" $NATIVE_LIBS -lpthread \
    && run "asan-static:$t" "$OUT/$t-static.log" "$OUT/$t-static"
done

echo "== Rust tests under ASan"
if [ "${SANITIZE_RUST:-1}" = 0 ]; then
  skip "asan:rust" "SANITIZE_RUST=0"
elif ! "$CARGO" +nightly --version >/dev/null 2>&1; then
  skip "asan:rust" "no nightly toolchain ('$CARGO +nightly' fails): -Zsanitizer=address needs one"
else
  host=$(rustc -vV | sed -n 's/^host: //p')
  # std is not rebuilt with ASan (that needs rust-src and -Zbuild-std), so
  # the sanitizer target modifier is allowed to differ from std's.
  # Allocations made by std are still checked (ASan intercepts malloc).
  log=$OUT/rust.log
  echo "   cargo +nightly test --target $host (RUSTFLAGS=-Zsanitizer=address), log: $log"
  if RUSTFLAGS="-Zsanitizer=address -Cunsafe-allow-abi-mismatch=sanitizer -Cforce-frame-pointers=yes" \
     RUSTDOCFLAGS="-Zsanitizer=address -Cunsafe-allow-abi-mismatch=sanitizer" \
     ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:handle_sigbus=0:fast_unwind_on_malloc=0:detect_stack_use_after_return=0" \
     CARGO_TARGET_DIR="$ROOT/target/asan" \
     timeout 1800 "$CARGO" +nightly test --locked --no-fail-fast --target "$host" --tests -- --test-threads=2 \
       >"$log" 2>&1; then
    rep=$(sanitizer_report "$log")
    if [ -n "$rep" ]; then
      fail "asan:rust" "sanitizer report: $rep"
      show_log "$log"
    else
      pass "asan:rust" "$(grep -c '^test result: ok' "$log") test binaries, $(grep -E '^test result:' "$log" | awk '{s += $4} END {print s}') tests"
    fi
  else
    rc=$?
    fail "asan:rust" "cargo test under ASan: exit status $rc"
    grep -E '^(test .* FAILED|failures:|---- |ERROR|SUMMARY|error)' "$log" | head -n 40 | sed 's/^/    | /'
    show_log "$log"
  fi
fi

echo
[ "$failed" -gt 0 ] && echo "failed: ${failed_names[*]}"
summary="sanitize: $passed passed, $failed failed"
[ "$skipped" -gt 0 ] && summary="$summary, $skipped skipped"
echo "$summary"
[ "$failed" -eq 0 ]
