"""Load and validate configuration: board profile + site file + overrides -> ``ApplianceConfig``.

Errors come out as one line naming the file and the dotted field, e.g.
``site.yaml: zones.0.max_people: Input should be greater than or equal to 0``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml
from pydantic import ValidationError

from appliance.config.schema import ApplianceConfig, BoardProfile, SiteConfig
from appliance.errors import InputError
from appliance.resources import firmware_configs_dir


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        raise InputError(f"invalid YAML: {getattr(exc, 'problem', exc)}", path=str(path), field=where) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("top level must be a mapping", path=str(path))
    return data


def _first_error(exc: ValidationError, source: str) -> InputError:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(exc.errors()) - 1
    if more:
        msg += f" (and {more} more error{'s' if more > 1 else ''})"
    return InputError(msg, path=source, field=loc)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict:
    """Recursively merge ``override`` into a copy of ``base`` (mappings merge, anything else replaces)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_board_profile(name: str, overrides: Optional[Mapping[str, Any]] = None, *, source: str = "") -> BoardProfile:
    path = firmware_configs_dir() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in firmware_configs_dir().glob("*.yaml")))
        raise InputError(f"unknown board profile {name!r} (known: {known})", path=source or None, field="board")
    data = deep_merge(_read_yaml(path), overrides or {})
    try:
        return BoardProfile.model_validate(data)
    except ValidationError as exc:
        label = f"{path} (with board_overrides from {source})" if overrides and source else str(path)
        raise _first_error(exc, label) from None


def load_config(path: Optional[str | Path] = None, overrides: Optional[Mapping[str, Any]] = None) -> ApplianceConfig:
    """Load a site file (or the defaults when ``path`` is None), apply ``overrides``, resolve the board."""
    source = str(path) if path is not None else "<defaults>"
    data = _read_yaml(Path(path)) if path is not None else {}
    if overrides:
        data = deep_merge(data, overrides)
        source = f"{source} (with command-line overrides)" if path is not None else "<command line>"
    try:
        site = SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise _first_error(exc, source) from None
    profile = load_board_profile(site.board, site.board_overrides, source=source)
    return ApplianceConfig(**site.model_dump(), profile=profile)


def config_hash(cfg: ApplianceConfig) -> str:
    """Stable short hash of the resolved config, published in the birth message."""
    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def json_schema() -> dict:
    """JSON Schema of a site file (what ``appliance config validate`` checks)."""
    schema = SiteConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "crowd-appliance site configuration"
    return schema
