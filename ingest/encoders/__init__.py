"""Modality encoders: raw text, images, numbers and precomputed vectors to float32 matrices.

Importing this package is cheap: torch, sentence-transformers and onnxruntime load on first use.
"""

from mmgraph.ingest.encoders.base import Encoder, EncoderError
from mmgraph.ingest.encoders.image import ImageDecodeError, ImageEncoder, decode_image
from mmgraph.ingest.encoders.numeric import NotFittedError, NumericEncoder
from mmgraph.ingest.encoders.precomputed import PrecomputedEncoder, VectorShapeError
from mmgraph.ingest.encoders.text import TextEncoder

__all__ = [
    "Encoder",
    "EncoderError",
    "ImageDecodeError",
    "ImageEncoder",
    "NotFittedError",
    "NumericEncoder",
    "PrecomputedEncoder",
    "TextEncoder",
    "VectorShapeError",
    "decode_image",
]
