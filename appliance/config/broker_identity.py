"""Who the device (or a monitor) is to its broker: the address, the credentials, the TLS files.

One place reads the password (from a file or the environment; never logged, never in an error),
checks the files a connection needs (readable regular files, a CA file that holds certificates, a
device certificate together with its own key) and builds the TLS context. The device's MQTT client,
``appliance monitor``, the start-up checks of ``run`` and ``config validate`` (preflight) and
``appliance selftest`` (through the client) all use it, so they accept and refuse the same files.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Iterator, Mapping, Optional, Tuple

from appliance.config.broker_url import BrokerAddress, BrokerUrlError, parse_broker_url
from appliance.config.transport import MqttConfig
from appliance.errors import InputError

# How each setting is named in a one-line error: the config's fields, or the monitor's flags.
CONFIG_FIELDS: Mapping[str, str] = MappingProxyType({
    "url": "mqtt.url",
    "password_file": "mqtt.password_file",
    "password_env": "mqtt.password_env",
    "ca_file": "mqtt.tls.ca_file",
    "cert_file": "mqtt.tls.cert_file",
    "key_file": "mqtt.tls.key_file",
    "tls": "mqtt.tls",
})
MONITOR_FLAGS: Mapping[str, str] = MappingProxyType({
    "url": "--broker",
    "password_file": "--password-file",
    "password_env": "--password-env",
    "ca_file": "--ca-file",
    "cert_file": "--cert-file",
    "key_file": "--key-file",
    "tls": "--cert-file/--key-file",
})

# (field as named for the user, the value it holds, what is wrong with it)
Problem = Tuple[str, Optional[str], str]


def file_problem(path: str, *, want_dir: bool = False) -> Optional[str]:
    """None if ``path`` is a readable file (or folder), else what is wrong, in a few words."""
    try:
        p = Path(path)
        if not p.exists():
            return "no such file or folder" if want_dir else "no such file"
        if want_dir and p.is_dir():
            return None if os.access(p, os.R_OK | os.X_OK) else "folder not readable"
        if not p.is_file() and not want_dir:
            return "not a regular file"
        return None if os.access(p, os.R_OK) else "not readable (check owner and mode)"
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        return f"cannot check: {exc}"


def parse_url(url: str, field: str = "mqtt.url") -> BrokerAddress:
    """The broker URL, its error as one line naming the field."""
    try:
        return parse_broker_url(url)
    except BrokerUrlError as exc:
        raise InputError(f"{url!r} {exc}", field=field) from None


def _ssl_reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc).lower().replace("_", " ")


def _no_passphrase() -> str:
    # An encrypted key would otherwise make OpenSSL prompt on the terminal of a service.
    raise ValueError("the key is encrypted; the appliance needs an unencrypted key file")


@dataclass(frozen=True)
class BrokerIdentity:
    address: BrokerAddress
    username: Optional[str] = None
    password_file: Optional[str] = None
    password_env: Optional[str] = None
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    insecure_skip_verify: bool = False
    names: Mapping[str, str] = field(default_factory=lambda: CONFIG_FIELDS, compare=False, repr=False)

    @classmethod
    def from_config(cls, cfg: MqttConfig) -> BrokerIdentity:
        if cfg.url is None:
            raise InputError("no broker URL configured", field="mqtt.url")
        return cls(
            address=parse_url(cfg.urls[0]),  # a list shares one identity (and scheme): its first
            username=cfg.username,
            password_file=cfg.password_file,
            password_env=cfg.password_env,
            ca_file=cfg.tls.ca_file,
            cert_file=cfg.tls.cert_file,
            key_file=cfg.tls.key_file,
            insecure_skip_verify=cfg.tls.insecure_skip_verify,
        )

    # ------------------------------------------------------------------ checks

    def problems(self) -> Iterator[Problem]:
        """Everything that would stop a connection before it is tried, in the order a user fixes it."""
        unreadable = False
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, key)
            if path is not None and (problem := file_problem(path)):
                unreadable = True
                yield self.names[key], path, problem
        if bool(self.cert_file) != bool(self.key_file):
            short = [self.names[k].rsplit(".", 1)[-1] for k in ("cert_file", "key_file")]
            yield self.names["tls"], None, f"mutual TLS needs both {short[0]} and {short[1]}"
        elif not unreadable:
            yield from self._tls_problems()
        if self.password_file is not None and (problem := file_problem(self.password_file)):
            yield self.names["password_file"], self.password_file, problem
        if self.password_env is not None and self.password_env not in os.environ:
            yield self.names["password_env"], None, f"environment variable {self.password_env} is not set"

    def _tls_problems(self) -> Iterator[Problem]:
        if self.ca_file is not None:
            try:
                ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
            except (ssl.SSLError, ValueError) as exc:
                detail = _ssl_reason(exc) if isinstance(exc, ssl.SSLError) else str(exc)
                yield self.names["ca_file"], self.ca_file, f"not a PEM CA certificate ({detail})"
                return
        if self.cert_file and self.key_file:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(
                    self.cert_file, self.key_file, password=_no_passphrase
                )
            except (ssl.SSLError, ValueError) as exc:
                detail = _ssl_reason(exc) if isinstance(exc, ssl.SSLError) else str(exc)
                yield self.names["key_file"], self.key_file, f"not the key of {self.cert_file} ({detail})"

    def check(self) -> None:
        """Raise the first problem as a one-line :class:`InputError` naming the file and field."""
        for name, value, problem in self.problems():
            raise InputError(problem, path=value, field=name)

    # ------------------------------------------------------------------ what a client needs

    def password(self) -> Optional[str]:
        """From ``password_file`` or ``password_env``; None when neither is set."""
        if self.password_file:
            try:
                return Path(self.password_file).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise InputError(
                    f"cannot read: {exc.strerror}", path=self.password_file, field=self.names["password_file"]
                ) from None
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise InputError(
                    f"environment variable {self.password_env} is not set", field=self.names["password_env"]
                )
            return value
        return None

    def tls_context(self) -> Optional[ssl.SSLContext]:
        """The context for ``mqtts://`` (None for plain ``mqtt://``): the broker's certificate and
        host name verified against ``ca_file`` (or the system's CAs), mutual TLS when a device
        certificate is configured."""
        if not self.address.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        if self.cert_file and self.key_file:
            ctx.load_cert_chain(self.cert_file, self.key_file, password=_no_passphrase)
        if self.insecure_skip_verify:
            ctx.check_hostname = False  # the certificate chain is still verified
        return ctx
