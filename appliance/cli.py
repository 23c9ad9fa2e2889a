"""Command line: ``appliance <command>``. Names and flags are a contract other tools script against.

Exit codes: 0 success, 2 bad input or config (one line on stderr, no traceback), 1 runtime failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Sequence

from appliance import __version__
from appliance.errors import ApplianceError

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig

log = logging.getLogger("appliance")


# --------------------------------------------------------------------------- shared helpers


def _overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """Command-line flags that override the config file, as a partial site config."""
    out: Dict[str, Any] = {}
    if getattr(args, "source", None):
        out.setdefault("capture", {})["source"] = args.source
    if getattr(args, "broker", None):
        out.setdefault("mqtt", {})["url"] = args.broker
    if getattr(args, "device_id", None):
        out["device_id"] = args.device_id
    if getattr(args, "board", None):
        out["board"] = args.board
    if getattr(args, "interval", None):
        out.setdefault("publish", {})["interval_s"] = args.interval
    if getattr(args, "outbox", None):
        out.setdefault("outbox", {})["path"] = args.outbox
    return out


def _load(args: argparse.Namespace) -> ApplianceConfig:
    from appliance.config import load_config

    return load_config(args.config, _overrides(args))


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="site config YAML (default: built-in defaults)")
    p.add_argument("--board", metavar="NAME", help="board profile in firmware_configs/ (overrides the config)")


# --------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from appliance.app import build_pipeline

    cfg = _load(args)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("received %s, stopping after the current frame", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    pipeline = build_pipeline(cfg)
    result = pipeline.run(max_frames=args.max_frames, stop=stop)
    log.info(
        "stopped (%s): %d frames read, %d analyzed, %d dropped, %d windows published",
        result.stopped_by,
        result.frames_read,
        result.frames_analyzed,
        result.frames_dropped,
        result.windows_published,
    )
    return 0


def cmd_blur(args: argparse.Namespace) -> int:
    from appliance.app import blur_file

    cfg = _load(args)
    report = blur_file(cfg, Path(args.input), Path(args.output))
    print(
        f"{args.output}: {report.frames} frame(s), {report.faces} face(s) and {report.heads} head(s) hidden"
        + (f", {report.dropped} frame(s) blacked out (anonymizer failed closed)" if report.dropped else ""),
        file=sys.stderr,
    )
    return 1 if report.dropped else 0


def cmd_count(args: argparse.Namespace) -> int:
    from appliance.app import count_file

    cfg = _load(args)
    for row in count_file(cfg, Path(args.input)):
        if args.json:
            _print_json(row)
        else:
            zones = " ".join(f"{k}={v}" for k, v in row.get("zones", {}).items())
            print(f"frame {row['frame']}: {row['count']} people {zones}".rstrip())
    return 0


def cmd_config_validate(args: argparse.Namespace) -> int:
    from appliance.config import config_hash, load_config

    cfg = load_config(args.file)
    if args.json:
        _print_json({"ok": True, "file": args.file, "board": cfg.profile.name, "config_hash": config_hash(cfg)})
    else:
        print(f"{args.file}: ok (device {cfg.device_id}, board {cfg.profile.name}, hash {config_hash(cfg)})")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from appliance.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_models_verify(args: argparse.Namespace) -> int:
    from appliance.models.verify import verify_models

    report = verify_models()
    if args.json:
        _print_json(report.to_dict())
    else:
        for line in report.lines():
            print(line)
    return 0 if report.ok else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from appliance.bench import run_bench

    cfg = _load(args)
    result = run_bench(cfg, frames=args.frames, compare_precision=args.compare_precision)
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.table())
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from appliance.selftest import run_selftest

    report = run_selftest(_load(args), source_timeout_s=args.timeout, config_path=args.config, skip=args.skip)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.text())
    return 0 if report.ok else 1


def cmd_preview(args: argparse.Namespace) -> int:
    from appliance.app import write_preview

    cfg = _load(args)
    info = write_preview(cfg, Path(args.output), skip_frames=args.skip)
    print(f"{args.output}: anonymized preview, {info}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="appliance",
        description="Privacy-preserving crowd monitoring: faces blurred at capture, only anonymized counts leave.",
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="the main job: capture, anonymize, count, publish")
    _add_config(p)
    p.add_argument("--source", metavar="SRC", help="camera index, /dev/videoN, URL, GStreamer pipeline, file, folder")
    p.add_argument("--broker", metavar="URL", help="mqtt://host:port or mqtts://host:port (default: print to stdout)")
    p.add_argument("--device-id", metavar="ID")
    p.add_argument("--interval", type=float, metavar="S", help="counts window length in seconds")
    p.add_argument("--outbox", metavar="FILE", help="SQLite store-and-forward file (overrides outbox.path)")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop cleanly after N frames")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("blur", help="anonymize an image or video file exactly as the live pipeline does")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    _add_config(p)
    p.set_defaults(func=cmd_blur)

    p = sub.add_parser("count", help="people per frame of an image or video")
    p.add_argument("input")
    _add_config(p)
    p.add_argument("--json", action="store_true", help="one JSON object per frame")
    p.set_defaults(func=cmd_count)

    p = sub.add_parser("config", help="validate a site config or print its JSON Schema")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    v = csub.add_parser("validate", help="check a site config file")
    v.add_argument("file")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_config_validate)
    s = csub.add_parser("schema", help="print the JSON Schema of the site config")
    s.set_defaults(func=cmd_config_schema)

    p = sub.add_parser("models", help="model files")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    v = msub.add_parser("verify", help="check every model file against the manifest's sha256")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_models_verify)

    p = sub.add_parser("bench", help="per-stage latency and end-to-end fps on a clip")
    _add_config(p)
    p.add_argument("--source", metavar="SRC", help="clip to run on (default: the bundled sample)")
    p.add_argument("--frames", type=int, default=100, metavar="N")
    p.add_argument(
        "--compare-precision", action="store_true", help="also run the int8/fp32 counterparts and report the ratio"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("selftest", help="green/red check of config, models, camera, anonymizer and broker")
    _add_config(p)
    p.add_argument("--source", metavar="SRC")
    p.add_argument("--broker", metavar="URL")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="wait this long for a camera frame")
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["camera", "time", "outbox", "broker"],
        help="leave a check out (lab bench, CI); shown as SKIP, and the result is then not 'ready to deploy'",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_selftest)

    p = sub.add_parser("preview", help="write one anonymized frame with zones and lines drawn, to aim the camera")
    _add_config(p)
    p.add_argument("--source", metavar="SRC")
    p.add_argument("-o", "--output", default="preview.jpg")
    p.add_argument("--skip", type=int, default=0, metavar="N", help="skip N frames first (let exposure settle)")
    p.set_defaults(func=cmd_preview)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args))
    except ApplianceError as exc:
        print(f"appliance: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `appliance count ... | head`
        return 0
