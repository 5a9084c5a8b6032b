#!/bin/sh
# The GPU machine lent to sessions has no cmocka, which the C test programs
# need: this unpacks Debian's libcmocka0 and libcmocka-dev (apt-get
# download + dpkg -x, no install) into .deps/cmocka, which a device call
# carries (carry: [".deps"]) and bench/gpu/run.sh then uses by itself when
# the machine has no cmocka of its own.
set -eu
cd "$(dirname "$0")/.."
dest=.deps/cmocka
if [ -f "$dest/usr/include/cmocka.h" ]; then
    echo "$dest: present"
    exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# (as scripts/install-cuda11.sh: apt's sandbox user could not write here)
(cd "$tmp" && apt-get download -q -o APT::Sandbox::User="$(id -un)" libcmocka0 libcmocka-dev >/dev/null)
mkdir -p "$dest"
for d in "$tmp"/*.deb; do dpkg -x "$d" "$dest"; done
echo "$dest: $(ls "$dest/usr/lib/x86_64-linux-gnu" | tr '\n' ' ')"
