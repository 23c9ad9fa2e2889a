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

import re
from typing import Any, List, Literal, Optional, Tuple

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator
from typing_extensions import Annotated

from appliance.config.broker_url import BrokerUrlError, parse_broker_url
from appliance.config.geometry import (
    below_horizon_problem,
    ground_plane_problem,
    line_problem,
    zone_polygon_problem,
)
from appliance.names import NAME_PATTERN, TOPIC_PREFIX_PATTERN


def _list_as_tuple(value: Any) -> Any:
    # YAML has no tuples; strict validation would refuse a list where a pair belongs.
    return tuple(value) if isinstance(value, list) else value


Point = Annotated[Tuple[float, float], BeforeValidator(_list_as_tuple)]


class Strict(BaseModel):
    # strict: no bool -> number, str -> number or float -> int coercion; no NaN or infinity.
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True, allow_inf_nan=False)


def _check_in_frame(points: List[Point], what: str) -> None:
    for x, y in points:
        if not (0 <= x <= 1 and 0 <= y <= 1):
            raise ValueError(f"{what} ({x}, {y}) is outside 0..1 (coordinates are fractions of the frame)")


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
        # 2x1 measured on vtest.avi: counts 0.75 -> 0.94 of the hand count at threshold 0.4 (models/README.md)
        "2x1",
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
        description="'sample' (bundled clip), a file, a folder of images, /dev/videoN or an index, "
        "rtsp:// or http(s):// URL, or a GStreamer pipeline ending in appsink",
    )
    loop: bool = Field(False, description="Restart a file source at its end instead of stopping")
    reconnect_initial_s: float = Field(1.0, gt=0, description="First wait before reopening a lost live source")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reconnect attempts")
    read_timeout_s: float = Field(5.0, gt=0, description="A live source with no frame for this long is lost")


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


class DetectionConfig(Strict):
    person_score_threshold: float = Field(0.4, gt=0, lt=1, description="Person detector score to count")
    nms_iou: float = Field(0.45, gt=0, lt=1, description="Boxes overlapping more than this are merged")
    min_box_height_px: float = Field(16.0, ge=0, description="Smaller person boxes are ignored")


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
        _check_in_frame(v, "vertex")
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
        _check_in_frame([v], "point")
        return v

    @model_validator(mode="after")
    def _has_length(self) -> LineConfig:
        problem = line_problem(self.start, self.end)
        if problem:
            raise ValueError(problem)
        return self


class MqttTlsConfig(Strict):
    ca_file: Optional[str] = Field(None, description="CA bundle that signed the broker's certificate")
    cert_file: Optional[str] = Field(None, description="Device client certificate (mutual TLS)")
    key_file: Optional[str] = Field(None, description="Device private key (mutual TLS)")
    insecure_skip_verify: bool = Field(False, description="Never in production: skips hostname checks")


