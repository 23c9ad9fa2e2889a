"""The tracker's assignment solver gives exactly SciPy's pairs, and the appliance never imports SciPy."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_assignment

from appliance.analyze.assignment import linear_sum_assignment


def _matrices() -> list:
    rng = np.random.default_rng(12)
    out = []
    for k in range(2000):
        n, m = (int(x) for x in rng.integers(1, 12, 2))
        if k % 4 == 0:
            c = rng.random((n, m))
        elif k % 4 == 1:  # many ties
            c = rng.integers(0, 4, (n, m)).astype(float)
        elif k % 4 == 2:  # the tracker's shape: most pairs forbidden at a large constant cost
            c = rng.random((n, m)) * 2
            c[rng.random((n, m)) < 0.6] = 1e6
        else:
            c = np.full((n, m), 1e6)
            c[rng.random((n, m)) < 0.2] = 0.5
        out.append(c)
    return out


def test_the_same_pairs_as_scipy_on_random_tied_and_forbidden_matrices() -> None:
    for c in _matrices():
        rows, cols = linear_sum_assignment(c)
        want_rows, want_cols = scipy_assignment(c)
        assert rows.tolist() == want_rows.tolist() and cols.tolist() == want_cols.tolist(), c


def test_empty_and_bad_matrices() -> None:
    rows, cols = linear_sum_assignment(np.zeros((0, 3)))
    assert rows.size == 0 and cols.size == 0
    with pytest.raises(ValueError):
        linear_sum_assignment(np.array([[0.0, np.nan]]))


def test_starting_the_appliance_does_not_import_scipy() -> None:
    code = "import sys, appliance.app, appliance.analyze.tracker; print('scipy' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
