"""The run's schedule: windows and health periods on the source's clock, one rule for both."""

from __future__ import annotations

import pytest

from appliance.schedule import HealthDue, Schedule, WindowDue


def test_windows_are_half_open_and_the_boundary_frame_opens_the_next() -> None:
    schedule = Schedule(interval_s=1.0, health_interval_s=100.0)
    due = [d for i in range(25) for d in schedule.advance(i * 0.1, 0.1)]
    # Frames at 0.0 .. 2.4 s: the frames at 1.0 and 2.0 s close the windows before them.
    assert due == [WindowDue(0.0, 1.0), WindowDue(1.0, 2.0)]
    # The final window ends after its last frame, so every frame lies in exactly one window.
    final = schedule.finish()
    assert final is not None and final.start_s == 2.0 and final.end_s == pytest.approx(2.5)


def test_health_falls_due_on_the_same_clock() -> None:
    schedule = Schedule(interval_s=100.0, health_interval_s=3.0)
    health = [d for t in range(10) for d in schedule.advance(float(t), 1.0) if isinstance(d, HealthDue)]
    assert health == [HealthDue(3.0), HealthDue(6.0), HealthDue(9.0)]


def test_a_lost_source_still_moves_the_clock() -> None:
    schedule = Schedule(interval_s=5.0, health_interval_s=100.0)
    schedule.advance(100.0, 0.1)
    assert schedule.advance(106.0) == [WindowDue(100.0, 106.0)]  # no frame: the wall clock decides
    assert schedule.finish() == WindowDue(106.0, 106.0)


def test_nothing_observed_means_no_final_window() -> None:
    assert Schedule(10.0, 30.0).finish() is None
