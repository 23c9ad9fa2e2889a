"""Tally what `appliance config validate` does with N seeded mangled site configs.

    .venv/bin/python scripts/fuzz_config.py [--seed 1234] [--count 300]

Prints one row per outcome (exit 0, exit 2 with one line, exit 2 with more lines, traceback by
exception type) and, for configs that validate, whether the stages `run` builds at start (source,
analyzer, MQTT link; no models) still refuse them. tests/test_config_fuzz.py asserts the same.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path
from typing import Dict, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.config_fuzz import call_main, generate

from appliance.app import build_analyzer
from appliance.capture import open_source
from appliance.config import load_config
from appliance.publish.client import MqttLink


def outcome(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    if "Traceback" in err:
        return f"traceback ({lines[-1].split(':')[0]})"
    if code not in (0, 2):
        return f"exit {code}"
    if code == 2 and len(lines) != 1:
        return f"exit 2, {len(lines)} lines on stderr"
    return f"exit {code}, one line" if code else "exit 0"


def run_start_problem(path: Path) -> str:
    cfg = load_config(path)
    size = (cfg.profile.working_width, cfg.profile.working_height)
    try:
        open_source(cfg.capture.source, cfg.capture, size).close()
        build_analyzer(cfg, size)
        if cfg.mqtt.url:
            MqttLink(cfg.mqtt, client_id=cfg.device_id, on_ack=lambda mid, reason: None)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    tally: Dict[str, int] = collections.Counter()
    example: Dict[str, Tuple[str, str]] = {}
    run_fails = 0
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "site.yaml"
        for desc, data in generate(args.seed, args.count):
            path.write_bytes(data)
            code, _, err = call_main(["config", "validate", str(path)])
            kind = outcome(code, err)
            tally[kind] += 1
            example.setdefault(kind, (desc, err.strip().splitlines()[-1][:160] if err.strip() else ""))
            if code == 0 and run_start_problem(path):
                run_fails += 1
                print(f"{desc}: validates, but run refuses it: {run_start_problem(path)[:160]}")
    for kind, n in sorted(tally.items()):
        print(f"{n:5d}  {kind:32s} e.g. {example[kind][0]}: {example[kind][1]}")
    print(f"{run_fails:5d}  validated but refused at run start")


if __name__ == "__main__":
    main()
