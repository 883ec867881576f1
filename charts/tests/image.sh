#!/usr/bin/env bash
# The Containerfile's runtime stage installs every library the built kipvs
# needs (see image.py). KIPVS_BIN: the kipvs binary (ctest passes it).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin="${KIPVS_BIN:-$root/build/app/kipvs}"
[[ -x "$bin" ]] || missing "the kipvs binary ($bin)" "Run: cmake --preset default && cmake --build build"
exec python3 "$tests_dir/image.py" "$root/Containerfile" "$bin"
