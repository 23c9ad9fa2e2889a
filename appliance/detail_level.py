"""Detail level: how many pixels per metre the working frame puts on a person, zone by zone, and
the plan for the ``anonymize.max_detail_px_per_m`` cap (:class:`DetailPlan`).

Face blur depends on detection; the detail level does not. A person the detector misses keeps an
unblurred head, but at a low enough density nobody can recognise that head. This module measures
the density (px/m) from the configured ground plane, or estimates it from observed person heights
(people assumed ``ASSUMED_PERSON_HEIGHT_M`` tall), and names it on the IEC 62676-4:2014 scale
("DORI": detect 25, observe 62.5, recognise 125, identify 250 px/m at the object). The edition's
further levels (monitor 12.5, inspect 1000 px/m) are not used: below detect nothing more matters
here, and identify already means a face could be recognised.

Density on the ground is not the same in every direction: depth is foreshortened. A face is
upright, and its width scales like the ground's across-the-view direction, which is the one the
camera stretches most; so the density at a point is the *largest* stretch of the image-from-ground
mapping there (the larger singular value of its Jacobian), the worst case for privacy.

Everything here is pure: config values and numbers in, numbers out. It belongs to no stage: the
anonymizer applies the plan, and the preview and the public notice state it, from one computation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Literal, Optional, Sequence, Tuple

import numpy as np

from appliance.config.geometry import homography
from appliance.config.schema import GroundPlaneConfig, ZoneConfig
from appliance.geometry import Size, points_in_polygon, to_pixels

if TYPE_CHECKING:
    from appliance.config import ApplianceConfig

DetailLevel = Literal["below detect", "detect", "observe", "recognise", "identify"]

# IEC 62676-4:2014 (EN 62676-4:2015), detail levels in pixels per metre at the object.
DORI_PX_PER_M: Tuple[Tuple[DetailLevel, float], ...] = (
    ("detect", 25.0),
    ("observe", 62.5),
    ("recognise", 125.0),
    ("identify", 250.0),
)
DORI_EDITION = "IEC 62676-4:2014"
RECOGNISE_PX_PER_M = 125.0  # from here on a person could be recognised by face: the preview warns
ASSUMED_PERSON_HEIGHT_M = 1.7
WHOLE_GROUND = "(whole ground plane)"  # the name reported when no zone is configured

SAMPLES_PER_EDGE = 8
INTERIOR_GRID = 16


def dori_level(px_per_m: float) -> DetailLevel:
    """The highest IEC 62676-4 level the density reaches."""
    level: DetailLevel = "below detect"
    for name, threshold in DORI_PX_PER_M:
        if px_per_m >= threshold:
            level = name
    return level


@dataclass(frozen=True)
class ZoneDetail:
    """The worst-case (highest) density found in a zone, and its level."""

    zone: str
    px_per_m: float
    level: DetailLevel

    @property
    def recognisable(self) -> bool:
        return self.px_per_m >= RECOGNISE_PX_PER_M


def _detail(zone: str, px_per_m: float) -> ZoneDetail:
    return ZoneDetail(zone, float(px_per_m), dori_level(float(px_per_m)))


# --------------------------------------------------------------------------- ground plane


def ground_matrix(plane: GroundPlaneConfig, frame_size: Size) -> np.ndarray:
    """Homography from frame pixels (at ``frame_size``) to metres on the ground, scaled so that its
    projective denominator is positive on the visible ground (where the reference points are)."""
    reference = to_pixels(plane.image_points, frame_size)
    matrix = homography([tuple(p) for p in reference], plane.world_points_m)
    w = reference @ matrix[2, :2] + matrix[2, 2]
    if not (np.all(w > 0) or np.all(w < 0)):
        raise ValueError("ground plane: the reference points do not lie on one side of the horizon")
    return matrix if w[0] > 0 else -matrix


def plane_px_per_m(matrix: np.ndarray, points_px: np.ndarray) -> np.ndarray:
    """Density (px/m, the largest stretch over directions) at each image point (N, 2), for a
    ``matrix`` whose denominator is positive on the visible ground (as :func:`ground_matrix`
    gives). Points on or beyond the horizon give NaN."""
    pts = np.asarray(points_px, np.float64).reshape(-1, 2)
    h = np.asarray(matrix, np.float64)
    homog = pts @ h[:, :2].T + h[:, 2]  # (N, 3)
    w = homog[:, 2]
    world = homog[:, :2] / w[:, None]
    # Jacobian of world (X, Y) with respect to image (x, y): (h_r,c - world_r * h_3,c) / w
    jac = (h[None, :2, :2] - world[:, :, None] * h[None, 2:3, :2]) / w[:, None, None]
    smallest = np.linalg.svd(jac, compute_uv=False)[:, -1]  # metres per pixel, least stretched
    with np.errstate(divide="ignore"):
        out = 1.0 / smallest
    out[w <= 0] = np.nan
    return out


def zone_sample_points(polygon_px: np.ndarray) -> np.ndarray:
    """Vertices, points along every edge and a grid of interior points: the density varies smoothly,
    so its maximum over the zone is found to well within a percent."""
    poly = np.asarray(polygon_px, np.float64).reshape(-1, 2)
    t = np.linspace(0, 1, SAMPLES_PER_EDGE, endpoint=False)[:, None]
    edges = np.concatenate([a + t * (b - a) for a, b in zip(poly, np.roll(poly, -1, axis=0))])
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], INTERIOR_GRID), np.linspace(lo[1], hi[1], INTERIOR_GRID))
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    inside = grid[points_in_polygon(grid, poly)]
    return np.concatenate([poly, edges, inside, poly.mean(axis=0, keepdims=True)])


def frame_sample_points(frame_size: Size, n: int = 32) -> np.ndarray:
    w, h = frame_size
    gx, gy = np.meshgrid(np.linspace(0, w, n + 1), np.linspace(0, h, n + 1))
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def details_from_plane(
    zones: Sequence[ZoneConfig], plane: GroundPlaneConfig, frame_size: Size
) -> List[ZoneDetail]:
    """Worst-case density per zone; with no zones, one entry for the whole visible ground plane."""
    matrix = ground_matrix(plane, frame_size)
    if not zones:
        samples = np.concatenate([to_pixels(plane.image_points, frame_size), frame_sample_points(frame_size)])
        return [_detail(WHOLE_GROUND, float(np.nanmax(plane_px_per_m(matrix, samples))))]
    out = []
    for zone in zones:
        density = plane_px_per_m(matrix, zone_sample_points(to_pixels(zone.polygon, frame_size)))
        out.append(_detail(zone.name, float(np.nanmax(density)) if np.any(~np.isnan(density)) else 0.0))
    return out


# --------------------------------------------------------------------------- observed people


@dataclass(frozen=True)
class HeightScale:
    """Density as a straight line in the row of a person's feet: px/m = slope * y + intercept.

    For a level camera over flat ground this is exact (a person's image height is proportional to
    the foot row's distance below the horizon); for a tilted one it is a close approximation."""

    slope: float
    intercept: float
    people: int  # how many boxes it was fitted to

    def at(self, y_px: np.ndarray) -> np.ndarray:
        return np.maximum(self.slope * np.asarray(y_px, np.float64) + self.intercept, 0.0)


def fit_height_scale(
    boxes: np.ndarray, frame_size: Size, person_height_m: float = ASSUMED_PERSON_HEIGHT_M
) -> Optional[HeightScale]:
    """Least-squares line through (foot row, box height / person height) of the person boxes that
    are wholly inside the frame (a box cut by the edge is too short). None with fewer than two
    such boxes at different rows. One box alone gives a constant density."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    w, h = frame_size
    whole = (b[:, 0] > 1) & (b[:, 1] > 1) & (b[:, 2] < w - 1) & (b[:, 3] < h - 1)
    b = b[whole]
    if len(b) == 0:
        return None
    feet = b[:, 3]
    density = (b[:, 3] - b[:, 1]) / person_height_m
    if len(b) == 1 or np.ptp(feet) < 1:
        return HeightScale(0.0, float(np.mean(density)), len(b))
    slope, intercept = np.polyfit(feet, density, 1)
    return HeightScale(float(slope), float(intercept), len(b))


def details_from_people(zones: Sequence[ZoneConfig], scale: HeightScale, frame_size: Size) -> List[ZoneDetail]:
    """Estimated worst-case density per zone (or the whole frame with no zones), from a height fit."""
    if not zones:
        return [_detail(WHOLE_GROUND, float(np.max(scale.at(frame_sample_points(frame_size)[:, 1]))))]
    return [
        _detail(z.name, float(np.max(scale.at(zone_sample_points(to_pixels(z.polygon, frame_size))[:, 1]))))
        for z in zones
    ]


# --------------------------------------------------------------------------- the cap


def detail_scale(max_px_per_m: Optional[float], details: Sequence[ZoneDetail]) -> float:
    """The factor (0 < f <= 1) by which the frame is downscaled so no zone exceeds the cap."""
    if max_px_per_m is None or not details:
        return 1.0
    worst = max(d.px_per_m for d in details)
    return 1.0 if worst <= max_px_per_m else max_px_per_m / worst


def after_cap(details: Sequence[ZoneDetail], scale: float) -> List[ZoneDetail]:
    """The densities the frame holds once reduced by ``scale``."""
    return [_detail(d.zone, d.px_per_m * scale) for d in details]


def capped_size(frame_size: Size, scale: float) -> Size:
    """The reduced size, rounded down so the density stays at or below the cap (at least 1 px)."""
    w, h = frame_size
    return max(1, int(w * scale)), max(1, int(h * scale))


@dataclass(frozen=True)
class DetailPlan:
    """What the detail cap does on this device, fixed at start: the anonymizer reduces every frame
    by ``factor``; the preview and the public notice state ``zones``, the densities the reduced
    frame holds. One object, so that what the notice promises is what the anonymizer applies."""

    frame_size: Size  # the working frame the densities are measured at
    cap_px_per_m: Optional[float]
    measured: Tuple[ZoneDetail, ...]  # per zone before the cap, from the ground plane; empty without one
    factor: float = 1.0  # 0 < factor <= 1; 1: full detail

    def __post_init__(self) -> None:
        if not 0 < self.factor <= 1:
            raise ValueError(f"the detail factor must be in (0, 1], got {self.factor}")

    @property
    def zones(self) -> List[ZoneDetail]:
        """The densities the frame holds once reduced."""
        return after_cap(self.measured, self.factor)

    def reduced_size(self, frame_size: Size) -> Size:
        """The size a frame of ``frame_size`` is reduced to."""
        return capped_size(frame_size, self.factor)


def plan_detail(cfg: ApplianceConfig) -> DetailPlan:
    """The plan for this configuration: densities measured at the working size from the ground
    plane (the schema refuses a cap without one), and the factor the cap needs."""
    size = (cfg.profile.working_width, cfg.profile.working_height)
    plane = cfg.analytics.ground_plane
    measured = () if plane is None else tuple(details_from_plane(cfg.zones, plane, size))
    cap = cfg.anonymize.max_detail_px_per_m
    return DetailPlan(size, cap, measured, detail_scale(cap, measured))
