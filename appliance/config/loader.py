"""Load and validate configuration: board profile + site file + overrides -> ``ApplianceConfig``.

Errors come out as one line naming the file and the dotted field, e.g.
``site.yaml: zones.0.max_people: Input should be greater than or equal to 0``, whatever the file
holds: non-UTF-8 bytes, YAML errors, duplicate keys, hostile nesting or size. A file with several
schema errors raises :class:`ConfigErrors`, which holds every one (``config validate`` lists them;
other commands show the first and how many more); an unknown key names the nearest known key of
its section ("did you mean ...").
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from appliance.config.schema import ApplianceConfig, BoardProfile, SiteConfig
from appliance.errors import InputError
from appliance.redaction import redact_secrets
from appliance.resources import firmware_configs_dir

MAX_FILE_BYTES = 1024 * 1024  # a site file is a few KiB; more is a wrong file (or /dev/zero)
MAX_DEPTH = 16  # deepest real key: board_overrides.runtime.execution_providers.0 (depth 4)
MAX_NODES = 100_000  # after YAML aliases are expanded: refuses "billion laughs" files


def one_line(text: str) -> str:
    """Collapse whitespace runs (newlines included) so an error is always one line."""
    return " ".join(str(text).split())


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Dict[Hashable, Any]:
        first_line: Dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *base" then overriding a key is what merges are for
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in first_line:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {first_line[key]})", key_node.start_mark
                    )
                first_line[key] = key_node.start_mark.line + 1
            except TypeError:
                pass  # unhashable key: the base class reports it with its position
        return super().construct_mapping(node, deep=deep)


def _yaml_error(exc: yaml.YAMLError, text: str) -> Tuple[str, str]:
    """(where, what) of a PyYAML error, each one line."""
    mark = getattr(exc, "problem_mark", None)
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow (NUL, other controls)
        line = text[: exc.position].count("\n") + 1
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        return f"line {line}", f"invalid YAML: control character {char} is not allowed"
    where = f"line {mark.line + 1}" if mark is not None else "YAML"
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    what = f"{context}: {problem}" if context and "duplicate key" not in problem else problem
    return where, one_line(f"invalid YAML: {what}")


def _shape_problem(data: Any) -> Optional[str]:
    """Too deep or too big, checked without recursion (so nesting cannot blow Python's stack)."""
    stack: List[Tuple[Any, int]] = [(data, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            return f"more than {MAX_NODES} values (aliases expanded); not a site config"
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels; not a site config"
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return None


def _read_yaml(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=str(path)) from None
    except ValueError as exc:  # e.g. a NUL byte in the path
        raise InputError(f"cannot read: {exc}", path=repr(str(path))) from None
    if len(raw) > MAX_FILE_BYTES:
        raise InputError(f"larger than {MAX_FILE_BYTES // 1024} KiB; not a site config", path=str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start}", path=str(path), field=f"line {line}"
        ) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        where, what = _yaml_error(exc, text)
        raise InputError(what, path=str(path), field=where) from None
    except RecursionError:
        raise InputError(f"nested deeper than {MAX_DEPTH} levels; not a site config", path=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError("top level must be a mapping", path=str(path))
    problem = _shape_problem(data)
    if problem:
        raise InputError(problem, path=str(path))
    return data


@dataclass(frozen=True)
class ConfigProblem:
    """One error in a config: the file (or how it was given), the dotted field, what is wrong."""

    file: Optional[str]
    field: Optional[str]
    message: str

    def line(self) -> str:
        return ": ".join(p for p in (self.file, self.field, self.message) if p)


class ConfigErrors(InputError):
    """Every schema error of one config. ``str()`` is still one line: the first error and how many
    more there are (``appliance config validate`` lists them all)."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        first = problems[0]
        more = len(problems) - 1
        message = first.message + (f" (and {more} more error{'s' if more > 1 else ''}: appliance config validate "
                                   "lists them)" if more else "")
        super().__init__(message, path=first.file, field=first.field)
        self.problems = list(problems)


_UNION_TYPE = getattr(types, "UnionType", None)  # ``X | Y`` (Python 3.10+; boards may run 3.9)


def _members(annotation: Any) -> List[Any]:
    """The types an annotation allows: Optional/Union members, Annotated unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin is Union or origin is _UNION_TYPE:
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [annotation]


def _section_keys(model: type, loc: Sequence[Any]) -> List[str]:
    """The keys the section at ``loc`` (below ``model``) accepts; empty when it cannot be told."""
    current: Any = model
    parts = list(loc)
    while True:
        options = [m for m in _members(current) if m is not type(None)]
        models = [m for m in options if isinstance(m, type) and issubclass(m, BaseModel)]
        containers = [m for m in options if get_origin(m) in (list, tuple, set, frozenset, dict)]
        if not parts:
            if len(models) != 1:
                return []
            fields = models[0].model_fields
            return [f.alias or name for name, f in fields.items()]
        part = parts.pop(0)
        if containers and (isinstance(part, int) or not models):
            args = get_args(containers[0])
            current = args[-1] if get_origin(containers[0]) is dict else (args[0] if args else Any)
        elif len(models) == 1 and isinstance(part, str):
            by_key = {f.alias or name: f for name, f in models[0].model_fields.items()}
            if part not in by_key:
                return []
            current = by_key[part].annotation
        else:
            named = [m for m in models if m.__name__ == part]  # pydantic names a union member in the path
            if not named:
                return []
            current = named[0]


def _problem(err: Any, source: str, model: type, prefix: str = "") -> ConfigProblem:
    parts = ([prefix] if prefix else []) + list(err["loc"])
    loc = ".".join(p if isinstance(p, str) and p.isprintable() else repr(p) for p in parts)
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
        key = err["loc"][-1] if err["loc"] else None
        if isinstance(key, str):
            near = difflib.get_close_matches(key, _section_keys(model, err["loc"][:-1]), n=1, cutoff=0.6)
            if near:
                msg += f" (did you mean {near[0]!r}?)"
    elif err["type"] in ("int_type", "float_type") and isinstance(value, (bool, str)):
        # Strict numbers: say why a familiar-looking value is refused.
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        msg = f"{msg}, not {'a boolean' if isinstance(value, bool) else 'a string'} ({shown})"
    elif err["type"] in ("model_type", "dict_type"):
        msg = "must be a section (key: value lines), not a single value or a list"
    # Errors of a whole section (no loc) already name their field in the message.
    return ConfigProblem(source, one_line(loc) or None, one_line(msg))


def _errors(exc: ValidationError, source: str, model: type, prefix: str = "") -> ConfigErrors:
    return ConfigErrors([_problem(err, source, model, prefix) for err in exc.errors()])


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
        first = exc.errors()[0]["loc"]
        if overrides and source and first and first[0] in overrides:
            # The site's override is at fault: name the site file and its board_overrides field.
            raise _errors(exc, source, BoardProfile, prefix="board_overrides") from None
        label = f"{path} (with board_overrides from {source})" if overrides and source else str(path)
        raise _errors(exc, label, BoardProfile) from None


def config_label(path: Optional[str | Path] = None, overrides: Optional[Mapping[str, Any]] = None) -> str:
    """How errors name where a config came from: the file, the command line, or the defaults."""
    if path is None:
        return "<command line>" if overrides else "<defaults>"
    return f"{path} (with command-line overrides)" if overrides else str(path)


def load_config(path: Optional[str | Path] = None, overrides: Optional[Mapping[str, Any]] = None) -> ApplianceConfig:
    """Load a site file (or the defaults when ``path`` is None), apply ``overrides``, resolve the board."""
    source = config_label(path, overrides)
    data = _read_yaml(Path(path)) if path is not None else {}
    if overrides:
        data = deep_merge(data, overrides)
    try:
        site = SiteConfig.model_validate(data)
    except ValidationError as exc:
        raise _errors(exc, source, SiteConfig) from None
    profile = load_board_profile(site.board, site.board_overrides, source=source)
    try:
        return ApplianceConfig(**site.model_dump(), profile=profile)
    except ValidationError as exc:  # a rule across the site and its board (each is valid alone)
        raise _errors(exc, source, ApplianceConfig) from None


def config_hash(cfg: ApplianceConfig) -> str:
    """Stable short hash of the resolved config, published in the birth message. Passwords in URLs
    are left out of it: a published hash of a config would let a guessed password be confirmed."""
    blob = json.dumps(redact_secrets(cfg.model_dump(mode="json")), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def json_schema() -> dict:
    """JSON Schema of a site file (what ``appliance config validate`` checks)."""
    schema = SiteConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "crowd-appliance site configuration"
    return schema
