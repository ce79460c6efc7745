"""Graph attention in chunks of destinations, so no per-edge tensor of the whole graph is kept.

PyG's attention layers (:class:`~torch_geometric.nn.conv.GATConv`,
:class:`~torch_geometric.nn.conv.GATv2Conv`, :class:`~torch_geometric.nn.conv.HGTConv`) build
tensors of ``heads x channels`` per edge (gathered keys, queries, messages) for every edge at
once and keep several for the backward pass: gigabytes at two million edges. A softmax over a
destination's incoming edges involves no other destination, so :func:`attend` takes the edges
sorted by destination (:class:`DstSorted`), cuts them into chunks of whole destinations of about
:data:`CHUNK_EDGES` edges, and keeps none of a chunk's per-edge tensors: the backward pass
rebuilds a chunk's attention weights (as activation checkpointing would), derives the weighted
sum's gradients directly, and adds each chunk's gradients of the gathered source rows into one
node-sized buffer. Checkpointing each chunk with torch's ``checkpoint`` made every chunk's
backward allocate, fill and add a gradient the size of the whole node set for each tensor
gathered by source, which took most of the backward pass.
The subclasses below are the PyG layers with the same parameters (and state dicts) whose
aggregation goes through :func:`attend`: the same values, memory bounded by one chunk.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import GATConv, GATv2Conv, HGTConv
from torch_geometric.utils import add_self_loops, remove_self_loops, softmax
from torch_geometric.utils.hetero import construct_bipartite_edge_index

from mmgraph.gnn.models.base import rows

# Edges per chunk. A per-edge tensor of 256 channels (2 heads of 128) is then 16 MB, under glibc's
# 32 MB ceiling for memory it keeps and reuses rather than mapping afresh: at 100k nodes MGAT's
# training step took 17.6 s in chunks of 1 << 17 edges, 11.9 s of 1 << 15, 8.3 s of 1 << 14, and
# no less in chunks of 1 << 13.
CHUNK_EDGES = 1 << 14


@dataclass(frozen=True)
class DstSorted:
    """Edges sorted by destination: ``src``/``dst`` in that order, ``ptr[d]:ptr[d + 1]`` the
    edges into ``d``, ``perm`` the original position of each."""

    src: Tensor
    dst: Tensor
    ptr: Tensor
    perm: Tensor
    num_dst: int

    @classmethod
    def build(cls, edge_index: Tensor, num_dst: int) -> DstSorted:
        dst, perm = torch.sort(edge_index[1], stable=True)
        counts = torch.bincount(dst, minlength=num_dst)
        ptr = torch.zeros(num_dst + 1, dtype=torch.long, device=dst.device)
        torch.cumsum(counts, 0, out=ptr[1:])
        return cls(edge_index[0].index_select(0, perm), dst, ptr, perm, num_dst)

    @classmethod
    def with_self_loops(cls, edge_index: Tensor, num_nodes: int) -> DstSorted:
        """``edge_index`` with exactly one self-loop per node (what GAT layers add)."""
        edge_index, _ = remove_self_loops(edge_index)
        edge_index, _ = add_self_loops(edge_index, num_nodes=num_nodes)
        return cls.build(edge_index, num_nodes)

    def chunks(self, chunk_edges: int) -> list[tuple[int, int]]:
        """Destination ranges ``[d0, d1)`` covering every destination, each with about
        ``chunk_edges`` edges (more when one destination alone has more)."""
        marks = list(range(chunk_edges, self.dst.numel(), chunk_edges))
        cuts = torch.searchsorted(self.ptr, torch.tensor(marks, device=self.ptr.device)).tolist()
        bounds = sorted({0, *cuts, self.num_dst})
        return [(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if b > a]


@dataclass(frozen=True)
class Chunk:
    """What a score function reads of one chunk of edges: ``src[i]``, the rows of source tensor
    ``i`` gathered by the edges' sources; ``dst[i]``, the chunk's destinations' rows of
    destination-side tensor ``i``; the ``extras`` as given; ``part``, the chunk's edges in the
    sorted order; ``index``, each edge's destination counted from the chunk's first."""

    src: Sequence[Tensor]
    dst: Sequence[Tensor]
    extras: Sequence[Tensor]
    part: slice
    index: Tensor

    def at_dst(self, i: int) -> Tensor:
        """Destination-side tensor ``i``'s row for each edge of the chunk."""
        return rows(self.dst[i], self.index)


Score = Callable[[Chunk], Tensor]


