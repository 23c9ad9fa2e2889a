"""Checking a site before it runs: config validate and schema, models verify."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, List

from appliance.cli.common import add_config, load, load_runnable, overrides, print_json
from appliance.errors import InputError


def _problems(exc: InputError) -> List[Any]:
    """Every error ``exc`` stands for: all of a config's schema errors, or the one it is."""
    from appliance.config.loader import ConfigErrors, ConfigProblem

    if isinstance(exc, ConfigErrors):
        return exc.problems
    return [ConfigProblem(exc.path, exc.field, exc.message)]


def cmd_config_validate(args: argparse.Namespace) -> int:
    """Every error of the file, one line each on stderr (``--json``: as JSON on stdout); exit 2."""
    try:
        return _validate(args)
    except InputError as exc:
        problems = _problems(exc)
        if args.json:
            print_json({"ok": False, "file": args.file or args.config,
                        "errors": [{"file": p.file, "field": p.field, "message": p.message} for p in problems]})
        else:
            for problem in problems:
                print(f"appliance: error: {' '.join(problem.line().split())}", file=sys.stderr)
        return exc.exit_code


def _validate(args: argparse.Namespace) -> int:
    from appliance.config import config_hash
    from appliance.config.loader import config_label

    if args.file is not None and not args.file.strip():
        raise InputError("empty file name (an unset variable?); give no FILE to check the defaults", field="FILE")
    if args.file and args.config and args.file != args.config:
        raise InputError(f"two different files given ({args.file} and --config {args.config}); give one")
    args.config = args.file or args.config
    # Everything `run` checks before its first frame, so "ok" here means `run` starts.
    cfg = load_runnable(args)
    if args.config is None:
        # Useful on its own (the defaults and a board profile are what `run` starts with when given no
        # file), but it must not read as a site file having passed.
        label = "no site file given; the built-in defaults" + (f" with --board {args.board}" if args.board else "")
    else:
        label = config_label(args.config, overrides(args))
    if args.json:
        print_json({"ok": True, "file": args.config, "board": cfg.profile.name, "config_hash": config_hash(cfg)})
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
    cfg = load(args) if args.config is not None or args.board else None
    report = verify_models(selected=cfg.profile.models if cfg is not None else None)
    if args.json:
        print_json(report.to_dict())
    else:
        for line in report.lines():
            print(line)
    return 0 if report.ok else 1


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("config", help="validate a site config or print its JSON Schema")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    v = csub.add_parser(
        "validate", help="check a site config file and what it names on this machine, as `run` does at start"
    )
    v.add_argument("file", nargs="?", metavar="FILE", help="site config YAML (or --config FILE)")
    add_config(v)
    v.add_argument("--json", action="store_true",
                   help="the result as one JSON object on stdout, errors too ({ok, file, errors: [{file, field, "
                   "message}]}, exit 2)")
    v.set_defaults(func=cmd_config_validate)
    s = csub.add_parser("schema", help="print the JSON Schema of the site config")
    s.set_defaults(func=cmd_config_schema)

    p = sub.add_parser("models", help="model files")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    v = msub.add_parser("verify", help="check every model file against the manifest's sha256")
    add_config(v)
    v.add_argument("--json", action="store_true", help="the report as one JSON object")
    v.set_defaults(func=cmd_models_verify)
