"""onnxruntime sessions, created only from bytes whose sha256 matches the manifest.

This is the only module that imports onnxruntime, so it is where the runtime is made quiet:
onnxruntime's telemetry (a 1DS event queue at ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/``
holding a device id, CPU, OS and interpreter path) is read from ``ORT_DISABLE_TELEMETRY`` when the
library loads; ``disable_telemetry_events()`` alone, called after the import, does not stop it
(measured with onnxruntime 1.32: the database is still written). So the variable is forced before
the import, and the call is made as well for builds that honour only that.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

# Before the import, see the module docstring. Forced, not defaulted: nothing leaves the device.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"

import onnxruntime as ort

from appliance.health.fault_injection import with_injected_faults
from appliance.models.manifest import ModelEntry, read_verified

ort.disable_telemetry_events()

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"

# kSameAsRequested: the arena grows by what is asked for, not to the next power of two.
_ARENA_EXTEND_SAME_AS_REQUESTED = 1
_shared_arena_lock = threading.Lock()
_shared_arena_registered = False

# Options for providers that need some to be useful on a Jetson. TensorRT builds an engine per
# input shape on first use (tens of seconds); fp16 is where the Jetson speed-up comes from.
_PROVIDER_OPTIONS: Dict[str, Dict[str, Any]] = {
    "TensorrtExecutionProvider": {"trt_fp16_enable": True},
}


def select_providers(requested: Sequence[str], available: Optional[Sequence[str]] = None) -> List[str]:
    """The requested providers that this onnxruntime build has, in order, with CPU always last.

    Missing providers are skipped (a CUDA profile still starts on a board without CUDA) and logged,
    so a silently slow board can be explained from its log.
    """
    have = set(ort.get_available_providers() if available is None else available)
    chosen = []
    for p in requested:
        if p == CPU or p in chosen:
            continue
        if p in have:
            chosen.append(p)
        else:
            log.warning("execution provider %s not available in this onnxruntime; skipped", p)
    chosen.append(CPU)
    return chosen


def _register_shared_cpu_arena() -> None:
    """One CPU arena for every session of this process, registered once.

    Each session otherwise keeps its own arena sized for its own peak, so the face and the person
    model together held both peaks at once. Measured on the sample clip: shared arena
    plus ``enable_mem_pattern`` off took ``appliance run``'s peak RSS from 192 to 183 MiB at the
    same frame rate. Turning the arena off altogether was worse (269 MiB): glibc keeps what the
    runtime frees between frames.
    """
    global _shared_arena_registered
    with _shared_arena_lock:
        if _shared_arena_registered:
            return
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        # max_mem 0 (no limit), extend as requested, default initial chunk and dead-bytes limit.
        ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, _ARENA_EXTEND_SAME_AS_REQUESTED, -1, -1))
        _shared_arena_registered = True


def create_session(
    models_dir: Path,
    entry: ModelEntry,
    providers: Sequence[str] = (CPU,),
    intra_op_threads: int = 2,
    verified: Optional[Mapping[str, bytes]] = None,
) -> ort.InferenceSession:
    """Verify ``entry.file`` against its sha256 (or take the bytes already verified), then build a
    session from exactly those bytes."""
    data = verified[entry.file] if verified and entry.file in verified else read_verified(
        Path(models_dir), entry.file, entry.sha256
    )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_op_threads
    # One frame at a time: inter-op parallelism only adds thread contention on 2-4 core boards.
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    # Memory (a 512 MB board; peak RSS goal 200 MB): both sessions allocate from one shared arena, and
    # no per-session pre-planned block of the largest activation pattern is kept beside it.
    _register_shared_cpu_arena()
    opts.add_session_config_entry("session.use_env_allocators", "1")
    opts.enable_mem_pattern = False
    # Spin-waiting workers burn the cores that the other session, OpenCV and the rest of the
    # pipeline need; on a 2-core box the whole run took 0.77x the wall time and 0.55x the CPU
    # without it, and the two detectors now run side by side.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    chosen = select_providers(providers)
    with_options: List[Tuple[str, Dict[str, Any]]] = [(p, _PROVIDER_OPTIONS.get(p, {})) for p in chosen]
    session = ort.InferenceSession(
        data,
        sess_options=opts,
        providers=[p for p, _ in with_options],
        provider_options=[o for _, o in with_options],
    )
    log.info("loaded %s (%s) on %s", entry.name, entry.file, ",".join(session.get_providers()))
    return with_injected_faults(entry.name, session)
