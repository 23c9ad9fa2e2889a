"""The one configuration schema: board profile + site config + command-line overrides.

Every default lives here, next to its field, with its unit in the field name. Unknown keys are
rejected everywhere (``extra="forbid"``) so a typo in a site file fails loudly instead of being
ignored. ``appliance config schema`` exports this as JSON Schema.

Coordinates of zones and lines are fractions of the frame (0..1, origin top-left), so a site
config stays valid when a board profile changes the working resolution.

Numbers are strict: ``true`` or ``"10"`` where a number belongs, and ``.nan``/``.inf`` anywhere, are
errors rather than silently read as 1, 10 or a density of infinity.
"""

from __future__ import annotations

from typing import List, Literal, Optional

from pydantic import Field, field_validator, model_validator

from appliance.config.anomaly_sections import (
    AbnormalMotionConfig,
    AnomaliesConfig,
    CameraTamperConfig,
    CounterflowConfig,
    RapidChangeConfig,
)
from appliance.config.base import Point, Strict, check_in_frame
from appliance.config.geometry import (
    below_horizon_problem,
    ground_plane_problem,
    line_problem,
    zone_polygon_problem,
)
from appliance.config.transparency_sections import AuditConfig, PrivacyConfig, Purpose, SignLanguage, TransparencyConfig
from appliance.config.transport import (
    HomeAssistantConfig,
    MqttConfig,
    MqttTlsConfig,
    OutboxConfig,
    PublishConfig,
)
from appliance.names import NAME_PATTERN

# The sections defined in their own modules are part of this module's interface too.
__all__ = [
    "AbnormalMotionConfig",
    "AnomaliesConfig",
    "AuditConfig",
    "CameraTamperConfig",
    "CounterflowConfig",
    "HomeAssistantConfig",
    "MqttConfig",
    "MqttTlsConfig",
    "OutboxConfig",
    "Point",
    "PrivacyConfig",
    "PublishConfig",
    "Purpose",
    "RapidChangeConfig",
    "SignLanguage",
    "Strict",
    "TransparencyConfig",
]


# --------------------------------------------------------------------------- board profile


class ModelSelection(Strict):
    # int8 by default (CPU boards): with percentile calibration both int8 builds keep >= 95 % of
    # the fp32 detections on held-out real frames (models/README.md). Jetson profiles name fp32.
    face: str = Field("centerface-int8", description="Face model name in models/manifest.yaml")
    person: str = Field("ssdlite-person-int8", description="Person model name in models/manifest.yaml")


class RuntimeConfig(Strict):
    execution_providers: List[str] = Field(
        default_factory=lambda: ["CPUExecutionProvider"],
        description="onnxruntime providers in order of preference; ones not present are skipped, "
        "CPUExecutionProvider is always the last resort",
    )
    intra_op_threads: int = Field(2, ge=1, le=64, description="Threads per model session")


class BoardProfile(Strict):
    """One file per board in firmware_configs/. Describes the hardware, not the site."""

    name: str = Field(description="Profile name; must equal the file name without .yaml")
    description: str = Field("", description="What board and OS this profile is for")
    working_width: int = Field(768, ge=64, le=4096, description="Frames are resized once to this width")
    working_height: int = Field(576, ge=64, le=4096, description="Frames are resized once to this height")
    target_fps: float = Field(5.0, gt=0, le=60, description="Frames per second the pipeline aims to analyze")
    models: ModelSelection = Field(default_factory=ModelSelection)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    person_input_size: int = Field(
        300, ge=128, le=1280, description="Square input side of the person detector (pixels)"
    )
    person_tiling: Literal["off", "2x1", "2x2", "perspective"] = Field(
        # Measured on vtest.avi at threshold 0.4 (docs/analytics.md): count MAE 1.75 off, 0.85 2x1, 0.50
        # perspective, for about 1.8-2.2x the detector time of 2x1; the only setting under 0.6.
        "perspective",
        description="Run the person detector on overlapping tiles as well as the whole frame; "
        "'perspective': 3 tiles across the top half and 2 across the middle, where people are small",
    )
    face_input_width: int = Field(640, ge=64, description="Face detector input width (multiple of 32)")
    face_input_height: int = Field(480, ge=64, description="Face detector input height (multiple of 32)")

    @field_validator("face_input_width", "face_input_height")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError("must be a multiple of 32")
        return v


