"""Hundreds of mangled site configs: never a traceback, always exit 0 or 2 with one line per error.

A config is the one input a technician types by hand, and under the service unit a traceback
(exit 1) is a restart loop. The generator (tests/config_fuzz.py) is seeded, so a failure names
the case that reproduces it. And "ok" must mean ok: whatever `config validate` accepts, `run`
starts with (the same preflight, then the stages it builds before the first frame).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
from support.config_fuzz import call_main, generate

from appliance.app import build_analyzer
from appliance.capture import open_source, parse_source
from appliance.config import ApplianceConfig
from appliance.config.preflight import load_runnable_config
from appliance.publish.client import MqttLink

ROOT = Path(__file__).resolve().parent.parent
SEED = 20261123
CASES = 300
PASSWORD_ENV = {"APPLIANCE_FUZZ_PASSWORD": "fuzz"}  # named by one of the generator's seed configs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> List[Tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("fuzz")
    out = []
    for i, (desc, data) in enumerate(generate(SEED, CASES)):
        path = folder / f"site-{i:03d}.yaml"
        path.write_bytes(data)
        out.append((desc, path))
    return out


def check_outcome(desc: str, code: int, out: str, err: str) -> None:
    assert "Traceback" not in err, f"{desc}: {err}"
    assert code in (0, 2), f"{desc}: exit {code}: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    if code == 2:  # one line per error (validate lists every schema error of the file)
        assert lines and all(line.startswith("appliance: error: ") for line in lines), f"{desc}: {err!r}"
    else:
        assert lines == [] and out.count("\n") == 1, f"{desc}: {out!r} {err!r}"


def start_stages_without_models(cfg: ApplianceConfig) -> None:
    """What `run` builds from the config before the first frame, except the (slow) model sessions."""
    size = (cfg.profile.working_width, cfg.profile.working_height)
    if not parse_source(cfg.capture.source).live:  # a live camera is retried, never a config error
        open_source(cfg.capture.source, cfg.capture, size).close()
    analyzer = build_analyzer(cfg, size)
    for zone in analyzer.zones:  # densities are finite: no degenerate ground plane got through
        assert zone.area_m2 is None or (math.isfinite(zone.area_m2) and zone.area_m2 > 0), zone.name
    if cfg.mqtt.url is not None:
        MqttLink(cfg.mqtt, client_id=cfg.mqtt.client_id or cfg.device_id, on_ack=lambda mid, reason: None)


def test_validate_never_crashes_and_ok_means_run_starts(corpus, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PASSWORD_ENV.items():
        monkeypatch.setenv(name, value)
    accepted = 0
    for desc, path in corpus:
        code, out, err = call_main(["config", "validate", str(path)])
        check_outcome(desc, code, out, err)
        if code == 0:
            accepted += 1
            start_stages_without_models(load_runnable_config(path))
    # The corpus must exercise both sides: mostly refusals, and enough survivors to test "ok".
    assert 10 <= accepted <= CASES - 100, accepted


def test_a_sample_as_real_processes_exit_0_or_2_with_one_line_per_error(corpus) -> None:
    # In-process calls cannot see what only a real interpreter prints (warnings, logging setup).
    for desc, path in corpus[::75]:
        proc = subprocess.run(
            [sys.executable, "-m", "appliance", "config", "validate", str(path)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**os.environ, **PASSWORD_ENV},
        )
        check_outcome(desc, proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.slow
def test_configs_that_validate_run_one_frame(corpus, tmp_path: Path) -> None:
    env = {**os.environ, **PASSWORD_ENV}
    accepted = []
    for desc, path in corpus:
        code, _, _ = call_main(["config", "validate", str(path)])
        if code == 0:
            accepted.append((desc, path))
    assert accepted
    for desc, path in accepted[:: max(1, len(accepted) // 4)]:
        proc = subprocess.run(
            # A broker a config may name is not running: runs buffer into a private outbox and stop.
            [sys.executable, "-m", "appliance", "run", "--config", str(path), "--max-frames", "1",
             "--outbox", str(tmp_path / f"{path.stem}.sqlite3")],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=ROOT,
            env=env,
        )
        assert proc.returncode == 0, f"{desc}: exit {proc.returncode}: {proc.stderr[-2000:]}"
        assert "Traceback" not in proc.stderr, desc
