#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/examples.sh: run every example program of c-examples/ (built by
# `make examples` into $BUILD/examples/) and check what it prints
# (make test-examples, part of make test).
#
#   BUILD=<absolute build dir> bash tests/examples.sh [NAME...]
#
# Each example has one line below: its name, the seconds it may take (a
# watchdog: `timeout` kills it after that and the example fails), its
# arguments, and the extended regular expressions its output must match,
# each on some line. An example must exit 0 as well. A program in
# $BUILD/examples without a line here fails the run, so a new example is
# one file in c-examples/ and one line here.
# Prints "examples: N passed, N failed"; exits 1 on any failure.
set -u

cd "$(dirname "$0")/.." || exit 2
BUILD=${BUILD:-$PWD/build}
EXDIR=$BUILD/examples

passed=0
failed=0
declare -A listed=()
ok() { passed=$((passed + 1)); echo "ok      $*"; }
notok() { failed=$((failed + 1)); echo "NOT OK  $*"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

only=" $* "

# requires FEATURE[,FEATURE...]: the next example needs these kernel
# features (libuffd-probe's names); where the kernel lacks one it is
# skipped with the reason (this machine and CI have every one).
needs=
requires() { needs=$1; }

# example NAME SECONDS 'ARGS' 'REGEX'...
example() {
  local name=$1 secs=$2 args=$3 re rc missing= req=$needs
  shift 3
  needs=
  listed[$name]=1
  [ "$only" = "  " ] || [[ $only == *" $name "* ]] || return 0
  if [ -n "$req" ]; then
    "$BUILD/libuffd-probe" --require "$req" >/dev/null 2>&1
    case $? in
      0) ;;
      1) echo "SKIP    $name $args: this kernel or user lacks $req (libuffd-probe --require $req)"
         return ;;
      *) notok "$name $args: libuffd-probe --require $req failed (a misspelt feature, or no $BUILD/libuffd-probe)"
         return ;;
    esac
  fi
  if [ ! -x "$EXDIR/$name" ]; then
    if [ -f "c-examples/$name.cpp" ] && ! command -v "${CXX:-c++}" >/dev/null 2>&1; then
      echo "SKIP    $name: no C++ compiler (${CXX:-c++}; Debian: g++), so make examples did not build it"
    else
      notok "$name: $EXDIR/$name is not built (make examples)"
    fi
    return
  fi
  # shellcheck disable=SC2086 # ARGS are words
  timeout -k 5 "$secs" "$EXDIR/$name" $args >"$work/$name.out" 2>&1
  rc=$?
  for re in "$@"; do
    grep -q -E -- "$re" "$work/$name.out" || missing="$missing '$re'"
  done
  if [ "$rc" -eq 0 ] && [ -z "$missing" ]; then
    ok "$name $args: $(tail -n 1 "$work/$name.out")"
  else
    case $rc in
      0) why="output lacks$missing" ;;
      124|137) why="killed by the ${secs} s watchdog${missing:+; output lacks$missing}" ;;
      *) why="exit status $rc${missing:+; output lacks$missing}" ;;
    esac
    notok "$name $args: $why"
    tail -n 30 "$work/$name.out" | sed 's/^/    | /'
  fi
}

# Huge pages free for minor-faults' hugetlb run (make test reserves them).
hp_free=$(sed -n 's/^HugePages_Free: *//p' /proc/meminfo 2>/dev/null)

example userfaultfd_demo 60 '3' \
  '^Read address 0x[0-9a-f]+ in main\(\): A$' '^Read address 0x[0-9a-f]+ in main\(\): C$' \
  'libuffd_copy copied [0-9]+ bytes'
requires MINOR_SHMEM
example minor-faults 60 'shmem' \
  '^minor-faults: shmem memory, 16 pages of [0-9]+ KiB' \
  'minor faults served with CONTINUE .*, 0 failed' \
  'guest writes reach the page cache: yes' '^minor-faults: verified 16 pages \(shmem\)$'
if [ "${hp_free:-0}" -ge 16 ]; then
  requires MINOR_HUGETLBFS
  example minor-faults 60 'hugetlb' \
    '^minor-faults: hugetlb memory, 16 pages of 2048 KiB' \
    'minor faults served with CONTINUE .*, 0 failed' '^minor-faults: verified 16 pages \(hugetlb\)$'
else
  echo "SKIP    minor-faults hugetlb: ${hp_free:-no} huge pages free (16 needed; make test reserves them as root)"
fi
example lazy-restore 30 'anon' \
  '^lazy-restore: anon guest memory, 64 MiB \(16384 pages of 4 KiB\)' \
  '^handler: [1-9][0-9]* faults served \([0-9]+ KiB with fault-around\), [0-9]+ KiB prefetched in the background, 1 REMOVE events, 0 failed$' \
  '^lazy-restore: restore: [0-9.]+ ms \(read\(\): [0-9.]+ ms, ratio [0-9.]+\)$' \
  '^lazy-restore: balloon: 2048 pages read as zeros after MADV_DONTNEED$' \
  '^lazy-restore: verified 16384 pages \(14336 restored from the snapshot, 2048 balloon zeros, anon\)$'
