"""Config sections of the anomaly detectors (overcrowding's limits live on each zone)."""

from __future__ import annotations

from pydantic import Field, field_validator

from appliance.config.base import Strict


class RapidChangeConfig(Strict):
    """Sudden gathering or dispersal: the frame count jumps far outside its recent rolling baseline."""

    enabled: bool = Field(True, description="Run this detector")
    # 4 s, not 2: a median cannot be set by a streak shorter than half its window, and the person
    # detector's miss streaks run up to about 2 s (on vtest a 1.7 s streak read 2 people where 3
    # were, on top of a real drop from 6, and raised a "dispersal" in normal footage with 2 s). A
    # real gathering lasts. Costs about 1 s of latency (scripts/evaluate.py, docs/analytics.md).
    short_s: float = Field(4.0, gt=0, description="The current level is the median count over this window")
    baseline_s: float = Field(60.0, gt=0, description="Rolling baseline: median and MAD over this window before it")
    warmup_s: float = Field(20.0, ge=0, description="No flag until this much baseline has been seen")
    # 2.5 and 3 from scripts/evaluate.py on vtest (perspective tiles, 0.4, 4 s level): normal footage
    # peaks at |z| 2.0 / 3 people (a real drop from 6 to 3), the spliced gatherings and dispersals
    # reach |z| 2.7-5 / 4-5 people. A thin margin on one scene: see docs/analytics.md.
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
