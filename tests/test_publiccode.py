"""publiccode.yml at the repository root: generated from the code, and valid under the rules of the
publiccode.yml standard (its schema.core.rst, vendored in tests/data/publiccode/, read here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import yaml

from appliance.transparency.publiccode import render

ROOT = Path(__file__).resolve().parent.parent
STANDARD = ROOT / "tests" / "data" / "publiccode"


def rules() -> Dict[str, Dict[str, Any]]:
    """Key path -> {presence, deprecated, allowed, max, min}, from the standard's 'Key ``...``' blocks."""
    text = (STANDARD / "schema.core.rst").read_text(encoding="utf-8")
    out: Dict[str, Dict[str, Any]] = {}
    for m in re.finditer(r"^Key ``([^`]+)``(.*)\n[~'^-]+\n\n((?:-  .*\n(?:   .*\n)*)+)", text, re.M):
        path, flags, block = m.group(1), m.group(2), " ".join(m.group(3).split())
        presence = re.search(r"Presence: (.*?)(?: - |$)", block)
        allowed = re.search(r"Allowed values: (.*?)(?: - |$)", block)
        rule: Dict[str, Any] = {
            "presence": presence.group(1) if presence else "optional",
            "deprecated": "deprecated" in flags,
            "allowed": re.findall(r"``\"?([^`\"]+)\"?``", allowed.group(1)) if allowed else None,
        }
        for bound in ("max", "min"):
            found = re.search(rf"{bound} (\d+) chars", block)
            rule[bound] = int(found.group(1)) if found else None
        out[path] = rule
    for section in re.findall(r"^Section ``([^`]+)``", text, re.M):  # containers of the keys above
        out[section] = {"presence": "section", "deprecated": False, "allowed": None, "max": None, "min": None}
    out["description/[lang]"] = dict(out["description"])
    return out


def controlled(name: str) -> set:
    return set(re.findall(r"^- ([a-z0-9-]+)$", (STANDARD / name).read_text(encoding="utf-8"), re.M))


def keys(doc: Dict[str, Any], prefix: str = "") -> Iterator[Tuple[str, Any]]:
    for key, value in doc.items():
        if prefix == "description/":
            key = "[lang]"
        path = f"{prefix}{key}"
        yield path, value
        sections = ("intendedAudience", "description", "legal", "maintenance", "localisation", "dependsOn")
        if isinstance(value, dict) and (path in sections or path == "description/[lang]"):
            yield from keys(value, path + "/")


def test_the_committed_publiccode_yml_is_the_generated_one() -> None:
    assert (ROOT / "publiccode.yml").read_text(encoding="utf-8") == render(), (
        "regenerate: python -m appliance.transparency.publiccode > publiccode.yml"
    )


def test_the_rules_are_read_from_the_standard() -> None:
    r = rules()
    assert r["name"]["presence"] == "mandatory" and r["developmentStatus"]["allowed"][0] == "concept"
    assert r["description/[lang]/shortDescription"]["max"] == 150 and r["monochromeLogo"]["deprecated"]
    assert len(r) > 40


def test_publiccode_yml_follows_the_standard() -> None:
    doc = yaml.safe_load((ROOT / "publiccode.yml").read_text(encoding="utf-8"))
    r = rules()
    present = dict(keys(doc))
    for path, value in present.items():
        assert path in r, f"{path}: not a key of the standard"
        assert not r[path]["deprecated"], f"{path}: deprecated"
        if r[path]["allowed"]:
            assert value in r[path]["allowed"], (path, value)
        if isinstance(value, str):
            assert r[path]["max"] is None or len(value) <= r[path]["max"], path
            assert r[path]["min"] is None or len(value) >= r[path]["min"], path
    for path, rule in r.items():
        if rule["presence"] == "mandatory" or rule["presence"].startswith("mandatory (for at least one language)"):
            section = path.split("/")[0]
            if path == section or section in present:
                assert path in present, f"{path}: mandatory"
    kind = doc["maintenance"]["type"]
    assert ("contacts" in doc["maintenance"]) or kind not in ("internal", "community")
    assert ("contractors" in doc["maintenance"]) == (kind == "contract")
    assert set(doc["categories"]) <= controlled("categories-list.rst")
    assert set(doc["intendedAudience"]["scope"]) <= controlled("scope-list.rst")
    assert all(len(f) <= 100 for f in doc["description"]["en"]["features"])


def test_its_licence_and_version_are_the_projects() -> None:
    import appliance

    doc = yaml.safe_load((ROOT / "publiccode.yml").read_text(encoding="utf-8"))
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'license = "{doc["legal"]["license"]}"' in pyproject
    assert doc["softwareVersion"] == appliance.__version__
