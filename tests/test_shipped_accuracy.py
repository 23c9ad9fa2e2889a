"""The CPU board profiles that work at the evaluated resolution ship a person-detector setting whose
measured accuracy meets the bar it was chosen for: count MAE <= 0.6 people per frame on the labelled
vtest frames, exact line counts, and no false alarm of rapid_change, abnormal_motion or camera_tamper on
normal footage with every anomaly clip still caught (eval/vtest_results_int8.json, written by
scripts/evaluate.py at vtest's 768x576). rpi4 works at 640x480, where the same setting measured
MAE 0.70 (docs/analytics.md): it is left out here rather than credited with the 768x576 figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

from appliance.config import load_config
from appliance.config.loader import load_board_profile

ROOT = Path(__file__).resolve().parent.parent


def _results() -> Dict[str, Any]:
    return json.loads((ROOT / "eval" / "vtest_results_int8.json").read_text())


def _cpu_profiles_at_the_evaluated_size() -> List[str]:
    size = _results()["frame_size"]
    names = []
    for path in sorted((ROOT / "firmware_configs").glob("*.yaml")):
        prof = load_board_profile(path.stem)
        on_cpu = prof.runtime.execution_providers == ["CPUExecutionProvider"]
        if on_cpu and [prof.working_width, prof.working_height] == size:
            names.append(path.stem)
    return names


CPU_PROFILES = _cpu_profiles_at_the_evaluated_size()


def test_there_are_cpu_profiles_to_check() -> None:
    assert {"x86-generic", "rpi5"} <= set(CPU_PROFILES)


@pytest.mark.parametrize("name", CPU_PROFILES)
def test_a_cpu_profile_default_counts_within_the_bar_and_keeps_line_counts_exact(name: str) -> None:
    prof = load_board_profile(name)
    threshold = load_config().detection.person_score_threshold
    assert prof.models.person == "ssdlite-person-int8"
    want = (prof.person_input_size, prof.person_tiling, threshold)
    row = next(r for r in _results()["detector_settings"] if (r["input_size"], r["tiling"], r["threshold"]) == want)
    assert row["count_mae"] <= 0.6
    assert row["line_abs_error"] == 0


@pytest.mark.parametrize("name", CPU_PROFILES)
def test_a_cpu_profile_default_raises_no_false_alarm_and_catches_every_clip(name: str) -> None:
    prof = load_board_profile(name)
    data = _results()
    setting = data["anomaly_setting"]
    assert (setting["person_model"], setting["input_size"], setting["tiling"], setting["threshold"]) == (
        prof.models.person,
        prof.person_input_size,
        prof.person_tiling,
        load_config().detection.person_score_threshold,
    )
    for flag in ("rapid_change", "abnormal_motion", "camera_tamper"):
        figures = data["anomalies"][flag]
        detected, clips = figures["recall"].split("/")
        assert figures["false_alarms"] == 0 and detected == clips, flag
