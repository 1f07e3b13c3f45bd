#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/with-hugepages.sh: run a command (make test) with 2 MiB huge pages
# reserved for the hugetlb tests, and put the machine back as it was.
#
#   bash tests/with-hugepages.sh COMMAND...
#
# As root, when /proc/sys/vm/nr_hugepages is below HUGEPAGES (64), raises it
# for the run and restores the old value afterwards (also on failure or
# interrupt). Without root, or when the kernel cannot reserve them, it
# says so and runs the command anyway: the hugetlb tests then print SKIP
# with the reason and the rest runs.
set -u
want=${HUGEPAGES:-64}
knob=/proc/sys/vm/nr_hugepages
old=$(cat "$knob" 2>/dev/null || echo "")
restore=
if [ -z "$old" ]; then
  echo "== huge pages: $knob unreadable (no hugetlb support?): hugetlb tests will skip"
elif [ "$old" -ge "$want" ]; then
  echo "== huge pages: $old reserved (>= $want), left as they are"
elif [ "$(id -u)" -ne 0 ]; then
  echo "== huge pages: $old reserved; not root, so left as they are (hugetlb tests skip if too few)"
elif echo "$want" > "$knob" 2>/dev/null; then
  restore=$old
  now=$(cat "$knob")
  echo "== huge pages: reserved $now for the run (was $old; put back afterwards)"
  [ "$now" -ge "$want" ] || echo "== huge pages: the kernel reserved only $now of $want: some hugetlb tests may skip"
else
  echo "== huge pages: could not write $knob: hugetlb tests will skip"
fi
if [ -n "$restore" ]; then
  trap 'echo "$restore" > "$knob" && echo "== huge pages: $knob back to $restore"' EXIT
  trap 'exit 130' INT TERM
fi
"$@"
