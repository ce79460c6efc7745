"""VectorIndex: exact below the threshold, HNSW above, same answers on easy data."""

from __future__ import annotations

import numpy as np
import pytest

from mmgraph.service.serving.index import IndexShapeError, VectorIndex


def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("exact_below", [10_000, 10])
def test_each_vector_finds_itself_first(exact_below: int) -> None:
    vectors = _unit(500, 16)
    index = VectorIndex.build(vectors, exact_below=exact_below)
    assert index.exact == (exact_below > 500) and len(index) == 500
    scores, rows = index.search(vectors[:20], 3)
    assert rows.shape == (20, 3) and (rows[:, 0] == np.arange(20)).all()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-5) and (np.diff(scores, axis=1) <= 1e-6).all()


def test_k_is_capped_by_the_size_and_add_appends_rows() -> None:
    index = VectorIndex.build(_unit(3, 4))
    assert index.search(_unit(1, 4, seed=1), 10)[1].shape == (1, 3)
    extra = _unit(2, 4, seed=2)
    index.add(extra)
    assert len(index) == 5 and index.search(extra, 1)[1].ravel().tolist() == [3, 4]


def test_shapes_are_checked() -> None:
    index = VectorIndex.build(_unit(3, 4))
    with pytest.raises(IndexShapeError, match="dimensions"):
        index.search(_unit(1, 5), 1)
    with pytest.raises(IndexShapeError, match="k must"):
        index.search(_unit(1, 4), 0)
    with pytest.raises(IndexShapeError, match="2-d"):
        index.add(np.zeros(4))
