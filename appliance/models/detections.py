"""The one result type every detector returns: boxes and scores in frame pixels."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Detections:
    """N axis-aligned boxes ``[x1, y1, x2, y2]`` (float32, frame pixels) with scores in [0, 1].

    ``landmarks`` is optional per-box keypoints ``(N, K, 2)`` in frame pixels (CenterFace gives 5).
    """

    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (N, 4), got {self.boxes.shape}")
        if self.scores.shape != (self.boxes.shape[0],):
            raise ValueError(f"scores must be ({self.boxes.shape[0]},), got {self.scores.shape}")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls) -> Detections:
        return cls()

    def filter(self, keep: np.ndarray) -> Detections:
        """Subset by a boolean mask or index array."""
        lm = None if self.landmarks is None else self.landmarks[keep]
        return Detections(self.boxes[keep], self.scores[keep], lm)

    @property
    def bottom_centers(self) -> np.ndarray:
        """(N, 2) anchor points where a person touches the ground: the middle of the box's bottom edge."""
        return np.stack([(self.boxes[:, 0] + self.boxes[:, 2]) / 2, self.boxes[:, 3]], axis=1)
