#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/fuzz/run.sh SECONDS [libFuzzer args...]: run build/fuzz/fuzz_capi
# (make fuzz / make fuzz-quick) for SECONDS from the committed corpus plus
# what earlier runs found (build/fuzz/work). Fails on any crash, hang
# (-timeout, or the driver's own watchdog: FUZZ_HANG_SECONDS), leak or
# sanitizer report; the reproducer is left in
# build/fuzz/artifacts and its trace can be replayed with
#   FUZZ_TRACE=1 build/fuzz/fuzz_capi build/fuzz/artifacts/<file>
set -u
cd "$(dirname "$0")/../.." || exit 2
BUILD=${BUILD:-$PWD/build}
secs=${1:-60}
shift
dir=$BUILD/fuzz
mkdir -p "$dir/work" "$dir/artifacts" || exit 2
rm -f "$dir"/artifacts/*
cp -n tests/fuzz/corpus/* "$dir/work/"
echo "== fuzz_capi for ${secs} s (corpus: $(ls "$dir/work" | wc -l) inputs)"
( cd "$dir" && timeout -k 10 $((secs + 180)) ./fuzz_capi -max_total_time="$secs" -timeout=30 \
    -max_len=512 -rss_limit_mb=4096 -artifact_prefix=artifacts/ -print_final_stats=1 "$@" work ) \
  >"$dir/fuzz.log" 2>&1
rc=$?
grep -v -E '^#[0-9]+.*(NEW|REDUCE|pulse) ' "$dir/fuzz.log" | tail -n 40
# The driver's own hang watchdog (see fuzz_capi.c) dumps every thread's
# kernel stack: print all of it, it is what tells the hang apart.
if grep -q 'fuzz_capi: WATCHDOG' "$dir/fuzz.log"; then
  echo "== the driver's watchdog fired:"
  sed -n '/fuzz_capi: WATCHDOG/,$p' "$dir/fuzz.log" | head -n 400
fi
if [ "$rc" -ne 0 ] || ls "$dir/artifacts" | grep -v '^slow-unit-' | grep -q .; then
  echo "fuzz: FAILED (exit $rc); reproducers in $dir/artifacts:"
  ls -l "$dir/artifacts"
  exit 1
fi
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/fuzz.log")
echo "fuzz: OK, $runs inputs in ${secs} s, no crash, hang, leak or broken invariant"
