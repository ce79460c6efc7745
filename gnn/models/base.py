"""The one interface every embedding model implements, and the graph description it is built from.

A model is built from a :class:`GraphMeta` (node types, message-passing edge types, modalities and
their sizes), embeds every node of any :class:`~torch_geometric.data.HeteroData` with that schema
(the full graph, a sampled mini-batch, or a graph of isolated nodes carrying one modality) and
scores candidate links with a DistMult decoder. Models are inductive: they hold no per-node
parameters, so a node unseen in training is embedded from its features and neighbourhood.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from torch_geometric.data import HeteroData

from mmgraph.core.errors import InvalidArgumentError

EdgeType = tuple[str, str, str]

MODELS: dict[str, type[EmbeddingModel]] = {}
"""Every model class by its ``name``; filled as the classes are defined (see
:mod:`mmgraph.gnn.models`, whose import defines them all)."""


class ModelConfigError(InvalidArgumentError):
    """A model setting, or the graph handed to a model, does not fit the model."""


@dataclass(frozen=True)
class GraphMeta:
    """The schema a model is built for: node types, message-passing edge types, and per node type
    the modalities present in the features with their sizes (sorted, so that two exports of the
    same graph give the same model layout)."""

    node_types: tuple[str, ...]
    edge_types: tuple[EdgeType, ...]
    modalities: dict[str, dict[str, int]]

    @classmethod
    def from_data(cls, data: HeteroData) -> GraphMeta:
        """Read the schema of ``data``: a modality ``m`` of type ``T`` is a pair of attributes
        ``data[T][f"{m}_x"]`` (2-d) and ``data[T][f"{m}_mask"]``."""
        modalities: dict[str, dict[str, int]] = {}
        for node_type in sorted(data.node_types):
            store = data[node_type]
            found = {}
            for key in store:
                if key.endswith("_x") and f"{key[:-2]}_mask" in store:
                    x = store[key]
                    if x.dim() != 2:
                        raise ModelConfigError(
                            f"data[{node_type!r}][{key!r}] must be 2-d, got shape {tuple(x.shape)}"
                        )
                    found[key[:-2]] = int(x.size(1))
            modalities[node_type] = dict(sorted(found.items()))
        edge_types = tuple(sorted(tuple(et) for et in data.edge_types))
        return cls(tuple(sorted(data.node_types)), edge_types, modalities)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (for a run directory's config)."""
        return {
            "node_types": list(self.node_types),
            "edge_types": [list(et) for et in self.edge_types],
            "modalities": {t: dict(m) for t, m in self.modalities.items()},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GraphMeta:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(raw["node_types"]),
            tuple(tuple(et) for et in raw["edge_types"]),
            {t: dict(m) for t, m in raw["modalities"].items()},
        )

    @property
    def all_modalities(self) -> tuple[str, ...]:
        """Every modality name carried by at least one node type, sorted."""
        return tuple(sorted({m for mods in self.modalities.values() for m in mods}))


def edge_key(edge_type: Sequence[str]) -> str:
    """A module-dict key for an edge type (``ModuleDict`` keys must be strings)."""
    return "__".join(edge_type)


def num_nodes_dict(data: HeteroData, meta: GraphMeta) -> dict[str, int]:
    """Number of nodes per meta node type in ``data`` (0 for a type the batch does not carry);
    refuses node types the model was not built for."""
    unknown = set(data.node_types) - set(meta.node_types)
    if unknown:
        raise ModelConfigError(f"data has node types {sorted(unknown)} unknown to the model")
    return {t: int(data[t].num_nodes or 0) if t in data.node_types else 0 for t in meta.node_types}


def homogeneous_edges(
    data: HeteroData, meta: GraphMeta, num_nodes: Mapping[str, int], device: torch.device
) -> tuple[Tensor, dict[str, tuple[int, int]]]:
    """The edges of every edge type of ``data`` in one index space: node types stacked in
    ``meta.node_types`` order, each edge type's indices shifted by its types' offsets. Returns
    ``(edge_index, slices)`` with ``slices[T] = (start, end)``, the rows of type ``T``."""
    slices = type_slices(num_nodes, meta)
    parts = []
    for (src, _, dst), edge_index in data.collect("edge_index", allow_empty=True).items():
        offset = torch.tensor([[slices[src][0]], [slices[dst][0]]], device=edge_index.device)
        parts.append((edge_index + offset).to(device))
    if not parts:
        return torch.empty(2, 0, dtype=torch.long, device=device), slices
    return torch.cat(parts, dim=1), slices


