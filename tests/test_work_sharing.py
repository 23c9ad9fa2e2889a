"""run_shared: the anonymizer's jobs for one frame, shared by the calling thread and one worker."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List

import pytest

from appliance.anonymize.work_sharing import run_shared


def test_results_come_back_in_the_jobs_order_with_each_failure_in_its_place() -> None:
    def fail() -> int:
        raise ValueError("window 2 broke")

    jobs: List[Callable[[], int]] = [lambda: 0, lambda: 1, fail, lambda: 3]
    with ThreadPoolExecutor(1) as pool:
        results = run_shared(jobs, pool)
    assert results[:2] == [0, 1] and results[3] == 3
    assert isinstance(results[2], ValueError) and str(results[2]) == "window 2 broke"


def test_two_threads_work_at_once_and_each_job_runs_exactly_once() -> None:
    # Both halves of the barrier can only pass if two threads hold a job at the same time.
    together = threading.Barrier(2, timeout=60)
    runs: List[str] = []
    lock = threading.Lock()

    def job(name: str) -> str:
        with lock:
            runs.append(name)
        together.wait()
        return threading.current_thread().name

    with ThreadPoolExecutor(1, thread_name_prefix="worker") as pool:
        results = run_shared([lambda: job("a"), lambda: job("b")], pool)
    assert sorted(runs) == ["a", "b"]
    assert len(set(results)) == 2  # one job on the caller, one on the worker


def test_every_job_has_finished_when_it_returns() -> None:
    finished = threading.Event()
    release = threading.Event()

    def slow() -> None:
        release.wait(60)
        finished.set()

    def quick() -> None:
        release.set()

    with ThreadPoolExecutor(1) as pool:
        run_shared([slow, quick], pool)
    assert finished.is_set()


@pytest.mark.parametrize("count", [0, 1, 5])
def test_without_a_pool_the_caller_runs_them_all(count: int) -> None:
    caller = threading.current_thread().name
    results = run_shared([lambda: threading.current_thread().name] * count, None)
    assert results == [caller] * count
