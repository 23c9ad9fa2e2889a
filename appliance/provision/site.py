"""The site config a provisioned device runs with: its id, board, broker and TLS files, zones and
lines from the integrator's zones file, the public notice's details from the site's transparency
file. Validated with the appliance's own loader before it goes into a bundle, so a bad board name
or zone fails on the laptop, not on the lamp post."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import yaml

from appliance.config import load_board_profile, load_config
from appliance.config.broker_url import BrokerUrlError, parse_broker_url
from appliance.config.transport import DEFAULT_STATE_DIR
from appliance.errors import InputError
from appliance.names import TOPIC_PREFIX_PATTERN

# Where install.sh puts things on the device (the unit file names the same paths).
ETC_DIR = "/etc/crowd-appliance"
TLS_DIR = f"{ETC_DIR}/tls"
STATE_DIR = DEFAULT_STATE_DIR  # the unit's StateDirectory=
ZONES_FILE_KEYS = ("zones", "lines")


def read_site_sections(path: Path, keys: Tuple[str, ...]) -> Dict[str, Any]:
    """The sections ``keys`` of a site file that holds only those, validated by the appliance's
    loader so errors name this file and the field."""
    load_config(path)  # raises InputError naming the file and field
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    extra = sorted(set(data) - set(keys))
    if extra:
        raise InputError(f"unknown key (this file holds only {' and '.join(keys)})", path=str(path), field=extra[0])
    return {k: data[k] for k in keys if k in data}


def read_zones_file(path: Path) -> Dict[str, Any]:
    """The ``zones`` and ``lines`` of a zones file (one per device or per view)."""
    return read_site_sections(path, ZONES_FILE_KEYS)


def _bad_option(option: str, value: str, problem: str) -> InputError:
    return InputError(f"{value!r}: {problem}", field=option)


# What to say when a device has no camera: the source is part of its identity, so nothing falls
# back to a default that would publish the demo clip's counts as if they were the site's.
SOURCE_HINT = (
    "the camera this device counts: /dev/video0, rtsp://user@camera/stream, a pipeline; 'sample' only on a bench"
)


def check_source(source: Optional[str], *, field: str = "--source") -> str:
    """The device's camera, given explicitly (``sample``, the bundled clip, only when asked for)."""
    if source is None:
        raise InputError(f"is required ({SOURCE_HINT})", field=field)
    if not source.strip():
        raise _bad_option(field, source, f"is empty ({SOURCE_HINT})")
    return source


def check_options(broker_url: str, source: Optional[str], topic_prefix: str) -> None:
    """The command-line values that go into every device's site.yaml, each checked on its own so an
    error names the option the user typed, not the generated file."""
    if not broker_url.lower().startswith("mqtts://"):
        # The bundle's certificate is the device's MQTT identity, and it is only presented over TLS.
        raise _bad_option("--broker-url", broker_url, "must be mqtts://host:port (devices log in with a certificate)")
    try:
        parse_broker_url(broker_url)
    except BrokerUrlError as exc:
        raise _bad_option("--broker-url", broker_url, str(exc)) from None
    if not re.match(TOPIC_PREFIX_PATTERN, topic_prefix):
        raise _bad_option("--topic-prefix", topic_prefix, "must be 1-64 of A-Z a-z 0-9 _ - and /")
    check_source(source)


def device_site_config(
    device_id: str,
    board: str,
    broker_url: str,
    *,
    source: Optional[str],
    zones_file: Optional[Path] = None,
    topic_prefix: str = "crowdmon",
    transparency_file: Optional[Path] = None,
) -> Dict[str, Any]:
    load_board_profile(board)  # unknown board: one line listing the known ones
    check_options(broker_url, source, topic_prefix)
    site: Dict[str, Any] = {"device_id": device_id, "board": board, "capture": {"source": source}}
    if zones_file is not None:
        site.update(read_zones_file(zones_file))
    if transparency_file is not None:
        # Who runs the devices, how to reach them, why: the same for every device of a site.
        site.update(read_site_sections(transparency_file, ("transparency",)))
    site["mqtt"] = {
        "url": broker_url,
        "topic_prefix": topic_prefix,
        "tls": {
            "ca_file": f"{TLS_DIR}/ca.crt",
            "cert_file": f"{TLS_DIR}/{device_id}.crt",
            "key_file": f"{TLS_DIR}/{device_id}.key",
        },
    }
    site["outbox"] = {"path": f"{STATE_DIR}/outbox.sqlite3"}
    return site


def render_site_yaml(site: Dict[str, Any]) -> str:
    """The YAML text of ``site``, checked by loading it exactly as the device will."""
    text = f"# Site config of {site['device_id']}, written by `appliance provision`.\n" + yaml.safe_dump(
        site, sort_keys=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "site.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_config(path)
        except InputError as exc:
            # Each option was checked on its own; what is left is a rule across them (zones vs board).
            # Name the bundle's file, not this temporary copy the user never sees.
            message = str(exc).removeprefix(f"{exc.path}: ") if exc.path else str(exc)
            raise InputError(message, path=f"the site.yaml built for {site['device_id']}") from None
    return text


def acl_lines(device_id: str, topic_prefix: str = "crowdmon") -> str:
    """This device's entry for the control room's Mosquitto ACL (deploy/mosquitto/crowd-appliance.acl)."""
    return (
        f"# {device_id}: publish only under its own topics. The example ACL's pattern line\n"
        f"# 'pattern write {topic_prefix}/%u/#' already grants this; append these lines where a broker lists users.\n"
        f"user {device_id}\n"
        f"topic write {topic_prefix}/{device_id}/#\n"
    )
