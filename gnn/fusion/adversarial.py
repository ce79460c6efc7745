"""Adversarial cross-modal alignment: per-modality encoders into one space that a modality
discriminator cannot tell apart, with a paired InfoNCE term that puts a node's text on its own
image."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData
from torch_geometric.nn import MLP

from mmgraph.gnn.fusion.encoders import ModalityEncoders
from mmgraph.gnn.models.alignment import info_nce, paired_rows
from mmgraph.gnn.models.base import (
    EmbeddingModel,
    GraphMeta,
    ModelConfigError,
    isolated_view,
    num_nodes_dict,
)
from mmgraph.gnn.models.decoder import DistMultDecoder
from mmgraph.gnn.models.inputs import FeatureSkip


class _GradientReversal(torch.autograd.Function):
    """Identity forward; the gradient multiplied by ``-scale`` backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    """The gradient reversal layer of `"Unsupervised Domain Adaptation by Backpropagation"
    <https://arxiv.org/abs/1409.7495>`_: ``x`` unchanged, its gradient times ``-scale``, so that
    what minimises a loss after it maximises that loss before it."""
    return _GradientReversal.apply(x, scale)


class AdversarialAlignment(EmbeddingModel):
    r"""Adversarial cross-modal alignment after `"Adversarial Cross-Modal Retrieval"
    <https://doi.org/10.1145/3123266.3123326>`_ (Wang et al., ACM MM 2017): one encoder per
    modality into a common space (:class:`~mmgraph.gnn.fusion.encoders.ModalityEncoders`, plus
    the input skip), a discriminator :math:`D` that tells which modality a point came from, and
    a paired InfoNCE term in place of the paper's label triplets (our nodes carry no labels, but
    their two modalities are pairs). Edges are ignored.

    With :math:`\mathbf{u}_v = f_1(\mathbf{x}_{v,1})` a node's text alone and
    :math:`\mathbf{w}_v = f_2(\mathbf{x}_{v,2})` its image alone (both exactly as a
    single-modality query is embedded, L2-normalised), over nodes carrying both that the split
    did not hold out for retrieval, :math:`D` outputs the logit that a point is an image and

    .. math::
        \mathcal{L}_D = -\operatorname{mean}_v \left[ \log\left(1 - D(\mathbf{u}_v)\right)
        + \log D(\mathbf{w}_v) \right], \qquad
        \mathcal{L}_G = \operatorname{mean}_v \left[ \log\left(1 - D(\mathbf{u}_v)\right)
        + \log D(\mathbf{w}_v) \right] = -\mathcal{L}_D

    :math:`D` minimises :math:`\mathcal{L}_D` and the encoders minimise
    :math:`\lambda \mathcal{L}_G` (the saddle point of a GAN), trained by one optimiser through
    a gradient reversal layer (:func:`grad_reverse`) between the encoders and :math:`D`.
    :meth:`auxiliary_loss` adds, to the link loss,

    .. math::
        \mathcal{L} = \mu \, \mathrm{InfoNCE}(\mathbf{u}, \mathbf{w}) + \mathcal{L}_D
        \quad (\text{the encoders receive } \mu \nabla \mathrm{InfoNCE} - \lambda \nabla
        \mathcal{L}_D)

    with :math:`\lambda` ``adversarial_weight`` and :math:`\mu` ``paired_weight``. A node's
    embedding is the mean of its present modalities' embeddings (its type's learned vector
    where it has none), plus the input skip:

    .. math::
        \mathbf{z}_v = \frac{1}{|M_v|} \sum_{m \in M_v} f_m(\mathbf{x}_{v,m}) + \mathbf{s}_v

    Args:
        meta (GraphMeta): The graph schema; some node type must carry both ``modalities``.
        target_edge_types (Sequence[Tuple[str, str, str]]): Edge types scored by the decoder.
        hidden_channels (int, optional): Hidden size of encoders and discriminator.
            (default: :obj:`128`)
        out_channels (int, optional): Size of the common space. (default: :obj:`128`)
        num_layers (int, optional): Hidden layers of each encoder. (default: :obj:`2`)
        dropout (float, optional): Dropout between layers. (default: :obj:`0.2`)
        adversarial_weight (float, optional): :math:`\lambda`; 0 builds no discriminator (the
            ablation without the adversarial term). (default: :obj:`0.1`)
        paired_weight (float, optional): :math:`\mu`; 0 leaves the distributions matched but
            no pair aligned. (default: :obj:`1.0`)
        temperature (float, optional): InfoNCE temperature. (default: :obj:`0.1`)
        modalities (Tuple[str, str], optional): The two modalities aligned, :math:`D`'s 0 and 1.
            (default: :obj:`("text", "image")`)
        max_nodes (int, optional): Most paired nodes drawn per step. (default: :obj:`512`)
        input_skip (bool, optional): Add :class:`~mmgraph.gnn.models.inputs.FeatureSkip` to
            every embedding (so also to the aligned single-modality ones).
            (default: :obj:`True`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.HeteroData` with the schema of ``meta``
        - **output:** per node type :math:`(n_t, F_{out})`
    """

    name = "adversarial"
    uses_graph = False

    def __init__(
        self,
        meta: GraphMeta,
        target_edge_types: Sequence[Sequence[str]],
        hidden_channels: int = 128,
        out_channels: int = 128,
        num_layers: int = 2,
        dropout: float = 0.2,
        adversarial_weight: float = 0.1,
        paired_weight: float = 1.0,
        temperature: float = 0.1,
        modalities: tuple[str, str] = ("text", "image"),
        max_nodes: int = 512,
        input_skip: bool = True,
    ) -> None:
        super().__init__(
            meta, target_edge_types, hidden_channels, out_channels, num_layers, dropout
        )
        for arg, value in (
            ("adversarial_weight", adversarial_weight),
            ("paired_weight", paired_weight),
        ):
            if value < 0:
                raise ModelConfigError(f"{arg} must be non-negative, got {value!r}")
        if temperature <= 0:
            raise ModelConfigError(f"temperature must be positive, got {temperature!r}")
        if max_nodes < 2:
            raise ModelConfigError(f"max_nodes must be at least 2, got {max_nodes!r}")
        pair = tuple(modalities)
        if len(pair) != 2 or pair[0] == pair[1]:
            raise ModelConfigError(f"modalities must name two modalities, got {modalities!r}")
        self.alignment_types = tuple(
            t for t in meta.node_types if set(pair) <= set(meta.modalities[t])
        )
        if not self.alignment_types:
            carried = {t: list(m) for t, m in meta.modalities.items() if m}
            raise ModelConfigError(
                f"modalities {pair!r}: no node type carries both (the graph has {carried}), so "
                "there is nothing to align"
            )
        self.adversarial_weight = adversarial_weight
        self.paired_weight = paired_weight
        self.temperature = temperature
        self.modalities = pair
        self.max_nodes = max_nodes
        self.encoders = ModalityEncoders(meta, hidden_channels, out_channels, num_layers, dropout)
        self.discriminator = (
            MLP([out_channels, hidden_channels, 1], dropout=dropout, norm=None)
            if adversarial_weight > 0
            else None
        )
        self.skip = FeatureSkip(meta, out_channels) if input_skip else None
        self.decoder = DistMultDecoder(self.target_edge_types, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.encoders.reset_parameters()
        if self.discriminator is not None:
            self.discriminator.reset_parameters()
        if self.skip is not None:
            self.skip.reset_parameters()
        self.decoder.reset_parameters()

    def forward(self, data: HeteroData) -> dict[str, Tensor]:
        num_nodes = num_nodes_dict(data, self.meta)
        z = self.encoders.fuse(self.encoders.encode(data, num_nodes), num_nodes)
        return z if self.skip is None else self.skip.add_to(z, data, num_nodes)

    def paired_views(self, data: HeteroData) -> tuple[Tensor, Tensor] | None:
        """``(u, w)``: the first and the second modality alone of at most ``max_nodes`` nodes
        of ``data`` carrying both (not held out for retrieval), each embedded as a
        single-modality query is; ``None`` when fewer than two such nodes are in ``data``."""
        first, second = self.modalities
        drawn = paired_rows(data, self.alignment_types, first, second, self.max_nodes)
        if not drawn:
            return None
        views_u, views_w = [], []
        for t, rows in drawn:
            for modality, views in ((first, views_u), (second, views_w)):
                view = isolated_view(self.meta, t, modality, data[t][f"{modality}_x"][rows])
                views.append(self(view)[t])
        return torch.cat(views_u), torch.cat(views_w)

    def discriminator_loss(self, u: Tensor, w: Tensor) -> Tensor:
        """:math:`\\mathcal{L}_D` of first-modality points ``u`` (label 0) and second-modality
        points ``w`` (label 1), both L2-normalised first."""
        if self.discriminator is None:
            raise ModelConfigError("adversarial_weight=0: the model has no discriminator")
        logit_u = self.discriminator(F.normalize(u, dim=-1)).view(-1)
        logit_w = self.discriminator(F.normalize(w, dim=-1)).view(-1)
        return F.binary_cross_entropy_with_logits(
            logit_u, torch.zeros_like(logit_u)
        ) + F.binary_cross_entropy_with_logits(logit_w, torch.ones_like(logit_w))

    @torch.no_grad()
    def discriminator_accuracy(self, data: HeteroData) -> float | None:
        """The share of the drawn points of :meth:`paired_views` whose modality :math:`D` tells
        right (0.5: it cannot tell them apart), in the model's current mode (dropout in
        training); ``None`` when none can be drawn."""
        if self.discriminator is None:
            raise ModelConfigError("adversarial_weight=0: the model has no discriminator")
        views = self.paired_views(data)
        if views is None:
            return None
        u, w = views
        right_u = self.discriminator(F.normalize(u, dim=-1)).view(-1) < 0
        right_w = self.discriminator(F.normalize(w, dim=-1)).view(-1) > 0
        return float(torch.cat([right_u, right_w]).float().mean())

    def auxiliary_loss(self, data: HeteroData, z: Mapping[str, Tensor]) -> Tensor | None:
        """``paired_weight`` times the InfoNCE between :meth:`paired_views`, plus the
        discriminator's loss through a gradient reversal of strength ``adversarial_weight``;
        ``None`` when both weights are 0 or fewer than two paired nodes are in ``data``."""
        if self.paired_weight == 0 and self.discriminator is None:
            return None
        views = self.paired_views(data)
        if views is None:
            return None
        u, w = views
        loss = self.paired_weight * info_nce(u, w, self.temperature)
        if self.discriminator is not None:
            scale = self.adversarial_weight
            loss = loss + self.discriminator_loss(grad_reverse(u, scale), grad_reverse(w, scale))
        return loss

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, adversarial_weight={self.adversarial_weight}, "
            f"paired_weight={self.paired_weight}, modalities={self.modalities}"
        )
