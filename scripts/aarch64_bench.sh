#!/usr/bin/env bash
# int8 vs fp32 on aarch64: scripts/bench_precision.py under the emulated aarch64 Python
# of scripts/aarch64_env.sh (published aarch64 wheels, qemu-user) as a Cortex-A76 (Raspberry Pi 5)
# and a Cortex-A72 (Raspberry Pi 4: no dot-product instructions, so onnxruntime takes another int8
# kernel), and natively on this host in the same run. Model-only latency at the rpi4/rpi5 input
# sizes, int8 and fp32 interleaved, medians; int8 vs fp32 detection counts on committed frames.
#
# Under emulation only the int8/fp32 ratio means anything, and only roughly (qemu emulates float
# vector code at a higher cost than integer code); the milliseconds say nothing about a board.
# Not part of CI: 9-11 minutes on a loaded 2-core machine (figures and caveats: models/README.md).
# Exit 1 if a run fails or the detection counts differ between the machines.
#
#   AARCH64_SMOKE_CACHE=/tmp/aarch64cache bash scripts/aarch64_bench.sh
#
# AARCH64_BENCH_ROUNDS (default 3) timed runs per model and precision under emulation,
# HOST_BENCH_ROUNDS (default 21) on this host, AARCH64_BENCH_CPUS (default "cortex-a76 cortex-a72").
# The JSON results and the tables are left in $AARCH64_BENCH_OUT (default <cache>/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
HOST_PY="${HOST_PY:-$REPO/.venv/bin/python}"

AARCH64_TASK="aarch64 bench"
. scripts/aarch64_env.sh
aarch64_prepare

ROUNDS="${AARCH64_BENCH_ROUNDS:-3}"
HOST_ROUNDS="${HOST_BENCH_ROUNDS:-21}"
read -r -a cpus <<< "${AARCH64_BENCH_CPUS:-cortex-a76 cortex-a72}"
OUT="${AARCH64_BENCH_OUT:-$AARCH64_CACHE/bench}"
mkdir -p "$OUT"
results=()

step "$(uname -m) natively, $HOST_ROUNDS rounds"
"$HOST_PY" scripts/bench_precision.py measure --rounds "$HOST_ROUNDS" --label "$(uname -m)" \
    >"$OUT/host.json" 2>"$OUT/host.err" || { tail -n 20 "$OUT/host.err" >&2; fail "the host run failed"; }
results+=("$OUT/host.json")
for cpu in "${cpus[@]}"; do
    step "aarch64 under qemu -cpu $cpu, $ROUNDS rounds"
    if ! AARCH64_CPU="$cpu" aarch64_python scripts/bench_precision.py measure --rounds "$ROUNDS" \
            --label "aarch64 ($cpu, emulated)" >"$OUT/aarch64-$cpu.json" 2>"$OUT/aarch64-$cpu.err"; then
        tail -n 20 "$OUT/aarch64-$cpu.err" >&2
        fail "the aarch64 run ($cpu) failed (full: $OUT/aarch64-$cpu.err)"
    fi
    results+=("$OUT/aarch64-$cpu.json")
done
step "done; results in $OUT"
"$HOST_PY" scripts/bench_precision.py table "${results[@]}" | tee "$OUT/tables.md" \
    || fail "the detection counts differ between the machines (tables above)"
