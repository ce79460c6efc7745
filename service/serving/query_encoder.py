"""Raw queries (a text, a picture's bytes) to the vectors of the encoders that made the graph's
modalities, so that a query is compared with the nodes as the model saw them.

Queries of one modality that arrive together are encoded in one forward pass on one of the
server's encoder lanes (:mod:`.encoder_thread`); a picture is decoded, or refused, in its caller's
thread first. ``Ingest``'s batches run on the same lanes (:meth:`QueryEncoder.ingest_encoders`),
so a stream being ingested and the queries never run more forward passes at once than there are
lanes.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from mmgraph.core.errors import DeadlineExceededError, InvalidArgumentError
from mmgraph.ingest.encoders import Encoder, ImageDecodeError
from mmgraph.ingest.encoders.image import ImageTooLargeError
from mmgraph.ingest.encoding import Encoders
from mmgraph.service.serving.deadline import NO_DEADLINE, Deadline
from mmgraph.service.serving.encoder_thread import EncoderThread

# Queries encoded in one forward pass, at most: a batch only as large as still pays per item,
# so that a pass stays short (an arrival waits for at most the pass in progress on each lane and
# its own). Pictures go in twos: EfficientNet-Lite0 through onnxruntime on one thread (a lane's)
# on the 2-core VM encoded 201 pictures/s one at a time, 215/s in twos, 197/s in fours and 178/s
# in eights (the activations of a larger batch outgrow the caches); a pass of two took 18 ms
# under 8 callers, one of four 28 ms. MiniLM gains up to 64 (on one thread 8.2 ms for one text,
# 19.9 ms for eight, 48.6 ms for 32: a pass of eight costs 2.4x one of one, for 8x the texts).
TEXT_BATCH = 32
IMAGE_BATCH = 2


class QueryEncoder:
    """Encodes queries with the settings' encoders (loaded on first use, shared with the
    server's ``Ingest``), batching those that arrive together.

    Args:
        encoders: the encoders, from the same settings as ingest's.
        thread: the lanes that run the forward passes (default: one lane of its own).
    """

    def __init__(self, encoders: Encoders, thread: EncoderThread | None = None) -> None:
        self.encoders = encoders
        self.thread = thread or EncoderThread()

    def encode(
        self, modality: str, value: str | bytes, deadline: Deadline = NO_DEADLINE
    ) -> np.ndarray:
        """A ``(1, d)`` vector of a ``text`` or ``image`` query; an empty text, no bytes or an
        undecodable picture is an invalid argument, a picture above the pixel limit is refused
        as too large."""
        if modality == "text":
            if not isinstance(value, str) or not value.strip():
                raise InvalidArgumentError("the text query is empty")
            return _result(self.thread.submit("text", self._texts, value, TEXT_BATCH), deadline)
        if modality != "image":
            raise InvalidArgumentError(f"cannot encode a {modality!r} query; text or image")
        if not value:
            raise InvalidArgumentError("the image query holds no bytes")
        try:
            pixels = self.encoders.image_encoder().decode(value)
        except ImageTooLargeError:
            raise
        except ImageDecodeError as e:
            raise InvalidArgumentError(f"image query: {e.reason}") from e
        return _result(self.thread.submit("image", self._images, pixels, IMAGE_BATCH), deadline)

    def ingest_encoders(self) -> Encoders:
        """The same encoders as ``Ingest`` uses them: each of its batches runs on the encoder
        thread, queued with the queries."""
        return _ThreadEncoders(self.encoders, self.thread)

    def close(self) -> None:
        """Stop the encoder thread once the batch in progress is done."""
        self.thread.close()

    def _texts(self, texts: list[str]) -> np.ndarray:
        return self.encoders.text_encoder().encode(texts)

    def _images(self, pixels: list[np.ndarray]) -> np.ndarray:
        return self.encoders.image_encoder().encode(pixels)


def _result(future: Future, deadline: Deadline) -> np.ndarray:
    """The query's row, or :class:`DeadlineExceededError` (the query dropped if not yet
    started) once the call's deadline passes."""
    try:
        return future.result(timeout=deadline.remaining())
    except TimeoutError:
        future.cancel()
        raise DeadlineExceededError(
            "the call's deadline passed while its query waited to be encoded"
        ) from None


class _OnThread(Encoder):
    """An encoder whose forward passes run on the encoder thread; everything else is the
    encoder's own."""

    def __init__(self, encoder: Encoder, thread: EncoderThread) -> None:
        self._encoder = encoder
        self._thread = thread

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)

    def encode(self, inputs: Sequence[Any], batch_size: int = 64) -> np.ndarray:
        return self._thread.call(lambda: self._encoder.encode(inputs, batch_size))


class _ThreadEncoders(Encoders):
    """``encoders`` (loaded on first use, as they are) whose forward passes run on ``thread``."""

    def __init__(self, encoders: Encoders, thread: EncoderThread) -> None:
        super().__init__(
            encoders.text_kind, encoders.device, encoders.max_image_pixels, threads=encoders.threads
        )
        self._encoders = encoders
        self._thread = thread

    def text_encoder(self) -> Encoder:
        return _OnThread(self._encoders.text_encoder(), self._thread)

    def image_encoder(self) -> Any:
        return _OnThread(self._encoders.image_encoder(), self._thread)
