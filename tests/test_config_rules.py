"""Nonsense a site file could say is refused with one line naming the file and the field.

Each case here was once accepted and published (a density of 3.9e18 people/m², a bow-tie zone) or
ended in a traceback.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.config.broker_url import BrokerAddress, BrokerUrlError, parse_broker_url
from appliance.errors import InputError

SQUARE = "[[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]"
GROUND = (
    "image_points: [[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4]], "
    "world_points_m: [[0, 0], [10, 0], [10, 20], [0, 20]]"
)


def refused(tmp_path: Path, text: str | bytes) -> str:
    """The one error line for a site file holding ``text``."""
    site = tmp_path / "site.yaml"
    site.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    with pytest.raises(InputError) as err:
        load_config(site)
    line = str(err.value)
    assert "\n" not in line
    assert line.startswith(f"{site}: ")
    return line


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        # Geometry
        ("analytics: {ground_plane: {image_points: [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]], "
         "world_points_m: [[0, 0], [1, 0], [1, 1], [0, 1]]}}", "analytics.ground_plane", "on one line or identical"),
        ("analytics: {ground_plane: {image_points: [[0.1, 0.9], [0.5, 0.9], [0.9, 0.9], [0.3, 0.4]], "
         "world_points_m: [[0, 0], [1, 0], [1, 1], [0, 1]]}}", "analytics.ground_plane", "on one line"),
        ("analytics: {ground_plane: {image_points: [[0.1, 0.9], [0.9, 0.9], [0.3, 0.4], [0.7, 0.4]], "
         "world_points_m: [[0, 0], [10, 0], [10, 20], [0, 20]]}}", "analytics.ground_plane", "same order"),
        # Steep perspective: the horizon is at y = 0.56, and this zone reaches above it.
        ("analytics: {ground_plane: {image_points: [[0.1, 0.9], [0.9, 0.9], [0.55, 0.6], [0.45, 0.6]], "
         "world_points_m: [[0, 0], [10, 0], [10, 20], [0, 20]]}}\n"
         "zones: [{name: sky, polygon: [[0, 0.3], [1, 0.3], [1, 1], [0, 1]]}]", "zones.0.polygon", "horizon"),
        ("lines: [{name: gate, start: [0.5, 0.5], end: [0.5, 0.5]}]", "lines.0", "apart"),
        ("lines: [{name: gate, start: [0.5, 0.5], end: [1.5, 0.5]}]", "lines.0.end", "outside 0..1"),
        ("lines: [{name: gate, start: [-0.1, 0.5], end: [0.5, 0.5]}]", "lines.0.start", "outside 0..1"),
        ("zones: [{name: bowtie, polygon: [[0, 0], [1, 1], [1, 0], [0, 1]]}]", "zones.0.polygon", "Self-intersection"),
        ("zones: [{name: flat, polygon: [[0, 0], [0.5, 0.5], [1, 1]]}]", "zones.0.polygon", "not a simple polygon"),
        ("zones: [{name: speck, polygon: [[0, 0], [0.001, 0], [0, 0.001]]}]", "zones.0.polygon", "too small"),
        # Perspective tile bands
        ("detection: {perspective_bands: [{top: 0.5, bottom: 0.2, columns: 2}]}", "detection.perspective_bands.0",
         "bottom must be below top"),
        ("detection: {perspective_bands: [{top: 0.1, bottom: 0.6, columns: 0}]}",
         "detection.perspective_bands.0.columns", "greater than or equal to 1"),
        ("detection: {perspective_bands: []}", "detection.perspective_bands", "at least 1"),
        # Bands the board's tiling would never run are refused, not silently ignored.
        ("board_overrides: {person_tiling: 2x1}\ndetection: {perspective_bands: [{top: 0.1, bottom: 0.6, columns: 2}]}",
         "detection.perspective_bands", "only used with person_tiling 'perspective'"),
        # Numbers
        ("publish: {interval_s: .nan}", "publish.interval_s", "finite number"),
        ("publish: {interval_s: .inf}", "publish.interval_s", "finite number"),
        (f"zones: [{{name: a, polygon: {SQUARE}, area_m2: .inf}}]", "zones.0.area_m2", "finite number"),
        ("zones: [{name: a, polygon: [[0, 0], [.nan, 0], [1, 1]]}]", "zones.0.polygon.1.0", "finite number"),
        ("publish: {interval_s: true}", "publish.interval_s", "not a boolean"),
        ("publish: {interval_s: '10'}", "publish.interval_s", "not a string"),
        ("anonymize: {persist_frames: 5.5}", "anonymize.persist_frames", "valid integer"),
        # MQTT
        ("mqtt: {url: 'mqtt://127.0.0.1:1883', qos: 0}", "mqtt.qos", "only 1 is allowed"),
        ("mqtt: {url: 'mqtt://127.0.0.1:99999'}", "mqtt.url", "port must be a number from 1 to 65535"),
        ("mqtt: {url: 'mqtt://'}", "mqtt.url", "has no host"),
        ("mqtt: {url: 'mqtt://user:secret@broker'}", "mqtt.url", "must not contain credentials"),
        # Names
        ("board: ../../etc/passwd", "board", "should match pattern"),
        ("device_id: 'a b'", "device_id", "should match pattern"),
    ],
)
def test_nonsense_is_refused_naming_the_field(tmp_path: Path, text: str, field: str, message: str) -> None:
    line = refused(tmp_path, text + "\n")
    assert f": {field}: " in line, line
    assert message in line, line


def test_a_sensible_ground_plane_and_zone_below_its_horizon_are_accepted(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"analytics: {{ground_plane: {{{GROUND}}}}}\nzones: [{{name: square, polygon: {SQUARE}}}]\n")
    cfg = load_config(site)
    assert cfg.analytics.ground_plane is not None and cfg.zones[0].polygon[0] == (0.1, 0.1)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (b"device_id: a\ndevice_id: b\n", "line 2", "duplicate key 'device_id' (first on line 1)"),
        (b"publish:\n  interval_s: 5\n  interval_s: 10\n", "line 3", "duplicate key 'interval_s'"),
        (b"device_id: caf\xe9\n", "line 1", "not UTF-8 text: byte 0xe9"),
        (b"device_id: a\x00\n", "line 1", "control character U+0000"),
        (b"zones: [\n", "line 2", "invalid YAML"),
        (b"a: 1\n--- \nb: 2\n", "line 2", "single document"),
    ],
)
def test_file_level_problems_are_one_line_with_a_line_number(
    tmp_path: Path, text: bytes, where: str, message: str
) -> None:
    line = refused(tmp_path, text)
    assert f": {where}: " in line, line
    assert message in line, line


@pytest.mark.parametrize(
    "text",
    [
        b"board_overrides: " + b"[" * 5000 + b"]" * 5000 + b"\n",  # RecursionError inside PyYAML
        b"board_overrides: " + b"{a: " * 30 + b"1" + b"}" * 30 + b"\n",  # parses, then too deep
    ],
)
def test_deep_nesting_is_refused_without_a_recursion_error(tmp_path: Path, text: bytes) -> None:
    assert "nested deeper than" in refused(tmp_path, text)


def test_alias_bombs_and_huge_files_are_refused(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6)
    )
    assert "more than" in refused(tmp_path, bomb)
    assert "larger than" in refused(tmp_path, b"# " + b"x" * (2 * 1024 * 1024))


def test_yaml_merge_keys_may_override_without_being_duplicates(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("x-base: &base {interval_s: 5}\n")  # an unknown top-level key is still refused...
    with pytest.raises(InputError, match="x-base: unknown key"):
        load_config(site)
    site.write_text("publish:\n  <<: {interval_s: 5, health_interval_s: 60}\n  interval_s: 20\n")
    cfg = load_config(site)  # ...but a merge followed by an override is how merges are used
    assert (cfg.publish.interval_s, cfg.publish.health_interval_s) == (20, 60)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("mqtt://127.0.0.1", BrokerAddress("mqtt", "127.0.0.1", 1883)),
        ("mqtts://broker.city.example", BrokerAddress("mqtts", "broker.city.example", 8883)),
        ("mqtts://localhost:18883/", BrokerAddress("mqtts", "localhost", 18883)),
        ("mqtt://[::1]:1884", BrokerAddress("mqtt", "::1", 1884)),
    ],
)
def test_one_parser_reads_every_broker_url(url: str, address: BrokerAddress) -> None:
    assert parse_broker_url(url) == address
    assert parse_broker_url(str(address)) == address  # str() round-trips
    assert address.tls == (address.scheme == "mqtts")


@pytest.mark.parametrize(
    "url",
    ["tcp://x", "mqtt://", "mqtt://:1883", "mqtt://h:0", "mqtt://h:99999", "mqtt://h:x", "mqtt://h/topic",
     "mqtt://a b", "mqtt://u:p@h", "mqtt://[::1", "mqtt://h..x"],
)
def test_the_broker_url_parser_refuses_what_no_client_could_connect_to(url: str) -> None:
    with pytest.raises(BrokerUrlError) as err:
        parse_broker_url(url)
    assert "\n" not in str(err.value)
