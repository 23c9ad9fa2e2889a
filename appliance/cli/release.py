"""``appliance provision release``: the offline, hash-pinned release folder a device installs from."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_provision_release(args: argparse.Namespace) -> int:
    from appliance.provision.release import ReleaseTarget, build_release

    target = ReleaseTarget(args.arch, args.python)
    out = Path(args.output)
    pins = build_release(out, target, Path(args.checkout) if args.checkout else None)
    total = sum((out / p.filename).stat().st_size for p in pins)
    print(f"{out}: {len(pins)} wheels for {target.name}, {total / 1e6:.1f} MB")
    return 0


def add_release_parser(psub: Any) -> None:
    from appliance.provision.release import ARCHES, DEFAULT_PYTHON

    v = psub.add_parser(
        "release", help="an offline, hash-pinned release folder (wheels, lock, SBOM) that install.sh --release takes",
    )
    v.add_argument("-o", "--output", required=True, metavar="DIR", help="the release folder (new or empty)")
    v.add_argument("--arch", choices=ARCHES, default="aarch64",
                   help="the board's CPU: aarch64 (Raspberry Pi OS 64-bit, Jetson) or x86_64 (default: %(default)s)")
    v.add_argument("--python", default=DEFAULT_PYTHON, metavar="X.Y",
                   help="the board's Python: 3.11 on Raspberry Pi OS Bookworm, 3.13 on Trixie (default: %(default)s)")
    v.add_argument("--checkout", metavar="DIR", help="the checkout to build the appliance's wheel from "
                   "(default: the one this appliance runs from)")
    v.set_defaults(func=cmd_provision_release)
