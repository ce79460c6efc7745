"""similar_to_node: one search of a space's spanning index answers as the per-type searches
merged do."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model_runs import EMOJI, TAGS, save_run

from mmgraph.gnn.runs import load_run
from mmgraph.service.serving.index import VectorIndex
from mmgraph.service.serving.registry import ActiveModel, TypeIndex
from mmgraph.service.serving.similar import similar_to_node


def _model(home: Path) -> ActiveModel:
    """Run "r1" loaded as the registry loads it, without the graph (no display texts)."""
    (home / "models").mkdir()
    run = load_run(home, save_run(home, "r1", seed=3, created="2026-12-06T10:00:00Z"))
    indexes = {}
    for space in run.spaces:
        present = run.space_rows(space)
        for node_type, vectors in run.embeddings(space).items():
            rows = np.asarray(present[node_type], dtype=np.int64)
            positions = np.full(len(run.uids[node_type]), -1, dtype=np.int64)
            positions[rows] = np.arange(len(rows))
            index = VectorIndex.build(vectors)
            indexes[(space, node_type)] = TypeIndex(index, vectors, rows, positions)
    display = {t: [""] * len(uids) for t, uids in run.uids.items()}
    return ActiveModel(run, indexes, display, store=None)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_a_search_over_every_type_equals_the_types_searches_merged(tmp_path: Path, k: int) -> None:
    model = _model(tmp_path)
    assert set(model.spanning) == {"fused", "text"}  # the image space has one type
    for space in ("fused", "text"):
        every = model.types(space)
        for uid in EMOJI + TAGS:
            spanning = similar_to_node(model, uid, k=k, space=space)
            per_type = similar_to_node(model, uid, k=k, types=every, space=space)
            assert [(h.uid, h.type) for h in spanning] == [(h.uid, h.type) for h in per_type]
            assert [h.score for h in spanning] == [h.score for h in per_type]
            assert uid not in {h.uid for h in spanning}