def type_slices(num_nodes: Mapping[str, int], meta: GraphMeta) -> dict[str, tuple[int, int]]:
    """``(start, end)`` of each node type's rows when the types are stacked in
    ``meta.node_types`` order with ``num_nodes`` rows each."""
    slices, start = {}, 0
    for node_type in meta.node_types:
        slices[node_type] = (start, start + num_nodes[node_type])
        start += num_nodes[node_type]
    return slices


def stack_types(x_dict: Mapping[str, Tensor], meta: GraphMeta) -> Tensor:
    """Per-type node features stacked in ``meta.node_types`` order (see
    :func:`homogeneous_edges`)."""
    return torch.cat([x_dict[t] for t in meta.node_types], dim=0)


def split_homogeneous(out: Tensor, slices: Mapping[str, tuple[int, int]]) -> dict[str, Tensor]:
    """Per-type rows of a stacked node output (inverse of :func:`stack_types`)."""
    return {t: out[start:end] for t, (start, end) in slices.items()}


@dataclass(frozen=True)
class SampledHops:
    """Per-hop node and edge counts of a sampled mini-batch (PyG's ``num_sampled_nodes`` and
    ``num_sampled_edges``; nodes and edges of each type are in hop order: the seeds first)."""

    nodes: dict[str, list[int]]
    edges: dict[EdgeType, list[int]]

    @property
    def seeds(self) -> dict[str, int]:
        """Seed rows per node type (the hop-0 prefix)."""
        return {t: counts[0] for t, counts in self.nodes.items()}

    def within(self, hop: int) -> dict[str, int]:
        """Rows per node type reached within ``hop`` hops (a prefix of each type's rows)."""
        return {t: sum(counts[: hop + 1]) for t, counts in self.nodes.items()}

    def layer_rows(self) -> list[int]:
        """Per layer, the stacked rows it writes in hop order (:func:`hop_major`): the nodes
        within reach of the output, ``num_layers - 1 - i`` hops from a seed for layer ``i``."""
        layers = len(next(iter(self.nodes.values()))) - 1
        return [sum(self.within(layers - 1 - i).values()) for i in range(layers)]


def sampled_hops(data: HeteroData, meta: GraphMeta, num_layers: int) -> SampledHops | None:
    """The hop counts of ``data`` when it is a batch sampled ``num_layers`` hops deep (one per
    layer, so a layer can skip the nodes no later layer reads: PyG's ``trim_to_layer``);
    ``None`` for a whole graph or a batch sampled to another depth."""
    stores = [data[t] for t in data.node_types]
    if not stores or not all("num_sampled_nodes" in s for s in stores):
        return None
    given = {t: list(data[t].num_sampled_nodes) for t in data.node_types}
    if any(len(counts) != num_layers + 1 for counts in given.values()):
        return None
    nodes = {t: given.get(t, [0] * (num_layers + 1)) for t in meta.node_types}
    present = {tuple(et) for et in data.edge_types}
    edges = {
        et: list(data[et].num_sampled_edges)
        if et in present and "num_sampled_edges" in data[et]
        else [0] * num_layers
        for et in meta.edge_types
    }
    return SampledHops(nodes, edges)


def hop_major(hops: SampledHops, meta: GraphMeta, edge_index: Tensor) -> tuple[Tensor, Tensor]:
    """The stacked rows (:func:`stack_types`) reordered hop by hop, stably: the seeds of every
    type first (in stacked order), then the nodes of hop 1, ...; the nodes within ``h`` hops
    of a seed are then a prefix, which is all a layer ``h`` hops from the output writes.
    Returns that order and ``edge_index`` (over the stacked rows) renumbered into it."""
    device = edge_index.device
    hop = torch.cat(
        [
            torch.repeat_interleave(
                torch.arange(len(hops.nodes[t]), device=device),
                torch.tensor(hops.nodes[t], device=device),
            )
            for t in meta.node_types
        ]
    )
    order = torch.sort(hop, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=device)
    return order, rank[edge_index]


def prefix_view(data: HeteroData, num_nodes: Mapping[str, int]) -> HeteroData:
    """``data`` with each node type's per-node attributes narrowed to its first
    ``num_nodes[T]`` rows (views, no copies): the nodes of a sampled batch a model outputs."""
    view = copy.copy(data)
    for node_type in data.node_types:
        n = int(data[node_type].num_nodes or 0)
        for key, value in data[node_type].items():
            if isinstance(value, Tensor) and value.dim() > 0 and value.size(0) == n:
                view[node_type][key] = value[: num_nodes[node_type]]
        view[node_type].num_nodes = num_nodes[node_type]
    return view


