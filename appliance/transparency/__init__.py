"""Transparency: the public notice, the printable sign and the accountability record, all generated
from the running configuration and models so they cannot drift from what the device does."""

from appliance.transparency.notice import (
    Notice,
    build_notice,
    export_notice_schema,
    notice_hash,
    notice_payload,
    notice_schema,
)

__all__ = ["Notice", "build_notice", "export_notice_schema", "notice_hash", "notice_payload", "notice_schema"]
