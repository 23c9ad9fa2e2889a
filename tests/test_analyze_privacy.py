"""Small-count protection: what a window publishes cannot single out one person."""

from __future__ import annotations

import numpy as np
import pytest
from support.analysis import H, W, config, frame, person_at

from appliance.app import build_analyzer
from appliance.report import counts_message
from appliance.vocabulary import LineCounts

LEFT = {"name": "left", "polygon": [(0, 0), (0.5, 0), (0.5, 1), (0, 1)], "area_m2": 10.0}
RIGHT = {"name": "right", "polygon": [(0.5, 0), (1, 0), (1, 1), (0.5, 1)], "area_m2": 10.0}
DOOR = {"name": "door", "start": (0.5, 0.1), "end": (0.5, 0.9)}


def test_a_lone_person_is_suppressed_not_published_as_zero() -> None:
    an = build_analyzer(config(zones=[LEFT, RIGHT], lines=[DOOR], privacy={"min_count": 3}), (W, H))
    # One person walks from the left half across the door into the right half; nobody else is there.
    for i, x in enumerate(np.linspace(200, 600, 30)):
        an.process(frame(i, [person_at(x, 300)]))
    s = an.close_window(0.0, 3.0)
    assert s.total is not None and s.total.max == 1  # the frame total stays exact
    for name in ("left", "right"):
        z = s.zones[name]
        assert z.suppressed and (z.min, z.mean, z.max, z.last, z.density_per_m2) == (None,) * 5
    assert s.lines["door"] == LineCounts(in_=None, out=None, suppressed=True)
    message = counts_message(s).model_dump(by_alias=True)
    assert message["privacy"] == {"min_count": 3, "noise_epsilon": None, "total_suppressed": False}
    assert message["lines"]["door"] == {"in": None, "out": None, "suppressed": True}


def test_an_empty_zone_and_a_crowd_are_published_as_they_are() -> None:
    an = build_analyzer(config(zones=[LEFT, RIGHT], privacy={"min_count": 3}), (W, H))
    crowd = [person_at(450 + 60 * k, 300 + 40 * k) for k in range(5)]
    for i in range(10):
        an.process(frame(i, crowd))
    s = an.close_window(0.0, 1.0)
    assert not s.zones["left"].suppressed and s.zones["left"].max == 0
    assert not s.zones["right"].suppressed and s.zones["right"].last == 5
    # Five visits still in progress count towards k: their dwell is published.
    assert s.zones["right"].dwell_mean_s is not None


def test_dwell_of_fewer_visits_than_k_is_withheld_while_counts_stay() -> None:
    an = build_analyzer(config(zones=[RIGHT], privacy={"min_count": 6}), (W, H))
    crowd = [person_at(450 + 60 * k, 300 + 40 * k) for k in range(6)]
    for i in range(10):
        an.process(frame(i, crowd))
    s = an.close_window(0.0, 1.0)
    assert s.zones["right"].max == 6 and not s.zones["right"].suppressed
    # Tracks are confirmed after three frames: six visits, exactly k, so dwell is published.
    assert s.zones["right"].dwell_mean_s is not None
    an2 = build_analyzer(config(zones=[RIGHT], privacy={"min_count": 7}), (W, H))
    for i in range(10):
        an2.process(frame(i, crowd))
    assert an2.close_window(0.0, 1.0).zones["right"].suppressed  # 6 people < k = 7


def test_laplace_noise_is_unbiased_with_the_declared_spread() -> None:
    epsilon = 0.5
    cfg = config(zones=[RIGHT], lines=[DOOR], privacy={"noise_epsilon": epsilon})
    an = build_analyzer(cfg, (W, H))
    an.privacy.rng = np.random.default_rng(7)
    crowd = [person_at(420 + 18 * k, 200 + 20 * k) for k in range(20)]  # all 20 inside the right half
    lasts = []
    for w in range(400):
        an.process(frame(w, crowd, t=float(w)))
        s = an.close_window(float(w), float(w) + 1)
        z = s.zones["right"]
        assert z.min is not None and z.max is not None and z.min <= z.mean <= z.max  # still consistent
        lasts.append(z.last)
        assert s.privacy.noise_epsilon == epsilon
    lasts_arr = np.asarray(lasts, float)
    # Laplace(0, 1/epsilon): mean 0, standard deviation sqrt(2)/epsilon = 2.83 (clamping to the
    # window's own min..max narrows it a little).
    assert lasts_arr.mean() == pytest.approx(20, abs=0.6)
    assert 1.5 < lasts_arr.std() < 3.2
    assert len(set(lasts)) > 5  # not a constant: noise really is there


def test_the_total_is_protected_only_when_asked() -> None:
    an = build_analyzer(config(privacy={"min_count": 3, "protect_total": True}), (W, H))
    for i in range(5):
        an.process(frame(i, [person_at(300, 300)]))
    s = an.close_window(0.0, 0.5)
    assert s.total is None and s.privacy.total_suppressed and s.frames_analyzed == 5
    for i in range(5):
        an.process(frame(i, [person_at(100 + 100 * k, 300) for k in range(4)]))
    s = an.close_window(0.5, 1.0)
    assert s.total is not None and s.total.max == 4 and not s.privacy.total_suppressed
