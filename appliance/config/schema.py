"""The one configuration schema: board profile + site config + command-line overrides.

Every default lives here, next to its field, with its unit in the field name. Unknown keys are
rejected everywhere (``extra="forbid"``) so a typo in a site file fails loudly instead of being
ignored. ``appliance config schema`` exports this as JSON Schema.

Coordinates of zones and lines are fractions of the frame (0..1, origin top-left), so a site
config stays valid when a board profile changes the working resolution.
"""

from __future__ import annotations

from typing import List, Literal, Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Point = Tuple[float, float]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# --------------------------------------------------------------------------- board profile


class ModelSelection(Strict):
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

    name: str
    description: str = ""
    working_width: int = Field(768, ge=64, le=4096, description="Frames are resized once to this width")
    working_height: int = Field(576, ge=64, le=4096)
    target_fps: float = Field(5.0, gt=0, le=60, description="Frames per second the pipeline aims to analyze")
    models: ModelSelection = Field(default_factory=ModelSelection)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    person_input_size: int = Field(
        300, ge=128, le=1280, description="Square input side of the person detector (pixels)"
    )
    person_tiling: Literal["off", "2x1", "2x2"] = Field(
        "off", description="Run the person detector on overlapping tiles as well as the whole frame"
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
    shape: Literal["ellipse", "box"] = "ellipse"
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
        1000.0, gt=0, description="A frame whose face stage takes longer is dropped (fail closed)"
    )


class DetectionConfig(Strict):
    person_score_threshold: float = Field(0.4, gt=0, lt=1, description="Person detector score to count")
    nms_iou: float = Field(0.45, gt=0, lt=1, description="Boxes overlapping more than this are merged")
    min_box_height_px: float = Field(16.0, ge=0, description="Smaller person boxes are ignored")


class ZoneConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
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
    def _in_frame(cls, v: List[Point]) -> List[Point]:
        for x, y in v:
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ValueError(f"vertex ({x}, {y}) is outside 0..1")
        return v


class LineConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    start: Point = Field(description="Fractions of frame width/height")
    end: Point
    min_crossing_px: float = Field(
        8.0, ge=0, description="An anchor must travel this far past the line before a crossing counts"
    )


class MqttTlsConfig(Strict):
    ca_file: Optional[str] = Field(None, description="CA bundle that signed the broker's certificate")
    cert_file: Optional[str] = Field(None, description="Device client certificate (mutual TLS)")
    key_file: Optional[str] = Field(None, description="Device private key (mutual TLS)")
    insecure_skip_verify: bool = Field(False, description="Never in production: skips hostname checks")


class MqttConfig(Strict):
    url: Optional[str] = Field(
        None, description="mqtt://host:port or mqtts://host:port. None: print messages on stdout instead"
    )
    topic_prefix: str = Field("crowdmon", pattern=r"^[A-Za-z0-9_/-]{1,64}$")
    protocol: Literal["auto", "5", "3.1.1"] = Field("auto", description="auto: MQTT 5, falling back to 3.1.1")
    client_id: Optional[str] = Field(None, description="Defaults to the device id")
    username: Optional[str] = None
    password_file: Optional[str] = Field(None, description="File holding the password (never logged)")
    password_env: Optional[str] = Field(None, description="Environment variable holding the password")
    keepalive_s: int = Field(30, ge=5, le=3600)
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)
    qos: Literal[0, 1] = 1
    counts_expiry_s: Optional[int] = Field(
        3600, ge=1, description="MQTT 5 message expiry on counts, so a stale backlog is not taken as live"
    )
    tls: MqttTlsConfig = Field(default_factory=MqttTlsConfig)

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not (v.startswith("mqtt://") or v.startswith("mqtts://")):
            raise ValueError("must start with mqtt:// or mqtts://")
        return v


class PublishConfig(Strict):
    interval_s: float = Field(10.0, gt=0, le=3600, description="Counts are aggregated over windows this long")
    health_interval_s: float = Field(30.0, gt=0, le=3600)
    max_payload_bytes: int = Field(16384, ge=512, le=262144, description="Egress refuses larger payloads")


class OutboxConfig(Strict):
    path: str = Field(
        "/var/lib/crowd-appliance/outbox.sqlite3", description="SQLite store-and-forward queue"
    )
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Oldest health, then counts, dropped beyond")
    max_age_s: float = Field(7 * 24 * 3600, gt=0, description="Messages older than this are dropped")


class HealthConfig(Strict):
    face_stage_max_consecutive_failures: int = Field(
        25, ge=1, description="After this many face-stage failures in a row, health reports 'degraded'"
    )


class AnomaliesConfig(Strict):
    """Thresholds for anomaly flags other than overcrowding (which lives on each zone)."""

    camera_tamper: bool = Field(True, description="Flag covered, moved, defocused or lost cameras")
    tamper_hold_s: float = Field(3.0, ge=0)


class SiteConfig(Strict):
    """What a site file may contain (everything but the board's own profile)."""

    device_id: str = Field("demo-0001", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    board: str = Field("x86-generic", description="Profile name in firmware_configs/ (rpi4, rpi5, ...)")
    board_overrides: dict = Field(default_factory=dict, description="Keys of the board profile to change")
    capture: CaptureConfig = Field(default_factory=CaptureConfig)
    anonymize: AnonymizeConfig = Field(default_factory=AnonymizeConfig)
    detection: DetectionConfig = Field(default_factory=DetectionConfig)
    zones: List[ZoneConfig] = Field(default_factory=list)
    lines: List[LineConfig] = Field(default_factory=list)
    anomalies: AnomaliesConfig = Field(default_factory=AnomaliesConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> SiteConfig:
        for kind, items in (("zones", self.zones), ("lines", self.lines)):
            names = [i.name for i in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate name(s) {', '.join(dupes)}")
        return self


class ApplianceConfig(SiteConfig):
    """The resolved configuration the appliance runs with: the site plus its loaded board profile."""

    profile: BoardProfile
