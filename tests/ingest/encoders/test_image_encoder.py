"""ImageEncoder with the real EfficientNet-Lite0 weights: decoding, vectors, ONNX export."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from mmgraph.core.config import Settings
from mmgraph.core.errors import ResourceExhaustedError
from mmgraph.ingest.encoders import ImageDecodeError, ImageEncoder, decode_image
from mmgraph.ingest.encoders._efficientnet import export_onnx
from mmgraph.ingest.encoders.image import PREPROCESSING, ImageTooLargeError, Preprocessing

WHITE = (255, 255, 255)


def scene(seed: int, size: int = 64) -> Image.Image:
    """A small RGB picture of a few random coloured shapes on a random light background."""
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (size, size), tuple(int(c) for c in rng.integers(150, 256, 3)))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = (int(v) for v in rng.integers(0, size // 2, 2))
        x1, y1 = (int(v) for v in rng.integers(size // 2, size, 2))
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = (draw.ellipse, draw.rectangle)[int(rng.integers(2))]
        shape((x0, y0, x1, y1), fill=fill)
    return img


def png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def disc(mode: str) -> Image.Image:
    """A red disc on a transparent (``RGBA``) or white (``RGB``) 64 px square."""
    img = Image.new(mode, (64, 64), (0, 0, 0, 0) if mode == "RGBA" else WHITE)
    ImageDraw.Draw(img).ellipse((12, 12, 52, 52), fill=(220, 30, 30))
    return img


def emoji_pngs(count: int) -> list[bytes]:
    """Some emoji PNGs from the dataset cache, when it has been fetched."""
    root = Settings.from_env().cache / "datasets" / "emoji"
    paths = sorted(root.glob("*/node_modules/emoji-datasource-google/img/google/64/*.png"))
    return [path.read_bytes() for path in paths[:: max(1, len(paths) // count)][:count]]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def encoder(cache_dir: Path) -> ImageEncoder:
    """The ONNX encoder, exported afresh into a temporary cache."""
    encoder = ImageEncoder(device="cpu", cache_dir=cache_dir)
    encoder.load()
    return encoder


@pytest.fixture(scope="module")
def eager() -> ImageEncoder:
    return ImageEncoder(device="cpu", backend="torch")


def test_export_lands_in_the_cache_once(encoder: ImageEncoder, cache_dir: Path) -> None:
    assert encoder.backend == "onnx"
    assert encoder.export_seconds is not None
    assert [p.name for p in cache_dir.iterdir()] == [encoder.onnx_path.name]
    again = ImageEncoder(device="cpu", cache_dir=cache_dir)
    again.load()
    assert again.export_seconds is None


def test_failed_export_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError):
        export_onnx(target, size=1, opset=17)
    assert list(tmp_path.iterdir()) == []


def test_shape_dtype_norm_and_determinism(encoder: ImageEncoder) -> None:
    images = [png(scene(seed)) for seed in range(3)]
    vectors = encoder.encode(images, batch_size=2)
    assert vectors.shape == (3, 1280) == (len(images), encoder.dim)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, encoder.encode(images, batch_size=2))
    np.testing.assert_allclose(encoder.encode(images, batch_size=64), vectors, atol=1e-6)


def test_altered_copy_is_nearer_than_another_image(encoder: ImageEncoder) -> None:
    originals = [scene(seed) for seed in range(6)]
    altered = [
        jpeg(originals[0], quality=85),
        png(ImageEnhance.Brightness(originals[1]).enhance(1.08)),
        png(originals[2].transform((64, 64), Image.Transform.AFFINE, (1, 0, 2, 0, 1, 0))),
    ]
    base = encoder.encode([png(img) for img in originals])
    copies = encoder.encode(altered)
    similarity = copies @ base.T
    for i in range(len(altered)):
        others = np.delete(similarity[i], i)
        assert similarity[i, i] > others.max() + 0.02, similarity[i]


def test_emoji_altered_copy_is_nearest(encoder: ImageEncoder) -> None:
    emoji = emoji_pngs(8)
    if len(emoji) < 8:
        pytest.skip("emoji dataset not in the cache")
    base = encoder.encode(emoji)
    flattened = [Image.fromarray(decode_image(e)).resize((64, 64)) for e in emoji]
    copies = encoder.encode([jpeg(img, quality=80) for img in flattened])
    assert (np.argmax(copies @ base.T, axis=1) == np.arange(len(emoji))).all()


def test_transparency_is_composited_onto_white(encoder: ImageEncoder) -> None:
    on_white = decode_image(png(disc("RGB")))
    assert np.array_equal(decode_image(png(disc("RGBA"))), on_white)
    palette = disc("RGBA").convert("P")
    assert palette.has_transparency_data
    assert np.array_equal(decode_image(png(palette)), on_white)
    vectors = encoder.encode([png(disc("RGBA")), png(disc("RGB"))])
    assert np.array_equal(vectors[0], vectors[1])


def test_exif_orientation_is_applied() -> None:
    img = Image.new("RGB", (60, 30), WHITE)
    ImageDraw.Draw(img).rectangle((0, 0, 29, 29), fill=(20, 20, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    tagged = io.BytesIO()
    img.save(tagged, format="PNG", exif=exif)
    upright = img.transpose(Image.Transpose.ROTATE_270)
    assert np.array_equal(decode_image(tagged.getvalue()), decode_image(png(upright)))
    assert not np.array_equal(decode_image(png(img)), decode_image(png(upright)))


def test_decode_gives_the_network_input(encoder: ImageEncoder) -> None:
    wide = Image.new("L", (120, 40), 80)
    pixels = encoder.decode(jpeg(wide.convert("RGB")))
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    assert (pixels[0] == 255).all() and abs(int(pixels[112, 112, 0]) - 80) <= 2
    data = png(scene(7))
    np.testing.assert_array_equal(encoder.encode([encoder.decode(data)]), encoder.encode([data]))


def test_undecodable_images_raise_with_their_index(encoder: ImageEncoder) -> None:
    good = png(scene(1))
    with pytest.raises(ImageDecodeError, match="not a format Pillow reads"):
        encoder.decode(b"not an image")
    for bad in (good[: len(good) // 2], b""):
        with pytest.raises(ImageDecodeError, match="cannot decode image"):
            encoder.decode(bad)
    with pytest.raises(ImageDecodeError, match="image 1: cannot decode") as info:
        encoder.encode([good, b"\x89PNG\r\n\x1a\n garbage"])
    assert info.value.index == 1
    with pytest.raises(ImageDecodeError, match="expected image bytes"):
        decode_image("images/x.png")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="arrays must come from decode"):
        encoder.encode([np.zeros((64, 64, 3), np.uint8)])


def test_onnx_matches_eager_torch(encoder: ImageEncoder, eager: ImageEncoder) -> None:
    images = [png(scene(seed)) for seed in (11, 12)] + [png(disc("RGBA"))]
    onnx_vectors = encoder.encode(images)
    eager_vectors = eager.encode(images)
    assert eager.backend == "torch" and eager.tag == encoder.tag
    np.testing.assert_allclose(onnx_vectors, eager_vectors, atol=1e-4)


def header_only_png(width: int, height: int) -> bytes:
    """A PNG signature and header declaring ``width`` x ``height`` RGB pixels, with no pixel data:
    reading its size works, decoding it fails."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def blank_png(width: int, height: int) -> bytes:
    """A real, tiny (a few KB) PNG of ``width`` x ``height`` blank pixels: a pixel bomb."""
    return png(Image.new("1", (width, height)))


