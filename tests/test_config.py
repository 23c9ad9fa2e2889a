"""The config schema: one validated model, unknown keys rejected, errors name file and field."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from appliance.config import json_schema, load_board_profile, load_config
from appliance.errors import InputError
from appliance.resources import firmware_configs_dir


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_defaults_need_no_file_and_print_instead_of_publishing() -> None:
    cfg = load_config()
    assert cfg.mqtt.url is None
    assert cfg.capture.source == "sample"
    assert cfg.profile.name == "x86-generic"


def test_site_file_and_overrides_are_merged(tmp_path: Path) -> None:
    site = write(tmp_path, "device_id: pole-17\npublish: {interval_s: 30}\nmqtt: {url: 'mqtt://127.0.0.1:1883'}\n")
    cfg = load_config(site, {"mqtt": {"url": "mqtt://127.0.0.1:9999"}})
    assert cfg.device_id == "pole-17"
    assert cfg.publish.interval_s == 30
    assert cfg.mqtt.url == "mqtt://127.0.0.1:9999"  # the command line wins


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        ("publsh: {interval_s: 3}\n", "publsh", "unknown key"),
        ("publish: {interval_s: 3, every: 4}\n", "publish.every", "unknown key"),
        ("publish: {interval_s: -1}\n", "publish.interval_s", "greater than 0"),
        ("zones: [{name: a, polygon: [[0, 0], [1, 0], [1, 1.5]]}]\n", "zones.0.polygon", "outside 0..1"),
        ("mqtt: {url: 'tcp://x'}\n", "mqtt.url", "mqtt://"),
        ("board: toaster\n", "board", "unknown board profile 'toaster'"),
        ("board_overrides: {working_width: 12}\n", "working_width", "greater than or equal to 64"),
    ],
)
def test_bad_values_name_the_file_and_the_field(tmp_path: Path, text: str, field: str, message: str) -> None:
    site = write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_config(site)
    line = str(err.value)
    assert "\n" not in line
    assert "site.yaml" in line
    assert field in line
    assert message in line


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    site = write(tmp_path, "device_id: a\nzones: [\n")
    with pytest.raises(InputError, match=r"site.yaml: line \d+: invalid YAML"):
        load_config(site)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.yaml: file not found"):
        load_config(tmp_path / "nope.yaml")


def test_duplicate_zone_names_are_refused(tmp_path: Path) -> None:
    zone = "{name: gate, polygon: [[0, 0], [1, 0], [1, 1]]}"
    with pytest.raises(InputError, match="duplicate name"):
        load_config(write(tmp_path, f"zones: [{zone}, {zone}]\n"))


@pytest.mark.parametrize("profile", sorted(p.stem for p in firmware_configs_dir().glob("*.yaml")))
def test_every_shipped_board_profile_is_valid(profile: str) -> None:
    board = load_board_profile(profile)
    assert board.name == profile  # the file name and the name inside agree


def test_json_schema_accepts_the_example_site_config_and_rejects_unknown_keys() -> None:
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    example = yaml.safe_load((Path(__file__).parent.parent / "examples" / "site.yaml").read_text())
    jsonschema.validate(example, schema)
    load_config(Path(__file__).parent.parent / "examples" / "site.yaml")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**example, "surprise": 1}, schema)


def test_the_committed_config_reference_is_generated_from_the_schema() -> None:
    from appliance.config.reference import render

    committed = (Path(__file__).parent.parent / "docs" / "config-reference.md").read_text()
    assert committed == render(), "regenerate: python -m appliance.config.reference > docs/config-reference.md"
