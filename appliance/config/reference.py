"""Markdown reference of every config field, generated from the schema (docs/config-reference.md).

The schema is the one place defaults live; this renders it for people. A test keeps the committed
file equal to ``render()``; regenerate with ``python -m appliance.config.reference > docs/config-reference.md``.
"""

from __future__ import annotations

import json
from typing import Any, List, Literal, Tuple, Type, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from typing_extensions import Annotated

from appliance.config.schema import BoardProfile, SiteConfig


def _render_type(tp: Any) -> str:
    """A type as a reader writes it: ``Optional[int]``, ``List[Tuple[float, float]]`` (validators left out)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Annotated:
        return _render_type(args[0])
    if origin is Union:
        rest = [a for a in args if a is not type(None)]
        inner = ", ".join(_render_type(a) for a in rest)
        return f"Optional[{inner}]" if len(rest) < len(args) and len(rest) == 1 else f"Union[{inner}]"
    if origin is Literal:
        return f"Literal[{', '.join(repr(a) for a in args)}]"
    if origin is not None:
        name = {list: "List", tuple: "Tuple", dict: "Dict"}.get(origin, getattr(origin, "__name__", str(origin)))
        return f"{name}[{', '.join(_render_type(a) for a in args)}]" if args else name.lower()
    return getattr(tp, "__name__", str(tp))


def _type_name(field: FieldInfo) -> str:
    return _render_type(field.annotation)


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
    nested: List[Tuple[str, Type[BaseModel]]] = []
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
    from appliance.config.schema import LineConfig, TileBand, ZoneConfig

    lists = (("Zone", ZoneConfig), ("Line", LineConfig), ("Tile band (`detection.perspective_bands`)", TileBand))
    for title, model in lists:
        lines += ["", f"## {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        _rows(model, "", lines)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
