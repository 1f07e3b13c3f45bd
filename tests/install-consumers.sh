#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/install-consumers.sh: a packager's install, and what its users
# build from it (make test-consumers).
#
#   BUILD=<absolute build dir> MAKE=make bash tests/install-consumers.sh
#
# After `make` (the library is built), this
#  - runs `make install DESTDIR=<stage> PREFIX=/usr` with only
#    PATH=/usr/bin:/bin in the environment (no cargo: installing builds
#    nothing) and checks that target/ and build/ did not change;
#  - checks the default LIBDIR follows the host (Debian: lib/<multiarch>);
#  - checks the installed .so and .a carry no debug info and that
#    `make install-debug` installs the .so's debug file where gdb finds it;
#  - checks that a Rust crate depending on libuffd builds no staticlib
#    or cdylib;
#  - builds tests/consumer/consumer.c from the staged tree, each time
#    running it (it resolves one real fault):
#      shared with `pkg-config --cflags --libs uffd` (the .pc is found from
#      its own place: no sysroot, no --define-prefix needed);
#      fully static: `gcc -static ... $(pkg-config --static --libs uffd)`;
#      with `pkg-config --define-prefix` on a non-relocatable uffd.pc;
#      Meson: dependency('uffd', static: true), and shared;
#      CMake: find_package(uffd) with uffd::uffd and uffd::uffd_static.
# A tool that is not installed (meson, ninja, cmake, a static libc) is a
# SKIP line with the reason, never a failure; .ci/run installs them all.
# Prints "consumers: N passed, N failed, N skipped"; exits 1 on any failure.
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
skipped=0
ok() { passed=$((passed + 1)); echo "ok      $*"; }
notok() { failed=$((failed + 1)); echo "NOT OK  $*"; }
skip() { skipped=$((skipped + 1)); echo "SKIP    $*"; }
finish() {
  echo
  echo "consumers: $passed passed, $failed failed, $skipped skipped"
  [ "$failed" -eq 0 ]
  exit
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
SRC=$ROOT/tests/consumer

if [ ! -f "$BUILD/$REALNAME" ] || [ ! -f "$BUILD/libuffd.a" ]; then
  notok "$BUILD/$REALNAME and libuffd.a exist (run make first)"
  finish
fi

# ------------------------------------------------ install, minimal PATH
dest=$work/stage
snapshot() { find "$ROOT/target" "$BUILD" -type f -newer "$work/stamp" 2>/dev/null | sort; }
touch "$work/stamp"
sleep 1
echo "== env -i PATH=/usr/bin:/bin make install DESTDIR=$dest PREFIX=/usr"
if env -i PATH=/usr/bin:/bin HOME=/nonexistent "$MAKE" -C "$ROOT" install DESTDIR="$dest" PREFIX=/usr \
     >"$work/install.log" 2>&1; then
  ok "make install with PATH=/usr/bin:/bin and nothing else in the environment (no cargo)"
else
  notok "make install with PATH=/usr/bin:/bin and nothing else in the environment"
  sed 's/^/    | /' "$work/install.log" | tail -n 30
  finish
fi
if grep -q -E '(^|[ /])(cargo|rustc)( |$)' "$work/install.log"; then
  notok "make install ran no cargo or rustc:"
  grep -E '(^|[ /])(cargo|rustc)( |$)' "$work/install.log" | sed 's/^/    | /'
else
  ok "make install ran no cargo or rustc"
fi
changed=$(snapshot)
[ -z "$changed" ] && ok "make install wrote nothing in target/ or build/" \
  || notok "make install wrote nothing in target/ or build/; changed: $(echo $changed)"

# The default LIBDIR is the host's.
multiarch=$("$CC" -print-multiarch 2>/dev/null)
if [ -f /etc/debian_version ] && [ -n "$multiarch" ]; then
  want_libdir=/usr/lib/$multiarch
elif [ -d /usr/lib64 ] && [ ! -L /usr/lib64 ] && [ "$(getconf LONG_BIT)" = 64 ]; then
  want_libdir=/usr/lib64
else
  want_libdir=/usr/lib
fi
libdir=$dest$want_libdir
pcdir=$libdir/pkgconfig
if [ -f "$libdir/$REALNAME" ] && [ -f "$pcdir/uffd.pc" ] && [ -f "$libdir/cmake/uffd/uffdConfig.cmake" ]; then
  ok "default LIBDIR is the host's: $want_libdir (library, uffd.pc, cmake/uffd/ there)"
else
  notok "default LIBDIR is the host's: $want_libdir; installed: $(cd "$dest" && find . -name 'libuffd*' | tr '\n' ' ')"
  finish
fi

# Stripped, with the debug info separate.
for f in "$libdir/$REALNAME" "$libdir/libuffd.a"; do
  size=$(stat -c %s "$f")
  if readelf -S -W "$f" 2>/dev/null | grep -q -E '\.debug_(info|line|str)'; then
    notok "${f#"$dest"} has no debug sections ($size bytes)"
  else
    ok "${f#"$dest"} has no debug sections ($((size / 1024)) KiB)"
  fi
done
if readelf -S -W "$libdir/$REALNAME" | grep -q '\.gnu_debuglink'; then
  ok "$REALNAME has a .gnu_debuglink to its debug file"
else
  notok "$REALNAME has a .gnu_debuglink to its debug file"
fi
if "$MAKE" -C "$ROOT" -s install-debug DESTDIR="$dest" PREFIX=/usr >"$work/idebug.log" 2>&1 \
   && [ -f "$libdir/.debug/$REALNAME.debug" ] \
   && readelf -S -W "$libdir/.debug/$REALNAME.debug" | grep -q '\.debug_info'; then
  ok "make install-debug installs ${want_libdir}/.debug/$REALNAME.debug (with .debug_info)"
  id_lib=$(readelf -n "$libdir/$REALNAME" | sed -n 's/.*Build ID: //p')
  id_dbg=$(readelf -n "$libdir/.debug/$REALNAME.debug" | sed -n 's/.*Build ID: //p')
  [ -n "$id_lib" ] && [ "$id_lib" = "$id_dbg" ] && ok "the debug file has the library's build id ($id_lib)" \
    || notok "the debug file has the library's build id ('$id_lib' vs '$id_dbg')"
  rm -f "$libdir/.debug/$REALNAME.debug"
  rmdir "$libdir/.debug"
else
  notok "make install-debug installs ${want_libdir}/.debug/$REALNAME.debug"
  sed 's/^/    | /' "$work/idebug.log"
fi

# run NAME BINARY [env...]: the consumer resolves its fault.
run() {
  local name=$1 bin=$2 out
  shift 2
  if out=$(env "$@" timeout 60 "$bin" 2>&1); then
    ok "$name consumer runs: $out"
  else
    notok "$name consumer runs: $out"
  fi
}
needs_so() { readelf -d "$1" 2>/dev/null | grep -q "NEEDED.*\[$SONAME\]"; }

# ------------------------------------------------------- pkg-config
pc=$pcdir/uffd.pc
libs_private=$(sed -n 's/^Libs.private: *//p' "$pc")
case " $libs_private " in
  *" -lgcc_s "* | *" -lc "*) notok "Libs.private has neither -lgcc_s nor -lc: '$libs_private'" ;;
  *) ok "Libs.private has neither -lgcc_s nor -lc: '$libs_private'" ;;
