"""What every command shares: loading the config with command-line overrides, JSON output, argument types."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, Callable, Dict, NoReturn, Optional

from appliance.errors import InputError

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig


def overrides(args: argparse.Namespace) -> Dict[str, Any]:
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
    if getattr(args, "max_pixels", None):
        out.setdefault("capture", {})["max_pixels"] = args.max_pixels
    return out


def config_path(args: argparse.Namespace) -> Optional[str]:
    """``--config``, refusing an empty name: ``--config "$SITE"`` with SITE unset must not quietly
    mean the built-in defaults."""
    path: Optional[str] = args.config
    if path is not None and not path.strip():
        raise InputError("empty file name (an unset variable?); leave --config out for the defaults", field="--config")
    return path


def load(args: argparse.Namespace) -> ApplianceConfig:
    from appliance.config import load_config

    return load_config(config_path(args), overrides(args))


def load_runnable(args: argparse.Namespace) -> ApplianceConfig:
    """The config plus the checks that need this machine (files, password, outbox): see preflight.py."""
    from appliance.config.preflight import load_runnable_config

    return load_runnable_config(config_path(args), overrides(args))


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def add_max_pixels(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-pixels",
        type=POSITIVE_INT,
        metavar="N",
        help="refuse images and video frames above N pixels, from their header before decoding "
        "(overrides capture.max_pixels, default 24000000)",
    )


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", metavar="FILE", help="site config YAML (default: built-in defaults)")
    p.add_argument("--board", metavar="NAME", help="board profile in firmware_configs/ (overrides the config)")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit 2, like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"appliance: error: {self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


def number(kind: type, minimum: float, *, inclusive: bool) -> Callable[[str], Any]:
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


POSITIVE_INT = number(int, 1, inclusive=True)
NON_NEGATIVE_INT = number(int, 0, inclusive=True)
POSITIVE_SECONDS = number(float, 0, inclusive=False)