def isolated_view(
    data_or_meta: HeteroData | GraphMeta, node_type: str, modality: str, x: Tensor
) -> HeteroData:
    """A graph of ``x.size(0)`` isolated nodes of ``node_type`` with only ``modality`` present
    (the others zero and masked out); every other node type is empty and every edge type has no
    edge. Embedding it asks a model "what is this text (or image) alone?"."""
    meta = (
        data_or_meta if isinstance(data_or_meta, GraphMeta) else GraphMeta.from_data(data_or_meta)
    )
    mods = meta.modalities.get(node_type)
    if mods is None:
        raise ModelConfigError(f"node_type {node_type!r} is not one of {list(meta.node_types)}")
    if modality not in mods:
        raise ModelConfigError(
            f"modality {modality!r} is not carried by {node_type!r} (has {list(mods)})"
        )
    if x.dim() != 2 or x.size(1) != mods[modality]:
        raise ModelConfigError(
            f"x for {node_type}.{modality} must have shape (n, {mods[modality]}), "
            f"got {tuple(x.shape)}"
        )
    view = HeteroData()
    for t in meta.node_types:
        n = x.size(0) if t == node_type else 0
        view[t].num_nodes = n
        for m, dim in meta.modalities[t].items():
            if t == node_type and m == modality:
                view[t][f"{m}_x"] = x
                view[t][f"{m}_mask"] = torch.ones(n, dtype=torch.bool, device=x.device)
            else:
                view[t][f"{m}_x"] = torch.zeros(n, dim, dtype=x.dtype, device=x.device)
                view[t][f"{m}_mask"] = torch.zeros(n, dtype=torch.bool, device=x.device)
    for edge_type in meta.edge_types:
        view[edge_type].edge_index = torch.empty(2, 0, dtype=torch.long, device=x.device)
    return view