def test_a_pixel_bomb_is_refused_from_its_header_before_decoding() -> None:
    bomb = blank_png(9000, 9000)
    assert len(bomb) < 200_000
    with pytest.raises(ImageTooLargeError, match=r"9000x9000 is 81,000,000 pixels") as raised:
        decode_image(bomb, max_pixels=1_000_000)
    assert "limit of 1,000,000" in str(raised.value)
    assert isinstance(raised.value, ImageDecodeError | ResourceExhaustedError)
    # Nothing is decoded: a header without pixel data is refused the same way, while decoding it
    # (no limit) fails for want of data.
    empty = header_only_png(9000, 9000)
    with pytest.raises(ImageTooLargeError, match="81,000,000 pixels"):
        decode_image(empty, max_pixels=1_000_000)
    with pytest.raises(ImageDecodeError, match="cannot decode image"):
        decode_image(empty, max_pixels=None)
    encoder = ImageEncoder(device="cpu", max_pixels=1_000_000)
    with pytest.raises(ImageTooLargeError):
        encoder.decode(bomb)
    assert encoder.decode(bomb, max_pixels=100_000_000).shape == (224, 224, 3)
    with pytest.raises(ValueError, match="max_pixels"):
        ImageEncoder(max_pixels=0)


def test_a_large_jpeg_decoded_at_reduced_size_matches_a_full_decode() -> None:
    poster = jpeg(scene(3, size=64).resize((2400, 1600), Image.Resampling.BICUBIC), quality=92)
    drafted = decode_image(poster)
    full = decode_image(poster, Preprocessing(jpeg_draft=False))
    assert drafted.shape == full.shape == (224, 224, 3)
    assert np.abs(drafted.astype(int) - full.astype(int)).mean() < 2.0
    assert PREPROCESSING.jpeg_draft