class MqttConfig(Strict):
    url: Optional[str] = Field(
        None, description="mqtt://host:port or mqtts://host:port. None: print messages on stdout instead"
    )
    topic_prefix: str = Field(
        "crowdmon", pattern=TOPIC_PREFIX_PATTERN, description="Topics are {prefix}/{device_id}/..."
    )
    protocol: Literal["auto", "5", "3.1.1"] = Field("auto", description="auto: MQTT 5, falling back to 3.1.1")
    client_id: Optional[str] = Field(None, description="Defaults to the device id")
    username: Optional[str] = Field(None, description="Broker user name (mTLS brokers use the certificate)")
    password_file: Optional[str] = Field(None, description="File holding the password (never logged)")
    password_env: Optional[str] = Field(None, description="Environment variable holding the password")
    keepalive_s: int = Field(
        30, ge=5, le=3600, description="MQTT keepalive; the broker declares us dead after 1.5x this"
    )
    connect_timeout_s: float = Field(
        10.0, gt=0, le=300, description="TCP + TLS handshake + CONNACK must complete within this"
    )
    reconnect_min_s: float = Field(1.0, gt=0, description="First wait after a failed or lost connection")
    reconnect_max_s: float = Field(60.0, gt=0, description="The wait doubles up to this")
    qos: Literal[1] = Field(
        1, description="Always 1: delivered at least once (the outbox deletes a message only on its PUBACK)"
    )
    counts_expiry_s: Optional[int] = Field(
        3600, ge=1, description="MQTT 5 message expiry on counts, so a stale backlog is not taken as live"
    )
    tls: MqttTlsConfig = Field(default_factory=MqttTlsConfig)

    @field_validator("url")
    @classmethod
    def _broker_address(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            try:
                parse_broker_url(v)
            except BrokerUrlError as exc:
                raise ValueError(str(exc)) from None
        return v

    @field_validator("qos", mode="before")
    @classmethod
    def _only_qos_1(cls, v: object) -> object:
        if v != 1 or isinstance(v, bool):
            raise ValueError("only 1 is allowed: with QoS 0 nothing acknowledges a message and the outbox loses it")
        return v


class PublishConfig(Strict):
    interval_s: float = Field(10.0, gt=0, le=3600, description="Counts are aggregated over windows this long")
    health_interval_s: float = Field(30.0, gt=0, le=3600, description="A health message this often")
    max_payload_bytes: int = Field(16384, ge=512, le=262144, description="Egress refuses larger payloads")
    close_timeout_s: float = Field(
        5.0, ge=0, le=120, description="On a clean stop, wait this long for the backlog and 'offline' to be acked"
    )


class OutboxConfig(Strict):
    path: str = Field(
        "/var/lib/crowd-appliance/{device_id}/outbox.sqlite3",
        description="SQLite store-and-forward queue, one per device; {device_id} is replaced by the device id",
    )
    # 64 MiB holds about a week of counts at the default 10 s interval (~1 KiB each) plus health:
    # far more than the 24 h a 4G outage should last, and small for any SD card.
    max_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Queued payload bytes; beyond: oldest health, then counts, dropped"
    )
    max_age_s: float = Field(
        7 * 24 * 3600, gt=0, description="Health and counts older than this are dropped (anomalies are not)"
    )
    memory_queue_max: int = Field(
        1000,
        ge=1,
        le=100000,
        description="Messages held in memory while the disk refuses writes; beyond, the oldest is lost",
    )
    storage_give_up_s: float = Field(
        600.0, gt=0, description="Delivery retries storage errors this long, then the appliance exits 1 (restarted)"
    )
    busy_timeout_s: float = Field(5.0, gt=0, le=300, description="Wait this long for a SQLite lock before retrying")


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


class RapidChangeConfig(Strict):
    """Sudden gathering or dispersal: the frame count jumps far outside its recent rolling baseline."""

    enabled: bool = Field(True, description="Run this detector")
    short_s: float = Field(2.0, gt=0, description="The current level is the median count over this window")
    baseline_s: float = Field(60.0, gt=0, description="Rolling baseline: median and MAD over this window before it")
    warmup_s: float = Field(20.0, ge=0, description="No flag until this much baseline has been seen")
    # 2.5 and 3 from scripts/evaluate.py on vtest: normal footage peaks at |z| 1.5 / 2 people, the
    # spliced gatherings and dispersals reach |z| 2.7-4 / 4 people.
    z_threshold: float = Field(2.5, gt=0, description="Robust z-score (change / (1.4826 * MAD)) to raise")
    min_change: float = Field(3.0, ge=0, description="And the level must differ from the baseline by this many people")
    min_scale: float = Field(
        1.0, gt=0, description="Floor of the MAD-based scale (people), so a flat baseline is not hair-trigger"
    )
    hold_s: float = Field(1.0, ge=0, description="Condition must hold this long before the flag is raised")
    clear_hysteresis_ratio: float = Field(0.5, gt=0, le=1, description="Clears when |z| falls below z_threshold * this")


