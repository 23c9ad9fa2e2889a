"""Detection models: manifest, verified onnxruntime sessions and the face/person detectors.

onnxruntime and OpenCV are imported only when a detector is opened: other stages import
``appliance.models.detections`` and should not pay for (or depend on) the inference runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence, Tuple

import numpy as np

from appliance.models.manifest import Manifest, ModelEntry, load_manifest, read_verified
from appliance.resources import models_dir as default_models_dir

if TYPE_CHECKING:
    from appliance.config.schema import AnonymizeConfig, BoardProfile, DetectionConfig
    from appliance.models.face_detector import FaceDetector
    from appliance.models.person_detector import Band, PersonDetector

CPU = "CPUExecutionProvider"

__all__ = ["FaceDetector", "PersonDetector", "load_detectors", "open_face_detector", "open_person_detector"]


def _entry(name: str, task: str, root: Path, manifest: Optional[Manifest]) -> ModelEntry:
    entry = (manifest or load_manifest(root)).get(name)
    if entry.task != task:
        raise ValueError(f"model {name} is a {entry.task} model, not a {task} model")
    return entry


def open_face_detector(
    name: str,
    *,
    models_dir: Optional[Path] = None,
    manifest: Optional[Manifest] = None,
    providers: Sequence[str] = (CPU,),
    threads: int = 2,
    input_size: Tuple[int, int] = (640, 480),
    score_threshold: Optional[float] = None,
    verified: Optional[Mapping[str, bytes]] = None,
) -> FaceDetector:
    root = Path(models_dir or default_models_dir())
    entry = _entry(name, "face", root, manifest)
    from appliance.models.face_detector import FaceDetector
    from appliance.models.runtime import create_session

    session = create_session(root, entry, providers, threads, verified)
    return FaceDetector(session, entry, input_size=input_size, score_threshold=score_threshold)


def open_person_detector(
    name: str,
    *,
    models_dir: Optional[Path] = None,
    manifest: Optional[Manifest] = None,
    providers: Sequence[str] = (CPU,),
    threads: int = 2,
    input_size: int = 300,
    tiling: str = "off",
    perspective_bands: Optional[Sequence[Band]] = None,
    score_threshold: Optional[float] = None,
    nms_iou: Optional[float] = None,
    min_box_height_px: float = 0.0,
    verified: Optional[Mapping[str, bytes]] = None,
) -> PersonDetector:
    root = Path(models_dir or default_models_dir())
    entry = _entry(name, "person", root, manifest)
    anchors = None
    pp = entry.postprocess
    if pp.anchors_file:
        if verified and pp.anchors_file in verified:
            raw = verified[pp.anchors_file]
        else:
            raw = read_verified(root, pp.anchors_file, pp.anchors_sha256 or "")
        anchors = _npy_from_bytes(raw)
    from appliance.models.person_detector import PersonDetector
    from appliance.models.runtime import create_session

    session = create_session(root, entry, providers, threads, verified)
    return PersonDetector(
        session,
        entry,
        anchors_300=anchors,
        input_size=input_size,
        tiling=tiling,
        perspective_bands=perspective_bands,
        score_threshold=score_threshold,
        nms_iou=nms_iou,
        min_box_height_px=min_box_height_px,
    )


def __getattr__(name: str) -> Any:
    # Lazy re-exports, see the module docstring.
    if name == "FaceDetector":
        from appliance.models.face_detector import FaceDetector

        return FaceDetector
    if name == "PersonDetector":
        from appliance.models.person_detector import PersonDetector

        return PersonDetector
    raise AttributeError(name)


def _npy_from_bytes(raw: bytes) -> np.ndarray:
    import io

    # allow_pickle=False: an anchors file is plain float32, never code.
    return np.load(io.BytesIO(raw), allow_pickle=False)


def load_detectors(
    prof: BoardProfile,
    anonymize: AnonymizeConfig,
    detection: DetectionConfig,
    models_dir: Optional[Path] = None,
) -> Tuple[FaceDetector, PersonDetector]:
    """Both detectors: models, providers and sizes from the board profile, thresholds from the
    site's anonymize and detection sections. Raises ``ModelIntegrityError`` before any session
    exists if a model file is missing or modified."""
    root = Path(models_dir or default_models_dir())
    manifest = load_manifest(root)
    # Check every file of both models first, so a bad person model is reported before the face
    # model has spent seconds building a (TensorRT) session.
    # Each file is read and hashed once; the sessions are built from these very bytes.
    verified = {
        rel: read_verified(root, rel, sha)
        for name in (prof.models.face, prof.models.person)
        for rel, sha in manifest.get(name).files()
    }
    providers = prof.runtime.execution_providers
    threads = prof.runtime.intra_op_threads
    import cv2

    # OpenCV's own pool (resizes, blurs) would be a third set of threads competing with the two
    # sessions' workers for 2-4 cores; its calls here are small, so one thread loses nothing and
    # stops the contention (measured with spin-wait off and fast pre-processing: 0.64x the wall time).
    cv2.setNumThreads(1)
    # No OpenCL kernels: none of our calls benefit, and a compiled kernel cache would be written
    # under ~/.cache/opencv on boards with an OpenCL driver (nothing is written outside the state dir).
    cv2.ocl.setUseOpenCL(False)
    face = open_face_detector(
        prof.models.face,
        models_dir=root,
        manifest=manifest,
        providers=providers,
        threads=threads,
        input_size=(prof.face_input_width, prof.face_input_height),
        score_threshold=anonymize.face_score_threshold,
        verified=verified,
    )
    person = open_person_detector(
        prof.models.person,
        models_dir=root,
        manifest=manifest,
        providers=providers,
        threads=threads,
        input_size=prof.person_input_size,
        tiling=prof.person_tiling,
        perspective_bands=[(b.top, b.bottom, b.columns) for b in detection.perspective_bands or []],
        score_threshold=detection.person_score_threshold,
        nms_iou=detection.nms_iou,
        min_box_height_px=detection.min_box_height_px,
        verified=verified,
    )
    return face, person
