"""HGT: PyG's heterogeneous graph transformer over node and edge types."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.utils import trim_to_layer

from mmgraph.gnn.models.attention import ChunkedHGTConv
from mmgraph.gnn.models.base import (
    EmbeddingModel,
    GraphMeta,
    ModelConfigError,
    num_nodes_dict,
    prefix_view,
    relu_dropout,
    sampled_hops,
)
from mmgraph.gnn.models.decoder import DistMultDecoder
from mmgraph.gnn.models.inputs import FeatureSkip, ModalityInput


class HGT(EmbeddingModel):
    r"""The Heterogeneous Graph Transformer from the `"Heterogeneous Graph Transformer"
    <https://arxiv.org/abs/2003.01332>`_ paper (:class:`~torch_geometric.nn.conv.HGTConv`), on
    the fused modality input (:class:`~mmgraph.gnn.models.inputs.ModalityInput`):

    .. math::
        \mathbf{h}^{(0)}_v = \mathrm{ReLU}(\mathrm{ModalityInput}(\mathbf{x}_v)), \qquad
        \mathbf{h}^{(l+1)} = \mathrm{HGTConv}^{(l)}(\mathbf{h}^{(l)}), \qquad
        \mathbf{z}_v = \mathbf{W}_{\tau(v)} \mathbf{h}^{(L)}_v + \mathbf{b}_{\tau(v)}
        + \mathbf{s}_v

    with dropout between layers and :math:`\mathbf{s}_v` the input skip
    (:class:`~mmgraph.gnn.models.inputs.FeatureSkip`). Every message-passing edge type of
    ``meta`` has its own attention and message weights; a node type that no edge type points to
    keeps its input through a layer (the convolution gives it no output).

    Args:
        meta (GraphMeta): The graph schema; ``meta.edge_types`` are the relations attended over.
        target_edge_types (Sequence[Tuple[str, str, str]]): Edge types scored by the decoder.
        hidden_channels (int, optional): Hidden size; must be divisible by ``heads``.
            (default: :obj:`128`)
        out_channels (int, optional): Embedding size. (default: :obj:`128`)
        num_layers (int, optional): Number of :class:`~torch_geometric.nn.conv.HGTConv` layers.
            (default: :obj:`2`)
        dropout (float, optional): Dropout between layers. (default: :obj:`0.2`)
        heads (int, optional): Attention heads. (default: :obj:`2`)
        input_skip (bool, optional): Add :class:`~mmgraph.gnn.models.inputs.FeatureSkip` (the
            raw modalities, mapped per modality) to the output. (default: :obj:`True`)
        recompute_layers (bool, optional): Rebuild each layer's activations in the backward
            pass instead of keeping them (:meth:`~EmbeddingModel.layer`): at 100k nodes, 0.8 GB
            less at the peak for 14% more time per epoch. Training turns it off for its run
            when the memory budget holds the kept layers. (default: :obj:`True`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with the schema of ``meta``
          (any subset of its edge types)
        - **output:** per node type :math:`(n_t, F_{out})`
    """

    name = "hgt"
    uses_graph = True

    def __init__(
        self,
        meta: GraphMeta,
        target_edge_types: Sequence[Sequence[str]],
        hidden_channels: int = 128,
        out_channels: int = 128,
        num_layers: int = 2,
        dropout: float = 0.2,
        heads: int = 2,
        input_skip: bool = True,
        recompute_layers: bool = True,
    ) -> None:
        super().__init__(
            meta, target_edge_types, hidden_channels, out_channels, num_layers, dropout
        )
        if not isinstance(heads, int) or heads < 1:
            raise ModelConfigError(f"heads must be a positive integer, got {heads!r}")
        if hidden_channels % heads:
            raise ModelConfigError(
                f"hidden_channels (got {hidden_channels}) must be divisible by heads (got {heads})"
            )
        if not meta.edge_types:
            raise ModelConfigError("meta has no edge types: HGT needs at least one to attend over")
        self.heads = heads
        self.recompute_layers = recompute_layers
        self.input = ModalityInput(meta, hidden_channels)
        metadata = (list(meta.node_types), list(meta.edge_types))
        self.convs = torch.nn.ModuleList(
            ChunkedHGTConv(hidden_channels, hidden_channels, metadata, heads=heads)
            for _ in range(num_layers)
        )
        self.outs = torch.nn.ModuleDict(
            {t: torch.nn.Linear(hidden_channels, out_channels) for t in meta.node_types}
        )
        self.skip = FeatureSkip(meta, out_channels) if input_skip and meta.all_modalities else None
        self.decoder = DistMultDecoder(self.target_edge_types, out_channels)

    def reset_parameters(self) -> None:
        self.input.reset_parameters()
        if self.skip is not None:
            self.skip.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        for lin in self.outs.values():
            lin.reset_parameters()
        self.decoder.reset_parameters()

    def _edge_index_dict(self, data: HeteroData, device: torch.device) -> dict:
        """Every meta edge type's edges (none for a type the batch lacks); refuses edge types
        the model has no weights for."""
        given = {tuple(et): ei for et, ei in data.collect("edge_index", allow_empty=True).items()}
        unknown = set(given) - set(self.meta.edge_types)
        if unknown:
            raise ModelConfigError(f"data has edge types {sorted(unknown)} unknown to the model")
        empty = torch.empty(2, 0, dtype=torch.long, device=device)
        return {et: given.get(et, empty).to(device) for et in self.meta.edge_types}

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        """Every node's embedding; for a batch sampled one hop per layer, the seeds' alone
        (each layer skips the nodes and edges no later layer reads: ``trim_to_layer``)."""
        num_nodes = num_nodes_dict(data, self.meta)
        hops = sampled_hops(data, self.meta, self.num_layers)
        x_dict = {
            t: relu_dropout(x, self.dropout, self.training)
            for t, x in self.input(data, num_nodes).items()
        }
        edge_index_dict = self._edge_index_dict(data, self.device)
        for i, conv in enumerate(self.convs):
            if hops is not None:
                x_dict, edge_index_dict, _ = trim_to_layer(
                    i, hops.nodes, hops.edges, x_dict, edge_index_dict
                )
            out = self.layer(conv, x_dict, edge_index_dict)
            x_dict = {t: out[t] if out.get(t) is not None else x for t, x in x_dict.items()}
            if i < len(self.convs) - 1:
                x_dict = {
                    t: F.dropout(x, p=self.dropout, training=self.training)
                    for t, x in x_dict.items()
                }
        if hops is not None:
            num_nodes = hops.seeds
            x_dict = {t: x[: num_nodes[t]] for t, x in x_dict.items()}
            data = prefix_view(data, num_nodes)
        out = {t: self.outs[t](x) for t, x in x_dict.items()}
        return out if self.skip is None else self.skip.add_to(out, data, num_nodes)