def relu_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``dropout(relu(x))``, keeping for the backward pass one byte per element (where the
    output is positive) instead of dropout's float noise and a second tensor: at a million
    nodes and 128 channels, 0.4 GB less per use. The kept elements are drawn as uniform noise
    at least ``p``: on the CPU, ``rand`` draws a float tensor in half the time ``bernoulli_``
    (torch's dropout) takes, 0.7 s against 1.3 s a use at that size."""
    if not (training and p > 0 and x.numel() > 0):
        return F.relu(x)
    return _ReluDropout.apply(x, p)


class _ReluDropout(torch.autograd.Function):
    """:func:`relu_dropout` in training: the output is written into the noise tensor, and its
    gradient is the incoming one where the output is positive, scaled as dropout scales."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, p: float) -> Tensor:  # type: ignore[override]
        out = torch.rand_like(x).ge_(p).mul_(x).relu_().mul_(1 / (1 - p))
        ctx.save_for_backward(out > 0)
        ctx.scale = 1 / (1 - p)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (positive,) = ctx.saved_tensors
        return grad * positive * ctx.scale, None


def rows(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` for an index of any shape, by ``index_select``: its backward adds the
    gradients with ``index_add_``, several times faster on the CPU than the accumulating
    ``index_put_`` behind ``x[index]``."""
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


class EmbeddingModel(torch.nn.Module):
    """Embed every node of a heterogeneous multimodal graph and score candidate links.

    Subclasses set ``name`` (registered in :data:`MODELS`) and ``uses_graph`` (whether edges are
    used), build their layers after calling this ``__init__``, and implement :meth:`forward` and
    :meth:`reset_parameters`. :meth:`link_logits` defaults to the DistMult decoder of
    :attr:`decoder`, whose size is :attr:`embedding_dim`.

    Args:
        meta (GraphMeta): The schema of the graphs the model will embed.
        target_edge_types (Sequence[Tuple[str, str, str]]): The edge types whose links are scored
            (one decoder relation each).
        hidden_channels (int, optional): Hidden size. (default: :obj:`128`)
        out_channels (int, optional): Embedding size. (default: :obj:`128`)
        num_layers (int, optional): Number of message-passing (or MLP) layers.
            (default: :obj:`2`)
        dropout (float, optional): Dropout probability between layers. (default: :obj:`0.2`)
    """

    name: ClassVar[str]
    uses_graph: ClassVar[bool]
    recompute_layers: bool = False
    """Whether :meth:`layer` rebuilds its layers' activations in the backward pass instead of
    keeping them (models whose layers keep much per call turn it on)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:
            return
        if name in MODELS and MODELS[name] is not cls:
            raise ModelConfigError(f"model name {name!r} is already taken by {MODELS[name]}")
        MODELS[name] = cls

    def __init__(
        self,
        meta: GraphMeta,
        target_edge_types: Sequence[Sequence[str]],
        hidden_channels: int = 128,
        out_channels: int = 128,
        num_layers: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        for arg, value in (
            ("hidden_channels", hidden_channels),
            ("out_channels", out_channels),
            ("num_layers", num_layers),
        ):
            if not isinstance(value, int) or value < 1:
                raise ModelConfigError(f"{arg} must be a positive integer, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ModelConfigError(f"dropout must be in [0, 1), got {dropout!r}")
        if not meta.node_types:
            raise ModelConfigError("meta has no node types")
        targets = tuple(tuple(et) for et in target_edge_types)
        if not targets:
            raise ModelConfigError("target_edge_types must name at least one edge type")
        for et in targets:
            if len(et) != 3 or et[0] not in meta.node_types or et[2] not in meta.node_types:
                raise ModelConfigError(
                    f"target edge type {et!r} does not join two of {list(meta.node_types)}"
                )
        self.meta = meta
        self.target_edge_types = targets
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.num_layers = num_layers
        self.dropout = dropout

    def layer(self, module: torch.nn.Module, *args: Any) -> Any:
        """``module(*args)``; with :attr:`recompute_layers`, in training with grad, through
        torch's non-reentrant checkpoint: autograd keeps only the layer's inputs and rebuilds the
        rest during the backward pass, one layer at a time, for about one more forward pass."""
        if self.recompute_layers and self.training and torch.is_grad_enabled():
            return checkpoint(module, *args, use_reentrant=False)
        return module(*args)

    @property
    def embedding_dim(self) -> int:
        """Width of the embeddings :meth:`forward` returns (``out_channels`` unless a model
        says otherwise)."""
        return self.out_channels

    @property
    def device(self) -> torch.device:
        """Where the parameters live (inputs are moved there)."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype (features are cast to it)."""
        return next(self.parameters()).dtype

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        """Node type -> ``(num_nodes, embedding_dim)`` embeddings, for every node type of the
        model (empty for a type ``data`` does not carry)."""
        raise NotImplementedError

    def link_logits(
        self, z: Mapping[str, Tensor], edge_type: Sequence[str], edge_label_index: Tensor
    ) -> Tensor:
        """Logits of the links ``edge_label_index`` (row 0 indexes ``z[src]``, row 1
        ``z[dst]``) of ``edge_type``; shape ``(num_links,)``."""
        edge_type = tuple(edge_type)
        return self.decoder(
            rows(z[edge_type[0]], edge_label_index[0]),
            rows(z[edge_type[2]], edge_label_index[1]),
            edge_type,
        )

    def candidate_logits(
        self, z: Mapping[str, Tensor], edge_type: Sequence[str], src: Tensor, dst: Tensor
    ) -> Tensor:
        """Logits of every source against every candidate of its group: ``src`` is
        ``(groups, g)`` indices into ``z[src type]``, ``dst`` ``(groups, k)`` into
        ``z[dst type]``; shape ``(groups, g, k)``. One batched product per group, so negatives
        shared by a group cost ``k`` gathered rows instead of ``g * k``."""
        edge_type = tuple(edge_type)
        return self.decoder.grouped(
            rows(z[edge_type[0]], src), rows(z[edge_type[2]], dst), edge_type
        )

    def auxiliary_loss(self, data: HeteroData, z: Mapping[str, Tensor]) -> Tensor | None:
        """An extra training loss to add to the link loss (already weighted), or ``None``."""
        return None

    def node_modality_weights(self, data: HeteroData) -> dict[str, Tensor] | None:
        """Per node type ``(n, len(meta.all_modalities))``: each node's weight per modality in
        its fused embedding, for a model that learns one per node; ``None`` otherwise."""
        return None

    def reset_parameters(self) -> None:
        """Re-initialise every parameter."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (
            f"hidden_channels={self.hidden_channels}, out_channels={self.out_channels}, "
            f"num_layers={self.num_layers}, dropout={self.dropout}"
        )
