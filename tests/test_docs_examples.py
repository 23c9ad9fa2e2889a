"""The example site config is where a new user starts: the pages its comments point to exist, and
the one named for "every key and its default" is the generated config reference, not a guide that
covers only some keys."""

from __future__ import annotations

import re
from pathlib import Path

from appliance.config.schema import SiteConfig

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "site.yaml"
DOC_PATH = re.compile(r"\bdocs/[A-Za-z0-9_./-]*[A-Za-z0-9_]")


def comments() -> list:
    return [line.split("#", 1)[1] for line in EXAMPLE.read_text(encoding="utf-8").splitlines() if "#" in line]


def test_every_page_the_example_config_points_to_exists() -> None:
    named = {m for c in comments() for m in DOC_PATH.findall(c)}
    assert named, "examples/site.yaml points readers to docs/"
    assert [p for p in sorted(named) if not (ROOT / p).is_file()] == []


def test_the_pointer_to_every_key_and_its_default_leads_to_a_page_with_every_section() -> None:
    pointer = [c for c in comments() if "every key" in c.lower()]
    assert len(pointer) == 1
    (page,) = DOC_PATH.findall(pointer[0])
    text = (ROOT / page).read_text(encoding="utf-8")
    assert [key for key in SiteConfig.model_fields if f"`{key}" not in text] == []
