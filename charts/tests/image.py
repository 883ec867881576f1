#!/usr/bin/env python3
"""The image's runtime stage carries every library kipvs needs.

usage: image.py CONTAINERFILE KIPVS_BINARY

Reads the packages the Containerfile's last stage installs, finds the
package of each library the binary names as NEEDED (ldd to resolve, dpkg -S
to own), and fails when one comes from a package that is neither installed
there nor in debian:12-slim itself. Run once more with each listed library
package removed, the check must fail (so it checks something).
"""
import re
import subprocess
import sys

# Already in debian:12-slim (apt itself depends on them).
BASE = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1", "liblzma5", "libbz2-1.0",
        "libgnutls30", "libsystemd0", "libudev1", "libcap2", "libgcrypt20", "libgpg-error0",
        "liblz4-1", "libxxhash0", "libseccomp2", "libselinux1", "libpcre2-8-0", "libdb5.3",
        "libacl1", "libattr1", "libtinfo6", "libcrypt1", "libmd0", "libffi8"}


def runtime_packages(containerfile):
    text = open(containerfile).read()
    stages = re.split(r"(?m)^FROM\s", text)
    last = stages[-1]
    m = re.search(r"apt-get install[^\n]*?((?:\\\n|.)*?)(?:&&|\n\s*\n|$)", last)
    if not m:
        sys.exit("FAIL: no apt-get install in the Containerfile's last stage")
    words = m.group(1).replace("\\\n", " ").split()
    return {w for w in words if not w.startswith("-") and re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", w)}


def needed_packages(binary):
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                        subprocess.run(["readelf", "-d", binary], capture_output=True, text=True, check=True).stdout)
    resolved = {}
    for line in subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout.splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m:
            resolved[m.group(1)] = m.group(2)
    owners = {}
    for lib in needed:
        path = resolved.get(lib)
        if not path or path == "not":
            sys.exit(f"FAIL: {binary} needs {lib}, which is not installed here")
        out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        if out.returncode != 0:  # /lib vs /usr/lib (merged /usr)
            alt = path.replace("/usr/lib/", "/lib/", 1) if path.startswith("/usr/lib/") else "/usr" + path
            out = subprocess.run(["dpkg", "-S", alt], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"FAIL: no Debian package owns {path} ({lib}); the image cannot get it from apt")
        owners[lib] = out.stdout.split(":")[0].strip()
    return owners


def missing(owners, packages):
    return {lib: pkg for lib, pkg in owners.items() if pkg not in packages and pkg not in BASE}


def main():
    packages = runtime_packages(sys.argv[1])
    owners = needed_packages(sys.argv[2])
    gaps = missing(owners, packages)
    for lib, pkg in sorted(gaps.items()):
        print(f"FAIL: kipvs needs {lib} from {pkg}, which the runtime stage does not install")
    if gaps:
        sys.exit(1)
    for lib, pkg in sorted(owners.items()):
        print(f"ok: {lib} <- {pkg}")
    # Self-test: dropping any package that provides one of the libraries is noticed.
    for pkg in set(owners.values()) - BASE:
        if not missing(owners, packages - {pkg}):
            sys.exit(f"FAIL: the check does not notice {pkg} missing")
    if "ipvsadm" not in packages:
        sys.exit("FAIL: ipvsadm is not in the runtime stage")
    print(f"ok: the runtime stage ({len(packages)} packages) covers all {len(owners)} libraries kipvs needs")


if __name__ == "__main__":
    main()
