"""Evaluation metrics: hand-computed ranks with ties, AUC, clustering and retrieval scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.gnn.metrics import (
    MetricInputError,
    clustering_metrics,
    expected_calibration_error,
    ranking_metrics,
    reliability,
    retrieval_recall,
    roc_auc,
)


def test_ranking_metrics_by_hand() -> None:
    # row 0: one negative above -> rank 2; row 1: one tie -> (1 + 2) / 2 = 1.5; row 2: rank 1
    pos = np.array([0.9, 0.5, 0.3])
    neg = np.array([[0.95, 0.5, 0.1], [0.5, 0.2, 0.1], [0.2, 0.1, 0.0]])
    out = ranking_metrics(pos, neg)
    assert set(out) == {"mrr", "hits@1", "hits@3", "hits@10"}
    assert out["mrr"] == pytest.approx((1 / 2 + 1 / 1.5 + 1) / 3)
    assert out["hits@1"] == pytest.approx(1 / 3)
    assert out["hits@3"] == 1.0 and out["hits@10"] == 1.0
    assert all(type(v) is float for v in out.values())


def test_constant_scorer_ranks_in_the_middle_not_first() -> None:
    out = ranking_metrics(np.zeros(5), np.zeros((5, 9)), ks=(1, 5, 6))
    # optimistic rank 1, pessimistic 10 -> realistic 5.5 for every positive
    assert out == {"mrr": pytest.approx(1 / 5.5), "hits@1": 0.0, "hits@5": 0.0, "hits@6": 1.0}


def test_ranking_metrics_accepts_tensors_like_arrays() -> None:
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(size=20), rng.normal(size=(20, 7))
    as_tensors = ranking_metrics(torch.tensor(pos, dtype=torch.float32), torch.tensor(neg))
    assert as_tensors == pytest.approx(ranking_metrics(pos, neg))


@pytest.mark.parametrize(
    ("pos", "neg", "ks", "name"),
    [
        (np.zeros(3), np.zeros((2, 4)), (1,), "neg"),
        (np.zeros((3, 1)), np.zeros((3, 4)), (1,), "pos"),
        (np.zeros(0), np.zeros((0, 4)), (1,), "pos"),
        (np.zeros(3), np.zeros((3, 0)), (1,), "neg"),
        (np.array([0.0, np.nan, 1.0]), np.zeros((3, 4)), (1,), "pos"),
        (np.zeros(3), np.zeros((3, 4)), (0, 3), "ks"),
        (np.zeros(3), np.zeros((3, 4)), (), "ks"),
    ],
)
def test_ranking_metrics_refuses_bad_inputs_naming_them(pos, neg, ks, name) -> None:
    with pytest.raises(MetricInputError, match=name) as info:
        ranking_metrics(pos, neg, ks=ks)
    assert isinstance(info.value, InvalidArgumentError)


def test_roc_auc_of_a_known_split() -> None:
    # 0.8 beats all three negatives; 0.6 beats 0.1, ties 0.6, loses to 0.7: (3 + 1.5) / 6
    assert roc_auc(np.array([0.8, 0.6]), np.array([0.7, 0.1, 0.6])) == pytest.approx(0.75)
    assert roc_auc(torch.tensor([2.0, 3.0]), torch.tensor([[0.0], [1.0]])) == 1.0
    assert roc_auc(np.zeros(4), np.zeros(4)) == 0.5
    with pytest.raises(MetricInputError, match="neg"):
        roc_auc(np.ones(3), np.array([]))


def _direction_clusters(rng: np.random.Generator, per: int = 20):
    """Three clusters by direction in 5-d, with norms spread from 0.1 to 100 inside each."""
    centres = np.eye(5)[:3] * 10
    labels = np.repeat(np.arange(3), per)
    points = centres[labels] + rng.normal(scale=0.5, size=(3 * per, 5))
    return points * np.geomspace(0.1, 100, 3 * per)[rng.permutation(3 * per), None], labels


def test_clustering_recovers_direction_clusters_whatever_their_norms() -> None:
    x, labels = _direction_clusters(np.random.default_rng(0))
    out = clustering_metrics(x, labels)
    assert out == {"nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}
    renamed = np.array(["c", "a", "b"])[labels]  # any label values, any names
    assert clustering_metrics(torch.tensor(x), renamed) == out


def test_clustering_against_unrelated_labels_scores_near_zero() -> None:
    rng = np.random.default_rng(1)
    x, labels = _direction_clusters(rng, per=40)
    out = clustering_metrics(x, rng.permutation(labels), seed=3)
    assert out["ari"] < 0.1 and out["nmi"] < 0.1


def test_clustering_uses_n_clusters_when_given() -> None:
    x, labels = _direction_clusters(np.random.default_rng(0))
    # two clusters for three labels cannot be perfect
    assert clustering_metrics(x, labels, n_clusters=2)["ari"] < 0.9
    with pytest.raises(MetricInputError, match="n_clusters"):
        clustering_metrics(x, labels, n_clusters=0)
    with pytest.raises(MetricInputError, match="labels"):
        clustering_metrics(x, labels[:-1])


def test_retrieval_of_identical_views_is_perfect() -> None:
    q = np.random.default_rng(0).normal(size=(30, 8))
    out = retrieval_recall(q, 5.0 * q)  # cosine: the scale does not matter
    assert out == {"recall@1": 1.0, "recall@10": 1.0, "median_rank": 1.0}


def test_retrieval_with_a_swapped_pair_by_hand() -> None:
    q = np.eye(4)
    c = q[[1, 0, 2, 3]]
    # query 0: candidate 1 scores 1 (above), candidates 0, 2, 3 tie at 0 -> rank 1 + (1+4-1)/2 = 3
    out = retrieval_recall(torch.tensor(q), c, ks=(1, 2, 3))
    assert out == {"recall@1": 0.5, "recall@2": 0.5, "recall@3": 1.0, "median_rank": 2.0}


def test_retrieval_in_blocks_matches_the_full_matrix(monkeypatch) -> None:
    rng = np.random.default_rng(2)
    q, c = rng.normal(size=(50, 6)), rng.normal(size=(50, 6))
    whole = retrieval_recall(q, c, ks=(1, 5, 10))
    monkeypatch.setattr("mmgraph.gnn.metrics._RETRIEVAL_BLOCK", 7)
    assert retrieval_recall(q, c, ks=(1, 5, 10)) == whole


def test_retrieval_refuses_mismatched_views() -> None:
    with pytest.raises(MetricInputError, match="queries and candidates"):
        retrieval_recall(np.ones((3, 4)), np.ones((3, 5)))
    with pytest.raises(MetricInputError, match="candidates"):
        retrieval_recall(np.ones((3, 4)), np.ones(4))


def test_reliability_bins_and_expected_calibration_error() -> None:
    probabilities = np.array([0.05, 0.05, 0.15, 0.95, 0.95, 0.95, 0.95])
    labels = np.array([0, 0, 1, 1, 1, 1, 0])
    rows = reliability(probabilities, labels, bins=10)
    assert rows == [(0.05, 0.0, 2), (0.15, 1.0, 1), (0.95, 0.75, 4)]
    expected = (2 * 0.05 + 1 * 0.85 + 4 * 0.2) / 7
    assert expected_calibration_error(probabilities, labels) == pytest.approx(expected)
    assert expected_calibration_error(np.full(4, 0.25), np.array([1, 0, 0, 0])) == 0.0
    with pytest.raises(MetricInputError, match=r"\[0, 1\]"):
        reliability(np.array([1.5]), np.array([1]))