esac
pkg=(env PKG_CONFIG_PATH="$pcdir" PKG_CONFIG_LIBDIR="$pcdir" "$PKG_CONFIG")
cflags=$("${pkg[@]}" --cflags uffd 2>&1)
libs=$("${pkg[@]}" --libs uffd 2>&1)
slibs=$("${pkg[@]}" --static --libs uffd 2>&1)
echo "   staged uffd.pc: --cflags $cflags; --libs $libs; --static --libs $slibs"
incdir=$(echo "$cflags" | sed -n 's/.*-I\([^ ]*\).*/\1/p')
ldir=$(echo "$libs" | sed -n 's/.*-L\([^ ]*\).*/\1/p')
if [ -n "$incdir" ] && [ "$(realpath -m "$incdir")" = "$dest/usr/include" ] \
   && [ -n "$ldir" ] && [ "$(realpath -m "$ldir")" = "$libdir" ]; then
  ok "the staged uffd.pc points into the staged tree by itself (\${pcfiledir})"
else
  notok "the staged uffd.pc points into the staged tree (-I$incdir -L$ldir)"
fi
# shellcheck disable=SC2086 # word splitting of compiler flags is wanted
if "$CC" -std=c11 -Wall -Wextra -Werror -O1 -o "$work/pc-shared" "$SRC/consumer.c" $cflags $libs -lpthread \
     >"$work/pc-shared.log" 2>&1; then
  ok "shared consumer builds with pkg-config --cflags --libs uffd"
  needs_so "$work/pc-shared" && ok "shared consumer needs $SONAME" || notok "shared consumer needs $SONAME"
  run shared "$work/pc-shared" LD_LIBRARY_PATH="$libdir"
