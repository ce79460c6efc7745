"""Modality encoders: raw text, images, numbers and precomputed vectors to float32 matrices.

Importing this package is cheap: torch, sentence-transformers and onnxruntime load on first use.
"""

from mmgraph.ingest.encoders.base import Encoder, EncoderError
from mmgraph.ingest.encoders.image import ImageDecodeError, ImageEncoder, decode_image
from mmgraph.ingest.encoders.numeric import NotFittedError, NumericEncoder
from mmgraph.ingest.encoders.precomputed import PrecomputedEncoder, VectorShapeError
from mmgraph.ingest.encoders.text import (
    Int8TextEncoder,
    TextEncoder,
    TextEncoderKind,
    TextEncoderKindError,
    make_text_encoder,
)

__all__ = [
    "Encoder",
    "EncoderError",
    "ImageDecodeError",
    "ImageEncoder",
    "Int8TextEncoder",
    "NotFittedError",
    "NumericEncoder",
    "PrecomputedEncoder",
    "TextEncoder",
    "TextEncoderKind",
    "TextEncoderKindError",
    "VectorShapeError",
    "decode_image",
    "make_text_encoder",
]
