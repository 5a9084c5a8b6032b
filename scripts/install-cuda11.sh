#!/bin/sh
# Installs CUDA 11.8's compiler -- the newest CUDA that still compiles sm_70
# (V100); CUDA 13 dropped it -- from Debian bookworm's non-free
# nvidia-cuda-toolkit into a private prefix, and prints the path of its nvcc
# on stdout (everything else goes to stderr).
#
# Not `apt-get install nvidia-cuda-toolkit`: that pulls in the NVIDIA driver
# library (libcuda1) and ~2 GB of CUDA libraries.  Instead the script adds
# an apt source with bookworm's contrib and non-free components
# (/etc/apt/sources.list.d/bsa-nonfree.sources, deb822, on the mirror the
# machine's own bookworm source names), downloads three packages with
# `apt-get download` and unpacks them with dpkg-deb into the prefix, laid
# out as a CUDA toolkit (bin/, nvvm/, include/, lib64/) with an nvcc.profile
# of its own -- nothing of it lands in /usr, and no driver is installed:
#   nvidia-cuda-toolkit  nvcc, cicc, ptxas, fatbinary, nvlink, cudafe++,
#                        cuobjdump, nvdisasm, libdevice
#   nvidia-cuda-dev      the CUDA headers and libcudart_static.a (only these
#                        are unpacked; the package is ~770 MB of static libs)
#   libcudart11.0        libcudart.so, which CMake's FindCUDAToolkit requires
# nvcc 11.8 accepts g++ up to 11 and clang up to 14 as host compiler
# (bookworm's g++ is 12): callers pass -ccbin clang++-14 (scripts/
# ci-cuda-compile.sh installs clang-14).  The tensor-core sources need
# --expt-relaxed-constexpr, which the library's CMake build passes.
#
# Env: BSA_CUDA11_PREFIX (default ${XDG_CACHE_HOME:-~/.cache}/bsa-ci-cuda11):
# where it goes; reused when a complete install is there.  Needs root (or
# sudo) for the apt source and `apt-get update`; Debian bookworm only.
set -eu
PREFIX=${BSA_CUDA11_PREFIX:-${XDG_CACHE_HOME:-$HOME/.cache}/bsa-ci-cuda11}
stamp=$PREFIX/.bsa-cuda11-complete
say() { echo "bsa cuda11: $*" >&2; }

if [ -f "$stamp" ] && [ -x "$PREFIX/bin/nvcc" ]; then
    echo "$PREFIX/bin/nvcc"
    exit 0
fi

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if [ "$codename" != bookworm ]; then
    say "needs Debian bookworm (its non-free nvidia-cuda-toolkit is CUDA 11.8); this is '$codename'"
    exit 1
fi
if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else
    say "needs root (or sudo) to add an apt source"
    exit 1
fi

