"""Platt scaling recovers the logistic law behind scores, and refuses to fit on one class."""

from __future__ import annotations

import numpy as np
import pytest

from mmgraph.gnn.calibration import Calibration, CalibrationError


def test_platt_scaling_recovers_the_law_the_scores_follow() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=20_000)
    linked = rng.random(20_000) < 1.0 / (1.0 + np.exp(-(2.0 * scores - 3.0)))
    fitted = Calibration.fit(scores[linked], scores[~linked])
    assert fitted.scale == pytest.approx(2.0, abs=0.15)
    assert fitted.bias == pytest.approx(-3.0, abs=0.15)
    assert Calibration.from_list(fitted.to_list()) == fitted
    assert Calibration.from_list(None).probability(np.array([0.0]))[0] == 0.5


def test_fitting_needs_both_classes() -> None:
    with pytest.raises(CalibrationError, match="positive and negative"):
        Calibration.fit(np.array([]), np.array([0.1, 0.2]))
