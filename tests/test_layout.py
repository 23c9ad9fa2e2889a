"""The package reads as the data flow: capture -> anonymize -> analyze -> publish.

Checked statically on the source: no stage imports a later one (so a raw frame cannot flow
backwards into capture, nor analysis reach into publishing), and there is no import cycle.
Modules are split by concept, not by size: no line cap.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parent.parent / "appliance"
FLOW = ["capture", "anonymize", "analyze", "publish"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Set[str]:
    """Modules of ours imported at run time (``if TYPE_CHECKING:`` blocks do not count)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "appliance" or m.startswith("appliance.")}


MODULES: Dict[str, Path] = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def stage_of(module: str) -> int:
    parts = module.split(".")
    return FLOW.index(parts[1]) if len(parts) > 1 and parts[1] in FLOW else -1


def test_no_stage_imports_a_later_stage() -> None:
    backwards = [
        f"{mod} imports {imp}"
        for mod, path in MODULES.items()
        for imp in imports_of(path)
        if stage_of(mod) >= 0 and stage_of(imp) > stage_of(mod)
    ]
    assert backwards == []


def test_there_is_no_import_cycle() -> None:
    graph = {mod: {i for i in imports_of(path) if i in MODULES and i != mod} for mod, path in MODULES.items()}
    # A package's __init__ importing its own submodules is how packages work, not a cycle.
    for mod in graph:
        graph[mod] = {i for i in graph[mod] if not i.startswith(mod + ".")}
    cycles: List[List[str]] = []
    state: Dict[str, int] = {}

    def visit(node: str, stack: List[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert cycles == []

