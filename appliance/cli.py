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
from typing import TYPE_CHECKING, Any, Callable, Dict, NoReturn, Optional, Sequence

from appliance import __version__
from appliance.errors import ApplianceError, InputError

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


def _load_runnable(args: argparse.Namespace) -> ApplianceConfig:
    """The config plus the checks that need this machine (files, password, outbox): see preflight.py."""
    from appliance.config.preflight import load_runnable_config

    return load_runnable_config(args.config, _overrides(args))


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="site config YAML (default: built-in defaults)")
    p.add_argument("--board", metavar="NAME", help="board profile in firmware_configs/ (overrides the config)")


# --------------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from appliance.app import build_pipeline

    cfg = _load_runnable(args)
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
    from appliance.progress import progress_on

    cfg = _load(args)
    report = blur_file(cfg, Path(args.input), Path(args.output), progress=progress_on(sys.stderr))
    print(
        f"{args.output}: {report.frames} frame(s), {report.faces} face(s) and {report.heads} head(s) hidden"
        + (f", {report.dropped} frame(s) blacked out (anonymizer failed closed)" if report.dropped else ""),
        file=sys.stderr,
    )
    return 1 if report.dropped else 0


def cmd_count(args: argparse.Namespace) -> int:
    from appliance.app import count_file
    from appliance.progress import NoProgress, progress_on

    cfg = _load(args)
    # Rows on a terminal are their own progress; a bar is shown when they go to a file or pipe.
    progress = NoProgress() if sys.stdout.isatty() else progress_on(sys.stderr)
    for row in count_file(cfg, Path(args.input), progress=progress):
        if args.json:
            _print_json(row)
        else:
            zones = " ".join(f"{k}={v}" for k, v in row.get("zones", {}).items())
            print(f"frame {row['frame']}: {row['count']} people {zones}".rstrip())
    return 0


def cmd_config_validate(args: argparse.Namespace) -> int:
    from appliance.config import config_hash
    from appliance.config.loader import config_label

    if args.file and args.config and args.file != args.config:
        raise InputError(f"two different files given ({args.file} and --config {args.config}); give one")
    args.config = args.file or args.config
    # Everything `run` checks before its first frame, so "ok" here means `run` starts.
    cfg = _load_runnable(args)
    label = config_label(args.config, _overrides(args))
    if args.json:
        _print_json({"ok": True, "file": args.config, "board": cfg.profile.name, "config_hash": config_hash(cfg)})
    else:
        print(f"{label}: ok (device {cfg.device_id}, board {cfg.profile.name}, hash {config_hash(cfg)})")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    from appliance.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def cmd_models_verify(args: argparse.Namespace) -> int:
    from appliance.models.verify import verify_models

    # With a config, also check that the models its board profile selects are in the manifest.
    cfg = _load(args) if args.config or args.board else None
    report = verify_models(selected=cfg.profile.models if cfg is not None else None)
    if args.json:
        _print_json(report.to_dict())
    else:
        for line in report.lines():
            print(line)
    return 0 if report.ok else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from appliance.bench import run_bench
    from appliance.progress import progress_on

    cfg = _load(args)
    result = run_bench(
        cfg, frames=args.frames, compare_precision=args.compare_precision, progress=progress_on(sys.stderr)
    )
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


# --------------------------------------------------------------------------- control room: monitor


def cmd_monitor(args: argparse.Namespace) -> int:
    from appliance.monitor.runner import MonitorOptions, run_monitor

    opts = MonitorOptions(
        broker_url=args.broker,
        prefix=args.prefix,
        json=args.json,
        once=args.once,
        duration_s=args.duration,
        client_id=args.client_id,
        username=args.username,
        password_file=args.password_file,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
    )
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return run_monitor(opts, stop)


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds: {text}")
    return value


