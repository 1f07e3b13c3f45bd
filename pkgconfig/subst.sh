#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# pkgconfig/subst.sh: writes uffd.pc or the CMake package files from their
# templates for the final install paths (used by `make` and `make install`;
# needs only sh and sed, no cargo).
#
#   sh pkgconfig/subst.sh TEMPLATE FILEDIR PREFIX LIBDIR INCLUDEDIR VERSION NATIVE_LIBS RELOCATABLE [SIZEOF_VOID_P]
#
# FILEDIR is where the generated file will be installed. With RELOCATABLE=yes
# and FILEDIR under PREFIX, the prefix is found from the file's own place
# (${pcfiledir}/../.. in uffd.pc, ${CMAKE_CURRENT_LIST_DIR}/../../.. in
# uffdConfig.cmake), so the installed tree can be moved or used where it
# was staged (a DESTDIR); otherwise PREFIX is written as is. LIBDIR and
# INCLUDEDIR are written relative to the prefix when they are under it
# (${prefix}/lib/..., so `pkg-config --define-prefix` works too), else
# as absolute paths.
set -eu
template=$1 filedir=$2 prefix=$3 libdir=$4 includedir=$5 version=$6 native=$7 relocatable=$8 sizeof_void_p=${9:-8}

# The dots that lead from FILEDIR up to PREFIX, or nothing.
up=
case $filedir in
  "$prefix"/*)
    rest=${filedir#"$prefix"/}
    up=..
    while [ "${rest#*/}" != "$rest" ]; do rest=${rest#*/}; up=$up/..; done ;;
esac

case $template in
  *.pc.in) var_prefix='${prefix}'; here='${pcfiledir}' ;;
  *) var_prefix='${_uffd_prefix}'; here='${CMAKE_CURRENT_LIST_DIR}' ;;
esac

if [ "$relocatable" = yes ] && [ -n "$up" ]; then
  out_prefix=$here/$up
else
  out_prefix=$prefix
fi
under() { # under DIR: DIR relative to the prefix variable, or DIR
  case $1 in
    "$prefix") echo "$var_prefix" ;;
    "$prefix"/*) echo "$var_prefix/${1#"$prefix"/}" ;;
    *) echo "$1" ;;
  esac
}
out_libdir=$(under "$libdir")
out_includedir=$(under "$includedir")
major=${version%%.*}
# CMake wants a list: "-lutil -lrt" -> "-lutil;-lrt".
cmake_native=$(echo "$native" | sed 's/^ *//; s/ *$//; s/  */;/g')

sed -e "s|@PREFIX@|$out_prefix|g" -e "s|@LIBDIR@|$out_libdir|g" \
    -e "s|@INCLUDEDIR@|$out_includedir|g" -e "s|@VERSION@|$version|g" -e "s|@MAJOR@|$major|g" \
    -e "s|@NATIVE_LIBS@|$native|g" -e "s|@SIZEOF_VOID_P@|$sizeof_void_p|g" -e "s|@CMAKE_NATIVE_LIBS@|$cmake_native|g" "$template"