else
  notok "shared consumer builds with pkg-config --cflags --libs uffd"
  sed 's/^/    | /' "$work/pc-shared.log"
fi

# Fully static: gcc -static, everything from pkg-config --static.
echo 'int main(void){return 0;}' > "$work/hello.c"
if ! "$CC" -static -o "$work/hello" "$work/hello.c" >/dev/null 2>&1; then
  skip "fully static consumer: '$CC -static' cannot link a C program here (no static libc: libc6-dev)"
else
  # With the .so next to the .a, -static makes the linker take libuffd.a.
  # shellcheck disable=SC2086
  if "$CC" -static -std=c11 -Wall -Wextra -Werror -O1 -o "$work/pc-static" "$SRC/consumer.c" $cflags $slibs -lpthread \
       >"$work/pc-static.log" 2>&1; then
    ok "fully static consumer builds: $CC -static consumer.c \$(pkg-config --cflags --static --libs uffd)"
    if readelf -l "$work/pc-static" | grep -q INTERP || readelf -d "$work/pc-static" 2>/dev/null | grep -q NEEDED; then
      notok "the static consumer has no interpreter and needs no shared library"
    else
      ok "the static consumer has no interpreter and needs no shared library"
    fi
    run "fully static" "$work/pc-static"
  else
    notok "fully static consumer builds: $CC -static consumer.c \$(pkg-config --cflags --static --libs uffd)"
    sed 's/^/    | /' "$work/pc-static.log" | tail -n 30
  fi
fi

