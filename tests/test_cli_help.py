"""`appliance ... --help` explains every command and every option: a new user learns the CLI from it.

The whole parser tree is walked, so a command or option added later without a help text fails here.
"""

from __future__ import annotations

import argparse
from typing import Iterator, List, Tuple

import pytest

from appliance.cli import build_parser, main


def parsers(parser: argparse.ArgumentParser, path: str = "appliance") -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    """Every (command path, parser) in the tree, the top-level one first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}")


def test_the_walk_reaches_every_command_group() -> None:
    paths = [path for path, _ in parsers(build_parser())]
    for expected in ("appliance run", "appliance config validate", "appliance provision client", "appliance monitor"):
        assert expected in paths
    assert len(paths) > 20


def test_every_option_and_argument_of_every_command_has_a_help_text() -> None:
    missing: List[str] = []
    for path, parser in parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}" for c in action._choices_actions if not (c.help or "").strip()]
            elif not (action.help or "").strip():
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_every_help_page_renders(capsys: pytest.CaptureFixture[str]) -> None:
    # Rendering expands %(default)s and the like; a stray '%' in a help text would only fail here.
    for path, _ in parsers(build_parser()):
        words = path.split()[1:]
        try:
            main([*words, "--help"])
        except SystemExit as done:
            assert done.code == 0, path
        out = capsys.readouterr().out
        assert out.startswith(f"usage: {path}"), path