# --------------------------------------------------------------------------- site sections


class CaptureConfig(Strict):
    source: str = Field(
        "sample",
        description="'sample' (bundled clip), a file, a folder of images, /dev/videoN or an index (USB camera), "
        "an rtsp:// or http(s):// URL (IP camera), libcamera:N (Raspberry Pi camera module, via rpicam-vid), "
        "argus:N (Jetson CSI camera, via gst-launch-1.0 nvarguscamerasrc), or a GStreamer pipeline ending in "
        "appsink (only with an OpenCV built with GStreamer)",
    )
    loop: bool = Field(False, description="Restart a file source at its end instead of stopping")
    reconnect_initial_s: float = Field(
        1.0, gt=0, description="First wait before reopening a lost live source (or one not reachable at start)"
    )
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reconnect attempts")
    read_timeout_s: float = Field(
        5.0, gt=0, description="A live source with no frame for this long is lost (and a stream's read gives up)"
    )
    open_timeout_s: float = Field(10.0, gt=0, le=300, description="Opening a stream gives up after this long")
    rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp", description="RTSP over TCP (interleaved: one connection, no lost packets) or UDP"
    )
    camera_fps: float = Field(
        10.0, gt=0, le=60, description="Frame rate asked of a libcamera: or argus: camera (the newest is analysed)"
    )
    password_file: Optional[str] = Field(
        None, description="File holding the stream's password (never logged); the source names the user: rtsp://USER@..."
    )
    password_env: Optional[str] = Field(None, description="Environment variable holding the stream's password")
    max_pixels: int = Field(
        24_000_000,
        ge=1,
        description="Largest frame (width x height) an image, video or camera may deliver, checked from the file's "
        "header or the stream's reported size before decoding; larger is refused (exit 2). At 24 MP (a 6000x4000 "
        "photo) blur peaks at about 320 MiB, inside the service's MemoryMax=512M; at 40 MP it reached 443 MiB",
    )

    @model_validator(mode="after")
    def _one_password_source(self) -> CaptureConfig:
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        return self


class AnonymizeConfig(Strict):
    method: Literal["gaussian", "pixelate", "fill"] = Field("gaussian", description="How a face is hidden")
    shape: Literal["ellipse", "box"] = Field("ellipse", description="Hide an ellipse inside the face box, or all of it")
    margin_ratio: float = Field(0.3, ge=0, le=2, description="Face box grown by this fraction of its size")
    face_score_threshold: float = Field(0.2, gt=0, lt=1, description="CenterFace score to count as a face")
    persist_frames: int = Field(
        5, ge=0, le=100, description="Keep blurring a face's last box this many frames after it was last seen"
    )
    head_blur: bool = Field(True, description="Also blur the head region of every detected person")
    head_height_ratio: float = Field(
        0.28, gt=0, le=1, description="Head region = this top fraction of the person box's height"
    )
    max_latency_ms: float = Field(
        2000.0,
        gt=0,
        description="Live sources: a frame whose anonymizing takes longer is dropped (fail closed; a hung model "
        "must not stall the device). Files are never dropped for time",
    )
    max_detail_px_per_m: Optional[float] = Field(
        None,
        gt=0,
        description="Cap on the detail level, in pixels per metre at the worst (nearest) point of any zone (with no "
        "zones, of the visible ground), computed once at start from analytics.ground_plane (required). Frames are "
        "downscaled by that factor before anything else sees them, so a head no detector found cannot be sharper. "
        "IEC 62676-4 levels: detect 25, observe 62.5, recognise 125, identify 250. Null: off",
    )


class TileBand(Strict):
    """One band of perspective tiles across the whole frame width."""

    top: float = Field(ge=0, lt=1, description="Top edge, as a fraction of the frame height")
    bottom: float = Field(gt=0, le=1, description="Bottom edge, as a fraction of the frame height")
    columns: int = Field(ge=1, le=8, description="Overlapping tiles across the width, each resized to the model input")

    @model_validator(mode="after")
    def _top_above_bottom(self) -> TileBand:
        if self.bottom <= self.top:
            raise ValueError("bottom must be below top (bottom > top)")
        return self


