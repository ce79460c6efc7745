"""What the cross-modal training terms share: the nodes they may pair, and the InfoNCE loss.

A cross-modal term pairs a node's two modalities (its text with its own image). It may only use
nodes that carry both and that the split has not held out for the retrieval evaluation (a bool
``contrastive_exclude`` attribute of their type marks those: see :mod:`mmgraph.gnn.split`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData


def paired_rows(
    data: HeteroData, node_types: Sequence[str], first: str, second: str, max_nodes: int
) -> list[tuple[str, Tensor]]:
    """Per node type of ``node_types`` that ``data`` carries, the rows of at most ``max_nodes``
    nodes in all (drawn uniformly over the types, with torch's global generator) that carry
    both ``first`` and ``second`` and are not marked ``contrastive_exclude``; types with none
    drawn are left out, and nothing is drawn when fewer than two nodes qualify (a lone pair
    has no negative)."""
    candidates = []
    for t in node_types:
        if t not in data.node_types:
            continue
        store = data[t]
        keys = (f"{first}_x", f"{first}_mask", f"{second}_x", f"{second}_mask")
        if not all(k in store for k in keys):
            continue
        both = store[f"{first}_mask"].bool() & store[f"{second}_mask"].bool()
        if "contrastive_exclude" in store:  # nodes held out for cross-modal evaluation
            both = both & ~store["contrastive_exclude"].bool()
        candidates.append((t, both.nonzero().view(-1)))
    counts = [len(idx) for _, idx in candidates]
    if sum(counts) < 2:
        return []
    draw = torch.randperm(sum(counts))[:max_nodes]
    out, start = [], 0
    for (t, idx), n in zip(candidates, counts, strict=True):
        chosen = draw[(draw >= start) & (draw < start + n)] - start
        start += n
        if len(chosen):
            out.append((t, idx[chosen.to(idx.device)]))
    return out


def info_nce(a: Tensor, b: Tensor, temperature: float) -> Tensor:
    r"""The symmetric InfoNCE loss of `"Representation Learning with Contrastive Predictive
    Coding" <https://arxiv.org/abs/1807.03748>`_ between paired rows, the other rows of the
    batch as negatives (CLIP's form): with :math:`\hat{a}, \hat{b}` the L2-normalised rows,

    .. math::
        \mathcal{L} = \frac{1}{2} \left( \mathrm{CE}(\hat{a} \hat{b}^\top / \tau, I)
        + \mathrm{CE}(\hat{b} \hat{a}^\top / \tau, I) \right)

    Shapes: ``a`` and ``b`` :math:`(n, F)`, row ``i`` of each describing the same node."""
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.t() / temperature
    target = torch.arange(logits.size(0), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