def attend(
    edges: DstSorted,
    score: Score,
    sources: Sequence[Tensor],
    dst_side: Sequence[Tensor] = (),
    extras: Sequence[Tensor] = (),
    dropout: float = 0.0,
    training: bool = False,
    chunk_edges: int | None = None,
) -> Tensor:
    r"""Softmax attention over each destination's incoming edges:

    .. math::
        \mathbf{o}_d = \sum_{e = (s, d)} \mathrm{softmax}_d(\mathrm{score}(e)) \, \mathbf{v}_s

    Args:
        edges: the edges, sorted by destination.
        score: the logits ``(E_c, heads)`` of one :class:`Chunk` of edges.
        sources: per-source-node tensors, gathered by each edge's source; the first,
            ``(num_src, heads, channels)``, is the value aggregated.
        dst_side: per-destination tensors ``score`` reads (queries, ...).
        extras: other tensors ``score`` reads whose gradients are wanted (weights, priors).
        dropout: dropout on the attention weights (in training).
        chunk_edges: edges per chunk (see the module); default :data:`CHUNK_EDGES`.

    Returns:
        ``(num_dst, heads, channels)``.
    """
    ranges = edges.chunks(chunk_edges or CHUNK_EDGES)
    p = dropout if training else 0.0
    if not torch.is_grad_enabled() or not any(
        t.requires_grad for t in (*sources, *dst_side, *extras)
    ):
        out, _ = _forward(edges, score, ranges, p, sources, dst_side, extras)
        return out
    return _Attend.apply(
        edges, score, ranges, p, len(sources), len(dst_side), *sources, *dst_side, *extras
    )


def _weights(
    edges: DstSorted,
    score: Score,
    d0: int,
    d1: int,
    src_rows: Sequence[Tensor],
    dst_rows: Sequence[Tensor],
    extras: Sequence[Tensor],
    keep: Tensor | None,
    p: float,
) -> tuple[Tensor, Tensor]:
    """The attention weights ``(E_c, heads)`` of the edges into destinations ``[d0, d1)`` (after
    dropout), from their gathered rows; and each edge's destination counted from ``d0``."""
    part = slice(int(edges.ptr[d0]), int(edges.ptr[d1]))
    index = edges.dst[part] - d0
    logits = score(Chunk(src_rows, dst_rows, extras, part, index))
    alpha = softmax(logits, ptr=edges.ptr[d0 : d1 + 1] - edges.ptr[d0], num_nodes=d1 - d0)
    if keep is not None:
        alpha = alpha * keep / (1 - p)
    return alpha, index


def _aggregate(value: Tensor, alpha: Tensor, index: Tensor, num_dst: int) -> Tensor:
    """Each destination's sum of its edges' values weighted by ``alpha``."""
    message = value * alpha.unsqueeze(-1)
    return message.new_zeros(num_dst, *message.shape[1:]).index_add_(0, index, message)


def _sources(edges: DstSorted, d0: int, d1: int) -> Tensor:
    """The source of each edge into destinations ``[d0, d1)``."""
    return edges.src[int(edges.ptr[d0]) : int(edges.ptr[d1])]


def _forward(
    edges: DstSorted,
    score: Score,
    ranges: list[tuple[int, int]],
    p: float,
    sources: Sequence[Tensor],
    dst_side: Sequence[Tensor],
    extras: Sequence[Tensor],
) -> tuple[Tensor, list[Tensor | None]]:
    """Every chunk's output written into one tensor, and the dropout masks drawn."""
    value = sources[0]
    out = value.new_zeros(edges.num_dst, *value.shape[1:])
    masks: list[Tensor | None] = []
    for d0, d1 in ranges:
        src = _sources(edges, d0, d1)
        keep = None
        if p > 0:
            keep = torch.rand(src.numel(), value.size(1), device=value.device) >= p
        masks.append(keep)
        src_rows = [rows(s, src) for s in sources]
        dst_rows = [t[d0:d1] for t in dst_side]
        alpha, index = _weights(edges, score, d0, d1, src_rows, dst_rows, extras, keep, p)
        out[d0:d1] = _aggregate(src_rows[0], alpha, index, d1 - d0)
    return out, masks


def _roles(items: Sequence[Any], n_sources: int, n_dst: int) -> tuple[Sequence[Any], ...]:
    """The inputs of :class:`_Attend` (or one value per input) split by role: sources,
    destination-side tensors, extras."""
    return items[:n_sources], items[n_sources : n_sources + n_dst], items[n_sources + n_dst :]