class DetectionConfig(Strict):
    person_score_threshold: float = Field(0.4, gt=0, lt=1, description="Person detector score to count")
    nms_iou: float = Field(0.45, gt=0, lt=1, description="Boxes overlapping more than this are merged")
    min_box_height_px: float = Field(16.0, ge=0, description="Smaller person boxes are ignored")
    # Bands depend on where the camera looks, so they are a site setting; the board profile only
    # says whether perspective tiles are run at all.
    perspective_bands: Optional[List[TileBand]] = Field(
        None,
        min_length=1,
        max_length=4,
        description="With person_tiling 'perspective': this site's bands instead of the built-in ones (3 tiles "
        "over 0-0.5 of the height, 2 over 0.3-0.85); scripts/evaluate_tile_layouts.py derives them from "
        "footage of the site. The full frame always runs too. Refused when the board runs another tiling",
    )


class ZoneConfig(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Zone name, used as a key in counts messages")
    polygon: List[Point] = Field(min_length=3, description="Vertices as fractions of frame width/height")
    area_m2: Optional[float] = Field(None, gt=0, description="Real ground area, for density (people/m²)")
    max_people: Optional[int] = Field(None, ge=0, description="Overcrowding limit on occupancy")
    max_density_per_m2: Optional[float] = Field(None, gt=0, description="Overcrowding limit on density")
    hold_s: float = Field(5.0, ge=0, description="Limit must be exceeded this long before the flag is raised")
    clear_hysteresis_ratio: float = Field(
        0.8, gt=0, le=1, description="Flag clears when the value falls below limit * this ratio"
    )
    flow_direction_deg: Optional[float] = Field(
        None, description="Expected walking direction in image coordinates (0 = right, 90 = down) for counterflow"
    )

    @field_validator("polygon")
    @classmethod
    def _simple_polygon_in_frame(cls, v: List[Point]) -> List[Point]:
        check_in_frame(v, "vertex")
        problem = zone_polygon_problem(v)
        if problem:
            raise ValueError(problem)
        return v


class LineConfig(Strict):
    name: str = Field(pattern=NAME_PATTERN, description="Line name, used as a key in counts messages")
    start: Point = Field(description="Fractions of frame width/height")
    end: Point = Field(description="Fractions of frame width/height")
    min_crossing_px: float = Field(
        8.0, ge=0, description="An anchor must travel this far past the line before a crossing counts"
    )

    @field_validator("start", "end")
    @classmethod
    def _in_frame(cls, v: Point) -> Point:
        check_in_frame([v], "point")
        return v

    @model_validator(mode="after")
    def _has_length(self) -> LineConfig:
        problem = line_problem(self.start, self.end)
        if problem:
            raise ValueError(problem)
        return self


class HealthConfig(Strict):
    face_stage_max_consecutive_failures: int = Field(
        25, ge=1, description="After this many face-stage failures in a row, health reports 'failed'"
    )
    # 60 s: far above one loop iteration on the slowest board (a Pi 4 frame is under 1 s, a lost
    # live camera returns after capture.read_timeout_s), far below what a technician would notice.
    watchdog_timeout_s: float = Field(
        60.0,
        ge=5,
        le=3600,
        description="The main loop must make progress this often or the process exits with code 1 so it is "
        "restarted (and the broker publishes the last will). Under systemd, WatchdogSec= takes precedence",
    )


class TrackerConfig(Strict):
    """SORT/ByteTrack-style tracker. Tracks live in memory only and are never published."""

    high_score: float = Field(
        0.5, gt=0, lt=1, description="Detections at or above this score may start tracks; lower ones only extend them"
    )
    min_hits: int = Field(3, ge=1, description="Detections in a row before a track is confirmed (counted on lines)")
    max_age_s: float = Field(1.0, gt=0, description="A track unseen this long is deleted")
    min_iou: float = Field(0.1, ge=0, lt=1, description="A pair overlapping less is matched by distance only")
    max_distance_ratio: float = Field(
        1.0, gt=0, description="Farthest centre distance for a match, in predicted box heights"
    )


class HeatmapConfig(Strict):
    """Coarse occupancy grid per window: person anchors counted per cell, never an image."""

    enabled: bool = Field(False, description="Publish a coarse occupancy grid in counts messages")
    rows: int = Field(6, ge=1, le=16, description="Grid rows (at most 16: aggregate numbers, never an image)")
    cols: int = Field(8, ge=1, le=16, description="Grid columns (at most 16)")


class GroundPlaneConfig(Strict):
    """Four image points and where they are on the ground (metres), for density without measured zone areas."""

    image_points: List[Point] = Field(min_length=4, max_length=4, description="Fractions of frame width/height")
    world_points_m: List[Point] = Field(
        min_length=4, max_length=4, description="The same points on the ground plane, in metres"
    )

    @field_validator("image_points")
    @classmethod
    def _in_frame(cls, v: List[Point]) -> List[Point]:
        check_in_frame(v, "point")
        return v

    @model_validator(mode="after")
    def _well_conditioned(self) -> GroundPlaneConfig:
        problem = ground_plane_problem(self.image_points, self.world_points_m)
        if problem:
            raise ValueError(problem)
        return self


class AnalyticsConfig(Strict):
    tracker: TrackerConfig = Field(default_factory=TrackerConfig)
    heatmap: HeatmapConfig = Field(default_factory=HeatmapConfig)
    ground_plane: Optional[GroundPlaneConfig] = Field(
        None, description="Zones without area_m2 get their area from this homography"
    )
    dwell_exit_grace_s: float = Field(
        1.0, ge=0, description="A track must be outside a zone this long before its visit ends (border jitter)"
    )


class SiteConfig(Strict):
    """What a site file may contain (everything but the board's own profile)."""

    device_id: str = Field(
        "demo-0001", pattern=NAME_PATTERN, description="This device's name in topics and payloads"
    )
    board: str = Field(
        "x86-generic", pattern=NAME_PATTERN, description="Profile name in firmware_configs/ (rpi4, rpi5, ...)"
    )
    board_overrides: dict = Field(default_factory=dict, description="Keys of the board profile to change")
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    anonymize: AnonymizeConfig = Field(default_factory=AnonymizeConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    zones: List[ZoneConfig] = Field(default_factory=list, description="Polygon zones (see Zone below)")
    lines: List[LineConfig] = Field(default_factory=list, description="Counting lines (see Line below)")
    anomalies: AnomaliesConfig = Field(default_factory=AnomaliesConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    home_assistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)

    transparency: TransparencyConfig = Field(default_factory=TransparencyConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> SiteConfig:
        for kind, items in (("zones", self.zones), ("lines", self.lines)):
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate name(s) {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _detail_cap_has_a_ground_plane(self) -> SiteConfig:
        # Estimating the density from person heights needs frames; a cap fixed at start needs the plane.
        if self.anonymize.max_detail_px_per_m is not None and self.analytics.ground_plane is None:
            raise ValueError(
                "anonymize.max_detail_px_per_m: needs analytics.ground_plane (the downscale factor is computed "
                "from it once at start); calibrate a ground plane or remove the option"
            )
        return self

    @model_validator(mode="after")
    def _zone_areas_from_the_ground_plane_are_finite(self) -> SiteConfig:
        plane = self.analytics.ground_plane
        if plane is None:
            return self
        for i, zone in enumerate(self.zones):
            problem = zone.area_m2 is None and below_horizon_problem(
                zone.polygon, plane.image_points, plane.world_points_m
            )
            if problem:
                raise ValueError(f"zones.{i}.polygon: {problem}")
        return self


class ApplianceConfig(SiteConfig):
    """The resolved configuration the appliance runs with: the site plus its loaded board profile."""

    profile: BoardProfile

    @model_validator(mode="after")
    def _tile_bands_need_perspective_tiling(self) -> ApplianceConfig:
        # Bands under another tiling would be accepted and then do nothing: say so instead.
        if self.detection.perspective_bands is not None and self.profile.person_tiling != "perspective":
            raise ValueError(
                f"detection.perspective_bands: only used with person_tiling 'perspective', and board "
                f"{self.profile.name!r} runs {self.profile.person_tiling!r}; remove the bands or set "
                "board_overrides.person_tiling: perspective"
            )
        return self
