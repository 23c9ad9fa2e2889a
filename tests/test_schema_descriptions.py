"""Every field of every published schema (the four message kinds and the notice) says what it holds:
the notice, the public page and the register entries show these descriptions to people."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, FrozenSet, List

import pytest

from appliance.publish.messages import MESSAGE_TYPES, message_schema
from appliance.transparency import notice_schema

SCHEMAS = {**{kind: message_schema(cls) for kind, cls in MESSAGE_TYPES.items()}, "notice": notice_schema()}


def undescribed(
    node: Dict[str, Any], defs: Dict[str, Any], path: str = "", seen: FrozenSet[str] = frozenset()
) -> List[str]:
    """Dotted paths of properties without a description, following $ref, anyOf, maps and arrays."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return [] if name in seen else undescribed(defs[name], defs, path, seen | {name})
    out: List[str] = []
    for alt in node.get("anyOf", []):
        out += undescribed(alt, defs, path, seen)
    for name, child in node.get("properties", {}).items():
        if not str(child.get("description", "")).strip():
            out.append(f"{path}.{name}")
        out += undescribed(child, defs, f"{path}.{name}", seen)
    keyed = list(node.get("patternProperties", {}).values())
    if isinstance(node.get("additionalProperties"), dict):
        keyed.append(node["additionalProperties"])
    for child in keyed:
        out += undescribed(child, defs, f"{path}.<name>", seen)
    if isinstance(node.get("items"), dict):
        out += undescribed(node["items"], defs, f"{path}[]", seen)
    return out


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
def test_every_field_of_the_published_schema_has_a_description(kind: str) -> None:
    schema = SCHEMAS[kind]
    assert undescribed(schema, schema.get("$defs", {})) == []


def test_the_check_finds_a_field_without_a_description() -> None:
    schema = {"properties": {"a": {"type": "integer"}, "b": {"$ref": "#/$defs/B", "description": "b"}},
              "$defs": {"B": {"properties": {"c": {"type": "string"}}}}}
    assert undescribed(schema, schema["$defs"]) == [".a", ".b.c"]


def test_the_committed_schemas_are_the_generated_ones() -> None:
    committed = Path(__file__).resolve().parent.parent / "docs" / "schemas"
    for kind, schema in SCHEMAS.items():
        assert json.loads((committed / f"{kind}.json").read_text()) == schema, kind
