#!/usr/bin/env bash
# The numbers behind docs/integrator.md's release section: the size of an aarch64 and an x86_64
# release (built here, wheels through pip's cache), and how long this machine takes to install the
# x86_64 one with no network at all (a fresh network namespace, unshare -n; as root) into a --root
# folder, from a freshly provisioned bundle. Prints one line per figure; everything lives in a
# temporary folder that is removed at the end.
#
#   bash scripts/bench_release.sh            # python 3.11 (Raspberry Pi OS Bookworm)
#   PY_TARGET=3.13 bash scripts/bench_release.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${HOST_PY:-$PWD/.venv/bin/python}"
TARGET="${PY_TARGET:-3.11}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for arch in aarch64 x86_64; do
    start=$(date +%s%N)
    "$PY" -m appliance provision release -o "$work/release-$arch" --arch "$arch" --python "$TARGET" >/dev/null
    took=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
    bytes=$(cat "$work/release-$arch"/* | wc -c)
    wheels=$(ls "$work/release-$arch"/*.whl | wc -l)
    echo "release $arch-py$TARGET: $wheels wheels, $(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB ($bytes bytes), built in $took s"
done

host_py="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
if [ "$(uname -m)" != x86_64 ] || [ "$host_py" != "$TARGET" ]; then
    echo "install: skipped (this machine is $(uname -m) Python $host_py, the release is x86_64 Python $TARGET)"
    exit 0
fi
"$PY" -m appliance provision init --dir "$work/pki" --broker-name localhost >/dev/null
"$PY" -m appliance provision device cam-bench --dir "$work/pki" --board x86-generic --source sample \
    --broker-url mqtts://localhost:8883 -o "$work/bundles" >/dev/null
tar xzf "$work/bundles/cam-bench.tar.gz" -C "$work"
mkdir "$work/root"
start=$(date +%s%N)
env -u PYTHONPATH unshare -n bash "$work/cam-bench/install.sh" --release "$work/release-x86_64" --root "$work/root" \
    --no-selftest >"$work/install.out" 2>&1 || { cat "$work/install.out"; exit 1; }
took=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
installed=$(du -sb "$work/root/opt/crowd-appliance" | cut -f1)
echo "install x86_64-py$TARGET with no network (unshare -n, --root, --no-selftest): $took s, $(awk -v b="$installed" 'BEGIN { printf "%.0f", b / 1e6 }') MB installed"
start=$(date +%s%N)
env -u PYTHONPATH unshare -n "$work/root/opt/crowd-appliance/.venv/bin/appliance" models verify >/dev/null
took=$(awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.1f", (b - a) / 1e9 }')
echo "installed appliance models verify with no network: ok, $took s"
