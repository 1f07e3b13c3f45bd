#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/install.sh: `make install` and `make uninstall` into a DESTDIR
# (make test-install).
#
#   BUILD=<absolute build dir> MAKE=make bash tests/install.sh
#
# Installs twice: with PREFIX=/usr LIBDIR=/usr/lib, and with PREFIX=/opt/x
# LIBDIR=/opt/x/lib64 INCLUDEDIR=/opt/x/inc MANDIR=/opt/x/man BINDIR=/opt/x/sbin.
# Each time it checks every file and symlink (place, target, mode, content; the man
# pages of man/ in MANDIR/man1, man3 and man7; libuffd-probe in BINDIR,
# which must run from there; the CMake package files in
# LIBDIR/cmake/uffd; the licences and changelog in PREFIX/share/doc/libuffd),
# the relocatable paths in uffd.pc,
# then builds a small consumer with `pkg-config --cflags --libs uffd`
# (shared, run with LD_LIBRARY_PATH) and with `pkg-config --static --libs
# uffd` against libuffd.a; the consumer opens a userfaultfd and resolves
# one fault. Finally `make uninstall` must remove every installed file.
# Prints "install: N passed, N failed"; exits 1 on any failure.
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
BUILD=${BUILD:-$ROOT/build}
MAKE=${MAKE:-make}
CC=${CC:-cc}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR=${VERSION%%.*}
REALNAME=libuffd.so.$VERSION
SONAME=libuffd.so.$MAJOR

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok      $*"; }
notok() { failed=$((failed + 1)); echo "NOT OK  $*"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"

# The consumer: open a userfaultfd, let a thread fault, resolve the fault.
cp tests/consumer/consumer.c "$work/consumer.c"

# mode FILE: the octal permission bits.
mode() { stat -c '%a' "$1"; }

check_file() { # check_file PATH MODE [SAME_AS]
  local path=$1 want=$2 same=${3:-}
  if [ ! -f "$path" ] || [ -L "$path" ]; then
    notok "$path is a regular file"
    return
  fi
  if [ "$(mode "$path")" != "$want" ]; then
    notok "$path has mode $want (found $(mode "$path"))"
    return
  fi
  if [ -n "$same" ] && ! cmp -s "$path" "$same"; then
    notok "$path (mode $want) has the content of $same"
    return
  fi
  ok "$path (mode $want${same:+, same as ${same#"$ROOT"/}})"
}

check_link() { # check_link PATH TARGET
  local path=$1 want=$2
  if [ -L "$path" ] && [ "$(readlink "$path")" = "$want" ] && [ -e "$path" ]; then
    ok "$path -> $want"
  else
    notok "$path -> $want (found: $(readlink "$path" 2>/dev/null || echo 'not a symlink'))"
  fi
}

# one_round NAME PREFIX LIBDIR INCLUDEDIR [extra make variables...]
one_round() {
  local name=$1 prefix=$2 libdir=$3 incdir=$4
  shift 4
  local dest=$work/$name
  local pcdir=$libdir/pkgconfig
  local cmakedir=$libdir/cmake/uffd
  local mandir=$prefix/share/man bindir=$prefix/bin arg
  for arg in "$@"; do
    case $arg in
      MANDIR=*) mandir=${arg#MANDIR=} ;;
      BINDIR=*) bindir=${arg#BINDIR=} ;;
    esac
  done
  mkdir -p "$dest"
  echo "== make install DESTDIR=$dest PREFIX=$prefix $*"
  if timeout 1800 "$MAKE" -C "$ROOT" install DESTDIR="$dest" PREFIX="$prefix" "$@" \
       >"$work/$name.install.log" 2>&1; then
    ok "make install ($name)"
  else
    notok "make install ($name) failed"
    sed 's/^/    | /' "$work/$name.install.log" | tail -n 40
    return
  fi

  # Every file where it belongs, with the right mode and content.
  check_file "$dest$libdir/$REALNAME" 755 "$BUILD/$REALNAME"
  check_link "$dest$libdir/$SONAME" "$REALNAME"
  check_link "$dest$libdir/libuffd.so" "$SONAME"
  check_file "$dest$libdir/libuffd.a" 644 "$BUILD/libuffd.a"
  check_file "$dest$incdir/libuffd.h" 644 "$ROOT/include/libuffd.h"
  check_file "$dest$pcdir/uffd.pc" 644
  check_file "$dest$cmakedir/uffdConfig.cmake" 644
  check_file "$dest$cmakedir/uffdConfigVersion.cmake" 644
  local docdir=$prefix/share/doc/libuffd d
  for d in LICENSE-MIT LICENSE-APACHE CHANGELOG.md; do
    check_file "$dest$docdir/$d" 644 "$ROOT/$d"
  done
  check_file "$dest$mandir/man3/libuffd_copy.3" 644 "$ROOT/man/man3/libuffd_copy.3"
  check_file "$dest$mandir/man7/libuffd.7" 644 "$ROOT/man/man7/libuffd.7"
  check_file "$dest$mandir/man1/libuffd-probe.1" 644 "$ROOT/man/man1/libuffd-probe.1"
  check_file "$dest$bindir/libuffd-probe" 755 "$BUILD/libuffd-probe"
  local manpages=() page bad_pages=
  for page in "$ROOT"/man/man1/*.1 "$ROOT"/man/man3/*.3 "$ROOT"/man/man7/*.7; do
    manpages+=("$dest$mandir/${page#"$ROOT"/man/}")
    if [ ! -f "$dest$mandir/${page#"$ROOT"/man/}" ] || [ "$(mode "$dest$mandir/${page#"$ROOT"/man/}")" != 644 ] \
       || ! cmp -s "$page" "$dest$mandir/${page#"$ROOT"/man/}"; then
      bad_pages="$bad_pages ${page#"$ROOT"/}"
    fi
  done
  [ -z "$bad_pages" ] && ok "all ${#manpages[@]} man pages of man/ installed in $mandir (mode 644, same content)" \
    || notok "all man pages of man/ installed in $mandir (mode 644, same content); wrong:$bad_pages"
  for d in "$dest$libdir" "$dest$incdir" "$dest$pcdir" "$dest$cmakedir" "$dest$bindir" "$dest$mandir/man1" \
           "$dest$mandir/man3" "$dest$mandir/man7"; do
    if [ -d "$d" ] && [ "$(mode "$d")" = 755 ]; then ok "directory $d (mode 755)"; else notok "directory $d has mode 755"; fi
  done
  # Nothing else was installed.
  local expected found
  expected=$(printf '%s\n' "$dest$libdir/$REALNAME" "$dest$libdir/$SONAME" "$dest$libdir/libuffd.so" \
    "$dest$libdir/libuffd.a" "$dest$incdir/libuffd.h" "$dest$pcdir/uffd.pc" \
    "$dest$cmakedir/uffdConfig.cmake" "$dest$cmakedir/uffdConfigVersion.cmake" \
    "$dest$docdir/LICENSE-MIT" "$dest$docdir/LICENSE-APACHE" "$dest$docdir/CHANGELOG.md" \
    "$dest$bindir/libuffd-probe" "${manpages[@]}" | sort)
  found=$(find "$dest" \( -type f -o -type l \) | sort)
  local n_expected=$((12 + ${#manpages[@]}))
  if [ "$expected" = "$found" ]; then
    ok "exactly the $n_expected expected files and symlinks were installed (12 + ${#manpages[@]} man pages)"
  else
    notok "exactly the $n_expected expected files and symlinks were installed; found:"
    printf '    %s\n' $found
  fi
  # The installed tool runs from wherever it is put (libuffd.a is linked in).
  if "$dest$bindir/libuffd-probe" --json 2>"$work/probe.err" | python3 -c \
       'import json,sys; d=json.load(sys.stdin); assert d["libuffd_version"] == sys.argv[1], d["libuffd_version"]' \
       "$VERSION" && [ ! -s "$work/probe.err" ]; then
    ok "the installed libuffd-probe runs (--json parses, libuffd $VERSION)"
  else
    notok "the installed libuffd-probe runs (--json parses, libuffd $VERSION)"
    sed 's/^/    | /' "$work/probe.err"
  fi
  local so_soname
  so_soname=$(readelf -d "$dest$libdir/$REALNAME" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
  [ "$so_soname" = "$SONAME" ] && ok "installed library's SONAME is $SONAME" \
    || notok "installed library's SONAME is $SONAME (found '$so_soname')"

  # uffd.pc finds its prefix from its own place (${pcfiledir}), with
  # libdir and includedir under ${prefix}: read from the staged tree it
  # names the staged paths, once installed the final ones.
  local pc=$dest$pcdir/uffd.pc
  local rel_prefix=..
  local rest=${pcdir#"$prefix"/}
  while [ "${rest#*/}" != "$rest" ]; do rest=${rest#*/}; rel_prefix=$rel_prefix/..; done
  if grep -q -x "prefix=\${pcfiledir}/$rel_prefix" "$pc" && grep -q -x "libdir=\${prefix}${libdir#"$prefix"}" "$pc" \
     && grep -q -x "includedir=\${prefix}${incdir#"$prefix"}" "$pc" && grep -q -x "Version: $VERSION" "$pc"; then
    ok "uffd.pc: prefix=\${pcfiledir}/$rel_prefix libdir=\${prefix}${libdir#"$prefix"} includedir=\${prefix}${incdir#"$prefix"} Version: $VERSION"
  else
    notok "uffd.pc has prefix=\${pcfiledir}/$rel_prefix libdir=\${prefix}${libdir#"$prefix"} includedir=\${prefix}${incdir#"$prefix"} Version: $VERSION:"
    sed 's/^/    | /' "$pc"
  fi
  if grep -q -F "$dest" "$pc" || grep -q -F "$BUILD" "$pc"; then
    notok "uffd.pc does not mention the DESTDIR or the build directory"
  else
    ok "uffd.pc does not mention the DESTDIR or the build directory"
  fi

  # A consumer built with pkg-config, as a user of the installed tree would.
  local pkg=(env PKG_CONFIG_PATH="$dest$pcdir" PKG_CONFIG_LIBDIR="$dest$pcdir" "$PKG_CONFIG")
  local modver cflags libs slibs cflags_libs out
  modver=$("${pkg[@]}" --modversion uffd 2>&1)
  [ "$modver" = "$VERSION" ] && ok "pkg-config --modversion uffd = $VERSION" \
    || notok "pkg-config --modversion uffd = $VERSION (got '$modver')"
  if ! cflags_libs=$("${pkg[@]}" --cflags --libs uffd 2>&1); then
    notok "pkg-config --cflags --libs uffd: $cflags_libs"
    return
  fi
  echo "   pkg-config --cflags --libs uffd: $cflags_libs"
  local got_inc
  got_inc=$(echo "$cflags_libs" | sed -n 's/.*-I\([^ ]*\).*/\1/p')
  if [ -n "$got_inc" ] && [ "$(realpath -m "$got_inc")" = "$dest$incdir" ]; then
    ok "pkg-config --cflags points into the installed include directory"
  else
    notok "pkg-config --cflags points into $dest$incdir (got -I$got_inc)"
  fi
  # shellcheck disable=SC2086 # word splitting of compiler flags is wanted
  if "$CC" -std=c11 -Wall -Wextra -Werror -O1 -o "$work/$name-shared" "$work/consumer.c" \
       $cflags_libs -lpthread >"$work/$name-shared.log" 2>&1; then
    ok "consumer builds with pkg-config --cflags --libs uffd (shared)"
    if readelf -d "$work/$name-shared" | grep -q "NEEDED.*\[$SONAME\]"; then
      ok "shared consumer needs $SONAME"
    else
      notok "shared consumer needs $SONAME"
    fi
    local lib_used
    lib_used=$(LD_LIBRARY_PATH=$dest$libdir ldd "$work/$name-shared" | awk '$1 == "'"$SONAME"'" { print $3 }')
    [ "$lib_used" = "$dest$libdir/$SONAME" ] && ok "shared consumer loads $lib_used" \
      || notok "shared consumer loads $dest$libdir/$SONAME (ldd says '$lib_used')"
    if out=$(LD_LIBRARY_PATH=$dest$libdir timeout 60 "$work/$name-shared" 2>&1); then
      ok "shared consumer runs: $out"
    else
      notok "shared consumer runs: $out"
    fi
  else
    notok "consumer builds with pkg-config --cflags --libs uffd (shared)"
    sed 's/^/    | /' "$work/$name-shared.log"
  fi

  if ! slibs=$("${pkg[@]}" --static --libs uffd 2>&1); then
    notok "pkg-config --static --libs uffd: $slibs"
    return
  fi
  cflags=$("${pkg[@]}" --cflags uffd)
  echo "   pkg-config --static --libs uffd: $slibs"
  case " $slibs " in
    *" -lgcc_s "* | *" -lc "*) notok "pkg-config --static --libs has neither -lgcc_s nor -lc" ;;
    *" -lpthread "*) ok "pkg-config --static --libs lists the native libraries (without -lgcc_s, -lc)" ;;
    *) notok "pkg-config --static --libs lists the native libraries (Libs.private)" ;;
  esac
  # -l:libuffd.a picks the archive where -luffd would pick the .so.
  libs=${slibs//-luffd/-l:libuffd.a}
  # shellcheck disable=SC2086
  if "$CC" -std=c11 -Wall -Wextra -Werror -O1 -o "$work/$name-static" "$work/consumer.c" \
       $cflags $libs -lpthread >"$work/$name-static.log" 2>&1; then
    ok "consumer builds against libuffd.a with pkg-config --static --libs uffd"
    if readelf -d "$work/$name-static" | grep -q 'NEEDED.*libuffd'; then
      notok "static consumer does not need libuffd.so"
    else
      ok "static consumer does not need libuffd.so"
    fi
    if out=$(env -u LD_LIBRARY_PATH timeout 60 "$work/$name-static" 2>&1); then
      ok "static consumer runs: $out"
    else
      notok "static consumer runs: $out"
    fi
  else
    notok "consumer builds against libuffd.a with pkg-config --static --libs uffd"
    sed 's/^/    | /' "$work/$name-static.log"
  fi

  echo "== make uninstall DESTDIR=$dest PREFIX=$prefix $*"
  if timeout 600 "$MAKE" -C "$ROOT" uninstall DESTDIR="$dest" PREFIX="$prefix" "$@" \
       >"$work/$name.uninstall.log" 2>&1; then
    ok "make uninstall ($name)"
  else
    notok "make uninstall ($name) failed"
    sed 's/^/    | /' "$work/$name.uninstall.log"
  fi
  local left
  left=$(find "$dest" \( -type f -o -type l \) | sort)
  if [ -z "$left" ]; then
    ok "make uninstall left no file or symlink behind"
  else
    notok "make uninstall left files behind:"
    printf '    %s\n' $left
  fi
  local dirs
  dirs=$(find "$dest" -mindepth 1 -type d | sort | tr '\n' ' ')
  [ -n "$dirs" ] && echo "   (empty directories left, as usual for uninstall: $dirs)"
}

one_round usr /usr /usr/lib /usr/include LIBDIR=/usr/lib
one_round custom /opt/x /opt/x/lib64 /opt/x/inc LIBDIR=/opt/x/lib64 INCLUDEDIR=/opt/x/inc MANDIR=/opt/x/man \
  BINDIR=/opt/x/sbin

# Leave build/uffd.pc as a plain `make lib` makes it.
timeout 1800 "$MAKE" -C "$ROOT" -s lib >/dev/null 2>&1 || true

echo
echo "install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
