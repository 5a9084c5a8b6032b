#!/bin/sh
# Installs the Python packages the binding's tests use (python/requirements-test.txt)
# for the python3 on PATH, which is the one ctest runs.  Does nothing when they
# are all importable; asks PyPI only for what is missing.
here=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then
    sh "$here/scripts/install-deps.sh" python3 python3-pip || exit 1
fi
"$PY" -c "import numpy, pytest, ml_dtypes, matplotlib" 2>/dev/null && exit 0
echo "bsa: installing the Python test packages for $("$PY" -c 'import sys; print(sys.executable)')"
if ! "$PY" -m pip --version >/dev/null 2>&1; then
    sh "$here/scripts/install-deps.sh" python3-pip || exit 1
fi
req="$here/python/requirements-test.txt"
# A Debian-managed interpreter refuses plain pip installs (PEP 668): only then
# install next to its own packages, as the root user that runs `make test`.
"$PY" -m pip install -q --disable-pip-version-check -r "$req" ||
    "$PY" -m pip install -q --disable-pip-version-check --break-system-packages -r "$req"
