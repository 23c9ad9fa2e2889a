"""Frame geometry for analysis and the detail level: frame fractions to pixels, point-in-polygon,
polygon areas, ground plane."""

from __future__ import annotations

from typing import Sequence, Tuple

import cv2
import numpy as np

Size = Tuple[int, int]  # (width, height) in pixels


def to_pixels(points: Sequence[Tuple[float, float]], frame_size: Size) -> np.ndarray:
    """Config coordinates (fractions 0..1 of width/height) to frame pixels, (N, 2) float64."""
    w, h = frame_size
    return np.asarray(points, np.float64).reshape(-1, 2) * np.array([w, h], np.float64)


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Boolean mask of which ``points`` (N, 2) lie inside ``polygon`` (M, 2), vectorised even-odd rule.

    Points exactly on an edge may fall either way; that is fine for anchors of detected boxes.
    """
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) == 0:
        return np.zeros(0, bool)
    x, y = pts[:, 0:1], pts[:, 1:2]  # (N, 1) against (M,) edges
    x1, y1 = polygon[:, 0], polygon[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    straddles = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    return np.count_nonzero(straddles & (x < x_cross), axis=1) % 2 == 1


def polygon_area(polygon: np.ndarray) -> float:
    """Shoelace area of a simple polygon (in the polygon's own units squared)."""
    x, y = polygon[:, 0], polygon[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


class GroundPlane:
    """A homography from image pixels to metres on the ground, from four reference points."""

    def __init__(self, image_px: np.ndarray, world_m: np.ndarray) -> None:
        self.matrix = cv2.getPerspectiveTransform(
            np.asarray(image_px, np.float32).reshape(4, 2), np.asarray(world_m, np.float32).reshape(4, 2)
        )

    def to_world(self, points_px: np.ndarray) -> np.ndarray:
        pts = np.asarray(points_px, np.float64).reshape(-1, 1, 2)
        return cv2.perspectiveTransform(pts, self.matrix.astype(np.float64)).reshape(-1, 2)

    def area_m2(self, polygon_px: np.ndarray) -> float:
        """Ground area of an image polygon. Straight edges stay straight under a homography, so
        projecting the vertices is exact (for a polygon wholly on the visible ground plane)."""
        return polygon_area(self.to_world(polygon_px))
