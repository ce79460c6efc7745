"""Raw queries (a text, a picture's bytes) to the vectors of the encoders that made the graph's
modalities, so that a query is compared with the nodes as the model saw them."""

from __future__ import annotations

import numpy as np

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.ingest.encoders import ImageDecodeError
from mmgraph.ingest.encoders.image import ImageTooLargeError
from mmgraph.ingest.encoding import Encoders


class QueryEncoder:
    """Encodes one query at a time with the settings' encoders (loaded on first use, shared with
    the server's ``Ingest``).

    Args:
        encoders: the encoders, from the same settings as ingest's.
    """

    def __init__(self, encoders: Encoders) -> None:
        self.encoders = encoders

    def encode(self, modality: str, value: str | bytes) -> np.ndarray:
        """A ``(1, d)`` vector of a ``text`` or ``image`` query; an empty text, no bytes or an
        undecodable picture is an invalid argument, a picture above the pixel limit is refused
        as too large."""
        if modality == "text":
            if not isinstance(value, str) or not value.strip():
                raise InvalidArgumentError("the text query is empty")
            return self.encoders.text_encoder().encode([value])
        if modality != "image":
            raise InvalidArgumentError(f"cannot encode a {modality!r} query; text or image")
        if not value:
            raise InvalidArgumentError("the image query holds no bytes")
        try:
            return self.encoders.image_encoder().encode([value])
        except ImageTooLargeError:
            raise
        except ImageDecodeError as e:
            raise InvalidArgumentError(f"image query: {e.reason}") from e
