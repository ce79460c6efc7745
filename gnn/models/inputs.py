"""Input layers shared by the models: raw modality features -> one hidden vector per node.

Both read ``data[T][f"{m}_x"]`` and ``data[T][f"{m}_mask"]`` (a modality whose attributes are
missing from a graph counts as absent at every node; features without a mask count as present)
and never let an absent modality's zeros pass as a signal: projections are masked, and a node
with nothing present gets a learned per-type vector.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from mmgraph.gnn.models.base import GraphMeta, ModelConfigError


def read_modality(
    data: HeteroData, node_type: str, modality: str, dim: int, num_nodes: int, like: Tensor
) -> tuple[Tensor, Tensor]:
    """``(x, mask)`` of one modality of one node type, shaped ``(n, dim)`` and ``(n,)``, on the
    device and in the dtype of ``like``; zeros and all-false when ``data`` does not carry it."""
    store = data[node_type] if node_type in data.node_types else None
    key = f"{modality}_x"
    if store is None or key not in store:
        return (
            like.new_zeros(num_nodes, dim),
            torch.zeros(num_nodes, dtype=torch.bool, device=like.device),
        )
    x = store[key]
    if x.dim() != 2 or x.size(0) != num_nodes or x.size(1) != dim:
        raise ModelConfigError(
            f"data[{node_type!r}][{key!r}] must have shape ({num_nodes}, {dim}), "
            f"got {tuple(x.shape)}"
        )
    mask_key = f"{modality}_mask"
    if mask_key in store:
        mask = store[mask_key].to(device=like.device, dtype=torch.bool).view(-1)
    else:
        mask = torch.ones(num_nodes, dtype=torch.bool, device=like.device)
    return x.to(device=like.device, dtype=like.dtype), mask


def modality_sizes(meta: GraphMeta) -> dict[str, int]:
    """Modality -> its size, sorted by name, for a layer that every node type carrying the
    modality shares; refuses a modality whose size differs between two node types."""
    dims: dict[str, int] = {}
    for t, mods in meta.modalities.items():
        for m, dim in mods.items():
            if dims.setdefault(m, dim) != dim:
                raise ModelConfigError(
                    f"modality {m!r} has size {dims[m]} on one node type and {dim} on "
                    f"{t!r}: a layer shared by the node types needs one size per modality"
                )
    return dict(sorted(dims.items()))


class ModalityInput(torch.nn.Module):
    r"""Per (node type, modality) a linear projection to ``hidden_channels``, masked where the
    modality is absent; the fused input of a node is the mean of its present projections, or a
    learned per-type vector when none is present:

    .. math::
        \mathbf{h}_{v,m} = \mathbb{1}[m \in M_v] \, (\mathbf{W}_{t,m} \mathbf{x}_{v,m}
        + \mathbf{b}_{t,m}), \qquad
        \mathbf{h}_v = \begin{cases} \frac{1}{|M_v|} \sum_{m \in M_v} \mathbf{h}_{v,m}
        & M_v \neq \emptyset \\ \mathbf{e}_t & \text{otherwise} \end{cases}

    Args:
        meta (GraphMeta): The graph schema (modalities and sizes per node type).
        hidden_channels (int): Output size.

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` and the node count per type
        - **output:** per type, per modality ``(h, mask)`` of shapes :math:`(n, H)`, :math:`(n,)`
          (:meth:`project`), or the fused :math:`(n, H)` (:meth:`forward`)
    """

    def __init__(self, meta: GraphMeta, hidden_channels: int) -> None:
        super().__init__()
        if hidden_channels < 1:
            raise ModelConfigError(f"hidden_channels must be positive, got {hidden_channels!r}")
        self.meta = meta
        self.hidden_channels = hidden_channels
        self.lins = torch.nn.ModuleDict(
            {
                self._key(t, m): torch.nn.Linear(dim, hidden_channels)
                for t, mods in meta.modalities.items()
                for m, dim in mods.items()
            }
        )
        self.fallback = torch.nn.ParameterDict(
            {t: torch.nn.Parameter(torch.empty(hidden_channels)) for t in meta.node_types}
        )
        self.reset_parameters()

    @staticmethod
    def _key(node_type: str, modality: str) -> str:
        return f"{node_type}__{modality}"

    def reset_parameters(self) -> None:
        for lin in self.lins.values():
            lin.reset_parameters()
        for vector in self.fallback.values():
            torch.nn.init.normal_(vector, std=0.1)

    def fallback_vector(self, node_type: str, num_nodes: int) -> Tensor:
        """The learned vector of ``node_type``, repeated ``num_nodes`` times."""
        return self.fallback[node_type].unsqueeze(0).expand(num_nodes, -1)

    def project(
        self, data: HeteroData, num_nodes: Mapping[str, int]
    ) -> dict[str, dict[str, tuple[Tensor, Tensor]]]:
        """Node type -> modality -> ``(masked projection, mask)``."""
        out: dict[str, dict[str, tuple[Tensor, Tensor]]] = {}
        for t in self.meta.node_types:
            out[t] = {}
            for m, dim in self.meta.modalities[t].items():
                lin = self.lins[self._key(t, m)]
                x, mask = read_modality(data, t, m, dim, num_nodes[t], lin.weight)
                out[t][m] = (lin(x) * mask.unsqueeze(-1).to(x.dtype), mask)
        return out

    def fuse(
        self,
        projected: Mapping[str, Mapping[str, tuple[Tensor, Tensor]]],
        num_nodes: Mapping[str, int],
    ) -> dict[str, Tensor]:
        """Mean of the present projections per node, the per-type vector where none is."""
        out = {}
        for t in self.meta.node_types:
            fallback = self.fallback_vector(t, num_nodes[t])
            if not projected[t]:
                out[t] = fallback
                continue
            total = sum(h for h, _ in projected[t].values())
            count = sum(mask.to(fallback.dtype) for _, mask in projected[t].values())
            mean = total / count.clamp(min=1.0).unsqueeze(-1)
            out[t] = torch.where((count > 0).unsqueeze(-1), mean, fallback)
        return out

    def forward(self, data: HeteroData, num_nodes: Mapping[str, int]) -> dict[str, Tensor]:
        return self.fuse(self.project(data, num_nodes), num_nodes)


class ConcatInput(torch.nn.Module):
    r"""Per node type, a linear map of the concatenation of its modalities (zeros where absent,
    each optionally L2-normalised) and their presence masks; a type without modalities gets a
    learned per-type vector:

    .. math::
        \mathbf{h}_v = \mathbf{W}_t \left[ \hat{\mathbf{x}}_{v,1} \,\Vert\, \cdots \,\Vert\,
        \hat{\mathbf{x}}_{v,k} \,\Vert\, \mathbb{1}[1 \in M_v], \ldots, \mathbb{1}[k \in M_v]
        \right] + \mathbf{b}_t

    A node with no modality present thus gets :math:`\mathbf{b}_t`, its type's learned vector.

    Args:
        meta (GraphMeta): The graph schema.
        hidden_channels (int): Output size.
        normalize (bool, optional): L2-normalise each present modality before concatenating
            (puts modalities of very different scales on one footing). (default: :obj:`False`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` and the node count per type
        - **output:** per type :math:`(n, H)`
    """

    def __init__(self, meta: GraphMeta, hidden_channels: int, normalize: bool = False) -> None:
        super().__init__()
        if hidden_channels < 1:
            raise ModelConfigError(f"hidden_channels must be positive, got {hidden_channels!r}")
        self.meta = meta
        self.hidden_channels = hidden_channels
        self.normalize = normalize
        self.lins = torch.nn.ModuleDict(
            {
                t: torch.nn.Linear(sum(mods.values()) + len(mods), hidden_channels)
                for t, mods in meta.modalities.items()
                if mods
            }
        )
        self.fallback = torch.nn.ParameterDict(
            {
                t: torch.nn.Parameter(torch.empty(hidden_channels))
                for t in meta.node_types
                if not meta.modalities[t]
            }
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in self.lins.values():
            lin.reset_parameters()
        for vector in self.fallback.values():
            torch.nn.init.normal_(vector, std=0.1)

    def forward(self, data: HeteroData, num_nodes: Mapping[str, int]) -> dict[str, Tensor]:
        out = {}
        for t in self.meta.node_types:
            if t in self.fallback:
                out[t] = self.fallback[t].unsqueeze(0).expand(num_nodes[t], -1)
                continue
            # The map of the concatenation, as a sum of maps of each modality through its
            # columns of the weight: no concatenated (or normalised, or masked) copy of the
            # features, which at a million nodes is gigabytes; the maps are scaled and summed in
            # place (no backward here needs their outputs).
            lin = self.lins[t]
            h, masks, column = None, [], 0
            for m, dim in self.meta.modalities[t].items():
                x, mask = read_modality(data, t, m, dim, num_nodes[t], lin.weight)
                part = F.linear(x, lin.weight[:, column : column + dim])
                part.mul_(_row_scale(x, mask, self.normalize))
                h = part if h is None else h.add_(part)
                masks.append(mask.to(x.dtype))
                column += dim
            out[t] = h.add_(F.linear(torch.stack(masks, dim=1), lin.weight[:, column:], lin.bias))
        return out


def _row_scale(x: Tensor, mask: Tensor, normalize: bool) -> Tensor:
    """``(n, 1)``: the mask, divided by each row's norm when ``normalize`` (a linear map of
    ``x * scale`` is the map of ``x`` times ``scale``; ``F.normalize``'s floor on the norm)."""
    scale = mask.to(x.dtype).unsqueeze(-1)
    if normalize:
        scale = scale / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return scale


