"""Exact minimum-cost assignment for the tracker's small cost matrices, without SciPy.

The tracker needs one function of ``scipy.optimize`` and importing that package was half of
``import appliance.app`` (start-up time and resident memory on a small board). This is the shortest augmenting path
algorithm of D. F. Crouse, "On implementing 2D rectangular assignment algorithms", IEEE TAES 52(4),
2016, pp. 1685-1686, step for step as SciPy's ``rectangular_lsap`` (P. M. Larsen, BSD) implements it,
including its tie-breaking, so it returns the same pairs as ``linear_sum_assignment`` (the tests
compare the two on random, tied and partly forbidden matrices). Matrices here are tracks x
detections, tens at most, where plain Python on lists beats array calls.
"""

from __future__ import annotations

import math
from typing import List, Tuple

import numpy as np


def _augmenting_path(
    cost: List[List[float]],
    u: List[float],
    v: List[float],
    path: List[int],
    row4col: List[int],
    shortest: List[float],
    i: int,
    in_rows: List[bool],
    in_cols: List[bool],
) -> Tuple[int, float]:
    nc = len(v)
    min_val = 0.0
    # Reverse order, as SciPy fills it, so a constant matrix gives the identity assignment.
    remaining = list(range(nc - 1, -1, -1))
    for k in range(len(in_rows)):
        in_rows[k] = False
    for k in range(nc):
        in_cols[k] = False
        shortest[k] = math.inf
    sink = -1
    while sink == -1:
        index = -1
        lowest = math.inf
        in_rows[i] = True
        row = cost[i]
        ui = u[i]
        for it, j in enumerate(remaining):
            r = min_val + row[j] - ui - v[j]
            if r < shortest[j]:
                path[j] = i
                shortest[j] = r
            # Among equal costs prefer a free column: it ends the path (SciPy's rule).
            if shortest[j] < lowest or (shortest[j] == lowest and row4col[j] == -1):
                lowest = shortest[j]
                index = it
        min_val = lowest
        if min_val == math.inf:
            raise ValueError("cost matrix is infeasible")
        j = remaining[index]
        if row4col[j] == -1:
            sink = j
        else:
            i = row4col[j]
        in_cols[j] = True
        remaining[index] = remaining[-1]
        remaining.pop()
    return sink, min_val


def linear_sum_assignment(cost_matrix: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a minimum-cost assignment of a finite ``(N, M)`` cost matrix, like
    ``scipy.optimize.linear_sum_assignment`` (rows ascending, ``min(N, M)`` pairs)."""
    c = np.asarray(cost_matrix, np.float64)
    if c.ndim != 2:
        raise ValueError(f"expected a 2-d cost matrix, got shape {c.shape}")
    if c.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not np.isfinite(c).all():
        raise ValueError("cost matrix must be finite")
    transpose = c.shape[1] < c.shape[0]
    if transpose:
        c = c.T
    nr, nc = c.shape
    cost = c.tolist()
    u = [0.0] * nr
    v = [0.0] * nc
    shortest = [math.inf] * nc
    path = [-1] * nc
    col4row = [-1] * nr
    row4col = [-1] * nc
    in_rows = [False] * nr
    in_cols = [False] * nc
    for cur in range(nr):
        sink, min_val = _augmenting_path(cost, u, v, path, row4col, shortest, cur, in_rows, in_cols)
        # Update the dual variables.
        u[cur] += min_val
        for i in range(nr):
            if in_rows[i] and i != cur:
                u[i] += min_val - shortest[col4row[i]]
        for j in range(nc):
            if in_cols[j]:
                v[j] -= min_val - shortest[j]
        # Augment the previous solution along the path.
        j = sink
        while True:
            i = path[j]
            row4col[j] = i
            col4row[i], j = j, col4row[i]
            if i == cur:
                break
    if transpose:
        order = sorted(range(nr), key=lambda r: col4row[r])
        return np.asarray([col4row[r] for r in order], np.int64), np.asarray(order, np.int64)
    return np.arange(nr, dtype=np.int64), np.asarray(col4row, np.int64)
