"""Run a short list of jobs on the calling thread and one worker thread, each taking the next job
not yet taken.

The anonymizer's jobs for one frame are the face model and each person-detector window (the full
frame and its tiles). With one intra-op thread per onnxruntime session, two threads pulling from
one list keep both cores busy until the frame is done, instead of one core waiting while the other
finishes the longer detector (measured: 0.77x the wall time per frame of two-thread sessions run
side by side, on 2 cores). Put the longest job first.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence, TypeVar, Union

T = TypeVar("T")


def run_shared(jobs: Sequence[Callable[[], T]], pool: Optional[ThreadPoolExecutor]) -> List[Union[T, Exception]]:
    """Each job's result, or the exception it raised, in the jobs' order. Returns only after every
    job has finished (a job reading a frame is never still running when the caller blurs it).
    Without a pool, the jobs run one after the other in the calling thread."""
    results: List[Union[T, Exception]] = [RuntimeError("job not run")] * len(jobs)
    taken = itertools.count()  # next() on a count is atomic under the GIL: each index goes to one thread

    def drain() -> None:
        while True:
            i = next(taken)
            if i >= len(jobs):
                return
            try:
                results[i] = jobs[i]()
            except Exception as exc:
                results[i] = exc

    helper = pool.submit(drain) if pool is not None else None
    drain()
    if helper is not None:
        helper.result()
    return results
