"""scripts/setup.sh, the README's first command: it must not sit silent through its slow step.

Read from the script's text (running it here would reinstall the environment the tests run in);
`bash -n` checks the script still parses.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "setup.sh"


def test_setup_script_parses() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_the_pip_install_is_announced_on_stderr_with_where_its_log_goes_before_it_starts() -> None:
    lines = [line.strip() for line in SCRIPT.read_text(encoding="utf-8").splitlines()]
    code = [i for i, line in enumerate(lines) if line and not line.startswith("#")]
    pip = next(i for i in code if "pip install" in lines[i])
    log = next(i for i in code if lines[i].startswith("log="))
    announced = [
        i for i in code
        if log < i < pip and lines[i].startswith("echo ") and "pip" in lines[i] and "$log" in lines[i]
    ]
    assert announced, "setup.sh: say what the pip step does and where its log is, before it runs"
    assert lines[announced[-1]].endswith(">&2")  # beside setup's other progress lines, off stdout


def test_the_page_test_tools_are_installed_for_the_tests_only_and_axe_core_from_its_lock_file() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    block = text[text.index('if [ "${SETUP_TEST_BROKERS:-0}" = 1 ]; then'):]
    for package in ("need_apt+=(chromium)", "need_apt+=(chromium-driver)", "need_apt+=(npm)"):
        assert package in block.split("fi", 1)[0], package
    assert "npm ci" in text and "tests/browser" in text
    lock = json.loads((SCRIPT.parent.parent / "tests" / "browser" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/axe-core"]["integrity"].startswith("sha512-")
