#!/usr/bin/env bash
# aarch64 smoke test under qemu-user: the appliance's runtime dependencies as published aarch64
# wheels (the ones a Raspberry Pi or Jetson installs), Debian's aarch64 CPython 3.11, and
# `appliance models verify` + `appliance count` on a committed frame, compared with this host's count.
# The emulated Python and its cache ($AARCH64_SMOKE_CACHE) come from scripts/aarch64_env.sh.
#
# Exit 0: passed, or skipped with "aarch64 smoke: SKIP: <reason>" where this host cannot run it
# (not x86_64 Debian, no network, no mount namespaces). Exit 1: the test ran and failed.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
FRAME=tests/data/vtest_frame300.jpg
HOST_PY="${HOST_PY:-$REPO/.venv/bin/python}"

AARCH64_TASK="aarch64 smoke"
. scripts/aarch64_env.sh
aarch64_prepare

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
arm_out="$AARCH64_CACHE/arm.out"
if ! aarch64_python -c "$probe" "$FRAME" >"$arm_out" 2>"$AARCH64_CACHE/arm.err"; then
    tail -n 20 "$AARCH64_CACHE/arm.err" >&2
    fail "the appliance did not run on aarch64 (output above; full: $AARCH64_CACHE/arm.err)"
fi
cat "$arm_out"
arm_count="$(grep '"count"' "$arm_out" | tail -n 1)"
x86_count="$("$REPO/.venv/bin/appliance" count "$FRAME" --json 2>/dev/null | tail -n 1)"
[ -n "$arm_count" ] || fail "no count from aarch64"
if [ "$arm_count" != "$x86_count" ]; then
    fail "aarch64 counted $arm_count, x86_64 counted $x86_count"
fi
step "PASS: aarch64 and x86_64 agree: $arm_count"