def _add_monitor_parser(sub: Any) -> None:
    p = sub.add_parser("monitor", help="live read-only view of a fleet: status, counts, anomalies, health, seq gaps")
    p.add_argument("--broker", metavar="URL", required=True, help="mqtt://host:port or mqtts://host:port")
    p.add_argument("--prefix", default="crowdmon", metavar="P", help="the devices' mqtt.topic_prefix")
    p.add_argument("--json", action="store_true", help="one JSON line per device update instead of the table")
    p.add_argument("--once", action="store_true", help="print one fleet snapshot after --duration (3 s), then exit")
    p.add_argument("--duration", type=_positive_seconds, metavar="S", help="stop after S seconds (default: Ctrl-C)")
    p.add_argument("--client-id", metavar="ID", help="MQTT client id (default: random)")
    p.add_argument("--username", metavar="NAME")
    p.add_argument("--password-file", metavar="FILE")
    p.add_argument("--ca-file", metavar="FILE", help="CA that signed the broker certificate (mqtts://)")
    p.add_argument("--cert-file", metavar="FILE", help="client certificate (mutual TLS)")
    p.add_argument("--key-file", metavar="FILE", help="client key (mutual TLS)")
    p.set_defaults(func=cmd_monitor)

# --------------------------------------------------------------------------- transparency and audit (issue 9)


def cmd_notice_manifest(args: argparse.Namespace) -> int:
    from appliance.transparency import build_notice, notice_payload
    from appliance.transparency.notice_text import notice_lines

    notice = build_notice(_load(args))
    if args.json:
        # Exactly the bytes published retained on {prefix}/{device_id}/notice (their sha256 is the notice hash).
        sys.stdout.write(notice_payload(notice).decode("utf-8") + "\n")
    else:
        print("\n".join(notice_lines(notice)))
    return 0


def cmd_notice_sign(args: argparse.Namespace) -> int:
    from appliance.transparency import build_notice
    from appliance.transparency.sign import write_sign

    cfg = _load(args)
    languages = [args.language] if args.language else list(cfg.transparency.sign_languages)
    done = write_sign(build_notice(cfg), Path(args.output), languages, size=args.size)
    print(f"{args.output}: public sign, {args.size}, language(s) {', '.join(done)}", file=sys.stderr)
    return 0


def cmd_notice_record(args: argparse.Namespace) -> int:
    from appliance.transparency.record import write_record

    write_record(_load(args), Path(args.output))
    print(f"{args.output}: accountability record (fill in the [OPERATOR: ...] blanks)", file=sys.stderr)
    return 0


def _audit_log(args: argparse.Namespace) -> Any:
    from appliance.audit import AuditLog, audit_log_path

    if args.log:
        return AuditLog(Path(args.log))
    return AuditLog(audit_log_path(_load(args)))


def _parse_head(text: str) -> Any:
    from appliance.errors import InputError

    length, _, digest = text.partition(":")
    if not length.isdigit() or len(digest) != 64:
        raise InputError("expected LENGTH:SHA256 as published in the health message", field="--expect-head")
    return int(length), digest.lower()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from appliance.audit.signing import Verifier

    log = _audit_log(args)
    # Signatures are checked against the device certificate named in the config (not with --log alone).
    cert = _load(args).mqtt.tls.cert_file if (args.config or not args.log) else None
    report = log.verify(
        expected_head=_parse_head(args.expect_head) if args.expect_head else None,
        check_signature=Verifier(cert) if cert else None,
    )
    if args.json:
        _print_json({"log": str(log.path), **report.to_dict()})
    else:
        print(report.line(str(log.path)))
    return 0 if report.ok else 1


def cmd_audit_show(args: argparse.Namespace) -> int:
    log = _audit_log(args)
    for entry in log.entries():
        if args.since and str(entry.get("at", "")) < args.since:
            continue
        if args.json:
            _print_json(entry)
        else:
            data = entry.get("data", {})
            brief = ", ".join(f"{k}={v}" for k, v in data.items() if k != "config" and not isinstance(v, (list, dict)))
            if entry.get("kind") == "config_change":
                brief += " changed: " + ", ".join(ch["field"] for ch in data.get("changes", []))
            print(f"{entry.get('seq')} {entry.get('at')} {entry.get('kind')} {brief}".rstrip())
    return 0


def cmd_audit_head(args: argparse.Namespace) -> int:
    length, digest = _audit_log(args).head()
    if args.json:
        _print_json({"length": length, "hash": digest})
    else:
        print(f"{length}:{digest}")
    return 0


