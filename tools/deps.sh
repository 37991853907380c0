#!/bin/sh
# tools/deps.sh -- install the Debian packages headwise needs (idempotent).
# Usage: deps.sh [--check] PKG...   --check only reports; otherwise apt-get as root, or print
# the exact command for a non-root user.
check=0
if [ "$1" = "--check" ]; then check=1; shift; fi
missing=""
for p in "$@"; do
    st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
    case "$st" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0
if [ $check = 1 ]; then
    echo "missing Debian packages:$missing" >&2
    exit 1
fi
if [ "$(id -u)" = 0 ]; then
    echo "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null \
        || { echo "error: apt-get install$missing failed" >&2; exit 1; }
else
    echo "error: missing Debian packages:$missing" >&2
    echo "run: sudo apt-get install -y$missing" >&2
    exit 1
fi