# A distribution's non-relocatable uffd.pc (RELOCATABLE=no) names /usr,
# and --define-prefix still finds the staged tree (no hard-coded libdir).
dest2=$work/stage-norel
if "$MAKE" -C "$ROOT" -s install-lib DESTDIR="$dest2" PREFIX=/usr RELOCATABLE=no >"$work/norel.log" 2>&1; then
  pc2dir=$dest2$want_libdir/pkgconfig
  if grep -q -x 'prefix=/usr' "$pc2dir/uffd.pc" && grep -q -x "libdir=\${prefix}${want_libdir#/usr}" "$pc2dir/uffd.pc" \
     && grep -q -x 'includedir=${prefix}/include' "$pc2dir/uffd.pc"; then
    ok "RELOCATABLE=no: uffd.pc has prefix=/usr, libdir=\${prefix}${want_libdir#/usr}, includedir=\${prefix}/include"
  else
    notok "RELOCATABLE=no: uffd.pc has prefix=/usr and libdir, includedir under \${prefix}:"
    sed 's/^/    | /' "$pc2dir/uffd.pc"
  fi
  if [ "$want_libdir" = /usr/lib ] || [ "$want_libdir" = /usr/lib64 ]; then
    dlibs=$(env PKG_CONFIG_PATH="$pc2dir" PKG_CONFIG_LIBDIR="$pc2dir" "$PKG_CONFIG" --define-prefix --libs --cflags uffd 2>&1)
    case " $dlibs " in
      *" -L$dest2$want_libdir "*) ok "pkg-config --define-prefix on it gives the staged paths: $dlibs" ;;
      *) notok "pkg-config --define-prefix on it gives the staged paths: $dlibs" ;;
    esac
  else
    # pkg-config's --define-prefix strips only lib/pkgconfig, so a multiarch
    # libdir needs the prefix given outright, as packagers do.
    dlibs=$(env PKG_CONFIG_PATH="$pc2dir" PKG_CONFIG_LIBDIR="$pc2dir" "$PKG_CONFIG" --define-variable=prefix="$dest2/usr" --libs --cflags uffd 2>&1)
    case " $dlibs " in
      *" -L$dest2$want_libdir "*"-I$dest2/usr/include "* | *" -I$dest2/usr/include "*"-L$dest2$want_libdir "*)
        ok "pkg-config --define-variable=prefix=<stage>/usr on it gives the staged paths: $dlibs" ;;
      *) notok "pkg-config --define-variable=prefix=<stage>/usr on it gives the staged paths: $dlibs" ;;
    esac
  fi
  # Cross-compilation style: PKG_CONFIG_SYSROOT_DIR, on both kinds of uffd.pc
  # (the relocatable one must not get the sysroot twice).
  for d in "$dest2" "$dest"; do
    sl=$(env PKG_CONFIG_SYSROOT_DIR="$d" PKG_CONFIG_PATH="$d$want_libdir/pkgconfig" \
      PKG_CONFIG_LIBDIR="$d$want_libdir/pkgconfig" "$PKG_CONFIG" --cflags --libs uffd 2>&1)
    si=$(echo "$sl" | sed -n 's/.*-I\([^ ]*\).*/\1/p')
    sL=$(echo "$sl" | sed -n 's/.*-L\([^ ]*\).*/\1/p')
    if [ -n "$si" ] && [ "$(realpath -m "$si")" = "$d/usr/include" ] && [ "$(realpath -m "$sL")" = "$d$want_libdir" ]; then
      ok "PKG_CONFIG_SYSROOT_DIR=<stage> gives the staged paths ($( [ "$d" = "$dest" ] && echo relocatable || echo RELOCATABLE=no) uffd.pc)"
    else
      notok "PKG_CONFIG_SYSROOT_DIR=<stage> gives the staged paths: $sl"
    fi
  done
else
  notok "make install-lib RELOCATABLE=no"
  sed 's/^/    | /' "$work/norel.log"
fi

# ------------------------------------------------------------ Meson
if ! command -v meson >/dev/null 2>&1 || ! command -v ninja >/dev/null 2>&1; then
  skip "Meson consumer: meson or ninja not installed (Debian: meson ninja-build)"
else
  for link in static shared; do
    bdir=$work/meson-$link
    if env PKG_CONFIG_PATH="$pcdir" PKG_CONFIG_LIBDIR="$pcdir" CC="$CC" \
         meson setup "$bdir" "$SRC" -Dlink=$link >"$work/meson-$link.log" 2>&1 \
       && ninja -C "$bdir" >>"$work/meson-$link.log" 2>&1; then
      if grep -q -i 'warning' "$work/meson-$link.log"; then
        notok "Meson consumer, dependency('uffd', static: $( [ $link = static ] && echo true || echo false)), builds without warnings:"
        grep -i warning "$work/meson-$link.log" | sed 's/^/    | /'
      else
        ok "Meson consumer builds with dependency('uffd', static: $( [ $link = static ] && echo true || echo false)), no warning"
      fi
      if [ $link = static ]; then
        needs_so "$bdir/consumer" && notok "Meson static consumer does not need $SONAME" \
          || ok "Meson static consumer does not need $SONAME"
        run "Meson static" "$bdir/consumer"
      else
        needs_so "$bdir/consumer" && ok "Meson shared consumer needs $SONAME" \
          || notok "Meson shared consumer needs $SONAME"
        run "Meson shared" "$bdir/consumer" LD_LIBRARY_PATH="$libdir"
      fi
    else
      notok "Meson consumer builds with dependency('uffd', static: $link)"
      sed 's/^/    | /' "$work/meson-$link.log" | tail -n 30
    fi
  done
