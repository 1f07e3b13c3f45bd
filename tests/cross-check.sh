#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/cross-check.sh: the library compiles for every Linux architecture
# it claims (make check-arch).
#
#   bash tests/cross-check.sh
#
# `cargo check --lib --target T` for each target below whose standard
# library is installed (`rustup target add T`; .ci/run adds them). Checking
# evaluates src/sys/arch.rs's compile-time assertions for T: the ioctl
# encoding equals libc's _IO* for T and the userfaultfd system call number
# equals the kernel's. mips64el is a tier-3 target without a prebuilt
# standard library: it is checked with a nightly toolchain and
# -Zbuild-std when nightly and its rust-src are installed. A target that
# is not installed is a SKIP line with the reason.
# Prints "cross: N passed, N failed, N skipped"; exits 1 on any failure.
set -u
cd "$(dirname "$0")/.." || exit 2
CARGO=${CARGO:-cargo}
TARGETS=${CROSS_TARGETS:-"x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf
  powerpc64le-unknown-linux-gnu powerpc64-unknown-linux-gnu s390x-unknown-linux-gnu riscv64gc-unknown-linux-gnu"}
BUILD_STD_TARGETS=${CROSS_BUILD_STD_TARGETS:-"mips64el-unknown-linux-gnuabi64"}

passed=0
failed=0
skipped=0
ok() { passed=$((passed + 1)); echo "ok      $*"; }
notok() { failed=$((failed + 1)); echo "NOT OK  $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP    $*"; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT

installed=$(rustup target list --installed 2>/dev/null || true)
for t in $TARGETS; do
  if ! printf '%s\n' "$installed" | grep -q -x "$t"; then
    skip "$t: its standard library is not installed (rustup target add $t)"
    continue
  fi
  if timeout 900 "$CARGO" check --locked --lib --target "$t" -q >"$log" 2>&1; then
    ok "cargo check --lib --target $t (ioctl encoding and syscall number asserted)"
  else
    notok "cargo check --lib --target $t"
    sed 's/^/    | /' "$log" | tail -n 30
  fi
done

for t in $BUILD_STD_TARGETS; do
  if ! "$CARGO" +nightly --version >/dev/null 2>&1; then
    skip "$t: tier 3, needs a nightly toolchain for -Zbuild-std (none installed)"
    continue
  fi
  sysroot=$(rustc +nightly --print sysroot 2>/dev/null)
  if [ ! -d "$sysroot/lib/rustlib/src/rust/library" ]; then
    skip "$t: tier 3, needs nightly's rust-src (rustup component add rust-src --toolchain nightly)"
    continue
  fi
  if CARGO_TARGET_DIR=target/build-std timeout 1800 "$CARGO" +nightly check --locked -Zbuild-std=std,panic_unwind \
       --lib --target "$t" -q >"$log" 2>&1; then
    ok "cargo +nightly check -Zbuild-std --lib --target $t (ioctl encoding and syscall number asserted)"
  else
    notok "cargo +nightly check -Zbuild-std --lib --target $t"
    sed 's/^/    | /' "$log" | tail -n 30
  fi
done

echo
echo "cross: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
