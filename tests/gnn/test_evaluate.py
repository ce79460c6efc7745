"""The evaluation protocol's arithmetic on a hand-computed case."""

from __future__ import annotations

import numpy as np
import torch

from mmgraph.gnn.evaluate import Embedder, _hard_reciprocal_ranks, evaluate
from mmgraph.gnn.split import HeldOut, LinkSplit, SplitConfig


def test_hard_negatives_rank_alone() -> None:
    pos = np.array([0.5, 0.9, 0.1])
    neg = np.array([[0.9, 0.1, 0.7], [0.1, 0.2, 0.3], [0.2, 0.2, 0.2]])
    hard = np.array([[False, True, True], [False, False, False], [True, False, False]])
    # row 0: hard scores 0.1, 0.7 -> one above -> rank 2; row 1 has none; row 2: one above.
    np.testing.assert_allclose(_hard_reciprocal_ranks(pos, neg, hard), [0.5, 0.5])


def test_evaluate_a_hand_made_scorer() -> None:
    """Two held-out edges with three candidates each; the scorer is the dot product."""
    z = {"A": torch.tensor([[1.0], [2.0]]), "B": torch.tensor([[1.0], [3.0], [0.5], [2.0]])}
    held = HeldOut(
        edge_index=torch.tensor([[0, 1], [1, 3]]),
        negatives=torch.tensor([[0, 2, 3], [0, 1, 2]]),
        hard=torch.tensor([[False, False, True], [False, True, False]]),
    )
    edge_type = ("A", "R", "B")
    split = LinkSplit(
        SplitConfig(label_relation=None, target_relations=("R",)),
        base=None,  # type: ignore[arg-type]
        train_edges={edge_type: torch.empty(2, 0, dtype=torch.long)},
        val={},
        test={edge_type: held},
    )
    split.graph = lambda stage: None  # type: ignore[method-assign]

    def score(z, et, index):
        return (z[et[0]][index[0]] * z[et[2]][index[1]]).sum(1)

    metrics = evaluate(Embedder(embed=lambda graph: z, score=score), split)
    # edge 0: pos 3 vs [1, 0.5, 2] -> rank 1; edge 1: pos 4 vs [2, 6, 1] -> rank 2.
    assert metrics["mrr"] == 0.75 and metrics["hits@1"] == 0.5 and metrics["hits@3"] == 1.0
    # AUC over every (positive, negative) pair: negatives [1, .5, 2, 2, 6, 1]; each positive
    # (3 and 4) beats 5 of the 6 -> 10 / 12.
    assert abs(metrics["auc"] - 10 / 12) < 1e-9
    assert metrics["mrr_hard"] == 0.75  # edge 0: 3 > 2 -> 1; edge 1: 4 < 6 -> 1/2
    assert metrics["nmi"] is None and metrics["recall@1"] is None
