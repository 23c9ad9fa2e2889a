#!/usr/bin/env python3
"""Kept for existing scripts: the site PKI now lives in ``appliance.provision`` and its command is
``appliance provision`` (init, device, batch, client, rotate, revoke). This file forwards to it:

    python scripts/provision_device.py init --dir pki --broker-name broker.example.org
    python scripts/provision_device.py device cam-0001 --dir pki --board rpi4 --source /dev/video0 \
        --broker-url mqtts://broker.example.org:8883
    python scripts/provision_device.py client control-room --dir pki
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.cli import main as appliance_main
from appliance.provision.pki import init_site, load_ca, make_ca, make_leaf, mint_client, write_pem

__all__ = ["init_site", "load_ca", "main", "make_ca", "make_leaf", "mint_client", "write_pem"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    return appliance_main(["provision", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
