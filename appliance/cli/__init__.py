"""Command line: ``appliance <command>``. Names and flags are a contract other tools script against.

One module per group of commands (device, checks, monitor, transparency, provision), each adding its
own parsers. Exit codes: 0 success, 2 bad input or config (one line on stderr, no traceback),
1 runtime failure, 3 another instance already runs for this device.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from appliance import __version__
from appliance.cli import checks, device, monitor, provision, transparency
from appliance.cli.common import OneLineParser
from appliance.errors import ApplianceError


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="appliance",
        description="Privacy-preserving crowd monitoring: faces blurred at capture, only anonymized counts leave.",
    )
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (device, checks, monitor, transparency, provision):
        group.add_parsers(sub)
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
