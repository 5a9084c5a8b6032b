#!/bin/sh
# `make test-install`: installs a build into a fresh prefix and uses it as a
# stranger would, with LD_LIBRARY_PATH unset throughout:
#   - the README's C example (the ```c block after the README's
#     "make test-install" marker), built with `pkg-config --cflags --libs bsa`
#     and, as a second consumer, with CMake's find_package(bsa); both run;
#   - the installed `bsa --version`;
#   - every installed ELF file resolves all its libraries (ldd), and the
#     programs' and libbsa's RUNPATHs are what the install promises.
# The version the example, the tool, pkg-config and the CMake package
# report must be CMakeLists.txt's project version.
# usage: test-install.sh BUILD_DIR WORK_DIR
set -eu
BUILD=${1:?usage: test-install.sh BUILD_DIR WORK_DIR}
WORK=${2:?usage: test-install.sh BUILD_DIR WORK_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
unset LD_LIBRARY_PATH
rm -rf "$WORK"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
PREFIX=$WORK/prefix
fails=0
checks=0
ok() { checks=$((checks + 1)); echo "ok: $*"; }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }

want=$(sed -n 's/^project(bsa VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
[ -n "$want" ] || { echo "FAIL: no project(bsa VERSION ...) in CMakeLists.txt"; exit 1; }

cmake --install "$BUILD" --prefix "$PREFIX" >"$WORK/install.log"
LIBDIR=$(dirname "$(find "$PREFIX" -name 'libbsa.so' | head -n 1)")

# the README's example, byte for byte
awk '/make test-install/ { marked = 1; next }
     marked && /^```c$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$ROOT/README.md" >"$WORK/example.c"
if [ ! -s "$WORK/example.c" ]; then
    echo "FAIL: no C example after the make-test-install marker in README.md"
    exit 1
fi

run_example() { # how binary
    if out=$("$2" 2>&1) && echo "$out" | grep -q "^bsa $want (.*): o\[0\] = "; then
        ok "$1: $out"
    else
        fail "$1 printed: $out"
    fi
    if readelf -d "$2" | grep -q "R.*PATH.*$LIBDIR"; then
        ok "$1: RUNPATH holds $LIBDIR"
    else
        fail "$1: no RUNPATH to $LIBDIR: $(readelf -d "$2" | grep PATH || echo none)"
    fi
}

export PKG_CONFIG_PATH="$LIBDIR/pkgconfig"
pcv=$(pkg-config --modversion bsa)
[ "$pcv" = "$want" ] && ok "pkg-config --modversion bsa: $pcv" || fail "pkg-config says $pcv, want $want"
# shellcheck disable=SC2046
${CC:-cc} -O1 -o "$WORK/example-pc" "$WORK/example.c" $(pkg-config --cflags --libs bsa)
run_example "example (pkg-config)" "$WORK/example-pc"

mkdir -p "$WORK/consumer"
cp "$WORK/example.c" "$WORK/consumer/"
cat >"$WORK/consumer/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.18)
project(consumer C)
find_package(bsa $want EXACT REQUIRED)
add_executable(example example.c)
target_link_libraries(example PRIVATE bsa::bsa)
CMAKE
cmake -S "$WORK/consumer" -B "$WORK/consumer/build" -DCMAKE_PREFIX_PATH="$PREFIX" \
    >"$WORK/consumer.log" 2>&1 && cmake --build "$WORK/consumer/build" >>"$WORK/consumer.log" 2>&1 ||
    { tail -n 30 "$WORK/consumer.log"; fail "the CMake consumer did not build"; }
[ -x "$WORK/consumer/build/example" ] && run_example "example (find_package)" "$WORK/consumer/build/example"

if [ -x "$PREFIX/bin/bsa" ]; then
    out=$("$PREFIX/bin/bsa" --version)
    if echo "$out" | head -n 1 | grep -Eq "^bsa $want \(git ([0-9a-f]{12}|unknown);"; then
        ok "installed bsa --version: $(echo "$out" | head -n 1)"
    else
        fail "installed bsa --version printed: $out"
    fi
fi

# every installed ELF file finds all it needs
for f in $(find "$PREFIX" -type f); do
    case $(head -c 4 "$f" | od -An -c | tr -d ' ') in
    177ELF) ;;
    *) continue ;;
    esac
    if ldd "$f" | grep -q "not found"; then
        fail "ldd $f: $(ldd "$f" | grep 'not found' | tr '\n' ' ')"
    else
        ok "ldd ${f#"$PREFIX"/}: every library found"
    fi
done

echo "test-install: $((checks - fails)) passed, $fails failed"
[ "$fails" = 0 ]