if [ "${hp_free:-0}" -ge 32 ]; then
  example lazy-restore 30 'hugetlb' \
    '^lazy-restore: hugetlb guest memory, 64 MiB \(32 pages of 2048 KiB\)' \
    '^handler: [1-9][0-9]* faults served .*, 1 REMOVE events, 0 failed$' \
    '^lazy-restore: restore: [0-9.]+ ms \(read\(\): [0-9.]+ ms, ratio [0-9.]+\)$' \
    '^lazy-restore: verified 32 pages \(28 restored from the snapshot, 4 balloon zeros, hugetlb\)$'
else
  echo "SKIP    lazy-restore hugetlb: ${hp_free:-no} huge pages free (32 needed; make test reserves them as root)"
fi
example postcopy 30 '' \
  '^postcopy: 32 MiB \(8192 pages of 4 KiB\) from a page server on 127\.0\.0\.1:[0-9]+$' \
  '^source: page server answered [1-9][0-9]* requests$' \
  '^postcopy: [1-9][0-9]* pages fetched on demand \(faults of 4 vCPU threads, median wait [0-9]+ us\), [1-9][0-9]* in the background$' \
  '^postcopy: every page arrived in [0-9.]+ ms \([0-9]+ MiB/s\); monitor: [0-9]+ faults, 32768 KiB placed, 0 failed$' \
  '^postcopy: verified 8192 pages$'
requires SIGBUS
example sigbus-mode 60 '' \
  '^sigbus-mode: 64 SIGBUS faults placed on the faulting threads \(4 threads' \
  '^sigbus-mode: verified 64 pages$'
requires MOVE
example gc-compaction 60 '' \
  '^gc-compaction: moved 256 pages \([0-9]+ on a mutator.s fault, [0-9]+ by the compactor\)' \
  '^gc-compaction: [1-9][0-9]* mutator reads, 0 torn objects$' \
  '^gc-compaction: verified [0-9]+ objects in 256 compacted pages$'
requires WP_UNPOPULATED
example db-snapshot 60 '' \
  '^db-snapshot: table of 262144 rows \(16 MiB\), 3 writer threads' \
  '^db-snapshot: saved ([0-9]+) of \1 pages to a temporary file in [0-9.]+ ms; writers made [1-9][0-9]* updates meanwhile' \
  '^db-snapshot: file equals the table at the snapshot instant: yes \(0 rows differ, 0 rows torn\)$' \
  '^db-snapshot: [1-9][0-9]* rows updated in memory since the snapshot, none of them in the file$' \
  '^db-snapshot: verified 262144 rows$'
requires WP_ASYNC
example dirty-tracking 60 '' \
  '^dirty-tracking: async \(WP_ASYNC \+ PAGEMAP_SCAN\): [0-9]+ us per checkpoint \(scan [0-9]+ us\), [1-9][0-9]* pages per round; application.s writes [0-9]+ us per round' \
  '^dirty-tracking: sync \(WP faults\): [0-9]+ us per checkpoint \(scan [0-9]+ us\), [1-9][0-9]* pages per round; application.s writes [0-9]+ us per round' \
  '^dirty-tracking: sync on_write calls: ([1-9][0-9]*) for \1 first writes$' \
  '^dirty-tracking: restore of base \+ increments equals memory: async yes, sync yes$' \
  '^dirty-tracking: verified 8 incremental checkpoints, both ways$'
example buffer-pool 30 '' \
  '^buffer-pool: 64 MiB file of 524288 records \(128 bytes\), 16 MiB budget \(4096 of 16384 pages\), 4 threads$' \
  '^buffer-pool: 80000 operations \([0-9]+ writes\) in [0-9]+ ms: [1-9][0-9]* faults, [0-9]+ faults/s, 0 bad reads$' \
  '^buffer-pool: resident peak [0-9]+ pages of a 4096-page budget' \
  '^buffer-pool: [1-9][0-9]* evictions, [1-9][0-9]* write-backs \([0-9]+ MiB\), 0 write-back failures, 0 failed faults$' \
  '^buffer-pool: file \+ resident memory equal the model: yes \([0-9]+ pages resident, [0-9]+ of them newer than the file, 0 pages wrong\)$' \
  '^buffer-pool: checkpoint: libuffd_monitor_writeback wrote [1-9][0-9]* dirty pages back' \
  '^buffer-pool: file equals the model: yes \(0 records differ\)$' \
  '^buffer-pool: every record read back through the memory: 524288 verified, 0 bad$' \
  '^buffer-pool: verified 524288 records'
example raii 60 '' \
  '^raii: overlapping region refused: errno 22 ' '^raii: [0-9]+ faults, 262144 bytes placed, 0 failed$' \
  '^raii: verified 64 pages \(buffer and callback regions\)$'

# Every built example has its line above.
for bin in "$EXDIR"/*; do
  [ -f "$bin" ] && [ -x "$bin" ] || continue
  name=${bin##*/}
  [ -n "${listed[$name]:-}" ] || notok "$name: built from c-examples/ but tests/examples.sh has no line for it"
done
for src in c-examples/*.c c-examples/*.cpp; do
  [ -f "$src" ] || continue
  name=${src##*/}
  name=${name%.*}
  [ -n "${listed[$name]:-}" ] || notok "$src: tests/examples.sh has no line for it"
done

echo
echo "examples: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
