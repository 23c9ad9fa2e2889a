"""Provisioning, on the integrator's laptop: site CA, device bundles, batches."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from appliance.cli.common import POSITIVE_INT
from appliance.cli.release import add_release_parser


def _provision_modules() -> Any:
    """The provisioning package, imported only for a provisioning command (devices never mint keys)."""
    import appliance.provision.batch
    import appliance.provision.bundle
    import appliance.provision.identity
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
    spec = prov.bundle.DeviceSpec(args.id, args.board, args.source, Path(args.zones) if args.zones else None)
    path = prov.bundle.build_bundle(
        Path(args.dir), spec, Path(args.output), broker_url=args.broker_url, topic_prefix=args.topic_prefix,
        force=args.force, rebundle=args.rebundle, transparency_file=_transparency(args),
    )
    print(path)
    return 0


def cmd_provision_batch(args: argparse.Namespace) -> int:
    prov = _provision_modules()
    specs = prov.batch.read_devices_csv(Path(args.csv))
    common = dict(broker_url=args.broker_url, topic_prefix=args.topic_prefix, force=args.force,
                  rebundle=args.rebundle, transparency_file=_transparency(args))
    for spec in specs:  # every row checked before the first key is minted
        prov.bundle.check_device(Path(args.dir), spec, **common)
    for spec in specs:
        print(prov.bundle.build_bundle(Path(args.dir), spec, Path(args.output), **common))
    return 0


def cmd_provision_rotate(args: argparse.Namespace) -> int:
    prov = _provision_modules()
    pki = Path(args.dir)
    days = args.days or prov.pki.LEAF_DAYS
    path, cert = prov.identity.rotate(pki, args.id, days=days)
    print(f"{path}: new certificate for {args.id}, {prov.identity.expiry_line(cert)}")
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        copy = out / path.name
        copy.write_bytes(path.read_bytes())
        print(copy)
    return 0


def cmd_provision_revoke(args: argparse.Namespace) -> int:
    prov = _provision_modules()
    crl, serials = prov.identity.revoke_device(Path(args.dir), args.id, superseded_only=args.superseded)
    what = "superseded certificate" if args.superseded else "certificate"
    if serials:
        print(f"{crl}: revoked {len(serials)} {what}(s) of {args.id} (serial {', '.join(serials)})")
    else:
        print(f"{crl}: no {what} of {args.id} left to revoke")
    print("install it on the broker and reload it: sudo install -m 0644 "
          f"{crl} /etc/mosquitto/certs/crl.pem && sudo systemctl reload mosquitto")
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
        q.add_argument("-o", "--output", default="bundles", metavar="DIR", help="where <id>.tar.gz goes")
        q.add_argument("--force", action="store_true", help="replace an existing device key (re-key the device)")
        q.add_argument("--rebundle", action="store_true",
                       help="a new bundle (zones, notice, broker) around the key and certificate the device has")
        q.add_argument("--transparency", metavar="FILE",
                       help="YAML with the site's transparency section: who runs the devices, contact, purpose "
                       "(without it the self-test is red: the public notice names nobody)")

    v = psub.add_parser("device", help="mint a device's key and certificate and write its bundle <id>.tar.gz")
    v.add_argument("id", help="device id: the certificate CN and MQTT user name")
    v.add_argument("--board", required=True, metavar="NAME", help="board profile (rpi4, rpi5, jetson-orin, ...)")
    v.add_argument("--source", metavar="SRC",
                   help="required: this device's camera, written into site.yaml (/dev/video0, rtsp://..., a pipeline;"
                   " 'sample', the bundled clip, only for a bench)")
    v.add_argument("--zones", metavar="FILE", help="YAML with the site's zones and lines")
    device_options(v)
    v.set_defaults(func=cmd_provision_device)

    v = psub.add_parser("batch", help="one bundle per row of a CSV (columns: id,board,source,zones)")
    v.add_argument("csv", metavar="DEVICES_CSV",
                   help="CSV with the header id,board,source,zones and one device per row (source: its camera)")
    device_options(v)
    v.set_defaults(func=cmd_provision_batch)

    v = psub.add_parser("rotate", help="renew a device's certificate (same key); the old one stays valid meanwhile")
    v.add_argument("id", help="device id")
    v.add_argument("--dir", required=True, metavar="PKI", help="the site PKI folder (from 'provision init')")
    v.add_argument("--days", type=POSITIVE_INT, metavar="N",
                   help="validity in days (default: a new device certificate's, about 27 months)")
    v.add_argument("-o", "--output", metavar="DIR", help="also copy the new <id>.crt here, to take to the device")
    v.set_defaults(func=cmd_provision_rotate)

    v = psub.add_parser("revoke", help="put a device's certificates on the site CRL (the broker then refuses it)")
    v.add_argument("id", help="device id")
    v.add_argument("--dir", required=True, metavar="PKI", help="the site PKI folder (from 'provision init')")
    v.add_argument("--superseded", action="store_true",
                   help="only the certificates it no longer uses (after a renewal or re-key reached it)")
    v.set_defaults(func=cmd_provision_revoke)

    v = psub.add_parser("client", help="a client certificate, e.g. the control room's (CN control-room)")
    v.add_argument("name", help="certificate CN and MQTT user name, e.g. control-room")
    v.add_argument("--dir", required=True, metavar="PKI", help="the site PKI folder (from 'provision init')")
    v.add_argument("--force", action="store_true", help="replace an existing key")
    v.set_defaults(func=cmd_provision_client)

    add_release_parser(psub)