# The mirror and key of the machine's own bookworm source, "URI KEYRING":
# a deb822 stanza in sources.list.d (each file read with a blank line
# after it, so every stanza ends in one), else a one-line entry of
# sources.list.
list=/etc/apt/sources.list.d/bsa-nonfree.sources
own_source() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && [ "$f" != "$list" ] && cat "$f" && echo
    done | awk -v s="$codename" '
        /^[ \t]*$/ {
            if (ok > 0 && uri != "") { print uri, (key ~ /^\// ? key : "-"); exit }
            ok = 0; uri = ""; key = ""; next
        }
        /^#/ { next }
        tolower($1) == "uris:" { uri = $2 }
        tolower($1) == "signed-by:" { key = $2 }
        tolower($1) == "enabled:" && tolower($2) == "no" { ok = -1 }
        tolower($1) == "suites:" && ok == 0 { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }'
    if [ -f /etc/apt/sources.list ]; then
        sed -n "s/\[[^]]*\]//; s/^deb[ \t]\{1,\}\([^ \t]\{1,\}\)[ \t]\{1,\}$codename[ \t].*/\1 -/p" \
            /etc/apt/sources.list
    fi
}

# (before the first `apt-get update` apt may know the name without a version)
if ! apt-cache policy nvidia-cuda-toolkit 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    if [ ! -f "$list" ]; then
        src=$(own_source | head -n 1)
        uri=${src%% *}
        key=${src#* }
        if [ -z "$uri" ]; then
            say "found no apt source for $codename to take the mirror from"
            exit 1
        fi
        [ "$key" != - ] || key=/usr/share/keyrings/debian-archive-keyring.gpg
        say "adding $list (contrib non-free of $uri)"
        printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: contrib non-free\nSigned-By: %s\n' \
            "$uri" "$codename" "$key" | $SUDO tee "$list" >/dev/null
    fi
    $SUDO apt-get update -qq >&2
fi

t0=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/bsa-cuda11.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/deb" "$work/x" "$work/p"
# (run as root, apt's download sandbox user could not write to $work)
download() {
    (cd "$work/deb" && apt-get download -q -o APT::Sandbox::User="$(id -un)" \
        nvidia-cuda-toolkit nvidia-cuda-dev libcudart11.0 >&2)
}
# package lists older than the mirror name files it no longer has
download || { $SUDO apt-get update -qq >&2 && download; }
ma=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
x=$work/x
dpkg-deb -x "$work"/deb/nvidia-cuda-toolkit_*.deb "$x"
dpkg-deb -x "$work"/deb/libcudart11.0_*.deb "$x"
dpkg-deb --fsys-tarfile "$work"/deb/nvidia-cuda-dev_*.deb |
    tar -x -C "$x" ./usr/include "./usr/lib/$ma/libcudart_static.a" \
        "./usr/lib/$ma/libcudadevrt.a" "./usr/lib/$ma/libcudart.so" "./usr/lib/$ma/stubs/libcuda.so"

# a toolkit's layout: nvcc finds cicc and libdevice through nvvm/
p=$work/p
tk=$x/usr/lib/nvidia-cuda-toolkit
mkdir -p "$p/bin" "$p/nvvm/bin" "$p/lib64/stubs"
cp "$tk/bin/nvcc" "$p/bin/"
cp -R "$tk/bin/crt" "$p/bin/"
for t in cudafe++ ptxas fatbinary nvlink bin2c cuobjdump nvdisasm nvprune cu++filt; do
    cp -L "$x/usr/bin/$t" "$p/bin/"
done
cp "$tk/bin/cicc" "$p/nvvm/bin/"
cp -R "$tk/libdevice" "$p/nvvm/"
cp -R "$x/usr/include" "$p/include"
cp -P "$x/usr/lib/$ma"/libcudart* "$x/usr/lib/$ma/libcudadevrt.a" "$p/lib64/"
cp "$x/usr/lib/$ma/stubs/libcuda.so" "$p/lib64/stubs/"
# Debian's nvcc.profile (a link to /etc/nvcc.profile) names /usr paths;
# this one names the prefix, as a toolkit's own does
cat >"$p/bin/nvcc.profile" <<'EOF'
TOP              = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
LD_LIBRARY_PATH += $(TOP)/lib64:
PATH            += $(TOP)/nvvm/bin:$(_HERE_):
INCLUDES        +=  "-I$(TOP)/include" $(_SPACE_)
LIBRARIES        =+ $(_SPACE_) "-L$(TOP)/lib64/stubs" "-L$(TOP)/lib64"
CUDAFE_FLAGS    +=
PTXAS_FLAGS     +=
EOF
if ! "$p/bin/nvcc" --version | grep -q "release 11\."; then
    say "the unpacked nvcc is not CUDA 11:"
    "$p/bin/nvcc" --version >&2 || true
    exit 1
fi
rm -rf "$PREFIX"
mkdir -p "$(dirname "$PREFIX")"
mv "$p" "$PREFIX"
"$PREFIX/bin/nvcc" --version | tail -n 1 >"$stamp"
say "$(cat "$stamp") in $PREFIX ($(($(date +%s) - t0)) s)"
echo "$PREFIX/bin/nvcc"
