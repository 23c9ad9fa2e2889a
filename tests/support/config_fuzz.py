"""Seeded generator of hostile site configs, for tests/test_config_fuzz.py.

Starts from real configs (examples/site.yaml and the shapes the tests use) and mutates them the way
a hurried technician or a hostile tester would: wrong types, odd values, deep nesting, duplicate
keys, stray bytes, truncation. Deterministic for a given seed, so a failure reproduces.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import yaml

ROOT = Path(__file__).resolve().parents[2]

# Seeds besides examples/site.yaml: every section a site file may have, with valid values.
_SEED_TEXTS = [
    """
device_id: pole-17
board: rpi4
capture: {source: sample, loop: false, read_timeout_s: 5}
anonymize: {method: pixelate, shape: box, margin_ratio: 0.3, persist_frames: 5}
detection: {person_score_threshold: 0.4, nms_iou: 0.45}
zones:
  - {name: left, polygon: [[0, 0], [0.5, 0], [0.5, 1], [0, 1]], max_people: 10, flow_direction_deg: 90}
lines:
  - {name: gate, start: [0.2, 0.5], end: [0.8, 0.5], min_crossing_px: 8}
analytics:
  heatmap: {enabled: true, rows: 4, cols: 4}
  ground_plane:
    image_points: [[0.1, 0.9], [0.9, 0.9], [0.7, 0.4], [0.3, 0.4]]
    world_points_m: [[0, 0], [10, 0], [10, 20], [0, 20]]
anomalies:
  rapid_change: {z_threshold: 2.5, hold_s: 1}
  camera_tamper: false
publish: {interval_s: 5, health_interval_s: 30}
""",
    """
device_id: tls-dev
mqtt:
  url: mqtts://localhost:8883
  username: dev
  password_env: APPLIANCE_FUZZ_PASSWORD
  keepalive_s: 30
  qos: 1
  tls: {insecure_skip_verify: false}
outbox: {max_bytes: 1048576}
board_overrides: {working_width: 640, working_height: 480, runtime: {intra_op_threads: 1}}
health: {face_stage_max_consecutive_failures: 25}
""",
]

_ODD_SCALARS: List[Any] = [
    True, False, None, 0, -1, -3, 99999, 10**30, 1e308, float("nan"), float("inf"), float("-inf"),
    0.0, -0.0, 0.5, 1.5, "", " ", "x", "0", "10", "true", "ünïcödé", "a" * 500, "../../etc/passwd",
    "mqtt://", "mqtt://127.0.0.1:99999", "mqtt://:1883", "mqtts://127.0.0.1:0", "tcp://x", "a\x00b",
    "/nonexistent/file.pem", [], {}, [0.5], [0.5, 0.5, 0.5], [[0, 0], [0, 0], [0, 0], [0, 0]],
]

Mutation = Callable[[random.Random, Any], Any]


def seed_configs() -> List[Dict[str, Any]]:
    example = yaml.safe_load((ROOT / "examples" / "site.yaml").read_text(encoding="utf-8"))
    return [example] + [yaml.safe_load(t) for t in _SEED_TEXTS]


def _paths(node: Any, prefix: Tuple[Any, ...] = ()) -> List[Tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _set(root: Any, path: Tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = root
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return root


def _get(root: Any, path: Tuple[Any, ...]) -> Any:
    for key in path:
        root = root[key]
    return root


def _deep(rng: random.Random, depth: int) -> Any:
    value: Any = rng.choice([1, "x", None])
    for _ in range(depth):
        value = {"a": value} if rng.random() < 0.5 else [value]
    return value


def _mutate_tree(rng: random.Random, data: Dict[str, Any]) -> Any:
    """One to three structural mutations of a parsed config."""
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        paths = _paths(data)
        path = rng.choice(paths[1:] or [()])
        kind = rng.randrange(8)
        if kind <= 2:  # an odd scalar or container in place of the value
            data = _set(data, path, copy.deepcopy(rng.choice(_ODD_SCALARS)))
        elif kind == 3 and path:  # drop the key or item
            parent = _get(data, path[:-1])
            del parent[path[-1]]
        elif kind == 4:  # an unknown key beside it
            parent = _get(data, path[:-1]) if path else data
            if isinstance(parent, dict):
                parent[rng.choice(["extra", "Device_id", "zones ", "1", "interval_s"])] = 1
        elif kind == 5:  # deep nesting (a hostile file, or a paste gone wrong); last mutation
            return _set(data, path, _deep(rng, rng.choice([20, 200, 3000])))
        elif kind == 6:  # a number nudged out of range
            value = _get(data, path)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                data = _set(data, path, rng.choice([-value, value * 1e6, value + 0.5, -1e-9]))
        else:  # the whole value wrapped in a list or a mapping
            value = _get(data, path)
            data = _set(data, path, rng.choice([[value], {"value": value}]))
    return data


def _mutate_bytes(rng: random.Random, text: bytes) -> bytes:
    """Byte-level damage to a YAML text."""
    data = bytearray(text)
    kind = rng.randrange(7)
    pos = rng.randrange(max(1, len(data)))
    if kind == 0:  # stray non-UTF-8 bytes
        data[pos:pos] = rng.choice([b"\xff", b"\xc3", b"\xfe\xff", b"\x80\x80"])
    elif kind == 1:  # truncated file
        del data[pos:]
    elif kind == 2:  # control characters YAML refuses
        data[pos:pos] = rng.choice([b"\x00", b"\x07", b"\t", b"\x1b[0m"])
    elif kind == 3:  # a line duplicated: duplicate keys
        lines = bytes(data).splitlines(keepends=True)
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i])
        data = bytearray(b"".join(lines))
    elif kind == 4:  # unbalanced or deeply nested flow collections
        data[pos:pos] = rng.choice([b"[", b"{", b"[" * 5000, b"{a: " * 3000, b"]", b"}"])
    elif kind == 5:  # random bit flips
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(max(1, len(data)))
            if data:
                data[i] ^= 1 << rng.randrange(8)
    else:  # YAML features a config never needs
        data[pos:pos] = rng.choice([b"\n--- \n", b"!!python/object:os.system ''\n", b"&a x: *a\n", b"? [a]\n: b\n"])
    return bytes(data)


def generate(seed: int, count: int) -> List[Tuple[str, bytes]]:
    """``count`` (description, file bytes) pairs, the same for the same seed."""
    rng = random.Random(seed)
    seeds = seed_configs()
    out: List[Tuple[str, bytes]] = []
    for i in range(count):
        base = rng.choice(seeds)
        if rng.random() < 0.6:
            mutated = _mutate_tree(rng, base)
            try:
                text = yaml.safe_dump(mutated, sort_keys=False, allow_unicode=True).encode("utf-8")
            except (RecursionError, yaml.YAMLError):  # too deep for the dumper: write it flow-style by hand
                text = b"board_overrides: " + b"{a: " * 3000 + b"1" + b"}" * 3000 + b"\n"
            out.append((f"#{i} tree", text))
        else:
            text = yaml.safe_dump(base, sort_keys=False).encode("utf-8")
            out.append((f"#{i} bytes", _mutate_bytes(rng, text)))
    return out


def call_main(argv: List[str]) -> Tuple[int, str, str]:
    """``appliance.cli.main(argv)`` in-process: (exit code, stdout, stderr) as a real process would end.

    An exception escaping main() is what a real process would print as a traceback (exit 1).
    """
    import contextlib
    import io
    import traceback

    from appliance.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
    return code, out.getvalue(), err.getvalue()
