"""Modalities of a batch of items to vectors: the encoders a run (or a server) uses, and the
encoding of each batch, which skips what is stored unchanged and decodes pictures a few at a time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmgraph.core.config import Settings
from mmgraph.graph.schema import encoder_property, vector_property
from mmgraph.graph.store import NodeRow, NodeState
from mmgraph.ingest.encoders import (
    Encoder,
    ImageDecodeError,
    ImageEncoder,
    PrecomputedEncoder,
    make_text_encoder,
)
from mmgraph.ingest.encoders.image import DEFAULT_MAX_PIXELS
from mmgraph.ingest.numbers import NumberEncoders
from mmgraph.ingest.options import IngestOptions
from mmgraph.ingest.quarantine import Quarantine
from mmgraph.ingest.records import FloatVector, Item, Location, RecordError
from mmgraph.ingest.timings import add_time

# Images decoded before they are encoded: bounds the memory of decoded pixels (150 KB each).
IMAGE_CHUNK = 64
# What an item's picture leaves on its node: removed when a new picture is refused.
IMAGE_PROPERTIES = ("image_ref", "image_path", vector_property("image"), encoder_property("image"))
REMOTE_PATH_REFUSED = "image paths are not accepted from remote callers; send the bytes"


@dataclass
class Encoders:
    """The encoders of ingest runs and of a server's queries, built from the settings
    (:meth:`from_settings`: ``MMGRAPH_TEXT_ENCODER``, ``MMGRAPH_DEVICE``,
    ``MMGRAPH_MAX_IMAGE_PIXELS``), each created on first need and kept for later use.
    ``threads``: the onnxruntime encoders' intra-op threads (``None``: onnxruntime's default;
    a server running passes side by side sets one each)."""

    text_kind: str = "fp32"
    device: str | None = None
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    text: Encoder | None = None
    image: ImageEncoder | None = None
    threads: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings, threads: int | None = None) -> Encoders:
        """The encoders ``settings`` describe (none is loaded yet)."""
        return cls(
            settings.text_encoder, settings.device, settings.max_image_pixels, threads=threads
        )

    def text_encoder(self) -> Encoder:
        """The text encoder (fp32 or int8 MiniLM), loaded on first use."""
        if self.text is None:
            self.text = make_text_encoder(self.text_kind, self.device, threads=self.threads)
        return self.text

    def image_encoder(self) -> ImageEncoder:
        """The image encoder, loaded on first use."""
        if self.image is None:
            self.image = ImageEncoder(
                device=self.device, max_pixels=self.max_image_pixels, threads=self.threads
            )
        return self.image

    def text_tag(self) -> str:
        """The text encoder's tag (known without loading its model)."""
        return self.text_encoder().tag

    def image_tag(self) -> str:
        """The image encoder's tag (known without loading its model)."""
        return self.image_encoder().tag


def encode_items(
    batch: list[tuple[Location, Item, Any]],
    states: dict[str, NodeState],
    options: IngestOptions,
    encoders: Encoders,
    numbers: NumberEncoders,
    quarantine: Quarantine,
    timings: dict[str, float],
) -> list[tuple[Location, NodeRow]]:
    """Turn a batch of items into node rows with their modality vectors, each with the location
    of its record (items refused on the way are left out).

    Text and images whose stored vector came from the same input and encoder are not encoded
    again, so re-running an input costs writes, not model time. Images are decoded (after their
    header's pixel count is checked) and encoded ``IMAGE_CHUNK`` at a time. An item whose picture
    cannot be used is kept without it (a warning in the quarantine), or, unless
    ``options.keep_items_without_image``, refused whole.
    """
    t0 = time.perf_counter()
    kept: list[Item] = []
    locations: list[Location] = []
    props: list[dict[str, Any]] = []
    pixels: list[tuple[int, np.ndarray]] = []
    image_vectors: dict[int, tuple[np.ndarray, str]] = {}
    encoding = 0.0

    def encode_pixels() -> float:
        started = time.perf_counter()
        encoder = encoders.image_encoder()
        out = encoder.encode([array for _, array in pixels])
        image_vectors.update(
            (row, (vector, encoder.tag)) for (row, _), vector in zip(pixels, out, strict=True)
        )
        pixels.clear()
        return time.perf_counter() - started

    for location, item, raw in batch:
        row_props: dict[str, Any] = dict(item.props)
        if item.text is not None:
            row_props["text"] = item.text
        if item.image is not None:
            try:
                array = _image(item.image, item.uid, location, states, options, encoders, row_props)
            except RecordError as refused:
                if not options.keep_items_without_image:
                    quarantine.add(refused, raw)
                    continue
                # Written without its picture (and without one stored before), the rest kept.
                quarantine.warn(refused, raw)
                row_props.update(dict.fromkeys(IMAGE_PROPERTIES))
                array = None
            if array is not None:
                pixels.append((len(kept), array))
                if len(pixels) >= IMAGE_CHUNK:
                    encoding += encode_pixels()
        kept.append(item)
        locations.append(location)
        props.append(row_props)
    if pixels:
        encoding += encode_pixels()
    timings["prepare"] = timings.get("prepare", 0.0) + time.perf_counter() - t0 - encoding
    if encoding:
        timings["encode_image"] = timings.get("encode_image", 0.0) + encoding

    vectors: list[dict[str, tuple[np.ndarray, str]]] = [{} for _ in kept]
    for row, vector in image_vectors.items():
        vectors[row]["image"] = vector
    given: dict[tuple[str, str], dict[int, Any]] = {}
    for i, item in enumerate(kept):
        for name, values in (item.vectors or {}).items():
            # A validated vector brings its float32 array: the list is not converted again.
            array = values.array if isinstance(values, FloatVector) else values
            given.setdefault((item.type, name), {})[i] = array
    for (_, name), rows in given.items():
        _encode_into(vectors, name, rows, lambda name=name: PrecomputedEncoder(name), timings)
    if options.encode_text:
        texts = {
            i: item.text
            for i, item in enumerate(kept)
            if item.text
            and not _unchanged(states.get(item.uid), "text", encoders.text_tag(), item.text)
        }
        _encode_into(vectors, "text", texts, encoders.text_encoder, timings)
    for type_name, rows in numbers.rows(kept).items():
        encoder = numbers.kept[type_name]
        _encode_into(vectors, "num", rows, lambda enc=encoder: enc, timings)
    for item, row_props, row_vectors in zip(kept, props, vectors, strict=True):
        _drop_stale(states.get(item.uid), row_props, row_vectors)
    return [
        (location, NodeRow(item.uid, item.type, row_props, row_vectors))
        for location, item, row_props, row_vectors in zip(
            locations, kept, props, vectors, strict=True
        )
    ]


