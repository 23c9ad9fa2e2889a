"""Transparency and accountability: the public notice, sign and record, and the audit log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from appliance.cli.common import add_config, load, overrides, print_json


def cmd_notice_manifest(args: argparse.Namespace) -> int:
    from appliance.transparency import build_notice, notice_payload
    from appliance.transparency.notice_text import notice_lines

    notice = build_notice(load(args))
    if args.json:
        # Exactly the bytes published retained on {prefix}/{device_id}/notice (their sha256 is the notice hash).
        sys.stdout.write(notice_payload(notice).decode("utf-8") + "\n")
    else:
        print("\n".join(notice_lines(notice)))
    return 0


def cmd_notice_sign(args: argparse.Namespace) -> int:
    from appliance.config.loader import config_label
    from appliance.transparency import build_notice
    from appliance.transparency.sign import write_sign

    cfg = load(args)
    languages = [args.language] if args.language else list(cfg.transparency.sign_languages)
    label = config_label(args.config, overrides(args))
    done = write_sign(build_notice(cfg), Path(args.output), languages, size=args.size, config_label=label)
    print(f"{args.output}: public sign, {args.size}, language(s) {', '.join(done)}", file=sys.stderr)
    return 0


def cmd_notice_page(args: argparse.Namespace) -> int:
    from appliance.config.loader import config_label
    from appliance.transparency.public_site import write_public_site

    label = config_label(args.config, overrides(args))
    history = Path(args.history) if args.history else None
    written = write_public_site(load(args), Path(args.output), history, config_label=label)
    print(f"{args.output}: public page, {len(written)} files ({', '.join(p.name for p in written)})", file=sys.stderr)
    return 0


def cmd_notice_registers(args: argparse.Namespace) -> int:
    from appliance.config.loader import config_label
    from appliance.transparency.registers import write_registers

    written = write_registers(load(args), Path(args.output), config_label(args.config, overrides(args)))
    print(f"{args.output}: register entries ({', '.join(p.name for p in written)})", file=sys.stderr)
    return 0


def cmd_notice_record(args: argparse.Namespace) -> int:
    from appliance.transparency.record import write_record

    write_record(load(args), Path(args.output))
    print(f"{args.output}: accountability record (fill in the [OPERATOR: ...] blanks)", file=sys.stderr)
    return 0


def _audit_log(args: argparse.Namespace) -> Any:
    """``--log`` alone: that file, unsigned appends. With the config: its log, signed with its key."""
    from appliance.audit import AuditLog

    if args.log and args.config is None:
        return AuditLog(Path(args.log))
    log = AuditLog.from_config(load(args))
    if args.log:
        log.path = Path(args.log)
    return log


def _parse_head(text: str) -> Any:
    from appliance.errors import InputError

    length, _, digest = text.partition(":")
    if not length.isdigit() or len(digest) != 64:
        raise InputError("expected LENGTH:SHA256 as published in the health message", field="--expect-head")
    return int(length), digest.lower()


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from appliance.audit.signing import Verifier

    log = _audit_log(args)
    # Signatures are checked against the device certificate: --cert, or the one the config names
    # (not with --log alone). A certificate also says the log must be signed: a log without any
    # signed entry is then broken, however consistent its hashes.
    cert = args.cert
    if cert is None and (args.config is not None or not args.log):
        cert = load(args).mqtt.tls.cert_file
    verifier = Verifier(cert) if cert else None
    report = log.verify(
        expected_head=_parse_head(args.expect_head) if args.expect_head else None,
        check_signature=verifier,
        key_fingerprint=verifier.fingerprint if verifier is not None else None,
    )
    if args.json:
        print_json({"log": str(log.path), **report.to_dict()})
    else:
        print(report.line(str(log.path)))
    return 0 if report.ok else 1


def cmd_audit_show(args: argparse.Namespace) -> int:
    log = _audit_log(args)
    for entry in log.entries():
        if args.since and str(entry.get("at", "")) < args.since:
            continue
        if args.json:
            print_json(entry)
        else:
            data = entry.get("data", {})
            brief = ", ".join(f"{k}={v}" for k, v in data.items() if k != "config" and not isinstance(v, (list, dict)))
            if entry.get("kind") == "config_change":
                changes = [ch for ch in data.get("changes", []) if isinstance(ch, dict)]
                brief += " changed: " + ", ".join(str(ch.get("field")) for ch in changes)
            print(f"{entry.get('seq')} {entry.get('at')} {entry.get('kind')} {brief}".rstrip())
    return 0


def cmd_audit_head(args: argparse.Namespace) -> int:
    length, digest = _audit_log(args).head()
    if args.json:
        print_json({"length": length, "hash": digest})
    else:
        print(f"{length}:{digest}")
    return 0


def cmd_audit_ack(args: argparse.Namespace) -> int:
    from appliance.audit import Acknowledged, unacknowledged_problems

    log = _audit_log(args)
    log.recover()  # a torn end is cut (and recorded) first; a folder: one line, exit 2
    log.head()  # an unreadable last entry: one line, exit 2, before anything is written
    problems = unacknowledged_problems(log)
    if problems == 0:
        print(f"{log.path}: nothing to acknowledge", file=sys.stderr)
        return 0
    length, _digest = log.append(Acknowledged(problems=problems, note=args.note))
    print(f"{log.path}: acknowledged {problems} recovered/reset entr{'y' if problems == 1 else 'ies'} "
          f"(entry {length}); health returns to ok at the next health message", file=sys.stderr)
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("notice", help="the public notice, the printable sign and the accountability record")
    nsub = p.add_subparsers(dest="notice_command", metavar="ACTION", required=True)
    m = nsub.add_parser("manifest", help="print the notice (what the device does, runs and publishes)")
    add_config(m)
    m.add_argument("--json", action="store_true", help="the exact retained payload of the notice topic")
    m.set_defaults(func=cmd_notice_manifest)
    s = nsub.add_parser("sign", help="printable public sign (PDF: one page per language; PNG: one language)")
    add_config(s)
    s.add_argument("-o", "--output", required=True, metavar="FILE", help="sign.pdf or sign.png")
    s.add_argument("--size", choices=["A4", "A3"], default="A4", help="paper size (default: A4)")
    s.add_argument("--language", choices=["en", "fr", "nb"], help="one language (default: transparency.sign_languages)")
    s.set_defaults(func=cmd_notice_sign)
    g = nsub.add_parser("page", help="the public page the sign's QR code leads to (static HTML per sign language)")
    add_config(g)
    g.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to publish at transparency.public_url")
    g.add_argument("--history", metavar="FILE", help="counts messages (JSON lines) to chart on the page")
    g.set_defaults(func=cmd_notice_page)
    e = nsub.add_parser("registers", help="entries for public registers (Algoritmeregister, ATRS, DTPR, sensors)")
    add_config(e)
    e.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the register files")
    e.set_defaults(func=cmd_notice_registers)
    r = nsub.add_parser("record", help="pre-filled DPIA data sheet, AI Act self-assessment, toolkit answers")
    add_config(r)
    r.add_argument("-o", "--output", required=True, metavar="FILE", help="record.md")
    r.set_defaults(func=cmd_notice_record)

    p = sub.add_parser("audit", help="the tamper-evident audit log")
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    for name, func, text in (
        ("verify", cmd_audit_verify, "check the hash chain (exit 0 intact, 1 broken)"),
        ("show", cmd_audit_show, "list entries"),
        ("head", cmd_audit_head, "print LENGTH:HASH of the last entry"),
        ("ack", cmd_audit_ack, "acknowledge recovered/reset entries (health is degraded until then)"),
    ):
        a = asub.add_parser(name, help=text)
        add_config(a)
        a.add_argument("--log", metavar="FILE", help="audit log file (default: transparency.audit_log_path)")
        a.add_argument("--json", action="store_true", help="JSON (one object per line) instead of text")
        if name == "verify":
            a.add_argument("--expect-head", metavar="LEN:HASH", help="a head published earlier: detects truncation")
            a.add_argument("--cert", metavar="FILE", help="device certificate (default: mqtt.tls.cert_file)")
        if name == "ack":
            a.add_argument("--note", default="", help="who acknowledges and why (kept in the log, 200 characters)")
        if name == "show":
            a.add_argument("--since", metavar="ISO", help="entries at or after this UTC time, e.g. 2026-11-23T12:00")
        a.set_defaults(func=func)
