"""PrecomputedEncoder: vectors pass through unchanged under their declared name."""

from __future__ import annotations

import numpy as np
import pytest

from mmgraph.graph.schema import SchemaError
from mmgraph.ingest.encoders import EncoderError, PrecomputedEncoder, VectorShapeError


def test_vectors_pass_through_as_float32() -> None:
    encoder = PrecomputedEncoder("clip")
    given = [[0.1, 0.2, 0.3], np.array([1.0, -2.0, 3.5])]
    vectors = encoder.encode(given)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    assert np.array_equal(vectors, np.asarray([[0.1, 0.2, 0.3], [1.0, -2.0, 3.5]], np.float32))
    assert np.array_equal(vectors, encoder.encode(given))
    assert (encoder.modality, encoder.tag, encoder.dim) == ("clip", "clip@given", 3)


def test_dimension_mismatch_names_the_vector() -> None:
    encoder = PrecomputedEncoder("clip")
    with pytest.raises(VectorShapeError, match="clip vector 2 has 2 dimensions, expected 3"):
        encoder.encode([[1, 2, 3], [4, 5, 6], [7, 8]])
    fixed = PrecomputedEncoder("clip", dim=2)
    with pytest.raises(VectorShapeError, match="vector 0 has 3 dimensions, expected 2"):
        fixed.encode([[1, 2, 3]])
    encoder.encode([[1, 2, 3]])
    with pytest.raises(VectorShapeError, match="vector 0 has 4 dimensions, expected 3"):
        encoder.encode([[1, 2, 3, 4]])


def test_bad_vectors_are_refused() -> None:
    encoder = PrecomputedEncoder("emb2")
    with pytest.raises(VectorShapeError, match="vector 1 holds NaN"):
        encoder.encode([[1.0], [float("nan")]])
    with pytest.raises(VectorShapeError, match="vector 0 has shape"):
        encoder.encode([[[1.0, 2.0]]])
    with pytest.raises(VectorShapeError, match="vector 0 is not numbers"):
        encoder.encode([["a", "b"]])


def test_dim_is_known_from_the_constructor_or_the_first_encode() -> None:
    assert PrecomputedEncoder("clip", dim=512).dim == 512
    with pytest.raises(EncoderError, match="after the first encode"):
        _ = PrecomputedEncoder("clip").dim
    assert PrecomputedEncoder("clip", dim=4).encode([]).shape == (0, 4)


def test_names_are_checked() -> None:
    with pytest.raises(ValueError, match="reserved"):
        PrecomputedEncoder("text")
    with pytest.raises(SchemaError):
        PrecomputedEncoder("Bad Name")
    with pytest.raises(ValueError, match="dim"):
        PrecomputedEncoder("clip", dim=0)