class _Attend(torch.autograd.Function):
    """:func:`attend` with grad: keeps the inputs and the dropout masks, and in the backward
    pass rebuilds one chunk at a time, adding its source rows' gradients into one buffer."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        edges: DstSorted,
        score: Score,
        ranges: list[tuple[int, int]],
        p: float,
        n_sources: int,
        n_dst: int,
        *tensors: Tensor,
    ) -> Tensor:
        out, masks = _forward(edges, score, ranges, p, *_roles(tensors, n_sources, n_dst))
        ctx.save_for_backward(*tensors)
        ctx.plan = (edges, score, ranges, p, n_sources, n_dst, masks)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        edges, score, ranges, p, n_sources, n_dst, masks = ctx.plan
        tensors = ctx.saved_tensors
        wanted = ctx.needs_input_grad[6:]
        grads = [torch.zeros_like(t) if w else None for t, w in zip(tensors, wanted, strict=True)]
        sources, dst_side, extras = _roles(tensors, n_sources, n_dst)
        src_grads, dst_grads, extra_grads = _roles(grads, n_sources, n_dst)
        for (d0, d1), keep in zip(ranges, masks, strict=True):
            src = _sources(edges, d0, d1)
            # The chunk's inputs, as leaves of its rebuilt graph.
            leaves = [
                *(rows(t.detach(), src) for t in sources),
                *(t.detach()[d0:d1] for t in dst_side),
                *(t.detach() for t in extras),
            ]
            with torch.enable_grad():
                for leaf, w in zip(leaves, wanted, strict=True):
                    leaf.requires_grad_(w)
                roles = _roles(leaves, n_sources, n_dst)
                alpha, index = _weights(edges, score, d0, d1, *roles, keep, p)
            # The weighted sum's gradients by hand: rebuilding it for autograd would make the
            # per-edge messages and their sum again, only to take them apart.
            grad_rows = rows(grad_out[d0:d1], index)
            needed = [leaf for leaf in leaves if leaf.requires_grad]
            found = iter([None] * len(needed))
            if alpha.requires_grad:  # else the scores read nothing that needs a gradient
                grad_alpha = (grad_rows * leaves[0].detach()).sum(dim=-1)
                found = iter(torch.autograd.grad(alpha, needed, grad_alpha, allow_unused=True))
            chunk_grads = [next(found) if w else None for w in wanted]
            if wanted[0]:
                by_value = grad_rows.mul_(alpha.detach().unsqueeze(-1))
                chunk_grads[0] = by_value if chunk_grads[0] is None else by_value + chunk_grads[0]
            chunk_src, chunk_dst, chunk_extra = _roles(chunk_grads, n_sources, n_dst)
            for g, total in zip(chunk_src, src_grads, strict=True):
                if g is not None:
                    total.index_add_(0, src, g)
            for g, total in zip(chunk_dst, dst_grads, strict=True):
                if g is not None:
                    total[d0:d1] += g
            for g, total in zip(chunk_extra, extra_grads, strict=True):
                if g is not None:
                    total += g
        return (None,) * 6 + tuple(grads)


class ChunkedGATConv(GATConv):
    """:class:`~torch_geometric.nn.conv.GATConv` on one node set whose attention runs through
    :func:`attend`; takes the edges already sorted, self-loops included
    (:meth:`DstSorted.with_self_loops`), and outputs the first ``edges.num_dst`` nodes."""

    def forward(self, x: Tensor, edges: DstSorted) -> Tensor:  # type: ignore[override]
        H, C = self.heads, self.out_channels
        if self.lin is not None:
            x_src = x_dst = self.lin(x).view(-1, H, C)
        else:
            x_src = self.lin_src(x).view(-1, H, C)
            x_dst = self.lin_dst(x).view(-1, H, C)
        a_src = (x_src * self.att_src).sum(dim=-1)
        a_dst = (x_dst * self.att_dst).sum(dim=-1)

        def score(c: Chunk) -> Tensor:
            logits = c.src[1] + c.at_dst(0)
            return F.leaky_relu(logits, self.negative_slope)

        out = attend(
            edges, score, (x_src, a_src), (a_dst,), dropout=self.dropout, training=self.training
        )
        return _finish(self, out, x)


class ChunkedGATv2Conv(GATv2Conv):
    """:class:`~torch_geometric.nn.conv.GATv2Conv` on one node set whose attention runs
    through :func:`attend`; takes the edges already sorted, self-loops included
    (:meth:`DstSorted.with_self_loops`), and outputs the first ``edges.num_dst`` nodes."""

    def forward(self, x: Tensor, edges: DstSorted) -> Tensor:  # type: ignore[override]
        H, C = self.heads, self.out_channels
        x_l = self.lin_l(x).view(-1, H, C)
        x_r = x_l if self.share_weights else self.lin_r(x).view(-1, H, C)

        def score(c: Chunk) -> Tensor:
            joint = F.leaky_relu(c.src[0] + c.at_dst(0), self.negative_slope)
            return (joint * c.extras[0]).sum(dim=-1)

        out = attend(
            edges,
            score,
            (x_l,),
            (x_r,),
            (self.att,),
            dropout=self.dropout,
            training=self.training,
        )
        return _finish(self, out, x)


def _finish(conv: GATConv | GATv2Conv, out: Tensor, x: Tensor) -> Tensor:
    """Heads concatenated or averaged, then the residual (of the destinations: the first rows
    of ``x``) and the bias, as the PyG layers do."""
    out = out.reshape(out.size(0), -1) if conv.concat else out.mean(dim=1)
    if conv.res is not None:
        out = out + conv.res(x[: out.size(0)])
    if conv.bias is not None:
        out = out + conv.bias
    return out


class ChunkedHGTConv(HGTConv):
    """:class:`~torch_geometric.nn.conv.HGTConv` whose attention over the edges of all types
    runs through :func:`attend`."""

    def forward(  # type: ignore[override]
        self, x_dict: dict[str, Tensor], edge_index_dict: dict[tuple[str, str, str], Tensor]
    ) -> dict[str, Tensor | None]:
        F_out, H = self.out_channels, self.heads
        D = F_out // H
        k_dict, q_dict, v_dict = {}, {}, {}
        for node_type, x in x_dict.items():
            # kqv_lin's map in three (weight rows): no slices of its output to back-propagate
            lin = self.kqv_lin.lins[node_type]
            k, q, v = (
                F.linear(
                    x,
                    lin.weight[i * F_out : (i + 1) * F_out],
                    lin.bias[i * F_out : (i + 1) * F_out],
                )
                for i in range(3)
            )
            k_dict[node_type], q_dict[node_type] = k.view(-1, H, D), q.view(-1, H, D)
            v_dict[node_type] = v.view(-1, H, D)
        q, dst_offset = self._cat(q_dict)
        k, v, src_offset = self._relation_keys_values(k_dict, v_dict, edge_index_dict)
        edge_index, _ = construct_bipartite_edge_index(
            edge_index_dict, src_offset, dst_offset, num_nodes=k.size(0)
        )
        edges = DstSorted.build(edge_index, q.size(0))
        # Each edge's relation prior p_rel, read through its type's index (not a tensor per edge).
        prior = torch.cat([self.p_rel["__".join(et)] for et in edge_index_dict]) / math.sqrt(D)
        kinds = torch.cat(
            [
                torch.full((ei.size(1),), i, device=q.device)
                for i, ei in enumerate(edge_index_dict.values())
            ]
        ).index_select(0, edges.perm)

        def score(c: Chunk) -> Tensor:
            dot = (c.at_dst(0) * c.src[1]).sum(dim=-1)
            return dot * rows(c.extras[0], kinds[c.part])

        out = attend(edges, score, (v, k), (q,), (prior,)).view(-1, F_out)
        out_dict: dict[str, Tensor | None] = {}
        for node_type, start in dst_offset.items():
            if node_type in self.dst_node_types:
                out_dict[node_type] = out[start : start + q_dict[node_type].size(0)]
        a_dict = self.out_lin({t: F.gelu(h) for t, h in out_dict.items()})
        for node_type in out_dict:
            h = a_dict[node_type]
            if h.size(-1) == x_dict[node_type].size(-1):
                alpha = self.skip[node_type].sigmoid()
                h = alpha * h + (1 - alpha) * x_dict[node_type]
            out_dict[node_type] = h
        return out_dict

    def _relation_keys_values(
        self,
        k_dict: dict[str, Tensor],
        v_dict: dict[str, Tensor],
        edge_index_dict: dict[tuple[str, str, str], Tensor],
    ) -> tuple[Tensor, Tensor, dict[tuple[str, str, str], int]]:
        """Each edge type's keys and values of its source nodes through its own per-head
        relation maps (``k_rel``, ``v_rel``; PyG's ``_construct_src_node_feat``), stacked by
        edge type, and each type's first row: one batched product per edge type and head
        instead of sorted copies of every key and value."""
        T = len(self.edge_types)
        offset, start = {}, 0
        for edge_type in edge_index_dict:
            offset[edge_type] = start
            start += k_dict[edge_type[0]].size(0)

        def stacked(x_dict: dict[str, Tensor], rel: torch.nn.Module) -> Tensor:
            # weight[h * T + i] maps head h of edge type i (PyG's type_vec order); one stack
            # at a time, so that the keys' parts are gone before the values' are made.
            return torch.cat(
                [
                    torch.einsum(
                        "nhd,hde->nhe", x_dict[et[0]], rel.weight[self.edge_types_map[et] :: T]
                    )
                    for et in edge_index_dict
                ]
            )

        return stacked(k_dict, self.k_rel), stacked(v_dict, self.v_rel), offset
