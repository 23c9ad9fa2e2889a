#!/usr/bin/env bash
# aarch64 smoke test under qemu-user: the appliance's runtime dependencies as published aarch64
# wheels (the ones a Raspberry Pi or Jetson installs), Debian's aarch64 CPython 3.11, and
# `appliance models verify` + `appliance count` on a committed frame, compared with this host's count.
#
# Nothing is installed on the host: Debian packages (qemu-user-static for this host, python3.11
# for arm64) are fetched with apt-get through a private state folder and unpacked with dpkg -x;
# the wheels come from the package index with pip. Everything is cached in $AARCH64_SMOKE_CACHE
# (default ~/.cache/crowd-appliance-aarch64), so a second run only runs the test.
#
# onnxruntime crashes at import under qemu-user when /proc/cpuinfo describes an x86 CPU, so the
# aarch64 Python runs in a private mount namespace (unshare -m) with an ARM cpuinfo bind-mounted.
#
# Exit 0: passed, or skipped with "aarch64 smoke: SKIP: <reason>" where this host cannot run it
# (not x86_64 Debian, no network, no mount namespaces). Exit 1: the test ran and failed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
FRAME=tests/data/vtest_frame300.jpg
CACHE="${AARCH64_SMOKE_CACHE:-$HOME/.cache/crowd-appliance-aarch64}"
HOST_PY="${HOST_PY:-$REPO/.venv/bin/python}"
start=$(date +%s)

skip() { echo "aarch64 smoke: SKIP: $*"; exit 0; }
fail() { echo "aarch64 smoke: FAIL: $*" >&2; exit 1; }
step() { echo "aarch64 smoke: [$(( $(date +%s) - start ))s] $*"; }