class AbnormalMotionConfig(Strict):
    """Running or a stampede: track speeds (in body heights per second) far above the learned scene baseline."""

    enabled: bool = Field(True, description="Run this detector")
    quantile: float = Field(0.75, gt=0, le=1, description="Per-frame statistic: this quantile of track speeds")
    speed_ratio: float = Field(2.0, gt=1, description="Raise when the statistic exceeds the baseline by this factor")
    min_speed_heights_per_s: float = Field(
        1.5, ge=0, description="And exceeds this absolute speed (walking is about 0.5-1, running 2+)"
    )
    default_baseline_heights_per_s: float = Field(
        0.7, gt=0, description="Baseline used until the scene's own has been learned"
    )
    baseline_s: float = Field(300.0, gt=0, description="Learned baseline: median statistic over this much normal time")
    warmup_s: float = Field(30.0, ge=0, description="Seconds of normal motion before the learned baseline is trusted")
    min_tracks: int = Field(2, ge=1, description="Fewer moving tracks than this: no statistic for the frame")
    hold_s: float = Field(1.5, ge=0, description="Condition must hold this long before the flag is raised")
    clear_hysteresis_ratio: float = Field(
        0.8, gt=0, le=1, description="Clears when the value falls below threshold * this"
    )


class CounterflowConfig(Strict):
    """A share of tracks moving against a zone's ``flow_direction_deg`` (zones without one are not checked)."""

    enabled: bool = Field(True, description="Run this detector")
    against_angle_deg: float = Field(
        120.0, ge=90, le=180, description="A track further than this from the zone's direction moves against it"
    )
    min_speed_heights_per_s: float = Field(0.3, ge=0, description="Slower tracks (standing, jitter) are ignored")
    min_tracks: int = Field(2, ge=1, description="At least this many tracks must move against the flow")
    min_share: float = Field(0.5, gt=0, le=1, description="Share of moving tracks in the zone that move against it")
    hold_s: float = Field(2.0, ge=0, description="Condition must hold this long before the flag is raised")
    clear_hysteresis_ratio: float = Field(
        0.6, gt=0, le=1, description="Clears when the share falls below min_share * this"
    )


class CameraTamperConfig(Strict):
    """Lens covered or blacked out, view moved, image defocused, or the signal lost."""

    enabled: bool = Field(True, description="Run this detector")
    hold_s: float = Field(3.0, ge=0, description="A check must fail this long before the flag is raised")
    clear_hold_s: float = Field(2.0, ge=0, description="And pass this long before it is cleared")
    analysis_width_px: int = Field(160, ge=32, le=640, description="Frames are downscaled to this width (in memory)")
    dark_level: float = Field(20.0, ge=0, le=255, description="Mean grey level below this: covered or black")
    min_contrast: float = Field(6.0, ge=0, description="Grey-level standard deviation below this: covered")
    defocus_ratio: float = Field(
        0.7, gt=0, lt=1, description="Sharpness (edges per unit contrast) below this fraction of the reference"
    )
    moved_similarity: float = Field(
        0.5, gt=-1, lt=1, description="Edge correlation with the reference view below this: view moved"
    )
    reference_s: float = Field(5.0, gt=0, description="Seconds of frames averaged into the first reference view")
    reference_update_s: float = Field(
        120.0, gt=0, description="Time constant of the reference's slow update (only while no check fails)"
    )


class AnomaliesConfig(Strict):
    """Thresholds for anomaly flags other than overcrowding (which lives on each zone).

    ``camera_tamper: false`` (a plain bool, the older form) is still accepted and means ``enabled: false``.
    """

    rapid_change: RapidChangeConfig = Field(default_factory=RapidChangeConfig)
    abnormal_motion: AbnormalMotionConfig = Field(default_factory=AbnormalMotionConfig)
    counterflow: CounterflowConfig = Field(default_factory=CounterflowConfig)
    camera_tamper: CameraTamperConfig = Field(default_factory=CameraTamperConfig)

    @field_validator("rapid_change", "abnormal_motion", "counterflow", "camera_tamper", mode="before")
    @classmethod
    def _bool_means_enabled(cls, v: object) -> object:
        return {"enabled": v} if isinstance(v, bool) else v


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
        _check_in_frame(v, "point")
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


