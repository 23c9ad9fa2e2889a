"""``appliance config validate`` lists every error of a site file, one line each for people and as
JSON for tools (still exit 2), and an unknown key names the nearest key its section knows; every
other command keeps its single error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.config_fuzz import call_main

from appliance.config import load_config
from appliance.config.loader import ConfigErrors, ConfigProblem

# Six mistakes in five sections: four misspelt keys, an unknown key with no near neighbour, a bad value.
SIX_ERRORS = """\
device_id: cam-1
publsh:
  interval_s: 5
capture:
  sorce: /dev/video0
  frame_rate: 5
zones:
  - name: a
    polygon: [[0, 0], [1, 0], [1, 1]]
    max_peple: 3
mqtt:
  keepalive_s: 1
  tls:
    cert_fle: device.crt
"""

EXPECTED = [
    ("capture.sorce", "unknown key (did you mean 'source'?)"),
    ("capture.frame_rate", "unknown key"),
    ("zones.0.max_peple", "unknown key (did you mean 'max_people'?)"),
    ("mqtt.keepalive_s", "Input should be greater than or equal to 5"),
    ("mqtt.tls.cert_fle", "unknown key (did you mean 'cert_file'?)"),
    ("publsh", "unknown key (did you mean 'publish'?)"),
]


@pytest.fixture
def six_errors(tmp_path: Path) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(SIX_ERRORS)
    return path


def test_validate_lists_every_error_one_line_each(six_errors: Path) -> None:
    code, out, err = call_main(["config", "validate", str(six_errors)])
    assert code == 2 and out == ""
    assert "more error" not in err
    assert sorted(err.splitlines()) == sorted(
        f"appliance: error: {six_errors}: {field}: {message}" for field, message in EXPECTED
    )


def test_validate_json_reports_every_error_on_stdout_and_exits_2(six_errors: Path) -> None:
    code, out, err = call_main(["config", "validate", str(six_errors), "--json"])
    assert code == 2 and err == ""
    assert out.count("\n") == 1
    report = json.loads(out)
    assert report["ok"] is False and report["file"] == str(six_errors)
    assert sorted((e["field"], e["message"]) for e in report["errors"]) == sorted(EXPECTED)
    assert {e["file"] for e in report["errors"]} == {str(six_errors)}


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("zones: [\n", "line 2", "invalid YAML"),  # not even YAML: one error, where it is
        ("mqtt:\n  url: mqtt://localhost\n  tls:\n    ca_file: /no/such/ca.crt\n", "mqtt.tls.ca_file",
         "/no/such/ca.crt: no such file"),  # a file it names is missing (what run checks at start)
    ],
)
def test_validate_json_also_carries_errors_that_are_not_schema_errors(
    tmp_path: Path, text: str, field: str, message: str
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    code, out, err = call_main(["config", "validate", str(path), "--json"])
    assert code == 2 and err == ""
    (only,) = json.loads(out)["errors"]
    assert only["file"] == str(path) and only["field"] == field and message in only["message"]

    missing = tmp_path / "missing.yaml"
    code, out, _ = call_main(["config", "validate", str(missing), "--json"])
    assert code == 2
    assert json.loads(out)["errors"] == [{"file": str(missing), "field": None, "message": "file not found"}]


def test_other_commands_keep_one_line_naming_the_first_error_and_how_many_more(six_errors: Path) -> None:
    for command in (["run", "--config", str(six_errors)], ["selftest", "--config", str(six_errors)]):
        code, _, err = call_main(command)
        assert code == 2
        (line,) = err.splitlines()
        assert line.startswith(f"appliance: error: {six_errors}: capture.sorce: unknown key (did you mean 'source'?)")
        assert line.endswith("(and 5 more errors: appliance config validate lists them)")


def test_the_error_object_holds_every_problem(six_errors: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_config(six_errors)
    assert len(info.value.problems) == 6
    assert info.value.problems[0] == ConfigProblem(str(six_errors), "capture.sorce",
                                                   "unknown key (did you mean 'source'?)")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        # a key of a board profile section, changed from the site
        ({"board_overrides": {"runtime": {"intra_op_thread": 2}}}, "board_overrides.runtime.intra_op_thread",
         "unknown key (did you mean 'intra_op_threads'?)"),
        # a section that is an item of a list
        ({"lines": [{"name": "g", "start": [0, 0], "end": [1, 1], "min_crossing": 4}]}, "lines.0.min_crossing",
         "unknown key (did you mean 'min_crossing_px'?)"),
        # nothing near: no guess
        ({"zzzzzz": 1}, "zzzzzz", "unknown key"),
    ],
)
def test_an_unknown_key_names_the_nearest_known_key_of_its_own_section(
    overrides: dict, field: str, message: str
) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_config(overrides=overrides)
    assert info.value.problems == [ConfigProblem("<command line>", field, message)]
