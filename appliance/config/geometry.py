"""Geometry sanity checks for zones, lines and the ground plane, in frame fractions (0..1).

Each check returns None or one sentence saying what is wrong; the schema turns it into a one-line
error naming the field. They refuse shapes that would otherwise be accepted and published as
nonsense: a bow-tie zone counts people outside it, a zero-area zone or a degenerate ground plane
gives densities of 1e18 people/m².
"""

from __future__ import annotations

from itertools import combinations
from math import hypot
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

if TYPE_CHECKING:
    import numpy as np

# numpy and shapely are imported inside the checks: every command imports the schema, few configs
# have zones or a ground plane, and start-up time counts (a restarted service, a CLI call).

Point = Tuple[float, float]

MIN_ZONE_AREA = 1e-4  # of the frame: 1 % x 1 %, about 8 x 6 pixels at 768 x 576
MIN_LINE_LENGTH = 0.01  # of the frame diagonal's unit: a shorter line cannot tell in from out
# Smallest triangle any three ground-plane points may span, relative to the square of their
# largest distance: below it they are (nearly) on one line and the homography blows up.
MIN_TRIANGLE_RATIO = 0.01
# A zone vertex must stay this far from the horizon, as a fraction of the reference points' own
# distance from it (areas scale with 1 / distance³ there: 0.05 allows 8000 times the reference's).
HORIZON_MARGIN = 0.05


def zone_polygon_problem(points: Sequence[Point]) -> Optional[str]:
    from shapely.geometry import Polygon  # type: ignore[import-untyped]
    from shapely.validation import explain_validity  # type: ignore[import-untyped]

    polygon = Polygon(points)
    if not polygon.is_valid:
        # e.g. "Self-intersection[0.5 0.5]" or "Too few points[...]"
        return f"not a simple polygon: {explain_validity(polygon)}"
    if polygon.area < MIN_ZONE_AREA:
        return f"area {polygon.area:.2g} of the frame is too small (at least {MIN_ZONE_AREA:g})"
    return None


def line_problem(start: Point, end: Point) -> Optional[str]:
    length = hypot(end[0] - start[0], end[1] - start[1])
    if length < MIN_LINE_LENGTH:
        return f"start and end are {length:.2g} apart; a line must be at least {MIN_LINE_LENGTH:g} of the frame long"
    return None


def _collinear_triple(points: Sequence[Point]) -> Optional[Tuple[int, int, int]]:
    span = max(hypot(a[0] - b[0], a[1] - b[1]) for a, b in combinations(points, 2))
    if span == 0:
        return (0, 1, 2)
    for i, j, k in combinations(range(len(points)), 3):
        (ax, ay), (bx, by), (cx, cy) = points[i], points[j], points[k]
        area = abs((bx - ax) * (cy - ay) - (by - ay) * (cx - ax)) / 2
        if area < MIN_TRIANGLE_RATIO * span * span:
            return (i, j, k)
    return None


def homography(src: Sequence[Point], dst: Sequence[Point]) -> np.ndarray:
    """3x3 matrix mapping the four ``src`` points onto the four ``dst`` points (h33 = 1)."""
    import numpy as np

    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.asarray(rows, np.float64), np.asarray(rhs, np.float64))
    return np.append(h, 1.0).reshape(3, 3)


def _w(matrix: np.ndarray, points: Sequence[Point]) -> np.ndarray:
    """Projective denominators: where they change sign is the horizon of the ground plane."""
    import numpy as np

    pts = np.asarray(points, np.float64).reshape(-1, 2)
    return pts @ matrix[2, :2] + matrix[2, 2]


def ground_plane_problem(image_points: Sequence[Point], world_points_m: Sequence[Point]) -> Optional[str]:
    import numpy as np

    for label, pts in (("image_points", image_points), ("world_points_m", world_points_m)):
        triple = _collinear_triple(pts)
        if triple is not None:
            return f"{label} {', '.join(str(i) for i in triple)} are (nearly) on one line or identical"
    try:
        matrix = homography(image_points, world_points_m)
    except np.linalg.LinAlgError:
        return "the points give no homography"
    w = _w(matrix, image_points)
    if not (np.all(w > 0) or np.all(w < 0)):
        return "image_points and world_points_m are not in the same order around the quadrilateral"
    return None


def below_horizon_problem(
    polygon: Sequence[Point], image_points: Sequence[Point], world_points_m: Sequence[Point]
) -> Optional[str]:
    """A zone whose area comes from the ground plane must lie wholly on the visible ground."""
    import numpy as np

    matrix = homography(image_points, world_points_m)
    reference = np.sign(_w(matrix, image_points)[0])
    w = _w(matrix, polygon) * reference
    # Vertices at or beyond the horizon map to infinity; near it, to absurdly large areas.
    if np.any(w <= HORIZON_MARGIN * float(np.min(_w(matrix, image_points) * reference))):
        return "reaches the ground plane's horizon (its area in m² would be meaningless); give area_m2"
    return None