class PrivacyConfig(Strict):
    """Small-count protection of what is published, so one person at 3 a.m. cannot be singled out."""

    min_count: int = Field(
        0,
        ge=0,
        le=1000,
        description="k: a zone that held fewer than k people, a line direction crossed by fewer than k, and dwell "
        "statistics of fewer than k visits are published as suppressed in that window (0: off). The frame total "
        "stays exact",
    )
    noise_epsilon: Optional[float] = Field(
        None,
        gt=0,
        le=10,
        description="Add Laplace noise of scale 1/epsilon to each published zone count and line crossing count "
        "(differential privacy per released value); none: exact counts",
    )


class HomeAssistantConfig(Strict):
    """Home Assistant MQTT discovery: retained config messages so Home Assistant adds the device by itself."""

    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery config messages (opt-in)")
    discovery_prefix: str = Field(
        "homeassistant",
        pattern=NAME_PATTERN,
        description="Home Assistant's discovery prefix (its MQTT integration's setting)",
    )

# --------------------------------------------------------------------------- transparency (issue 9)

SignLanguage = Literal["en", "fr", "nb"]  # one translation file each in appliance/transparency/translations/
Purpose = Literal["crowd_safety", "capacity_management", "footfall_statistics"]


class TransparencyConfig(Strict):
    """Who runs the device and why: printed on the public sign, published in the notice, kept in the record.

    Texts are at most 200 characters and may not hold an unbroken run of 80 letters/digits: the notice
    is published, and the egress policy refuses longer strings and anything that looks like encoded data.
    """

    operator_name: Optional[str] = Field(
        None, min_length=1, max_length=200, description="The controller (who decides why the camera is there)"
    )
    contact_email: Optional[str] = Field(
        None, pattern=r"^[^@\s]+@[^@\s]+$", max_length=200, description="Where the public can ask or object"
    )
    contact_phone: Optional[str] = Field(
        None, pattern=r"^[0-9 +()./-]{3,40}$", description="Phone number printed on the sign"
    )
    contact_url: Optional[str] = Field(
        None, pattern=r"^https?://\S+$", max_length=200, description="Contact page (privacy or DPO page)"
    )
    purpose: Purpose = Field("crowd_safety", description="Why the device counts people (one of a fixed set)")
    purpose_details: str = Field("", max_length=200, description="Free-text detail of the purpose, in plain words")
    legal_basis: Optional[str] = Field(
        None, max_length=200, description="Legal basis of the processing, e.g. 'GDPR Art. 6(1)(e), public task'"
    )
    dpia_reference: Optional[str] = Field(
        None, max_length=200, description="Reference of the operator's data-protection impact assessment"
    )
    public_url: Optional[str] = Field(
        None,
        pattern=r"^https?://\S+$",
        max_length=200,
        description="Public page with the full notice; the sign's QR code points here (none: a compact notice)",
    )
    sign_languages: List[SignLanguage] = Field(
        default_factory=lambda: list[SignLanguage](["en"]),
        min_length=1,
        description="Languages of the printed sign, one page each; the first is the default",
    )
    central_retention_days: Optional[int] = Field(
        None, ge=1, description="How long the operator promises to keep the aggregates centrally (days)"
    )
    audit_log_path: Optional[str] = Field(
        None,
        description="Append-only, hash-chained audit log (JSON lines); {device_id} is replaced. "
        "None: audit.jsonl beside the outbox",
    )

    @field_validator(
        "operator_name", "contact_email", "contact_url", "purpose_details", "legal_basis", "dpia_reference",
        "public_url",
    )
    @classmethod
    def _publishable(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and re.search(r"[A-Za-z0-9+/_-]{80,}", v):
            raise ValueError("has an unbroken run of 80+ letters/digits, which egress refuses as encoded data")
        return v


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

    @model_validator(mode="after")
    def _unique_names(self) -> SiteConfig:
        for kind, items in (("zones", self.zones), ("lines", self.lines)):
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate name(s) {', '.join(dupes)}")
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