class FeatureSkip(torch.nn.Module):
    r"""A skip connection from a node's raw modalities to the model's output space, one linear
    map per modality **shared by every node type** (a tag's text and an emoji's label come from
    the same encoder, so one map keeps their geometry comparable), over L2-normalised inputs,
    averaged over the modalities present:

    .. math::
        \mathbf{s}_v = \frac{1}{\max(|M_v|, 1)} \sum_{m \in M_v}
        \mathbf{W}_m \frac{\mathbf{x}_{v,m}}{\lVert \mathbf{x}_{v,m} \rVert}

    Added to a model's output, it carries the encoders' similarity (which alone ranks links
    well on text-rich graphs) past the message passing, which then only has to learn what the
    structure adds. Maps start orthogonal, so at initialisation dot products of the skip follow
    the cosines of the inputs.

    Args:
        meta (GraphMeta): The graph schema.
        out_channels (int): Output size.

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` and the node count per type
        - **output:** per type :math:`(n, F_{out})` (zeros for a node with no modality)
    """

    def __init__(self, meta: GraphMeta, out_channels: int) -> None:
        super().__init__()
        dims = modality_sizes(meta)
        if not dims:
            raise ModelConfigError("meta has no modalities: there is nothing to skip")
        self.meta = meta
        self.out_channels = out_channels
        self.lins = torch.nn.ModuleDict(
            {m: torch.nn.Linear(dim, out_channels, bias=False) for m, dim in dims.items()}
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for lin in self.lins.values():
            torch.nn.init.orthogonal_(lin.weight)

    def project(
        self, data: HeteroData, num_nodes: Mapping[str, int]
    ) -> dict[str, dict[str, tuple[Tensor, Tensor]]]:
        """Node type -> modality -> ``(masked skip of that modality, mask)``."""
        ref = next(iter(self.lins.values())).weight
        out: dict[str, dict[str, tuple[Tensor, Tensor]]] = {}
        for t in self.meta.node_types:
            out[t] = {}
            for m in self.meta.modalities[t]:
                out[t][m] = self._modality(data, t, m, num_nodes[t], ref)
        return out

    def forward(self, data: HeteroData, num_nodes: Mapping[str, int]) -> dict[str, Tensor]:
        # Summed and divided in place, one modality at a time: at a million nodes each
        # (n, F_out) temporary not made is half a gigabyte of peak.
        ref = next(iter(self.lins.values())).weight
        out = {}
        for t in self.meta.node_types:
            total, count = None, ref.new_zeros(num_nodes[t])
            for m in self.meta.modalities[t]:
                s, mask = self._modality(data, t, m, num_nodes[t], ref)
                total = s if total is None else total.add_(s)
                count += mask.to(ref.dtype)
            if total is None:
                out[t] = ref.new_zeros(num_nodes[t], self.out_channels)
            else:
                out[t] = total.div_(count.clamp(min=1.0).unsqueeze(-1))
        return out

    def add_to(
        self, z: Mapping[str, Tensor], data: HeteroData, num_nodes: Mapping[str, int]
    ) -> dict[str, Tensor]:
        """``z`` (per-type model outputs of ``data``) plus this skip (added into the skip's own
        fresh tensors)."""
        skip = self(data, num_nodes)
        return {t: skip[t].add_(z[t]) for t in z}

    def _modality(
        self, data: HeteroData, node_type: str, modality: str, num_nodes: int, ref: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(masked skip, mask)`` of one modality of one node type."""
        dim = self.meta.modalities[node_type][modality]
        x, mask = read_modality(data, node_type, modality, dim, num_nodes, ref)
        # Scaled in place: the map's backward needs its input, not its output, and a second
        # (n, F_out) tensor was half a gigabyte of a million-node step's peak.
        return self.lins[modality](x).mul_(_row_scale(x, mask, normalize=True)), mask
