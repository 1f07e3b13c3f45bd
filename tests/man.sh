#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/man.sh: the man pages under man/ (make test-man).
#
#   bash tests/man.sh
#
# Checks that:
#  - man/gen_man.py, run on include/libuffd.h, produces exactly the committed
#    man/man3/*.3 and man/man7/libuffd.7 (no page missing, stale or
#    edited by hand), twice in a row with the same result;
#  - every libuffd_* function declared in include/libuffd.h has a page whose .TH
#    and NAME give its name, every page is such a function's, and
#    libuffd(7) lists every function;
#  - the main functions' pages and libuffd(7) have EXAMPLES, whose code
#    compiles (libuffd(7)'s program also runs when the library is built),
#    and libuffd(7) maps every raw ioctl and struct (PORTING FROM RAW IOCTLS);
#  - every page renders with `groff -man -Tutf8 -ww` without a warning and
#    has NAME, SYNOPSIS and DESCRIPTION; no page has a leftover "# Safety"
#    heading or a date in its .TH line.
# Installs nothing: python3 is a prerequisite (its absence is a failure);
# groff is optional (without it the rendering is a visible SKIP line).
# Prints "man: N passed, N failed"; exits 1 on any failure.
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
CC=${CC:-cc}
PYTHON3=${PYTHON3:-python3}
GROFF=${GROFF:-groff}
HEADER=include/libuffd.h

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok      $*"; }
notok() { failed=$((failed + 1)); echo "NOT OK  $*"; }
finish() {
  echo
  echo "man: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# python3 runs the generator (a prerequisite in the README); this test
# installs nothing.
if ! command -v "$PYTHON3" >/dev/null 2>&1; then
  notok "python3 is available to run man/gen_man.py (a prerequisite: see the README)"
  finish
fi

# ------------------------------------------------------------ freshness
echo "== regenerate with man/gen_man.py"
for n in 1 2; do
  mkdir -p "$work/gen$n"
  if ! "$PYTHON3" man/gen_man.py --out "$work/gen$n" >"$work/gen$n.log" 2>&1; then
    notok "man/gen_man.py runs (pass $n)"
    sed 's/^/    | /' "$work/gen$n.log"
    finish
  fi
done
if diff -r "$work/gen1" "$work/gen2" >/dev/null; then
  ok "two runs of man/gen_man.py give the same pages"
else
  notok "two runs of man/gen_man.py give the same pages"
fi
for sub in man3 man7; do
  if diff -r -u "$ROOT/man/$sub" "$work/gen1/$sub" >"$work/$sub.diff" 2>&1; then
    ok "man/$sub is what man/gen_man.py generates ($(ls "$work/gen1/$sub" | wc -l) pages)"
  else
    notok "man/$sub is what man/gen_man.py generates (run make man); differences:"
    head -n 60 "$work/$sub.diff" | sed 's/^/    | /'
  fi
done

# ------------------------------------------------ one page per function
# Declared in the header: preprocess (drops comments), keep uffd_x( names.
funcs=$("$CC" -E -P -Iinclude "$HEADER" 2>"$work/cpp.err" \
  | grep -oE '\blibuffd_[A-Za-z0-9_]+[[:space:]]*\(' | sed 's/[[:space:]]*($//' | sort -u)
if [ -s "$work/cpp.err" ] || [ -z "$funcs" ]; then
  notok "$HEADER preprocesses and declares libuffd_* functions"
  sed 's/^/    | /' "$work/cpp.err"
  finish
fi
pages=$(cd man/man3 && ls -- *.3 2>/dev/null | sed 's/\.3$//' | sort)
n_funcs=$(printf '%s\n' "$funcs" | grep -c .)
if [ "$funcs" = "$pages" ]; then
  ok "every libuffd_* function of $HEADER has a page in man/man3, and no other page is there ($n_funcs)"
else
  notok "libuffd_* functions of $HEADER == pages of man/man3 ('<' function without a page, '>' page without a function)"
  diff <(printf '%s\n' "$funcs") <(printf '%s\n' "$pages") | sed -n 's/^[<>] /    &/p'
fi

bad_th=
bad_name=
for f in $funcs; do
  page=man/man3/$f.3
  [ -f "$page" ] || continue
  grep -q -x "\.TH $f 3 \"\" \"libuffd-[0-9.]*\" \"libuffd Manual\"" "$page" || bad_th="$bad_th $f"
  sed -n '/^\.SH NAME$/{n;p}' "$page" | grep -q "^$f \\\\- ." || bad_name="$bad_name $f"
done
[ -z "$bad_th" ] && ok "each page's .TH names its function, section 3, no date, libuffd-<version>" \
  || notok "each page's .TH names its function, section 3, no date, libuffd-<version>:$bad_th"
[ -z "$bad_name" ] && ok "each page's NAME line is '<function> \\- <summary>'" \
  || notok "each page's NAME line is '<function> \\- <summary>':$bad_name"

missing=
for f in $funcs; do
  grep -q -x "\.BR $f (3)" man/man7/libuffd.7 || missing="$missing $f"
done
[ -z "$missing" ] && ok "libuffd(7) lists every function" \
  || notok "libuffd(7) lists every function; missing:$missing"

leftover=$(grep -l -E '^# |# Safety' man/man3/*.3 man/man7/*.7 2>/dev/null)
[ -z "$leftover" ] && ok "no page keeps a Rust '# Safety' heading" \
  || notok "no page keeps a Rust '# Safety' heading: $leftover"

# ------------------------------------------------------------ examples
# The main functions' pages and libuffd(7) have an EXAMPLES section, and
# libuffd(7) a PORTING FROM RAW IOCTLS section naming every ioctl.
no_ex=
for page in libuffd_open libuffd_register libuffd_copy libuffd_read_events libuffd_monitor_new \
            libuffd_monitor_add_region libuffd_monitor_start; do
  grep -q -x '\.SH EXAMPLES' "man/man3/$page.3" || no_ex="$no_ex $page(3)"
done
grep -q -x '\.SH EXAMPLES' man/man7/libuffd.7 || no_ex="$no_ex libuffd(7)"
[ -z "$no_ex" ] && ok "the main functions' pages and libuffd(7) have an EXAMPLES section" \
  || notok "pages without an EXAMPLES section:$no_ex"
porting=$(sed -n '/^\.SH "PORTING FROM RAW IOCTLS"$/,/^\.SH /p' man/man7/libuffd.7)
no_port=
for word in UFFDIO_API UFFDIO_REGISTER UFFDIO_UNREGISTER UFFDIO_COPY UFFDIO_ZEROPAGE UFFDIO_WRITEPROTECT \
            UFFDIO_CONTINUE UFFDIO_POISON UFFDIO_MOVE UFFDIO_WAKE 'struct uffd_msg' 'struct uffdio_api' \
            'struct uffdio_register' 'struct uffdio_range' 'struct uffdio_copy' 'struct uffdio_zeropage' \
            'struct uffdio_writeprotect' 'struct uffdio_continue' 'struct uffdio_poison' \
            'struct uffdio_move' errno EAGAIN EEXIST; do
  printf '%s\n' "$porting" | grep -q -F -- "$word" || no_port="$no_port '$word'"
done
[ -z "$no_port" ] && ok "libuffd(7) PORTING FROM RAW IOCTLS maps every ioctl, struct and the errno convention" \
  || notok "libuffd(7) PORTING FROM RAW IOCTLS lacks:$no_port"

# The code of every EXAMPLES section compiles (-Wall -Wextra -Werror): the
# function pages' examples are whole functions, compiled together; the
# program of libuffd(7) is linked and run when the library is built.
extract() { # extract PAGE...: the .EX blocks of their EXAMPLES sections, unescaped
  "$PYTHON3" - "$@" <<'PY'
import re, sys
for path in sys.argv[1:]:
    inside = code = False
    for line in open(path, encoding="utf-8").read().split("\n"):
        if line.startswith(".SH "):
            inside = line == ".SH EXAMPLES"
        elif inside and line == ".EX":
            code = True
        elif inside and line == ".EE":
            code = False
            print()
        elif inside and code:
            if line.startswith("\\&"):
                line = line[2:]
            print(line.replace("\\-", "-").replace("\\e", "\\"))
PY
}
prelude='#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <libuffd.h>'
{ printf '%s\n' "$prelude"; extract man/man3/*.3; } >"$work/ex3.c"
n_ex=$(grep -l -x '\.SH EXAMPLES' man/man3/*.3 | wc -l)
if "$CC" -std=gnu11 -Wall -Wextra -Werror -Iinclude -c -o "$work/ex3.o" "$work/ex3.c" 2>"$work/ex3.err"; then
  ok "the examples of the $n_ex man3 pages with EXAMPLES compile with -Wall -Wextra -Werror"
else
  notok "the examples of the man3 pages compile with -Wall -Wextra -Werror:"
  sed 's/^/    | /' "$work/ex3.err" | head -n 30
fi
extract man/man7/libuffd.7 >"$work/ex7.c"
BUILD=${BUILD:-$ROOT/build}
if ! "$CC" -std=gnu11 -Wall -Wextra -Werror -Iinclude -c -o "$work/ex7.o" "$work/ex7.c" 2>"$work/ex7.err"; then
  notok "the program of libuffd(7) EXAMPLES compiles with -Wall -Wextra -Werror:"
  sed 's/^/    | /' "$work/ex7.err" | head -n 30
elif [ ! -e "$BUILD/libuffd.so" ]; then
  ok "the program of libuffd(7) EXAMPLES compiles (not run: $BUILD/libuffd.so not built)"
elif "$CC" -o "$work/ex7" "$work/ex7.o" -L"$BUILD" -luffd -Wl,-rpath,"$BUILD" -lpthread 2>"$work/ex7.err" \
     && [ "$(timeout 60 "$work/ex7" 2>&1)" = restored ]; then
  ok "the program of libuffd(7) EXAMPLES compiles, runs and prints 'restored'"
else
  notok "the program of libuffd(7) EXAMPLES links, runs and prints 'restored'"
  sed 's/^/    | /' "$work/ex7.err" | head -n 30
fi

# ------------------------------------------------------------ rendering
if ! command -v "$GROFF" >/dev/null 2>&1; then
  # Optional: without groff the pages are still checked above, not rendered.
  echo "SKIP    rendering the pages: $GROFF not installed (Debian: groff-base)"
  finish
fi
echo "== render with $($GROFF --version | head -n 1)"
n_ok=0
for page in man/man3/*.3 man/man7/*.7; do
  if ! LC_ALL=C.UTF-8 "$GROFF" -man -Tutf8 -ww -P-cbou "$page" >"$work/out" 2>"$work/err"; then
    notok "$page renders (groff failed)"
    sed 's/^/    | /' "$work/err"
  elif [ -s "$work/err" ]; then
    notok "$page renders without warnings:"
    sed 's/^/    | /' "$work/err"
  elif ! grep -q '^NAME' "$work/out" || ! grep -q '^SYNOPSIS' "$work/out" \
       || ! grep -q '^DESCRIPTION' "$work/out"; then
    notok "$page has NAME, SYNOPSIS and DESCRIPTION sections"
  else
    n_ok=$((n_ok + 1))
  fi
done
[ "$n_ok" -gt 0 ] && ok "$n_ok pages render with groff -man -Tutf8 -ww without warnings"

finish
