"""Multimodal autoencoder: per-modality encoders into one latent, every modality decoded back
out of it; the latent is the fused embedding."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import MLP

from mmgraph.gnn.fusion.encoders import ModalityEncoders
from mmgraph.gnn.models.base import EmbeddingModel, GraphMeta, ModelConfigError, num_nodes_dict
from mmgraph.gnn.models.decoder import DistMultDecoder
from mmgraph.gnn.models.inputs import FeatureSkip, read_modality


class MultimodalAutoencoder(EmbeddingModel):
    r"""The bimodal autoencoder of `"Multimodal Deep Learning"
    <https://icml.cc/2011/papers/399_icmlpaper.pdf>`_ (Ngiam et al., ICML 2011), on a graph's
    nodes: one encoder per modality into a shared latent
    (:class:`~mmgraph.gnn.fusion.encoders.ModalityEncoders`: the mean of the codes of the
    modalities a node has), one decoder per modality back out. Edges are ignored.

    Every modality :math:`m'` a node has is reconstructed, L2-normalised, from the node's
    latent :math:`\mathbf{h}_v` and from the code :math:`\mathbf{c}_{v,m}` of each of its
    modalities alone (the paper's training with one modality zeroed, so that a node missing a
    modality, or a single-modality query, lands where the whole node would):

    .. math::
        \mathcal{L}_{\mathrm{rec}} = \sum_{m'} \operatorname{mean}_{(v, \mathbf{c})}
        \left\lVert g_{m'}(\mathbf{c}) - \frac{\mathbf{x}_{v,m'}}
        {\lVert \mathbf{x}_{v,m'} \rVert} \right\rVert^2, \qquad
        \mathbf{c} \in \{\mathbf{h}_v\} \cup \{\mathbf{c}_{v,m} : m \in M_v\}

    over the nodes :math:`v` with :math:`m' \in M_v` (the latent term only where :math:`|M_v|
    \geq 2`). Nodes that the split holds out for cross-modal retrieval (``contrastive_exclude``)
    only reconstruct each modality from itself, so that no term pairs their modalities.
    :meth:`auxiliary_loss` adds ``reconstruction_weight`` times :math:`\mathcal{L}_{\mathrm{rec}}`
    (on at most ``max_nodes`` nodes per type and step) to the link loss; the embedding is the
    latent plus the input skip:

    .. math::
        \mathbf{z}_v = \mathbf{h}_v + \mathbf{s}_v

    Args:
        meta (GraphMeta): The graph schema (at least one modality, one size per modality).
        target_edge_types (Sequence[Tuple[str, str, str]]): Edge types scored by the decoder.
        hidden_channels (int, optional): Hidden size of encoders and decoders.
            (default: :obj:`128`)
        out_channels (int, optional): Latent size. (default: :obj:`128`)
        num_layers (int, optional): Hidden layers of each encoder and decoder.
            (default: :obj:`2`)
        dropout (float, optional): Dropout between layers. (default: :obj:`0.2`)
        reconstruction_weight (float, optional): Weight of :math:`\mathcal{L}_{\mathrm{rec}}`;
            0 leaves only the link loss. (default: :obj:`1.0`)
        max_nodes (int, optional): Most nodes per type drawn per step for the reconstruction.
            (default: :obj:`2048`)
        input_skip (bool, optional): Add :class:`~mmgraph.gnn.models.inputs.FeatureSkip` to the
            latent. (default: :obj:`True`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with the schema of ``meta``
        - **output:** per node type :math:`(n_t, F_{out})`
    """

    name = "autoencoder"
    uses_graph = False

    def __init__(
        self,
        meta: GraphMeta,
        target_edge_types: Sequence[Sequence[str]],
        hidden_channels: int = 128,
        out_channels: int = 128,
        num_layers: int = 2,
        dropout: float = 0.2,
        reconstruction_weight: float = 1.0,
        max_nodes: int = 2048,
        input_skip: bool = True,
    ) -> None:
        super().__init__(
            meta, target_edge_types, hidden_channels, out_channels, num_layers, dropout
        )
        if not meta.all_modalities:
            raise ModelConfigError(
                "meta has no modality: the autoencoder needs at least one to reconstruct"
            )
        if reconstruction_weight < 0:
            raise ModelConfigError(
                f"reconstruction_weight must be non-negative, got {reconstruction_weight!r}"
            )
        if max_nodes < 1:
            raise ModelConfigError(f"max_nodes must be positive, got {max_nodes!r}")
        self.reconstruction_weight = reconstruction_weight
        self.max_nodes = max_nodes
        self.encoders = ModalityEncoders(meta, hidden_channels, out_channels, num_layers, dropout)
        self.reconstructors = torch.nn.ModuleDict(
            {
                m: MLP(
                    [out_channels] + [hidden_channels] * num_layers + [dim],
                    dropout=dropout,
                    norm=None,
                )
                for m, dim in self.encoders.sizes.items()
            }
        )
        self.skip = FeatureSkip(meta, out_channels) if input_skip else None
        self.decoder = DistMultDecoder(self.target_edge_types, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.encoders.reset_parameters()
        for mlp in self.reconstructors.values():
            mlp.reset_parameters()
        if self.skip is not None:
            self.skip.reset_parameters()
        self.decoder.reset_parameters()

    def latent(self, data: HeteroData) -> dict[str, Tensor]:
        """Per node type the latent :math:`\\mathbf{h}` (the embedding without the skip)."""
        num_nodes = num_nodes_dict(data, self.meta)
        return self.encoders.fuse(self.encoders.encode(data, num_nodes), num_nodes)

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        h = self.latent(data)
        return (
            h if self.skip is None else self.skip.add_to(h, data, num_nodes_dict(data, self.meta))
        )

    def reconstruction_loss(self, data: HeteroData) -> Tensor | None:
        """:math:`\\mathcal{L}_{\\mathrm{rec}}` on at most ``max_nodes`` nodes of each type
        (drawn with torch's global generator); ``None`` when no node of ``data`` has a
        modality."""
        num_nodes = num_nodes_dict(data, self.meta)
        ref = next(iter(self.decoder.parameters()))
        errors: dict[str, list[Tensor]] = {m: [] for m in self.encoders.sizes}
        for t, mods in self.meta.modalities.items():
            if not mods or not num_nodes[t]:
                continue
            rows = torch.randperm(num_nodes[t])[: self.max_nodes].to(ref.device)
            x, mask = {}, {}
            for m, dim in mods.items():
                full, present = read_modality(data, t, m, dim, num_nodes[t], ref)
                x[m], mask[m] = F.normalize(full[rows], dim=-1), present[rows]
            codes = {m: self.encoders.encode_rows(m, x[m]) for m in mods}
            count = sum(present.long() for present in mask.values())
            latent = sum(codes[m] * mask[m].unsqueeze(-1).to(ref.dtype) for m in mods)
            latent = latent / count.clamp(min=1).unsqueeze(-1).to(ref.dtype)
            pairable = torch.ones_like(count, dtype=torch.bool)
            if t in data.node_types and "contrastive_exclude" in data[t]:
                pairable = ~data[t].contrastive_exclude.to(ref.device)[rows].bool()
            for target in mods:
                sources = [(latent, (count >= 2) & pairable)]
                sources += [(codes[m], mask[m] & (pairable | (m == target))) for m in mods]
                for code, use in sources:
                    use = use & mask[target]
                    if bool(use.any()):
                        out = self.reconstructors[target](code[use])
                        errors[target].append((out - x[target][use]).pow(2).sum(dim=-1))
        per_modality = [torch.cat(e).mean() for e in errors.values() if e]
        return torch.stack(per_modality).sum() if per_modality else None

    def auxiliary_loss(self, data: HeteroData, z: Mapping[str, Tensor]) -> Tensor | None:
        """``reconstruction_weight`` times :meth:`reconstruction_loss`; ``None`` when the
        weight is 0 or nothing can be reconstructed."""
        if self.reconstruction_weight == 0:
            return None
        loss = self.reconstruction_loss(data)
        return None if loss is None else self.reconstruction_weight * loss

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, reconstruction_weight={self.reconstruction_weight}, "
            f"input_skip={self.skip is not None}"
        )
