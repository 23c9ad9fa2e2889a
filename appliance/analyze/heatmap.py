"""Coarse occupancy heatmap: person anchors counted in a small grid, summed over a window.

Only these integers leave the device, never an image. Divide a cell by the window's
``frames_analyzed`` for the mean number of people standing in it.
"""

from __future__ import annotations

import numpy as np

from appliance.geometry import Size
from appliance.vocabulary import Heatmap


class HeatmapGrid:
    def __init__(self, rows: int, cols: int, frame_size: Size) -> None:
        self.rows, self.cols = rows, cols
        self.width, self.height = frame_size
        self._cells = np.zeros((rows, cols), np.int64)

    def add(self, anchors: np.ndarray) -> None:
        if len(anchors) == 0:
            return
        # Anchors on the bottom edge (y == height) belong to the last row, not outside the grid.
        c = np.clip((anchors[:, 0] / self.width * self.cols).astype(int), 0, self.cols - 1)
        r = np.clip((anchors[:, 1] / self.height * self.rows).astype(int), 0, self.rows - 1)
        np.add.at(self._cells, (r, c), 1)

    def close_window(self) -> Heatmap:
        heatmap = Heatmap(rows=self.rows, cols=self.cols, cells=self._cells.tolist())
        self._cells[:] = 0
        return heatmap