def _image(
    ref: str | bytes,
    uid: str,
    location: Location,
    states: dict[str, NodeState],
    options: IngestOptions,
    encoders: Encoders,
    props: dict[str, Any],
) -> np.ndarray | None:
    """Read item ``uid``'s picture into ``props`` (``image_ref``, ``image_path``) and decode it
    for the encoder, unless it is stored unchanged; raise a :class:`RecordError` for a picture
    that cannot be used (unreadable, undecodable, above ``max_image_pixels``)."""
    data, path = load_image(ref, location, options.allow_image_paths)
    props["image_ref"] = f"sha256:{hashlib.sha256(data).hexdigest()}"
    if path is not None:
        props["image_path"] = path
    if not options.encode_images or _unchanged(
        states.get(uid), "image", encoders.image_tag(), props["image_ref"]
    ):
        return None
    try:
        return encoders.image_encoder().decode(data, options.max_image_pixels)
    except ImageDecodeError as e:
        raise RecordError(location, "image", str(e)) from e


def _drop_stale(state: NodeState | None, props: dict[str, Any], vectors: dict[str, Any]) -> None:
    """Remove a stored text or image vector whose input changed but was not encoded again."""
    if state is None:
        return
    for modality, key in (("text", "text"), ("image", "image_ref")):
        tag = state.encoders.get(modality)
        source = props.get(key)
        stale = tag and source is not None and modality not in vectors
        if stale and not _unchanged(state, modality, tag, source):
            props[vector_property(modality)] = None
            props[encoder_property(modality)] = None


def _unchanged(state: NodeState | None, modality: str, tag: str, source: str) -> bool:
    """Whether the stored vector of ``modality`` was made by ``tag`` from this same input."""
    if state is None or state.encoders.get(modality) != tag:
        return False
    stored = state.text if modality == "text" else state.image_ref
    return stored == source


def _encode_into(
    vectors: list[dict[str, tuple[np.ndarray, str]]],
    modality: str,
    inputs: dict[int, Any],
    encoder: Callable[[], Any],
    timings: dict[str, float],
) -> None:
    if not inputs:
        return
    t0 = time.perf_counter()
    enc = encoder()
    out = enc.encode(list(inputs.values()))
    for row, vector in zip(inputs, out, strict=True):
        vectors[row][modality] = (vector, enc.tag)
    add_time(timings, f"encode_{modality}", t0)


def load_image(ref: str | bytes, location: Location, allow_paths: bool) -> tuple[bytes, str | None]:
    """The bytes of an item's image (given as bytes, a ``data:`` URI or a path) and, for a file,
    its resolved path; a path is refused unopened when ``allow_paths`` is false."""
    source = image_source(ref, location, allow_paths)
    if isinstance(source, bytes):
        return source, None
    try:
        return source.read_bytes(), str(source.resolve())
    except OSError as e:
        raise RecordError(location, "image", f"cannot read {source}: {e.strerror}") from e


def image_source(ref: str | bytes, location: Location, allow_paths: bool) -> bytes | Path:
    """What an item's ``image`` names, checked without opening anything: its bytes (given, or
    from a ``data:`` URI) or the file it names (relative to the record's file). A malformed
    ``data:`` URI, or a path when ``allow_paths`` is false, is a :class:`RecordError`."""
    if isinstance(ref, bytes):
        return ref
    if ref.startswith("data:"):
        header, comma, payload = ref.partition(",")
        if not comma or not header.endswith(";base64"):
            raise RecordError(location, "image", "a data URI must be data:<type>;base64,<data>")
        try:
            data = base64.b64decode(payload, validate=True)
        except binascii.Error as e:
            raise RecordError(location, "image", f"bad base64 data URI: {e}") from e
        if not data:
            raise RecordError(location, "image", "the data URI holds no bytes")
        return data
    if not allow_paths:
        raise RecordError(location, "image", REMOTE_PATH_REFUSED)
    path = Path(ref)
    return path if path.is_absolute() else Path(location.source).parent / path
