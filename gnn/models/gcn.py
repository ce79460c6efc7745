"""GCN over the homogeneous projection of the heterogeneous graph."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import GCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from mmgraph.gnn.models.base import (
    EmbeddingModel,
    GraphMeta,
    homogeneous_edges,
    hop_major,
    num_nodes_dict,
    prefix_view,
    relu_dropout,
    sampled_hops,
    split_homogeneous,
    stack_types,
    type_slices,
)
from mmgraph.gnn.models.decoder import DistMultDecoder
from mmgraph.gnn.models.inputs import ConcatInput, FeatureSkip


class GCN(EmbeddingModel):
    r"""Graph convolutions from the `"Semi-supervised Classification with Graph Convolutional
    Networks" <https://arxiv.org/abs/1609.02907>`_ paper over the homogeneous projection of the
    graph (node and edge types forgotten), on a per-type projection of each node's concatenated
    modalities and masks (:class:`~mmgraph.gnn.models.inputs.ConcatInput`):

    .. math::
        \mathbf{H}^{(0)} = \mathrm{ReLU}(\mathrm{ConcatInput}(\mathbf{X})), \qquad
        \mathbf{H}^{(l+1)} = \sigma\left(\hat{\mathbf{D}}^{-1/2} \hat{\mathbf{A}}
        \hat{\mathbf{D}}^{-1/2} \mathbf{H}^{(l)} \mathbf{W}^{(l)}\right)

    with :math:`\hat{\mathbf{A}} = \mathbf{A} + \mathbf{I}`, :math:`\sigma` = ReLU and dropout
    between layers and the identity after the last one; the output adds the input skip
    :math:`\mathbf{s}_v` (:class:`~mmgraph.gnn.models.inputs.FeatureSkip`).

    Args:
        meta (GraphMeta): The graph schema.
        target_edge_types (Sequence[Tuple[str, str, str]]): Edge types scored by the decoder.
        hidden_channels (int, optional): Hidden size. (default: :obj:`128`)
        out_channels (int, optional): Embedding size. (default: :obj:`128`)
        num_layers (int, optional): Number of :class:`~torch_geometric.nn.conv.GCNConv` layers.
            (default: :obj:`2`)
        dropout (float, optional): Dropout between layers. (default: :obj:`0.2`)
        normalize_inputs (bool, optional): L2-normalise each modality before the input
            projection. (default: :obj:`False`)
        input_skip (bool, optional): Add :class:`~mmgraph.gnn.models.inputs.FeatureSkip` (the
            raw modalities, mapped per modality) to the output. (default: :obj:`True`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with the schema of ``meta``
        - **output:** per node type :math:`(n_t, F_{out})`
    """

    name = "gcn"
    uses_graph = True

    def __init__(
        self,
        meta: GraphMeta,
        target_edge_types: Sequence[Sequence[str]],
        hidden_channels: int = 128,
        out_channels: int = 128,
        num_layers: int = 2,
        dropout: float = 0.2,
        normalize_inputs: bool = False,
        input_skip: bool = True,
    ) -> None:
        super().__init__(
            meta, target_edge_types, hidden_channels, out_channels, num_layers, dropout
        )
        self.input = ConcatInput(meta, hidden_channels, normalize=normalize_inputs)
        self.convs = torch.nn.ModuleList(
            GCNConv(
                hidden_channels,
                out_channels if i == num_layers - 1 else hidden_channels,
                normalize=False,  # normalised once per forward: normalized_adjacency
            )
            for i in range(num_layers)
        )
        self.skip = FeatureSkip(meta, out_channels) if input_skip and meta.all_modalities else None
        self.decoder = DistMultDecoder(self.target_edge_types, out_channels)

    def reset_parameters(self) -> None:
        self.input.reset_parameters()
        if self.skip is not None:
            self.skip.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        self.decoder.reset_parameters()

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        """Every node's embedding; for a batch sampled one hop per layer, the seeds' alone:
        the rows go hop by hop, and each layer multiplies by the rows of the adjacency it
        writes (the nodes within reach of a later layer, a prefix)."""
        num_nodes = num_nodes_dict(data, self.meta)
        hops = sampled_hops(data, self.meta, self.num_layers)
        # The adjacency first, while nothing node-sized is alive (building it sorts the edges),
        # and its transpose too when a backward pass will need it; the edge list does not stay.
        edge_index, _ = homogeneous_edges(data, self.meta, num_nodes, self.device)
        total = sum(num_nodes.values())
        order, out_nodes = None, dict(num_nodes)
        if hops is not None:
            order, edge_index = hop_major(hops, self.meta, edge_index)
            out_nodes = hops.seeds
        matrix = normalized_adjacency(edge_index, total, self.dtype)
        del edge_index
        if hops is None:
            adjacencies = [Adjacency(matrix)] * self.num_layers
        else:
            reach = hops.layer_rows()
            adjacencies = [
                Adjacency(_first_rows(matrix, rows, cols))
                for rows, cols in zip(reach, [total, *reach[:-1]], strict=True)
            ]
        if self.training and torch.is_grad_enabled():
            for adjacency in adjacencies:
                adjacency.transposed()
        x = stack_types(self.input(data, num_nodes), self.meta)
        if order is not None:
            x = x.index_select(0, order)
        x = relu_dropout(x, self.dropout, self.training)
        for i, conv in enumerate(self.convs):
            x = _convolve(conv, x, adjacencies[i])
            if i < len(self.convs) - 1:
                x = relu_dropout(x, self.dropout, self.training)
        out = split_homogeneous(x, type_slices(out_nodes, self.meta))
        if self.skip is None:
            return out
        return self.skip.add_to(
            out, data if hops is None else prefix_view(data, out_nodes), out_nodes
        )


def _convolve(conv: GCNConv, x: Tensor, adjacency: Adjacency) -> Tensor:
    """``conv(x, adjacency)`` (a :class:`~torch_geometric.nn.conv.GCNConv` without its own
    normalisation: one sparse-dense product, as its ``propagate`` does with a sparse matrix)
    with the bias added in place: the product's backward does not need its output, so no third
    node-sized tensor is made."""
    out = _Product.apply(adjacency, conv.lin(x))
    return out if conv.bias is None else out.add_(conv.bias)


class Adjacency:
    """A constant sparse CSR matrix, and its transpose for the backward pass, built on first
    need and shared by every layer: torch's own backward of a CSR product builds the transpose
    again in each layer (at 1M nodes and 17.6M edges: 2.9 s and 0.4 GB more memory per layer,
    against 1.2 s for the product with a transpose built once in 1.1 s)."""

    def __init__(self, matrix: Tensor) -> None:
        self.matrix = matrix
        self._transposed: Tensor | None = None

    def transposed(self) -> Tensor:
        """The matrix's transpose, as a sparse CSR matrix (built on the first call)."""
        if self._transposed is None:
            crow, col = self.matrix.crow_indices(), self.matrix.col_indices()
            n_rows, n_cols = self.matrix.shape
            row = torch.repeat_interleave(
                torch.arange(n_rows, dtype=crow.dtype, device=crow.device), crow.diff()
            )
            # Entries are in (row, column) order: a stable sort by column alone puts them in
            # the transpose's (column, row) order, with no product key to sort.
            self._transposed = _csr(col, row, self.matrix.values(), (n_cols, n_rows), by_row=True)
        return self._transposed


class _Product(torch.autograd.Function):
    """``adjacency.matrix @ x``, differentiable in ``x`` only, through the shared transpose."""

    @staticmethod
    def forward(ctx: Any, adjacency: Adjacency, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adjacency = adjacency
        return adjacency.matrix @ x

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:
        return None, ctx.adjacency.transposed() @ grad


def normalized_adjacency(edge_index: Tensor, num_nodes: int, dtype: torch.dtype) -> Tensor:
    r""":math:`\hat{\mathbf{D}}^{-1/2} \hat{\mathbf{A}} \hat{\mathbf{D}}^{-1/2}` (PyG's
    ``gcn_norm``) as a sparse CSR matrix with a row per destination: each layer then aggregates
    with one sparse-dense product instead of a message tensor per edge, and the normalisation is
    computed once for all layers. Repeated edges stay repeated (the product adds them up, as
    messages would be)."""
    edge_index, weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=True, dtype=dtype)
    src, dst = edge_index
    return _csr(dst, src, weight, (num_nodes, num_nodes))


def _csr(
    row: Tensor, col: Tensor, value: Tensor, shape: tuple[int, int], by_row: bool = False
) -> Tensor:
    """The sparse CSR matrix of ``shape`` with ``value`` at each ``(row, col)``, entries of a
    row in column order (``by_row``: they are already in column order within each row, so a
    stable sort by row alone orders them). Indices are 32-bit where they fit: half the memory
    of the adjacency and its transpose, at the same product speed."""
    n_rows, n_cols = shape
    key = row if by_row else row * n_cols + col
    order = torch.sort(key, stable=True).indices
    index_dtype = torch.int32 if max(n_rows, n_cols, row.numel()) < 2**31 else torch.int64
    crow = torch.zeros(n_rows + 1, dtype=index_dtype, device=row.device)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=n_rows), 0)
    return _sparse_csr(
        crow, col.index_select(0, order).to(index_dtype), value.index_select(0, order), shape
    )


def _first_rows(matrix: Tensor, n_rows: int, n_cols: int) -> Tensor:
    """The first ``n_rows`` rows of a CSR ``matrix`` whose entries there all lie in its first
    ``n_cols`` columns, as an ``n_rows x n_cols`` matrix (views of its arrays)."""
    crow = matrix.crow_indices()[: n_rows + 1]
    end = int(crow[-1])
    return _sparse_csr(crow, matrix.col_indices()[:end], matrix.values()[:end], (n_rows, n_cols))


def _sparse_csr(crow: Tensor, col: Tensor, value: Tensor, shape: tuple[int, int]) -> Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
        return torch.sparse_csr_tensor(crow, col, value, shape, check_invariants=False)