def _add_transparency_parsers(sub: Any) -> None:
    p = sub.add_parser("notice", help="the public notice, the printable sign and the accountability record")
    nsub = p.add_subparsers(dest="notice_command", metavar="ACTION", required=True)
    m = nsub.add_parser("manifest", help="print the notice (what the device does, runs and publishes)")
    _add_config(m)
    m.add_argument("--json", action="store_true", help="the exact retained payload of the notice topic")
    m.set_defaults(func=cmd_notice_manifest)
    s = nsub.add_parser("sign", help="printable public sign (PDF: one page per language; PNG: one language)")
    _add_config(s)
    s.add_argument("-o", "--output", required=True, metavar="FILE", help="sign.pdf or sign.png")
    s.add_argument("--size", choices=["A4", "A3"], default="A4")
    s.add_argument("--language", choices=["en", "fr", "nb"], help="one language (default: transparency.sign_languages)")
    s.set_defaults(func=cmd_notice_sign)
    r = nsub.add_parser("record", help="pre-filled DPIA data sheet, AI Act self-assessment, toolkit answers")
    _add_config(r)
    r.add_argument("-o", "--output", required=True, metavar="FILE", help="record.md")
    r.set_defaults(func=cmd_notice_record)

    p = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    for name, func, text in (
        ("verify", cmd_audit_verify, "check the hash chain (exit 0 intact, 1 broken)"),
        ("show", cmd_audit_show, "list entries"),
        ("head", cmd_audit_head, "print LENGTH:HASH of the last entry"),
    ):
        a = asub.add_parser(name, help=text)
        _add_config(a)
        a.add_argument("--log", metavar="FILE", help="audit log file (default: transparency.audit_log_path)")
        a.add_argument("--json", action="store_true")
        if name == "verify":
            a.add_argument("--expect-head", metavar="LEN:HASH", help="a head published earlier: detects truncation")
        if name == "show":
            a.add_argument("--since", metavar="ISO", help="entries at or after this UTC time, e.g. 2026-11-23T12:00")
        a.set_defaults(func=func)

# --------------------------------------------------------------------------- provision (laptop side)


def _provision_modules() -> Any:
    """The provisioning package; it needs the optional ``cryptography`` (devices never mint keys)."""
    from appliance.errors import InputError

    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise InputError("appliance provision needs 'cryptography': pip install 'crowd-appliance[provision]'") from None
    import appliance.provision.batch
    import appliance.provision.bundle
    import appliance.provision.pki

    return appliance.provision


def cmd_provision_init(args: argparse.Namespace) -> int:
    prov = _provision_modules()
    for path in prov.pki.init_site(Path(args.dir), args.broker_name, args.broker_ip):
        print(path)
    return 0


def cmd_provision_device(args: argparse.Namespace) -> int:
    prov = _provision_modules()
    spec = prov.bundle.DeviceSpec(args.id, args.board, Path(args.zones) if args.zones else None)
    path = prov.bundle.build_bundle(
        Path(args.dir), spec, Path(args.output), broker_url=args.broker_url, source=args.source,
        topic_prefix=args.topic_prefix, force=args.force,
    )
    print(path)
    return 0


def cmd_provision_batch(args: argparse.Namespace) -> int:
    prov = _provision_modules()
    specs = prov.batch.read_devices_csv(Path(args.csv))
    common = dict(broker_url=args.broker_url, source=args.source, topic_prefix=args.topic_prefix)
    for spec in specs:  # every row checked before the first key is minted
        prov.bundle.check_device(Path(args.dir), spec, force=args.force, **common)
    for spec in specs:
        print(prov.bundle.build_bundle(Path(args.dir), spec, Path(args.output), force=args.force, **common))
    return 0


def cmd_provision_client(args: argparse.Namespace) -> int:
    prov = _provision_modules()
    out = Path(args.dir) / "clients" / args.name
    for path in prov.pki.mint_client(Path(args.dir), args.name, out=out, force=args.force):
        print(path)
    return 0