fi

# ------------------------------------------------------------ CMake
if ! command -v cmake >/dev/null 2>&1; then
  skip "CMake consumer: cmake not installed (Debian: cmake)"
else
  for static in OFF ON; do
    bdir=$work/cmake-$static
    target=uffd::uffd; [ $static = ON ] && target=uffd::uffd_static
    if cmake -S "$SRC" -B "$bdir" -DCMAKE_PREFIX_PATH="$dest/usr" -DUFFD_STATIC=$static -DCMAKE_C_COMPILER="$CC" \
         >"$work/cmake-$static.log" 2>&1 && cmake --build "$bdir" >>"$work/cmake-$static.log" 2>&1; then
      ok "CMake consumer builds with find_package(uffd 1.0) and $target: $(sed -n 's/.*-- \(uffd [0-9].*\)/\1/p' "$work/cmake-$static.log")"
      if [ $static = ON ]; then
        needs_so "$bdir/consumer" && notok "CMake $target consumer does not need $SONAME" \
          || ok "CMake $target consumer does not need $SONAME"
        run "CMake $target" "$bdir/consumer"
      else
        needs_so "$bdir/consumer" && ok "CMake $target consumer needs $SONAME" \
          || notok "CMake $target consumer needs $SONAME"
        run "CMake $target" "$bdir/consumer" LD_LIBRARY_PATH="$libdir"
      fi
    else
      notok "CMake consumer builds with find_package(uffd 1.0) and $target"
      sed 's/^/    | /' "$work/cmake-$static.log" | tail -n 30
    fi
  done
  # A request for another major version is refused.
  mkdir -p "$work/cmake-v2"
  printf 'cmake_minimum_required(VERSION 3.13)\nproject(v2 C)\nfind_package(uffd 2.0 REQUIRED)\n' > "$work/cmake-v2/CMakeLists.txt"
  if cmake -S "$work/cmake-v2" -B "$work/cmake-v2/b" -DCMAKE_PREFIX_PATH="$dest/usr" >"$work/cmake-v2.log" 2>&1; then
    notok "find_package(uffd 2.0) is refused by libuffd $VERSION"
  else
    ok "find_package(uffd 2.0) is refused by libuffd $VERSION"
  fi
fi

# ------------------------------------------------------ a Rust crate
# A crate that depends on libuffd builds its rlib only: no libuffd.a or
# libuffd.so (those come from the Makefile's own cargo rustc).
CARGO=${CARGO:-cargo}
if ! command -v "$CARGO" >/dev/null 2>&1; then
  skip "Rust dependent: $CARGO not found"
else
  dep=$work/rust-dependent
  mkdir -p "$dep/src"
  printf '[package]\nname = "uffd-dependent"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\nlibuffd = { path = "%s" }\n' \
    "$ROOT" > "$dep/Cargo.toml"
  printf 'use uffd as _;\nfn main() {}\n' > "$dep/src/main.rs"
  if (cd "$dep" && CARGO_TARGET_DIR="$dep/target" timeout 900 "$CARGO" build --offline -q) >"$work/dep.log" 2>&1; then
    artefacts=$(find "$dep/target" \( -name '*uffd*.a' -o -name '*uffd*.so*' \) | sed "s|$dep/target/||")
    rlib=$(find "$dep/target" -name 'libuffd-*.rlib' | head -n 1)
    if [ -z "$artefacts" ] && [ -n "$rlib" ]; then
      ok "a Rust crate depending on libuffd builds its rlib and no staticlib or cdylib"
    else
      notok "a Rust crate depending on libuffd builds no staticlib or cdylib (found: $(echo $artefacts), rlib: ${rlib:-none})"
    fi
  else
    notok "a Rust crate depending on libuffd builds (cargo build --offline)"
    sed 's/^/    | /' "$work/dep.log" | tail -n 20
  fi
fi

finish
