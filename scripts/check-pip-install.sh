#!/bin/sh
# `make test-pip`, after `pip install ./python` into a fresh virtual
# environment: what a Python user gets.
#   - the README's Python example runs (the ```python block after the
#     README's "make test-pip" marker);
#   - bsa.__version__, the wheel's metadata and the loaded library's version
#     are CMakeLists.txt's project version; the license text is shipped;
#   - the package is self-contained: ldd of every shared library in it finds
#     everything, and every library outside the system's own (glibc, the
#     loader, libstdc++, libgcc_s) resolves to a copy inside the package.
# usage: check-pip-install.sh VENV_PYTHON WORK_DIR
set -eu
PY=${1:?usage: check-pip-install.sh VENV_PYTHON WORK_DIR}
WORK=${2:?usage: check-pip-install.sh VENV_PYTHON WORK_DIR}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY") # absolute, the venv's link kept
WORK=$(cd "$WORK" && pwd)
unset LD_LIBRARY_PATH BSA_LIBRARY
fails=0
checks=0
ok() { checks=$((checks + 1)); echo "ok: $*"; }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL: $*"; }

want=$(sed -n 's/^project(bsa VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")
awk '/make test-pip/ { marked = 1; next }
     marked && /^```python$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$ROOT/README.md" >"$WORK/readme_example.py"
if [ ! -s "$WORK/readme_example.py" ]; then
    fail "no Python example after the make-test-pip marker in README.md"
elif (cd "$WORK" && "$PY" readme_example.py >example.log 2>&1); then
    ok "the README's Python example ran"
else
    cat "$WORK/example.log"
    fail "the README's Python example failed"
fi

# run from WORK, so that `import bsa` is the installed package, not python/
info=$(cd "$WORK" && "$PY" -c "
import os, bsa
from importlib import metadata
print(bsa.__file__)
print(bsa.library_path)
print(bsa.__version__)
print(metadata.version('bsa'))
print('%d.%d.%d' % bsa.library_version())
d = metadata.distribution('bsa')
lic = [f for f in d.files if f.name == 'LICENSE']
print(lic[0].locate() if lic else '')
")
pkg=$(dirname "$(echo "$info" | sed -n 1p)")
lib=$(echo "$info" | sed -n 2p)
case $lib in
"$pkg"/*) ok "the library loaded from the package: $lib" ;;
*) fail "the library loaded from $lib, outside the package $pkg" ;;
esac
for i in 3 4 5; do
    v=$(echo "$info" | sed -n ${i}p)
    what=$(echo "bsa.__version__ metadata library" | cut -d' ' -f$((i - 2)))
    [ "$v" = "$want" ] && ok "$what version $v" || fail "$what version $v, CMakeLists.txt has $want"
done
lic=$(echo "$info" | sed -n 6p)
if [ -n "$lic" ] && cmp -s "$lic" "$ROOT/LICENSE"; then
    ok "LICENSE shipped in the wheel's metadata"
else
    fail "the wheel's metadata has no copy of LICENSE ($lic)"
fi

# what the package holds besides its Python modules: the headers and the
# libraries, not the tools or tests (pyproject's cmake.define turns them
# off; a build that ignored it would also need cmocka on the user's machine)
extra=$(cd "$pkg" && find . -type f ! -name '*.py' ! -name '*.pyc' | sort | tr '\n' ' ')
if echo "$extra" | grep -Eq '^(\./include/bsa(_version)?\.h |\./lib/lib[A-Za-z0-9_.+-]+\.so[0-9.]* )+$'; then
    ok "the package holds headers and libraries only: $extra"
else
    fail "the package holds more than headers and libraries (tools or tests built?): $extra"
fi

system='^(linux-vdso|ld-linux|libc|libm|libdl|librt|libpthread|libutil|libresolv|libnsl|libcrypt|libstdc\+\+|libgcc_s)\.so'
libdir=$(dirname "$lib")
for f in "$libdir"/*.so*; do
    ldd "$f" >"$WORK/ldd.txt" 2>&1 || true
    if grep -q "not found" "$WORK/ldd.txt"; then
        fail "ldd $f: $(grep 'not found' "$WORK/ldd.txt" | tr -s ' \t\n' ' ')"
        continue
    fi
    outside=$(awk '$2 == "=>" { print $1, $3 }' "$WORK/ldd.txt" | grep -Ev "$system" |
        while read -r name path; do
            case $(readlink -f "$path") in
            "$(readlink -f "$libdir")"/*) ;;
            *) echo "$name=>$path" ;;
            esac
        done)
    if [ -n "$outside" ]; then
        fail "$(basename "$f") loads from outside the package: $outside"
    else
        ok "$(basename "$f"): $(awk '$2 == "=>" { print $1 }' "$WORK/ldd.txt" | grep -Ev "$system" |
            tr '\n' ' ')from the package, the rest from the system's own"
    fi
done
echo "test-pip: $((checks - fails)) passed, $fails failed"
[ "$fails" = 0 ]