def _add_provision_parser(sub: Any) -> None:
    p = sub.add_parser("provision", help="site CA, device certificates and install bundles (on a laptop)")
    psub = p.add_subparsers(dest="provision_command", metavar="ACTION", required=True)
    v = psub.add_parser("init", help="create the site CA and the broker's certificate (once per site)")
    v.add_argument("--dir", required=True, metavar="PKI", help="folder for the site PKI (created)")
    v.add_argument("--broker-name", action="append", default=[], metavar="DNS", help="broker DNS name (repeatable)")
    v.add_argument("--broker-ip", action="append", default=[], metavar="IP", help="broker IP address (repeatable)")
    v.set_defaults(func=cmd_provision_init)

    def device_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dir", required=True, metavar="PKI", help="the site PKI folder (from 'provision init')")
        q.add_argument("--broker-url", required=True, metavar="URL", help="mqtts://host:port the device publishes to")
        q.add_argument("--topic-prefix", default="crowdmon", metavar="PREFIX")
        q.add_argument("--source", metavar="SRC", help="camera source written into site.yaml (default: the board's)")
        q.add_argument("-o", "--output", default="bundles", metavar="DIR", help="where <id>.tar.gz goes")
        q.add_argument("--force", action="store_true", help="replace an existing device key (re-key the device)")

    v = psub.add_parser("device", help="mint a device's key and certificate and write its bundle <id>.tar.gz")
    v.add_argument("id", help="device id: the certificate CN and MQTT user name")
    v.add_argument("--board", required=True, metavar="NAME", help="board profile (rpi4, rpi5, jetson-orin, ...)")
    v.add_argument("--zones", metavar="FILE", help="YAML with the site's zones and lines")
    device_options(v)
    v.set_defaults(func=cmd_provision_device)

    v = psub.add_parser("batch", help="one bundle per row of a CSV (columns: id,board,zones)")
    v.add_argument("csv", metavar="DEVICES_CSV")
    device_options(v)
    v.set_defaults(func=cmd_provision_batch)

    v = psub.add_parser("client", help="a client certificate, e.g. the control room's (CN control-room)")
    v.add_argument("name")
    v.add_argument("--dir", required=True, metavar="PKI")
    v.add_argument("--force", action="store_true", help="replace an existing key")
    v.set_defaults(func=cmd_provision_client)


# --------------------------------------------------------------------------- parser


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"appliance: error: {self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


def _number(kind: type, minimum: float, *, inclusive: bool) -> Callable[[str], Any]:
    """An argparse type: a finite number of ``kind`` at or above (or strictly above) ``minimum``."""
    bound = f"{'at least' if inclusive else 'greater than'} {minimum:g}"
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {noun} {bound}, got {text!r}") from None
        if value != value or value in (float("inf"), float("-inf")) or value < minimum or (
            not inclusive and value == minimum
        ):
            raise argparse.ArgumentTypeError(f"must be {noun} {bound}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__} {bound}"
    return parse


_POSITIVE_INT = _number(int, 1, inclusive=True)
_NON_NEGATIVE_INT = _number(int, 0, inclusive=True)
_POSITIVE_SECONDS = _number(float, 0, inclusive=False)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
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
    p.add_argument("--interval", type=_POSITIVE_SECONDS, metavar="S", help="counts window length in seconds")
    p.add_argument("--outbox", metavar="FILE", help="SQLite store-and-forward file (overrides outbox.path)")
    p.add_argument("--max-frames", type=_POSITIVE_INT, metavar="N", help="stop cleanly after N frames")
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
    v = csub.add_parser(
        "validate", help="check a site config file and what it names on this machine, as `run` does at start"
    )
    v.add_argument("file", nargs="?", metavar="FILE", help="site config YAML (or --config FILE)")
    _add_config(v)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_config_validate)
    s = csub.add_parser("schema", help="print the JSON Schema of the site config")
    s.set_defaults(func=cmd_config_schema)

    p = sub.add_parser("models", help="model files")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    v = msub.add_parser("verify", help="check every model file against the manifest's sha256")
    _add_config(v)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_models_verify)

    p = sub.add_parser("bench", help="per-stage latency and end-to-end fps on a clip")
    _add_config(p)
    p.add_argument("--source", metavar="SRC", help="clip to run on (default: the bundled sample)")
    p.add_argument("--frames", type=_POSITIVE_INT, default=100, metavar="N")
    p.add_argument(
        "--compare-precision", action="store_true", help="also run the int8/fp32 counterparts and report the ratio"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("selftest", help="green/red check of config, models, camera, anonymizer and broker")
    _add_config(p)
    p.add_argument("--source", metavar="SRC")
    p.add_argument("--broker", metavar="URL")
    p.add_argument(
        "--timeout", type=_POSITIVE_SECONDS, default=10.0, metavar="S", help="wait this long for a camera frame"
    )
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
    p.add_argument(
        "--skip", type=_NON_NEGATIVE_INT, default=0, metavar="N", help="skip N frames first (let exposure settle)"
    )
    p.set_defaults(func=cmd_preview)
    _add_monitor_parser(sub)

    _add_transparency_parsers(sub)


    _add_provision_parser(sub)
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
        print(f"appliance: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `appliance count ... | head`
        return 0
