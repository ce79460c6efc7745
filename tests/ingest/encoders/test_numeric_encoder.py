"""NumericEncoder: standardisation maths, missing values, serialisation and versions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmgraph.ingest.encoders import NotFittedError, NumericEncoder

ROWS = [
    {"price": 1.0, "year": 2000.0},
    {"price": 3.0, "year": 2010.0, "stock": 5.0},
    {"price": 5.0, "stock": 5.0},
]


def test_fit_learns_sorted_columns_and_statistics() -> None:
    encoder = NumericEncoder().fit(ROWS)
    assert encoder.columns == ["price", "stock", "year"]
    assert encoder.dim == 3
    state = encoder.to_dict()
    np.testing.assert_allclose(state["mean"], [3.0, 5.0, 2005.0])
    # population std over present values; the constant column "stock" gets std 1
    np.testing.assert_allclose(state["std"], [np.sqrt(8 / 3), 1.0, 5.0])


def test_encode_standardises_and_fills_missing_with_the_mean() -> None:
    encoder = NumericEncoder().fit(ROWS)
    vectors = encoder.encode(ROWS + [{}, {"price": float("nan"), "unknown": 7.0}])
    s = np.sqrt(8 / 3)
    expected = [
        [-2 / s, 0.0, -1.0],
        [0.0, 0.0, 1.0],
        [2 / s, 0.0, 0.0],
        [0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
    ]
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(vectors, expected, rtol=1e-6, atol=1e-6)


def test_encode_is_deterministic() -> None:
    encoder = NumericEncoder().fit(ROWS)
    assert np.array_equal(encoder.encode(ROWS), encoder.encode(ROWS))


def test_round_trip_through_json() -> None:
    encoder = NumericEncoder().fit(ROWS)
    restored = NumericEncoder.from_dict(json.loads(json.dumps(encoder.to_dict())))
    assert restored.tag == encoder.tag
    assert np.array_equal(restored.encode(ROWS), encoder.encode(ROWS))


def test_version_differs_across_fits() -> None:
    first = NumericEncoder().fit(ROWS)
    second = NumericEncoder().fit(ROWS + [{"price": 100.0}])
    renamed = NumericEncoder().fit([{"cost": r["price"]} for r in ROWS])
    assert len({first.tag, second.tag, renamed.tag}) == 3
    assert first.tag == NumericEncoder().fit(ROWS).tag
    assert first.modality == "num" and first.tag.startswith("standardize@")


def test_use_before_fit_raises() -> None:
    encoder = NumericEncoder()
    assert not encoder.fitted
    for use in (lambda: encoder.encode(ROWS), lambda: encoder.tag, encoder.to_dict):
        with pytest.raises(NotFittedError, match="not fitted"):
            use()


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="no numbers"):
        NumericEncoder().fit([{}, {"x": float("nan")}])
    with pytest.raises(ValueError, match="row 1: 'price' is inf"):
        NumericEncoder().fit(ROWS).encode([{"price": 1.0}, {"price": float("inf")}])
    with pytest.raises(ValueError, match="equal-length"):
        NumericEncoder.from_dict({"columns": ["a", "b"], "mean": [0.0], "std": [1.0, 1.0]})
    with pytest.raises(ValueError, match="std"):
        NumericEncoder.from_dict({"columns": ["a"], "mean": [0.0], "std": [0.0]})
