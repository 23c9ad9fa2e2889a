"""A polygon zone: who is in it (by the bottom-centre anchor of each box) and how dense it is."""

from __future__ import annotations

from typing import Optional

import numpy as np

from appliance.config.schema import ZoneConfig
from appliance.geometry import GroundPlane, Size, points_in_polygon, to_pixels


class Zone:
    def __init__(self, cfg: ZoneConfig, frame_size: Size, ground_plane: Optional[GroundPlane] = None) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.polygon_px = to_pixels(cfg.polygon, frame_size)
        # A measured area in the config wins over the homography: it is what the site surveyed.
        if cfg.area_m2 is not None:
            self.area_m2: Optional[float] = cfg.area_m2
        elif ground_plane is not None:
            self.area_m2 = ground_plane.area_m2(self.polygon_px)
        else:
            self.area_m2 = None

    def contains(self, anchors: np.ndarray) -> np.ndarray:
        """Mask over ``anchors`` (N, 2 pixels): which lie inside the zone."""
        return points_in_polygon(anchors, self.polygon_px)

    def count(self, anchors: np.ndarray) -> int:
        return int(np.count_nonzero(self.contains(anchors)))

    def density(self, count: int) -> Optional[float]:
        """People per m², or None when the zone has no known ground area."""
        return None if not self.area_m2 else count / self.area_m2
