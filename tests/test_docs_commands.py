"""Every ``appliance ...`` command line shown in README.md and docs/ is accepted by the real CLI.

Docs and CLI drifted before (flags the docs promised were rejected). Here each command line found in
a code span or code block is parsed by the CLI's own parser, with placeholders (FILE, N, URL, ...)
replaced by example values and ``[optional]`` parts included; and each distinct command's ``--help``
runs in a real process, so the whole command tree imports and prints.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import List, Set, Tuple

import pytest

from appliance.cli import build_parser

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Placeholder -> an example value of the right kind.
PLACEHOLDERS = {
    "FILE": "site.yaml",
    "INPUT": "clip.mp4",
    "OUTPUT": "out.mp4",
    "SRC": "sample",
    "URL": "mqtt://127.0.0.1:1883",
    "ID": "cam-0001",
    "N": "3",
    "S": "10",
    "NAME": "rpi4",
    "DIR": "pki",
    "P": "crowdmon",
    "B": "rpi4",
    "CHECK": "camera",
}
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SPAN = re.compile(r"`([^`\n]+)`")
# Within code: after a prompt or a shell separator, possibly with a path (.venv/bin/appliance).
COMMAND = re.compile(r"(?:^|\$ |&& |; )\s*(?:\S*/)?(appliance [^#;&<>]*?)\s*(?:#.*)?$", re.MULTILINE)


def code_in(text: str) -> List[str]:
    """The fenced code blocks (continued lines joined) and inline code spans of a Markdown text."""
    blocks = [re.sub(r"\\\n\s*", " ", block) for block in FENCE.findall(text)]
    return blocks + SPAN.findall(FENCE.sub("", text))


def shown_commands() -> List[Tuple[str, str]]:
    found: Set[Tuple[str, str]] = set()
    for doc in DOCS:
        for code in code_in(doc.read_text(encoding="utf-8")):
            for match in COMMAND.finditer(code):
                line = match.group(1).strip().rstrip("\\").strip()
                if len(line.split()) >= 2:
                    found.add((doc.name, line))
    return sorted(found)


def to_argv(line: str) -> List[str]:
    # Optional parts are included, alternatives ("a|b") take the first.
    line = line.replace("[", " ").replace("]", " ")
    argv = []
    for word in shlex.split(line)[1:]:
        word = word.split("|")[0] if "|" in word and not word.startswith("-") else word
        argv.append(PLACEHOLDERS.get(word, word))
    return argv


COMMANDS = shown_commands()


def test_the_docs_show_commands_at_all() -> None:
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize(("doc", "line"), COMMANDS, ids=[f"{d}:{line}" for d, line in COMMANDS])
def test_a_shown_command_line_is_accepted_by_the_cli(doc: str, line: str) -> None:
    argv = to_argv(line)
    if "..." in argv:  # `appliance provision init|device ...`: the rest is described in prose
        argv = argv[: argv.index("...")]
        assert list(command_path(argv)) == argv, f"{doc}: `{line}` names no command"
        return
    if list(command_path(argv)) == argv:
        return  # a mention of a command by name (`appliance monitor`): the --help test below runs it
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse rejects with exit 2
        pytest.fail(f"{doc}: `{line}` is rejected by the CLI (exit {exc.code})")
    assert callable(args.func)


def command_path(argv: List[str]) -> Tuple[str, ...]:
    """The sub-command words of ``argv`` (``models verify``), found by walking the parser's tree."""
    parser: argparse.ArgumentParser = build_parser()
    path: List[str] = []
    for word in argv:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        path.append(word)
        parser = subs[0].choices[word]
    return tuple(path)


def command_paths() -> List[List[str]]:
    return [list(p) for p in sorted({command_path(to_argv(line)) for _, line in COMMANDS} - {()})]


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p))
def test_each_shown_command_prints_its_help(path: List[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", *path, "--help"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: appliance " + " ".join(path))
