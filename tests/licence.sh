#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/licence.sh: the licence is stated everywhere a packager looks
# (make test-licence).
#
#   bash tests/licence.sh
#
# Checks that LICENSE-MIT and LICENSE-APACHE exist and are the licences
# Cargo.toml names; that every source file (Rust, C, headers, shell,
# Python, Makefile, TOML, the linker map, the pkg-config template) has
# "SPDX-License-Identifier: MIT OR Apache-2.0" in its first two lines (the
# second when the first is a #! line); and that the generated header and
# every man page carry it too.
# Prints "licence: N passed, N failed"; exits 1 on any failure.
set -u

cd "$(dirname "$0")/.." || exit 2
SPDX='SPDX-License-Identifier: MIT OR Apache-2.0'

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok      $*"; }
notok() { failed=$((failed + 1)); echo "NOT OK  $*"; }

grep -q -x 'license = "MIT OR Apache-2.0"' Cargo.toml && ok "Cargo.toml: license = \"MIT OR Apache-2.0\"" \
  || notok "Cargo.toml: license = \"MIT OR Apache-2.0\""
grep -q 'Permission is hereby granted, free of charge' LICENSE-MIT 2>/dev/null && ok "LICENSE-MIT is the MIT licence" \
  || notok "LICENSE-MIT is the MIT licence"
grep -q 'Apache License' LICENSE-APACHE 2>/dev/null && grep -q 'Version 2.0, January 2004' LICENSE-APACHE \
  && grep -q 'END OF TERMS AND CONDITIONS' LICENSE-APACHE && ok "LICENSE-APACHE is the full Apache License 2.0" \
  || notok "LICENSE-APACHE is the full Apache License 2.0"

# The sources: what git tracks, or (in an unpacked tarball) what find sees.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  files=$(git ls-files '*.rs' '*.c' '*.cpp' '*.h' '*.sh' '*.py' '*.toml' '*.map' '*.in' '*.cmake' '*.build' \
    Makefile .ci/run '*CMakeLists.txt' '*meson_options.txt' | grep -v '^tests/fuzz/corpus/')
else
  files=$(find . -path ./target -prune -o -path ./build -prune -o -path ./tests/fuzz/corpus -prune -o -type f \
    \( -name '*.rs' -o -name '*.c' -o -name '*.cpp' -o -name '*.h' -o -name '*.sh' -o -name '*.py' -o -name '*.toml' \
       -o -name '*.map' -o -name '*.in' -o -name '*.cmake' -o -name '*.build' -o -name Makefile \
       -o -name CMakeLists.txt -o -name meson_options.txt \) -print \
    | sed 's|^\./||'; echo .ci/run)
fi
missing=""
n=0
for f in $files; do
  [ -f "$f" ] || continue
  n=$((n + 1))
  head -n 2 "$f" | grep -q -F "$SPDX" || missing="$missing $f"
done
if [ -z "$missing" ]; then
  ok "all $n source files carry '$SPDX' in their first lines"
else
  notok "source files without '$SPDX' in their first lines:$missing"
fi

head -n 1 include/libuffd.h | grep -q -F "$SPDX" && ok "include/libuffd.h starts with the SPDX line (cbindgen.toml header)" \
  || notok "include/libuffd.h starts with the SPDX line (cbindgen.toml header)"
bad=""
pages=0
for page in man/man1/*.1 man/man3/*.3 man/man7/*.7; do
  pages=$((pages + 1))
  head -n 1 "$page" | grep -q -F "$SPDX" || bad="$bad $page"
done
[ -z "$bad" ] && ok "all $pages man pages start with the SPDX line (man/gen_man.py)" \
  || notok "man pages without the SPDX line:$bad"

echo
echo "licence: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
