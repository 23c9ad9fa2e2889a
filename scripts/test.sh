#!/usr/bin/env bash
# The project's test command (README, and .ci/run calls exactly this): set up, lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."
SETUP_TEST_BROKERS=1 bash scripts/setup.sh
.venv/bin/ruff check appliance tests scripts
.venv/bin/mypy
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
# aarch64 smoke test under qemu-user (skips with a reason where the host cannot run it;
# APPLIANCE_SKIP_AARCH64=1 skips it on purpose).
bash scripts/aarch64_smoke.sh
