#!/usr/bin/env bash
# test_install.sh BUILD_DIR SOURCE_DIR — installs qkv from BUILD_DIR into a temporary prefix,
# then builds and runs a program outside the tree against it, with find_package(qkv) (shared
# and static) and with pkg-config.
set -euo pipefail
build=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
test -f "$tmp/prefix/include/qkv.h"

cmake -S "$src/tests/install" -B "$tmp/cm" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cm" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib:${LD_LIBRARY_PATH:-}" "$tmp/cm/consumer_cmake"
"$tmp/cm/consumer_cmake_static"

libdir=$(ls -d "$tmp/prefix"/lib*/pkgconfig | head -1)
export PKG_CONFIG_PATH="$libdir"
cc -o "$tmp/consumer_pc" "$src/tests/install/consumer.c" $(pkg-config --cflags --libs qkv)
LD_LIBRARY_PATH="$tmp/prefix/lib:${LD_LIBRARY_PATH:-}" "$tmp/consumer_pc"
cc -o "$tmp/consumer_pc_static" "$src/tests/install/consumer.c" \
    $(pkg-config --static --cflags qkv) "$(dirname "$libdir")/libqkv.a" \
    $(pkg-config --static --libs-only-l qkv | sed 's/-lqkv//')
"$tmp/consumer_pc_static"
echo "install: find_package (shared, static) and pkg-config (shared, static) consumers ran"
