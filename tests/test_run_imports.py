"""``appliance run`` loads only what the device needs (every imported library costs
resident memory on a 512 MB board). The report, sign, provisioning and monitor libraries (fpdf2,
segno, jinja2, rich) and the tests' scipy stay out of a real run, in a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

NOT_FOR_RUN = ("fpdf", "segno", "jinja2", "rich", "scipy")

PROBE = """
import json, sys
from appliance.cli import main
rc = main(sys.argv[1:])
loaded = sorted({m.split('.')[0] for m in sys.modules})
print(json.dumps({"rc": rc, "loaded": loaded}), file=sys.stderr)
"""


@pytest.mark.slow
def test_run_on_the_example_site_imports_no_report_sign_or_monitor_library() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, "run", "--config", "examples/site.yaml", "--max-frames", "3"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300,
    )
    result = json.loads(proc.stderr.strip().splitlines()[-1])
    assert result["rc"] == 0, proc.stderr[-2000:]
    # The probe itself is real: the run did load its own runtime.
    assert {"onnxruntime", "cv2", "appliance"} <= set(result["loaded"])
    assert [m for m in NOT_FOR_RUN if m in result["loaded"]] == []
