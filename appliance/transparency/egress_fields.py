"""Every field that can leave the device, read from the published JSON Schemas (never listed by hand).

The walk follows ``$ref`` into ``$defs``, nullable ``anyOf`` unions, arrays (``path[]``) and maps
keyed by a configured name (``path.<name>``), so a field added to a message class shows up in the
notice, the sign and the record without anyone editing them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from pydantic import BaseModel, ConfigDict, Field


class EgressField(BaseModel):
    """One field of a payload; the notice keys these by dotted path ('<name>' = a configured zone/line/...)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(description="JSON type(s), '|'-separated, e.g. 'number|null'")
    description: str = Field("", description="What the field holds, from the message class")


def _resolve(node: Dict[str, Any], defs: Dict[str, Any]) -> Dict[str, Any]:
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    return node


def _types(node: Dict[str, Any], defs: Dict[str, Any]) -> List[str]:
    node = _resolve(node, defs)
    if "anyOf" in node:
        return [t for alt in node["anyOf"] for t in _types(alt, defs)]
    if "const" in node and "type" not in node:
        return ["string"]
    return [node.get("type", "any")]


def _walk(
    node: Dict[str, Any], defs: Dict[str, Any], path: str, out: List[Tuple[str, EgressField]], desc: str = ""
) -> None:
    node = _resolve(node, defs)
    description = desc if desc else node.get("description", "")
    if "anyOf" in node:
        alts = [a for a in node["anyOf"] if _resolve(a, defs).get("type") != "null"]
        nullable = len(alts) != len(node["anyOf"])
        if len(alts) == 1:
            inner = _resolve(alts[0], defs)
            if inner.get("type") in ("object", "array"):
                out.append(
                    (path, EgressField(type=inner["type"] + ("|null" if nullable else ""), description=description))
                )
                _walk_children(inner, defs, path, out, description)
                return
        out.append((path, EgressField(type="|".join(_types(node, defs)), description=description)))
        return
    kind = node.get("type", "any")
    out.append((path, EgressField(type=kind, description=description)))
    _walk_children(node, defs, path, out, description)


def _walk_children(
    node: Dict[str, Any], defs: Dict[str, Any], path: str, out: List[Tuple[str, EgressField]], description: str
) -> None:
    if node.get("type") == "object":
        for name, child in node.get("properties", {}).items():
            _walk(child, defs, f"{path}.{name}", out, child.get("description", ""))
        # Maps keyed by a name (zones, lines, drop reasons) come out as patternProperties.
        keyed = list(node.get("patternProperties", {}).values())
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            keyed.append(extra)
        for value in keyed[:1]:
            entry = _resolve(value, defs)
            _walk(value, defs, f"{path}.<name>", out, entry.get("description") or f"for one name: {description}")
    elif node.get("type") == "array" and isinstance(node.get("items"), dict):
        # An item of a list is described by the list (its own schema has no description of its own).
        item = _resolve(node["items"], defs)
        _walk(node["items"], defs, f"{path}[]", out, item.get("description") or f"one of: {description}")


def schema_fields(schema: Dict[str, Any], depth: int = 99) -> Dict[str, EgressField]:
    """Flatten a payload's JSON Schema into ``{dotted path: field}``, in schema order, to ``depth`` levels."""
    defs = schema.get("$defs", {})
    out: List[Tuple[str, EgressField]] = []
    for name, child in schema.get("properties", {}).items():
        _walk(child, defs, name, out, child.get("description", ""))
    return {path: f for path, f in out if path.count(".") + path.count("[]") < depth}
