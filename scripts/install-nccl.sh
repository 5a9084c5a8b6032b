#!/bin/sh
# NCCL's header and library for CI's compile of the NCCL communicator
# (dist/comm_nccl.c): NVIDIA's nvidia-nccl-cu13 wheel from PyPI (~200 MB),
# installed with pip --target into a private folder, so no system or
# Python environment changes.  Prints the prefix that holds include/nccl.h
# and lib/libnccl.so.2 (give it to CMake as BSA_NCCL_ROOT); does nothing
# but print when it is already there.
# Env: BSA_NCCL_PREFIX (default build-ci-nccl in the current folder),
# BSA_NCCL_WHEEL (default nvidia-nccl-cu13==2.32.6, the version CI was
# first run with).
set -eu
dir=${BSA_NCCL_PREFIX:-$(pwd)/build-ci-nccl}
spec=${BSA_NCCL_WHEEL:-nvidia-nccl-cu13==2.32.6}
if [ ! -f "$dir/nvidia/nccl/include/nccl.h" ]; then
    here=$(cd "$(dirname "$0")/.." && pwd)
    python3 -m pip --version >/dev/null 2>&1 || sh "$here/scripts/install-deps.sh" python3-pip >&2
    # a Debian-managed interpreter (PEP 668) may refuse even --target
    python3 -m pip install -q --disable-pip-version-check --no-deps --target "$dir" "$spec" >&2 ||
        python3 -m pip install -q --disable-pip-version-check --no-deps --break-system-packages \
            --target "$dir" "$spec" >&2
fi
echo "$dir/nvidia/nccl"
