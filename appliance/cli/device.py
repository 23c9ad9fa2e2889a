"""The device's own commands: run, blur, count, preview, bench, selftest."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from appliance.cli.common import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    POSITIVE_SECONDS,
    add_config,
    add_max_pixels,
    load,
    load_runnable,
    print_json,
)

log = logging.getLogger("appliance")


def cmd_run(args: argparse.Namespace) -> int:
    from appliance.app import build_pipeline

    cfg = load_runnable(args)
    stop = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        log.info("received %s, stopping after the current frame", signal.Signals(signum).name)
        stop.set()

    # SIGHUP too (a closed SSH session, a hung-up terminal): the default would kill the run
    # without its last window, its stop entry or a clean offline.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, _stop)
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
    from appliance.progress import progress_on

    cfg = load(args)
    report = blur_file(
        cfg, Path(args.input), Path(args.output), progress=progress_on(sys.stderr), overwrite=args.overwrite
    )
    print(
        f"{args.output}: {report.frames} frame(s), {report.faces} face(s) and {report.heads} head(s) hidden"
        + (f", {report.dropped} frame(s) blacked out (anonymizer failed closed)" if report.dropped else ""),
        file=sys.stderr,
    )
    return 1 if report.dropped else 0


def cmd_count(args: argparse.Namespace) -> int:
    from appliance.app import count_file
    from appliance.progress import NoProgress, progress_on

    cfg = load(args)
    # Rows on a terminal are their own progress; a bar is shown when they go to a file or pipe.
    progress = NoProgress() if sys.stdout.isatty() else progress_on(sys.stderr)
    for row in count_file(cfg, Path(args.input), progress=progress):
        if args.json:
            print_json(row)
        else:
            zones = " ".join(f"{k}={v}" for k, v in row.get("zones", {}).items())
            print(f"frame {row['frame']}: {row['count']} people {zones}".rstrip())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from appliance.bench import run_bench
    from appliance.progress import progress_on

    cfg = load(args)
    result = run_bench(
        cfg, frames=args.frames, compare_precision=args.compare_precision, progress=progress_on(sys.stderr)
    )
    if args.json:
        print_json(result.to_dict())
    else:
        print(result.table())
    return 0


def cmd_selftest(args: argparse.Namespace) -> int:
    from appliance.selftest import run_selftest

    report = run_selftest(load(args), source_timeout_s=args.timeout, config_path=args.config, skip=args.skip)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.text())
    return 0 if report.ok else 1


def cmd_preview(args: argparse.Namespace) -> int:
    from appliance.app import write_preview

    cfg = load(args)
    summary = write_preview(cfg, Path(args.output), skip_frames=args.skip, overwrite=args.overwrite)
    print(f"{args.output}: anonymized preview, {summary.text}", file=sys.stderr)
    for warning in summary.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def add_overwrite(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output file (never a symbolic link, never in the device's state folder)",
    )


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("run", help="the main job: capture, anonymize, count, publish")
    add_config(p)
    p.add_argument("--source", metavar="SRC", help="/dev/videoN, rtsp://..., libcamera:N, argus:N, file, folder")
    p.add_argument("--broker", metavar="URL", help="mqtt://host:port or mqtts://host:port (default: print to stdout)")
    p.add_argument("--device-id", metavar="ID", help="device id in topics and payloads (overrides device_id)")
    p.add_argument("--interval", type=POSITIVE_SECONDS, metavar="S", help="counts window length in seconds")
    p.add_argument("--outbox", metavar="FILE", help="SQLite store-and-forward file (overrides outbox.path)")
    p.add_argument("--max-frames", type=POSITIVE_INT, metavar="N", help="stop cleanly after N frames")
    add_max_pixels(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("blur", help="anonymize an image or video file exactly as the live pipeline does")
    p.add_argument("input", help="image or video file to anonymize")
    p.add_argument("-o", "--output", required=True, help="where the anonymized copy goes (same format)")
    add_overwrite(p)
    add_config(p)
    add_max_pixels(p)
    p.set_defaults(func=cmd_blur)

    p = sub.add_parser("count", help="people per frame of an image or video")
    p.add_argument("input", help="image or video file to count people in")
    add_config(p)
    p.add_argument("--json", action="store_true", help="one JSON object per frame")
    add_max_pixels(p)
    p.set_defaults(func=cmd_count)

    p = sub.add_parser("bench", help="per-stage latency and end-to-end fps on a clip")
    add_config(p)
    p.add_argument("--source", metavar="SRC", help="clip to run on (default: the bundled sample)")
    p.add_argument("--frames", type=POSITIVE_INT, default=100, metavar="N", help="frames to time (default: 100)")
    p.add_argument(
        "--compare-precision", action="store_true", help="also run the int8/fp32 counterparts and report the ratio"
    )
    p.add_argument("--json", action="store_true", help="the result as one JSON object instead of the table")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("selftest", help="green/red check of config, models, camera, anonymizer and broker")
    add_config(p)
    p.add_argument("--source", metavar="SRC", help="camera to check (overrides capture.source)")
    p.add_argument("--broker", metavar="URL", help="mqtt:// or mqtts://host:port to check (overrides mqtt.url)")
    p.add_argument(
        "--timeout", type=POSITIVE_SECONDS, default=10.0, metavar="S", help="wait this long for a camera frame"
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["camera", "time", "outbox", "broker"],
        help="leave a check out (lab bench, CI); shown as SKIP, and the result is then not 'ready to deploy'",
    )
    p.add_argument("--json", action="store_true", help="the checks as one JSON object instead of the list")
    p.set_defaults(func=cmd_selftest)

    p = sub.add_parser("preview", help="write one anonymized frame with zones and lines drawn, to aim the camera")
    add_config(p)
    p.add_argument("--source", metavar="SRC", help="camera or clip to take the frame from (overrides capture.source)")
    p.add_argument(
        "-o", "--output", default="preview.jpg", metavar="FILE", help="image to write (default: %(default)s)"
    )
    add_overwrite(p)
    p.add_argument(
        "--skip", type=NON_NEGATIVE_INT, default=0, metavar="N", help="skip N frames first (let exposure settle)"
    )
    add_max_pixels(p)
    p.set_defaults(func=cmd_preview)
