"""Pick an encoder by modality name: ``get_encoder("text")``."""

from __future__ import annotations

from typing import Any

from mmgraph.ingest.encoders.base import Encoder
from mmgraph.ingest.encoders.image import ImageEncoder
from mmgraph.ingest.encoders.numeric import NumericEncoder
from mmgraph.ingest.encoders.text import TextEncoder

ENCODERS: dict[str, type[Encoder]] = {
    "text": TextEncoder,
    "image": ImageEncoder,
    "num": NumericEncoder,
}


def get_encoder(modality: str, **kwargs: Any) -> Encoder:
    """A new encoder for ``modality`` (``"text"``, ``"image"``, ``"num"``) built with ``kwargs``."""
    try:
        cls = ENCODERS[modality]
    except KeyError:
        raise ValueError(
            f"no encoder for modality {modality!r}; choose one of {sorted(ENCODERS)} "
            "(precomputed vectors use PrecomputedEncoder(name))"
        ) from None
    return cls(**kwargs)
