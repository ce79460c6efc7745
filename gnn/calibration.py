"""Link probabilities that mean something: Platt scaling of a model's link scores, fitted on the
validation edges and their candidates.

A model's raw score (a decoder logit, or a cosine) ranks links well but is not a probability:
through a plain sigmoid the top candidates of a node all read 1.000. Fitted on the validation
stage's held-out edges and the same kind of candidates the evaluation ranks them against (random
and two-hop negatives, filtered), the probability of a candidate is the chance that it is a true
link among such candidates, which is what the expected calibration error on the test stage
measures (:func:`mmgraph.gnn.metrics.expected_calibration_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmgraph.core.errors import FailedPreconditionError


class CalibrationError(FailedPreconditionError):
    """There are not both positive and negative scores to fit a calibration on."""


@dataclass(frozen=True)
class Calibration:
    """``probability = sigmoid(scale * score + bias)`` (Platt scaling). The identity calibration
    (``scale=1, bias=0``) is a plain sigmoid of the score, what runs saved before calibration
    used."""

    scale: float = 1.0
    bias: float = 0.0

    @classmethod
    def fit(cls, positives: np.ndarray, negatives: np.ndarray) -> Calibration:
        """Platt scaling of scores: a logistic regression of link/no-link on the score, fitted on
        ``positives`` (true links' scores) and ``negatives`` (their candidates' scores) as they
        occur, unweighted, so the probabilities follow the candidates' base rate."""
        pos = np.asarray(positives, dtype=np.float64).ravel()
        neg = np.asarray(negatives, dtype=np.float64).ravel()
        if not pos.size or not neg.size:
            raise CalibrationError(
                f"calibration needs positive and negative scores; got {pos.size} and {neg.size}"
            )
        # Imported here: a run's serving and training need the fitted values, not scikit-learn.
        from sklearn.linear_model import LogisticRegression

        x = np.concatenate([pos, neg])[:, None]
        y = np.concatenate([np.ones(pos.size), np.zeros(neg.size)])
        fit = LogisticRegression(C=1e4, max_iter=1000).fit(x, y)
        return cls(float(fit.coef_[0, 0]), float(fit.intercept_[0]))

    @classmethod
    def from_list(cls, values: list[float] | None) -> Calibration:
        """The calibration a run keeps as ``[scale, bias]`` (the identity when it keeps none)."""
        return cls() if not values else cls(float(values[0]), float(values[1]))

    def to_list(self) -> list[float]:
        return [self.scale, self.bias]

    def probability(self, scores: np.ndarray) -> np.ndarray:
        """The calibrated probability of each score."""
        z = self.scale * np.asarray(scores, dtype=np.float64) + self.bias
        return 1.0 / (1.0 + np.exp(-z))