[ "${APPLIANCE_SKIP_AARCH64:-}" = "" ] || skip "APPLIANCE_SKIP_AARCH64 is set"
[ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || skip "needs an x86_64 Linux host (this is $(uname -s)-$(uname -m))"
for tool in apt-get dpkg unshare mount; do
    command -v "$tool" >/dev/null || skip "$tool not found (needs a Debian-like host)"
done
[ -x "$HOST_PY" ] || skip "$HOST_PY not found (run scripts/setup.sh first)"
unshare -m true 2>/dev/null || skip "cannot create a mount namespace (unshare -m needs CAP_SYS_ADMIN)"

mkdir -p "$CACHE"
SYSROOT="$CACHE/sysroot"
SITE="$CACHE/site-packages"
APT="$CACHE/apt"

# --- qemu-aarch64: the host's, else Debian's qemu-user-static unpacked into the cache
QEMU="$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)"
if [ -z "$QEMU" ]; then
    QEMU="$CACHE/qemu/usr/bin/qemu-aarch64-static"
    if [ ! -x "$QEMU" ]; then
        step "fetching Debian's qemu-user-static"
        mkdir -p "$CACHE/qemu-deb"
        (cd "$CACHE/qemu-deb" && apt-get download -q qemu-user-static >/dev/null 2>&1) \
            || skip "apt-get download qemu-user-static failed (no network or no Debian sources?)"
        dpkg -x "$CACHE"/qemu-deb/qemu-user-static_*.deb "$CACHE/qemu"
    fi
fi

# --- Debian's aarch64 python3.11 and its libraries, resolved by apt against an empty arm64 system
if [ ! -x "$SYSROOT/usr/bin/python3.11" ]; then
    step "fetching Debian arm64 python3.11 (apt-get with a private state folder; the host's dpkg is not touched)"
    mkdir -p "$APT/lists/partial" "$APT/archives/partial"
    : > "$APT/status"
    cat > "$APT/apt.conf" <<EOF
Dir::State "$APT";
Dir::State::Lists "$APT/lists";
Dir::State::status "$APT/status";
Dir::Cache "$APT";
Dir::Cache::archives "$APT/archives";
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Debug::NoLocking "true";
EOF
    export APT_CONFIG="$APT/apt.conf"
    apt-get -q update >"$CACHE/apt.log" 2>&1 || skip "apt-get update for arm64 failed (no network?); see $CACHE/apt.log"
    apt-get -q -y install --download-only --no-install-recommends python3.11-minimal libpython3.11-stdlib \
        libstdc++6 >>"$CACHE/apt.log" 2>&1 || skip "apt-get could not fetch arm64 python3.11; see $CACHE/apt.log"
    unset APT_CONFIG
    rm -rf "$SYSROOT.tmp" && mkdir -p "$SYSROOT.tmp"
    for deb in "$APT"/archives/*.deb; do dpkg -x "$deb" "$SYSROOT.tmp"; done
    rm -rf "$SYSROOT" && mv "$SYSROOT.tmp" "$SYSROOT"
fi

# --- the runtime dependencies (pyproject.toml) as aarch64 wheels, into a separate target
platforms=()
# pip takes each --platform literally: list the manylinux tags aarch64 wheels are published with.
for tag in manylinux_2_28_aarch64 manylinux_2_27_aarch64 manylinux_2_26_aarch64 manylinux_2_24_aarch64 \
           manylinux_2_17_aarch64 manylinux2014_aarch64; do
    platforms+=(--platform "$tag")
done
deps_hash="$("$HOST_PY" -c 'import hashlib, tomllib; d = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]; print(hashlib.sha256("\n".join(d).encode()).hexdigest()[:16])')"
if [ ! -f "$SITE/.deps-$deps_hash" ]; then
    step "fetching the runtime dependencies' aarch64 wheels"
    mapfile -t deps < <("$HOST_PY" -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))')
    rm -rf "$CACHE/wheels" "$SITE"
    PIP_CONSTRAINT="" "$HOST_PY" -m pip download -q --only-binary=:all: "${platforms[@]}" --python-version 3.11 \
        -d "$CACHE/wheels" "${deps[@]}" >"$CACHE/pip.log" 2>&1 \
        || skip "pip download of aarch64 wheels failed (no network?); see $CACHE/pip.log"
    "$HOST_PY" -m pip install -q --no-deps --no-index --only-binary=:all: "${platforms[@]}" --python-version 3.11 \
        --target "$SITE" "$CACHE"/wheels/*.whl >>"$CACHE/pip.log" 2>&1 || fail "pip install --target failed; see $CACHE/pip.log"
    touch "$SITE/.deps-$deps_hash"
fi

# An ARM CPU as onnxruntime's cpuinfo parser expects it (a Cortex-A76, as on a Raspberry Pi 5).
cat > "$CACHE/cpuinfo" <<'EOF'
processor	: 0
BogoMIPS	: 108.00
Features	: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer	: 0x41
CPU architecture: 8
CPU variant	: 0x4
CPU part	: 0xd0b
CPU revision	: 1

EOF

# One interpreter for both commands: starting Python with numpy, OpenCV and onnxruntime under
# emulation takes tens of seconds.
probe='
import json, platform, sys
from appliance.cli import main
assert platform.machine() == "aarch64", platform.machine()
print("machine", platform.machine(), "python", platform.python_version(), flush=True)
rc = main(["models", "verify"])
if rc:
    sys.exit(f"models verify exited {rc}")
sys.exit(main(["count", sys.argv[1], "--json"]))
'
step "running under qemu-aarch64: appliance models verify, appliance count $FRAME"
arm_out="$CACHE/arm.out"
if ! unshare -m sh -c 'mount --bind "$1" /proc/cpuinfo && shift && exec "$@"' sh "$CACHE/cpuinfo" \
        env PYTHONPATH="$SITE:$REPO" PYTHONDONTWRITEBYTECODE=1 PYTHONNOUSERSITE=1 \
        "$QEMU" -L "$SYSROOT" "$SYSROOT/usr/bin/python3.11" -c "$probe" "$FRAME" >"$arm_out" 2>"$CACHE/arm.err"; then
    tail -n 20 "$CACHE/arm.err" >&2
    fail "the appliance did not run on aarch64 (output above; full: $CACHE/arm.err)"
fi
cat "$arm_out"
arm_count="$(grep '"count"' "$arm_out" | tail -n 1)"
x86_count="$("$REPO/.venv/bin/appliance" count "$FRAME" --json 2>/dev/null | tail -n 1)"
[ -n "$arm_count" ] || fail "no count from aarch64"
if [ "$arm_count" != "$x86_count" ]; then
    fail "aarch64 counted $arm_count, x86_64 counted $x86_count"
fi
step "PASS: aarch64 and x86_64 agree: $arm_count"
