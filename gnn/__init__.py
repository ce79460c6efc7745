"""Fused node embeddings (GCN, MGAT, HGT) and fusion baselines; built on ``mmgraph.graph``."""

import warnings

# PyG's own import calls ``torch.jit.script``, deprecated in recent torch: not ours to fix, and
# printed on every command otherwise.
warnings.filterwarnings(
    "ignore", message="`torch.jit.script` is deprecated", category=FutureWarning
)
