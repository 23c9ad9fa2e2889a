"""``models/manifest.yaml``: what each shipped model is, where it came from, and its sha256.

The manifest is the single source of truth for a model's pre- and post-processing constants, so the
detectors read them from here instead of hard-coding them. Every file a model needs (the ONNX graph
and, for SSDLite, its anchors) is pinned by sha256; :func:`read_verified` is the only way the
appliance reads a model file, so a modified or missing file never reaches onnxruntime.

The manifest itself is pinned by :data:`MANIFEST_SHA256`, a constant inside the package: the
manifest moves with ``APPLIANCE_MODELS_DIR``, so without the pin anyone who can write that folder
could swap a model and its listed hash together and pass every check. ``scripts/build_models.py``
rewrites the pin when it writes a new manifest.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from pathlib import Path
from typing import Any, List, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from appliance.errors import ModelIntegrityError
from appliance.resources import models_dir as default_models_dir

MANIFEST_NAME = "manifest.yaml"
# sha256 of the shipped models/manifest.yaml (rewritten by scripts/build_models.py).
MANIFEST_SHA256 = "0675eacb66cdc11de3955227608c75df57f33fe2f46f0720fd657af199709247"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class InputSpec(_Strict):
    name: str = Field(description="Graph input name")
    layout: Literal["NCHW", "NHWC"]
    color: Literal["RGB", "BGR"] = "RGB"
    width: Optional[int] = Field(None, description="Fixed input width; None: any multiple of size_multiple")
    height: Optional[int] = None
    size_multiple: int = Field(1, ge=1, description="Dynamic sides must be a multiple of this")
    mean: List[float] = Field(description="Per channel, subtracted from 0..255 pixels: (x - mean) * scale")
    scale: List[float]


class PostProcess(_Strict):
    kind: Literal["centerface", "ssd"]
    outputs: List[str] = Field(description="Graph outputs in the order the decoder expects them")
    score_threshold: float = Field(gt=0, lt=1, description="Default; the site config may override it")
    nms_iou: float = Field(gt=0, lt=1)
    stride: Optional[int] = Field(None, description="centerface: output stride (heatmap at 1/stride)")
    box_scale_factors: Optional[List[float]] = Field(None, description="ssd: y, x, h, w variances")
    anchors_file: Optional[str] = Field(None, description="ssd: (A, 4) float32 [ycenter, xcenter, h, w]")
    anchors_sha256: Optional[str] = None
    class_index: Optional[int] = Field(None, description="ssd: logit column of the class we keep")


class SourceInfo(_Strict):
    package: str
    version: str
    wheel_sha256: str
    path_in_package: str
    licence: str
    url: str


class QuantizationInfo(_Strict):
    method: str
    calibration: str
    calibration_set: str
    tool: str


class Agreement(_Strict):
    """int8 vs fp32 on held-out real frames (IoU >= 0.5 counts as the same detection)."""

    eval_set: str
    fp32_detections: int
    matched: int
    matched_ratio: float
    mean_iou: float


class ModelEntry(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    task: Literal["face", "person"]
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int
    precision: Literal["fp32", "int8"]
    opset: int
    input: InputSpec
    postprocess: PostProcess
    source: SourceInfo
    training_data: str
    quantization: Optional[QuantizationInfo] = None
    agreement_with_fp32: Optional[Agreement] = None
    notes: str = ""

    def files(self) -> List[tuple]:
        """(relative file, expected sha256) for everything this model needs at run time."""
        out = [(self.file, self.sha256)]
        if self.postprocess.anchors_file:
            out.append((self.postprocess.anchors_file, self.postprocess.anchors_sha256 or ""))
        return out


class Manifest(_Strict):
    version: Literal[1]
    models: List[ModelEntry]

    def get(self, name: str) -> ModelEntry:
        for m in self.models:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.models)
        raise ModelIntegrityError(f"unknown model {name!r} (manifest has: {known})", path=MANIFEST_NAME)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# A run reads the manifest from several places (detectors, audit, notice, health); with pure-Python
# PyYAML each parse cost ~25 ms of start-up. The same bytes parse once, with libyaml when present.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=2)
def _parsed(raw: bytes) -> Any:
    return yaml.load(raw.decode("utf-8"), Loader=_YAML_LOADER)


def _parse_yaml(raw: bytes) -> Any:
    # A deep copy, so a caller that changes what it got cannot change the next caller's manifest.
    return copy.deepcopy(_parsed(raw))


def load_manifest(models_dir: Optional[Path] = None, *, pinned: bool = True) -> Manifest:
    """Parse and validate ``manifest.yaml``; any problem is a one-line ``ModelIntegrityError``.

    ``pinned`` (the default everywhere the appliance runs) refuses a manifest whose sha256 is not
    :data:`MANIFEST_SHA256`; only the model build script reads its own fresh, unpinned manifest.
    """
    path = Path(models_dir or default_models_dir()) / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ModelIntegrityError("manifest not found", path=str(path)) from None
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read manifest: {exc.strerror}", path=str(path)) from None
    actual = sha256_bytes(raw)
    if pinned and actual != MANIFEST_SHA256:
        raise ModelIntegrityError(
            f"sha256 mismatch (pinned in the package {MANIFEST_SHA256[:12]}..., file {actual[:12]}...); "
            "refusing a manifest this build did not ship",
            path=str(path),
        )
    try:
        # Parse the very bytes that were hashed.
        data = _parse_yaml(raw)
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelIntegrityError(f"cannot read manifest: {exc}".splitlines()[0], path=str(path)) from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ModelIntegrityError(err["msg"], path=str(path), field=loc) from None


def read_verified(models_dir: Path, relative: str, expected_sha256: str) -> bytes:
    """Return the file's bytes, only if their sha256 matches the manifest.

    Hashing the very bytes that are then handed to onnxruntime (instead of hashing the file and
    letting onnxruntime reopen it) leaves no window for the file to change in between.
    """
    path = Path(models_dir) / relative
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelIntegrityError("model file missing; refusing to run without it", path=str(path)) from None
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read model file: {exc.strerror}", path=str(path)) from None
    actual = sha256_bytes(data)
    if actual != expected_sha256:
        raise ModelIntegrityError(
            f"sha256 mismatch (manifest {expected_sha256[:12]}..., file {actual[:12]}...); "
            "refusing to load a modified model",
            path=str(path),
        )
    return data
