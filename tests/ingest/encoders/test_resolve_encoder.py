"""get_encoder by modality name, and the package's cheap import."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mmgraph.ingest.encoders import ImageEncoder, NumericEncoder, TextEncoder, get_encoder


def test_get_encoder_by_modality() -> None:
    text = get_encoder("text", device="cpu")
    assert isinstance(text, TextEncoder) and text.requested_device == "cpu"
    assert isinstance(get_encoder("image"), ImageEncoder)
    assert isinstance(get_encoder("num"), NumericEncoder)
    with pytest.raises(ValueError, match="no encoder for modality 'clip'"):
        get_encoder("clip")


def test_import_and_construction_load_no_model_library() -> None:
    code = (
        "import sys\n"
        "from mmgraph.ingest.encoders import get_encoder\n"
        "tags = [get_encoder(m).tag for m in ('text', 'image')]\n"
        "heavy = {'torch', 'onnxruntime', 'sentence_transformers', 'transformers'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
