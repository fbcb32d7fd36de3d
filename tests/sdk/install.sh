#!/bin/sh
# Installs the SDK with `cmake --install` into a temporary prefix, then builds
# tests/sdk/example.c with nothing but `pkg-config sealpipe` and runs it.
# Usage: install.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1 src=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
pc="$prefix/lib/pkgconfig"
[ -d "$pc" ] || pc=$(dirname "$(find "$prefix" -name sealpipe.pc | head -n 1)")
for f in include/sealpipe.h bin/sealpipe bin/sealpipe-device; do
    [ -e "$prefix/$f" ] || { echo "not installed: $f" >&2; exit 1; }
done
flags=$(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs --static sealpipe)
${CC:-cc} -std=c11 -Wall -Wextra -Werror ${SP_CFLAGS:-} "$src/tests/sdk/example.c" -o "$prefix/example" $flags
out=$("$prefix/example")
echo "$out"
# The body the builder wrote, byte for byte.
echo "$out" | head -n 1 | grep -qx '@1694567890000\[temperature:=21.5#C;position@=39.74,-104.99{source=gps}\]'
# The version the library reports is the one sealpipe.pc announces.
version=$(PKG_CONFIG_PATH="$pc" pkg-config --modversion sealpipe)
echo "$out" | sed -n 3p | grep -qx "$version" || { echo "sp_version() is not $version" >&2; exit 1; }
echo "sdk install: ok (version $version)"
