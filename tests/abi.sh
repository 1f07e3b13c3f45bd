#!/usr/bin/env bash
# SPDX-License-Identifier: MIT OR Apache-2.0
# tests/abi.sh: the ABI of libuffd.so.1 as built in $BUILD (make test-abi).
#
#   BUILD=<absolute build dir> bash tests/abi.sh
#
# Checks, with readelf and nm:
#  - the SONAME is libuffd.so.1; libuffd.so.1 and libuffd.so are symlinks
#    to the right files;
#  - the libuffd_* functions declared in include/libuffd.h, the symbols listed in
#    src/ffi/libuffd.map and the defined dynamic symbols of the library are
#    the same set;
#  - every exported symbol carries the version node the map gives it
#    (@@LIBUFFD_1.0 for all of 1.0), and nothing else is exported (no Rust
#    std symbols);
#  - a C program linked with -luffd needs libuffd.so.1 and records a
#    LIBUFFD_1.0 requirement (readelf -V);
#  - the static archive defines the same functions;
#  - include/libuffd.h is what cbindgen generates from src/ffi, laid out by
#    src/ffi/libuffd.h.in (cargo test header_fresh).
# Prints "abi: N passed, N failed"; exits 1 on any failure.
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$PWD
BUILD=${BUILD:-$ROOT/build}
CC=${CC:-cc}
CARGO=${CARGO:-cargo}

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR=${VERSION%%.*}
REALNAME=libuffd.so.$VERSION
SONAME=libuffd.so.$MAJOR
SO=$BUILD/$REALNAME
MAP=src/ffi/libuffd.map
HEADER=include/libuffd.h

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok      $*"; }
notok() { failed=$((failed + 1)); echo "NOT OK  $*"; }
# check DESCRIPTION COMMAND...: passes when the command succeeds.
check() {
  local what=$1
  shift
  if "$@"; then ok "$what"; else notok "$what"; fi
}
# Show two sorted lists side by side where they differ.
show_diff() {
  diff <(printf '%s\n' "$1") <(printf '%s\n' "$2") | sed -n 's/^[<>] /    &/p'
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== ABI of $SO (version $VERSION)"
if [ ! -f "$SO" ]; then
  notok "$SO exists (run make lib)"
  echo "abi: $passed passed, $failed failed"
  exit 1
fi

# ---------------------------------------------------------------- soname
soname=$(readelf -d "$SO" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ "$soname" = "$SONAME" ]; then
  ok "SONAME is $SONAME"
else
  notok "SONAME is $SONAME (found '${soname}')"
fi

# -------------------------------------------------------------- symlinks
check_link() {
  local link=$1 want=$2
  if [ -L "$BUILD/$link" ] && [ "$(readlink "$BUILD/$link")" = "$want" ] && [ -e "$BUILD/$link" ]; then
    ok "$link -> $want"
  else
    notok "$link -> $want (found: $(readlink "$BUILD/$link" 2>/dev/null || echo 'no symlink'))"
  fi
}
check_link "$SONAME" "$REALNAME"
check_link libuffd.so "$SONAME"
check "libuffd.so resolves to $REALNAME" \
  test "$(readlink -f "$BUILD/libuffd.so")" = "$(readlink -f "$SO")"
check "$REALNAME is a regular file" test -f "$SO" -a ! -L "$SO"

# ------------------------------------------------- the three symbol sets
# Declared in the header: preprocess (drops comments), keep uffd_x( names.
header_syms=$("$CC" -E -P -Iinclude "$HEADER" 2>"$tmp/cpp.err" \
  | grep -oE '\blibuffd_[A-Za-z0-9_]+[[:space:]]*\(' | sed 's/[[:space:]]*($//' | sort -u)
if [ -s "$tmp/cpp.err" ] || [ -z "$header_syms" ]; then
  notok "$HEADER preprocesses and declares libuffd_* functions"
  cat "$tmp/cpp.err"
fi

# Listed in the map: "symbol node" pairs from the global: parts.
strip_comments() {
  awk '{
    line = $0; out = "";
    while (length(line) > 0) {
      if (inc) { i = index(line, "*/"); if (!i) { line = ""; break } line = substr(line, i + 2); inc = 0 }
      else { i = index(line, "/*"); if (!i) { out = out line; line = "" }
             else { out = out substr(line, 1, i - 1); line = substr(line, i + 2); inc = 1 } }
    }
    print out
  }' "$1"
}
strip_comments "$MAP" | awk '
  /^[[:space:]]*[A-Za-z_][A-Za-z0-9_.]*[[:space:]]*\{/ { node = $1; sub(/\{.*/, "", node); mode = ""; next }
  /global:/ { mode = "global"; sub(/.*global:/, "") }
  /local:/ { mode = "local"; sub(/.*local:/, "") }
  /\}/ { node = ""; mode = ""; next }
  mode == "global" {
    n = split($0, parts, ";")
    for (i = 1; i <= n; i++) { s = parts[i]; gsub(/[[:space:]]/, "", s); if (s != "") print s, node }
  }' > "$tmp/map.pairs"
map_syms=$(awk '{print $1}' "$tmp/map.pairs" | sort -u)
map_nodes=$(awk '{print $2}' "$tmp/map.pairs" | sort -u)

# Defined in the library's dynamic symbol table: "name version" pairs.
readelf --dyn-syms -W "$SO" | awk '$1 ~ /^[0-9]+:$/ && $7 != "UND" { print $8, $4, $5, $7 }' \
  > "$tmp/dynsym"
# A version node is itself an absolute symbol: LIBUFFD_1.0 (OBJECT, ABS).
grep -v -E '^[^ ]+ OBJECT GLOBAL ABS$' "$tmp/dynsym" > "$tmp/dynsym.funcs"
so_syms=$(awk '{ n = $1; sub(/@.*/, "", n); print n }' "$tmp/dynsym.funcs" | sort -u)
abs_nodes=$(grep -E '^[^ ]+ OBJECT GLOBAL ABS$' "$tmp/dynsym" | awk '{ n = $1; sub(/@.*/, "", n); print n }' | sort -u)

n_header=$(printf '%s\n' "$header_syms" | grep -c .)
n_map=$(printf '%s\n' "$map_syms" | grep -c .)
n_so=$(printf '%s\n' "$so_syms" | grep -c .)
echo "   $n_header functions in $HEADER, $n_map in $MAP, $n_so defined in $REALNAME"

if [ "$header_syms" = "$map_syms" ]; then
  ok "libuffd_* functions of $HEADER == symbols of $MAP ($n_header)"
else
  notok "libuffd_* functions of $HEADER == symbols of $MAP ('<' header only, '>' map only)"
  show_diff "$header_syms" "$map_syms"
fi
if [ "$map_syms" = "$so_syms" ]; then
  ok "symbols of $MAP == defined dynamic symbols of $REALNAME ($n_so)"
else
  notok "symbols of $MAP == defined dynamic symbols of $REALNAME ('<' map only, '>' library only)"
  show_diff "$map_syms" "$so_syms"
fi
if [ "$header_syms" = "$so_syms" ]; then
  ok "libuffd_* functions of $HEADER == defined dynamic symbols of $REALNAME"
else
  notok "libuffd_* functions of $HEADER == defined dynamic symbols of $REALNAME"
  show_diff "$header_syms" "$so_syms"
fi

# Nothing but libuffd_* functions is exported.
others=$(printf '%s\n' "$so_syms" | grep -v -E '^libuffd_[a-z0-9_]+$' | grep . || true)
if [ -z "$others" ]; then
  ok "only libuffd_* symbols are exported"
else
  notok "only libuffd_* symbols are exported; also exported: $(echo $others | head -c 600)"
fi
# The library binds its own symbols itself (-Bsymbolic): a program that
# defines a function of the same name cannot redirect libuffd's calls, and
# no dynamic relocation of the library refers to one of its exports.
if readelf -d "$BUILD/$REALNAME" | grep -q 'FLAGS.*SYMBOLIC'; then
  ok "$REALNAME is linked -Bsymbolic (DT_FLAGS has SYMBOLIC)"
else
  notok "$REALNAME is linked -Bsymbolic (DT_FLAGS has SYMBOLIC)"
fi
self_relocs=$(readelf -rW "$BUILD/$REALNAME" | awk '{print $5}' | grep -E '^libuffd_' | sort -u || true)
if [ -z "$self_relocs" ]; then
  ok "no dynamic relocation of $REALNAME refers to a libuffd_* symbol"
else
  notok "no dynamic relocation of $REALNAME refers to a libuffd_* symbol; found: $(echo $self_relocs)"
fi
nonfunc=$(awk '$2 != "FUNC" || $3 != "GLOBAL"' "$tmp/dynsym.funcs")
if [ -z "$nonfunc" ]; then
  ok "every exported symbol is a GLOBAL FUNC"
else
  notok "every exported symbol is a GLOBAL FUNC; not: $nonfunc"
fi
rusty=$(nm -D --defined-only "$SO" | grep -E '_ZN|_R[0-9A-Za-z]|rust_|__rdl_|__rg_' || true)
if [ -z "$rusty" ]; then
  ok "no Rust symbols in the dynamic symbol table"
else
  notok "no Rust symbols in the dynamic symbol table: $(echo "$rusty" | head -n 5)"
fi

# Every symbol carries the version of its node in the map, as the default
# version (@@); 1.0's node is LIBUFFD_1.0.
bad_versions=""
while read -r name _; do
  base=${name%%@*}
  want=$(awk -v s="$base" '$1 == s { print $2 }' "$tmp/map.pairs")
  [ -n "$want" ] || want="UFFD_$MAJOR.0"
  [ "$name" = "$base@@$want" ] || bad_versions="$bad_versions $name(want @@$want)"
done < "$tmp/dynsym.funcs"
if [ -z "$bad_versions" ]; then
  ok "every exported symbol carries its map node as default version (@@LIBUFFD_1.0 ...)"
else
  notok "every exported symbol carries its map node as default version:$bad_versions"
fi
v10=$(grep -c '@@LIBUFFD_1\.0 ' "$tmp/dynsym.funcs" || true)
if [ "$v10" -eq "$(awk '$2 == "LIBUFFD_1.0"' "$tmp/map.pairs" | grep -c .)" ] && [ "$v10" -gt 0 ]; then
  ok "$v10 symbols at @@LIBUFFD_1.0, as many as the map's LIBUFFD_1.0 node lists"
else
  notok "symbols at @@LIBUFFD_1.0: $v10, map's LIBUFFD_1.0 node lists $(awk '$2 == "LIBUFFD_1.0"' "$tmp/map.pairs" | grep -c .)"
fi
# The version definitions are exactly the map's nodes (plus the soname).
vdefs=$(readelf -V "$SO" | awk '/Version definition section/ { d = 1; next } /^$/ { d = 0 }
  d && /Name:/ { for (i = 1; i <= NF; i++) if ($i == "Name:") print $(i + 1) }' | grep -v -x "$SONAME" | sort -u)
if [ "$vdefs" = "$map_nodes" ] && [ "$abs_nodes" = "$map_nodes" ]; then
  ok "version definitions == the map's nodes ($(echo $map_nodes))"
else
  notok "version definitions ($(echo $vdefs)) == the map's nodes ($(echo $map_nodes))"
fi

# ------------------------------------------------------------- hardening
if readelf -d "$SO" | grep -q TEXTREL; then
  notok "no text relocations"
else
  ok "no text relocations"
fi
if readelf -lW "$SO" | awk '$1 == "GNU_STACK" { print $7 }' | grep -q E; then
  notok "the stack is not executable (GNU_STACK)"
else
  ok "the stack is not executable (GNU_STACK)"
fi
if ldd "$SO" 2>&1 | grep -q 'not found'; then
  notok "every library $REALNAME needs is found: $(ldd "$SO" | grep 'not found')"
else
  ok "every library $REALNAME needs is found"
fi

# ------------------------------------------------ a program linked with it
cat > "$tmp/consumer.c" <<'EOF'
#include <stdio.h>
#include <libuffd.h>
int main(void)
{
	uint64_t f = 0;
	printf("libuffd %s (%#x), probe %d\n", libuffd_version_string(), libuffd_version(),
	       libuffd_probe_features(&f));
	return libuffd_version() == LIBUFFD_VERSION ? 0 : 1;
}
EOF
if "$CC" -std=c11 -Wall -Wextra -Werror -Iinclude -o "$tmp/consumer" "$tmp/consumer.c" \
     -L"$BUILD" -luffd >"$tmp/cc.log" 2>&1; then
  ok "a C program links with -L\$BUILD -luffd"
  needed=$(readelf -d "$tmp/consumer" | sed -n 's/.*(NEEDED).*\[\(libuffd[^]]*\)\].*/\1/p')
  if [ "$needed" = "$SONAME" ]; then
    ok "the program needs $SONAME (the soname, not libuffd.so)"
  else
    notok "the program needs $SONAME (found '$needed')"
  fi
  vneed=$(readelf -V "$tmp/consumer" | awk '
    /Version needs section/ { s = 1; next }
    s && /File:/ { for (i = 1; i <= NF; i++) if ($i == "File:") f = $(i + 1) }
    s && /Name:/ { for (i = 1; i <= NF; i++) if ($i == "Name:") print f, $(i + 1) }')
  if printf '%s\n' "$vneed" | grep -q -x "$SONAME LIBUFFD_1.0"; then
    ok "readelf -V of the program shows a LIBUFFD_1.0 requirement on $SONAME"
  else
    notok "readelf -V of the program shows a LIBUFFD_1.0 requirement on $SONAME; found: $(echo $vneed)"
  fi
  if readelf --dyn-syms -W "$tmp/consumer" | grep -q 'libuffd_version@LIBUFFD_1\.0'; then
    ok "the program binds libuffd_version@LIBUFFD_1.0"
  else
    notok "the program binds libuffd_version@LIBUFFD_1.0"
  fi
  if out=$(LD_LIBRARY_PATH=$BUILD timeout 30 "$tmp/consumer" 2>&1); then
    ok "the program runs against $BUILD/$SONAME: $out"
  else
    notok "the program runs against $BUILD/$SONAME: $out"
  fi
else
  notok "a C program links with -L\$BUILD -luffd"
  sed 's/^/    | /' "$tmp/cc.log"
fi

# ------------------------------------------------------- the static archive
if [ -f "$BUILD/libuffd.a" ]; then
  a_syms=$(nm --defined-only "$BUILD/libuffd.a" 2>/dev/null | awk '$2 == "T" && $3 ~ /^libuffd_/ { print $3 }' | sort -u)
  if [ "$a_syms" = "$header_syms" ]; then
    ok "libuffd.a defines every function of $HEADER"
  else
    notok "libuffd.a defines every function of $HEADER ('<' archive, '>' header)"
    show_diff "$a_syms" "$header_syms"
  fi
else
  notok "$BUILD/libuffd.a exists"
fi

# ----------------------------------------------------- header freshness
echo "== cargo test --locked --test header_fresh"
if timeout 1800 "$CARGO" test --locked --test header_fresh >"$tmp/cargo.log" 2>&1; then
  ok "include/libuffd.h is fresh (cargo test --locked --test header_fresh)"
else
  rc=$?
  notok "include/libuffd.h is fresh (cargo test --locked --test header_fresh, status $rc)"
  tail -n 30 "$tmp/cargo.log" | sed 's/^/    | /'
fi

echo
echo "abi: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
