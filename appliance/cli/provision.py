"""Provisioning, on the integrator's laptop: site CA, device bundles, batches."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from appliance.cli.release import add_release_parser


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


def _transparency(args: argparse.Namespace) -> Optional[Path]:
    return Path(args.transparency) if args.transparency else None


def cmd_provision_device(args: argparse.Namespace) -> int:
    prov = _provision_modules()
    spec = prov.bundle.DeviceSpec(args.id, args.board, Path(args.zones) if args.zones else None)
    path = prov.bundle.build_bundle(
        Path(args.dir), spec, Path(args.output), broker_url=args.broker_url, source=args.source,
        topic_prefix=args.topic_prefix, force=args.force, transparency_file=_transparency(args),
    )
    print(path)
    return 0


def cmd_provision_batch(args: argparse.Namespace) -> int:
    prov = _provision_modules()
    specs = prov.batch.read_devices_csv(Path(args.csv))
    common = dict(broker_url=args.broker_url, source=args.source, topic_prefix=args.topic_prefix,
                  transparency_file=_transparency(args))
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


def add_parsers(sub: Any) -> None:
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
        q.add_argument(
            "--topic-prefix", default="crowdmon", metavar="PREFIX", help="mqtt.topic_prefix (default: %(default)s)"
        )
        q.add_argument("--source", metavar="SRC", help="camera source written into site.yaml (default: the board's)")
        q.add_argument("-o", "--output", default="bundles", metavar="DIR", help="where <id>.tar.gz goes")
        q.add_argument("--force", action="store_true", help="replace an existing device key (re-key the device)")
        q.add_argument("--transparency", metavar="FILE",
                       help="YAML with the site's transparency section: who runs the devices, contact, purpose "
                       "(without it the self-test is red: the public notice names nobody)")

    v = psub.add_parser("device", help="mint a device's key and certificate and write its bundle <id>.tar.gz")
    v.add_argument("id", help="device id: the certificate CN and MQTT user name")
    v.add_argument("--board", required=True, metavar="NAME", help="board profile (rpi4, rpi5, jetson-orin, ...)")
    v.add_argument("--zones", metavar="FILE", help="YAML with the site's zones and lines")
    device_options(v)
    v.set_defaults(func=cmd_provision_device)

    v = psub.add_parser("batch", help="one bundle per row of a CSV (columns: id,board,zones)")
    v.add_argument("csv", metavar="DEVICES_CSV", help="CSV with the header id,board,zones and one device per row")
    device_options(v)
    v.set_defaults(func=cmd_provision_batch)

    v = psub.add_parser("client", help="a client certificate, e.g. the control room's (CN control-room)")
    v.add_argument("name", help="certificate CN and MQTT user name, e.g. control-room")
    v.add_argument("--dir", required=True, metavar="PKI", help="the site PKI folder (from 'provision init')")
    v.add_argument("--force", action="store_true", help="replace an existing key")
    v.set_defaults(func=cmd_provision_client)

    add_release_parser(psub)
