#!/bin/sh
# The shared library's dynamic symbol table defines exactly the functions
# the public header declares BSA_API (CMakeLists.txt writes the linker's
# version script from it): no backend internals, no instances of the C++
# library's templates, no ifunc clones of the CPU kernels.
# Usage: test_exports.sh LIBBSA.so api/bsa.h
set -eu
lib=$1
header=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -n 's/^BSA_API .*[ *]\(bsa_[a-z0-9_]*\)(.*/\1/p' "$header" | sort -u >"$tmp/declared"
nm -D --defined-only "$lib" | awk '{ print $NF }' | sed 's/@.*//' | sort -u >"$tmp/exported"
n=$(wc -l <"$tmp/declared")
if [ "$n" -lt 10 ]; then
    echo "test_exports: only $n BSA_API functions found in $header" >&2
    exit 1
fi
if ! cmp -s "$tmp/declared" "$tmp/exported"; then
    echo "test_exports: $lib exports what $header does not declare (>) or lacks a declared function (<):" >&2
    diff "$tmp/declared" "$tmp/exported" | grep '^[<>]' | head -n 40 >&2
    exit 1
fi
echo "test_exports: $lib exports the $n functions $header declares, nothing else"
