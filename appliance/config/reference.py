"""Markdown reference of every config field, generated from the schema (docs/config-reference.md).

The schema is the one place defaults live; this renders it for people. A test keeps the committed
file equal to ``render()``; regenerate with ``python -m appliance.config.reference > docs/config-reference.md``.
"""

from __future__ import annotations

import json
from typing import List, Type

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from appliance.config.schema import BoardProfile, SiteConfig


def _type_name(field: FieldInfo) -> str:
    text = str(field.annotation).replace("typing.", "")
    for prefix in ("appliance.config.schema.", "<class '", "'>"):
        text = text.replace(prefix, "")
    return text.replace("NoneType", "None")


def _default(field: FieldInfo) -> str:
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    else:
        return "**required**"
    if isinstance(value, BaseModel):
        return "(section)"
    return f"`{json.dumps(value, default=str)}`"


def _rows(model: Type[BaseModel], prefix: str, out: List[str]) -> None:
    nested = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.append((name, annotation))
            continue
        desc = (field.description or "").replace("|", "\\|")
        out.append(f"| `{prefix}{name}` | {_type_name(field)} | {_default(field)} | {desc} |")
    for name, sub in nested:
        _rows(sub, f"{prefix}{name}.", out)


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `appliance/config/schema.py` by `python -m appliance.config.reference`; do not edit by hand.",
        "Unknown keys are rejected everywhere. Coordinates are fractions of the frame (0..1, origin top-left).",
        "",
        "## Site config (`--config FILE`)",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    _rows(SiteConfig, "", lines)
    lines += [
        "",
        "Zones (`zones: [...]`) and lines (`lines: [...]`) are lists of the objects below.",
        "",
        "## Board profile (`firmware_configs/<board>.yaml`, changed per site with `board_overrides`)",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    _rows(BoardProfile, "", lines)
    from appliance.config.schema import LineConfig, ZoneConfig

    for title, model in (("Zone", ZoneConfig), ("Line", LineConfig)):
        lines += ["", f"## {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        _rows(model, "", lines)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
