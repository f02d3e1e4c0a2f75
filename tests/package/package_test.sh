#!/usr/bin/env bash
# The Debian package as an operator and a developer meet it: `cpack` builds
# the .deb from the build tree (what `make package` does); the test checks its
# metadata and contents, unpacks it into a scratch root (dpkg-deb -x: no root
# needed, nothing touches the system), runs the packaged programs from there,
# and builds an example against the unpacked package both ways a user would:
# CMake's find_package(troupe) and pkg-config.
# Usage: package_test.sh BUILD_DIR SOURCE_DIR CXX
set -euo pipefail
build=$1 source=$2 cxx=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "package_test: FAILED: $*" >&2; exit 1; }

cpack --config "$build/CPackConfig.cmake" -B "$work/out" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log" >&2; fail "cpack"; }
deb=$(ls "$work"/out/troupe_*.deb 2>/dev/null | head -n 1)
[ -n "$deb" ] || fail "cpack made no troupe_*.deb"
echo "built $(basename "$deb")"

info=$(dpkg-deb --info "$deb")
for dep in libabsl-dev libconcurrentqueue-dev libhiredis-dev; do
  grep -q "Depends:.*$dep" <<<"$info" || fail "Depends lacks $dep: $info"
done
contents=$(dpkg-deb --contents "$deb")
for f in usr/bin/echo-cluster usr/bin/echo-load usr/include/troupe/core/server.h \
         usr/include/troupe/actors/actor.h usr/lib/pkgconfig/troupe.pc \
         usr/lib/pkgconfig/troupe-redis.pc usr/lib/cmake/troupe/troupeConfig.cmake \
         usr/lib/libtroupe_core.a usr/lib/libtroupe_redis.a usr/lib/libtroupe_tls.a \
         usr/lib/libtroupe_systemd.a; do
  grep -q " \./$f\$" <<<"$contents" || fail "the package lacks /$f"
done
if grep -q -E 'tests?/|bench|gtest' <<<"$(grep -o ' \./.*' <<<"$contents")"; then
  fail "the package carries test or benchmark files"
fi

root=$work/root
dpkg-deb -x "$deb" "$root"
"$root/usr/bin/echo-cluster" --version >/dev/null || fail "the packaged echo-cluster does not run"
"$root/usr/bin/echo-load" --version >/dev/null || fail "the packaged echo-load does not run"

# CMake: the examples' own project, one target.
cmake -S "$source/examples" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$root/usr" \
  -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release >"$work/cmake.log" 2>&1 ||
  { cat "$work/cmake.log" >&2; fail "find_package(troupe) against the package"; }
cmake --build "$work/cmake" --target counter-server -j 2 >>"$work/cmake.log" 2>&1 ||
  { cat "$work/cmake.log" >&2; fail "building counter-server with CMake"; }
echo "counter-server built with find_package(troupe)"

# pkg-config: the .pc files find their prefix from where they lie.
export PKG_CONFIG_PATH=$root/usr/lib/pkgconfig
flags=$(pkg-config --cflags --libs troupe) || fail "pkg-config troupe"
grep -q -- "-I$root/usr/lib/pkgconfig/../../include/troupe\|-I$root/usr/include/troupe" <<<"$flags" ||
  fail "pkg-config's include path is not the package's: $flags"
# shellcheck disable=SC2086  # the flags are words
"$cxx" -std=c++20 -O1 "$source/examples/counter/main.cc" -o "$work/counter-pc" $flags ||
  fail "building counter-server with pkg-config"
# The bus's own .pc: a program that uses RedisBus links with it alone.
cat >"$work/bus.cc" <<'CC'
#include "actors/redis_bus.h"
int main() { return troupe::ParseRedisUrl("redis://127.0.0.1:6379").ok() ? 0 : 1; }
CC
# shellcheck disable=SC2046  # the flags are words
"$cxx" -std=c++20 -O1 "$work/bus.cc" -o "$work/bus-pc" $(pkg-config --cflags --libs troupe-redis) ||
  fail "building a RedisBus program with pkg-config troupe-redis"
"$work/bus-pc" || fail "the RedisBus program built with pkg-config does not run"
echo "counter-server built with pkg-config"
echo "package_test: all checks passed"
