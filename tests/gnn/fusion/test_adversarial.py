"""Adversarial cross-modal alignment: the generic model case, the discriminator's game on a toy
whose two modalities are linear images of one latent, the paired retrieval there, refusals."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from mmgraph.gnn.fusion import AdversarialAlignment
from mmgraph.gnn.fusion.adversarial import grad_reverse
from mmgraph.gnn.metrics import retrieval_recall
from mmgraph.gnn.models import GraphMeta, ModelConfigError, isolated_view

from ..models import cases
from ..models.cases import TARGETS, toy_graph

LINK = ("Item", "LINK", "Item")


class TestAdversarialAlignment(cases.ModelCase):
    cls = AdversarialAlignment


class TestAdversarialAlignmentWithoutTheAdversary(cases.ModelCase):
    cls = AdversarialAlignment
    kwargs = {"adversarial_weight": 0.0}


def _latent_toy(n: int = 200, seed: int = 0) -> HeteroData:
    """``n`` items whose text (16-d) and image (12-d) are two linear images of one 6-d
    latent, plus a little noise; a few random links (the model needs a target)."""
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 6, generator=gen)
    data = HeteroData()
    data["Item"].num_nodes = n
    for modality, dim in (("text", 16), ("image", 12)):
        x = latent @ torch.randn(6, dim, generator=gen) + 0.05 * torch.randn(n, dim, generator=gen)
        data["Item"][f"{modality}_x"] = x
        data["Item"][f"{modality}_mask"] = torch.ones(n, dtype=torch.bool)
    data[LINK].edge_index = torch.randint(0, n, (2, 4 * n), generator=gen)
    return data


def _views(model: AdversarialAlignment, data: HeteroData) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item's text alone and image alone, as queries are embedded."""
    meta = GraphMeta.from_data(data)
    with torch.no_grad():
        u = model(isolated_view(meta, "Item", "text", data["Item"].text_x))["Item"]
        w = model(isolated_view(meta, "Item", "image", data["Item"].image_x))["Item"]
    return u, w


def test_the_encoders_fool_the_discriminator_and_pair_text_with_its_image() -> None:
    data = _latent_toy()
    torch.manual_seed(0)
    model = AdversarialAlignment(
        GraphMeta.from_data(data),
        [LINK],
        hidden_channels=32,
        out_channels=16,
        dropout=0.0,
        adversarial_weight=0.3,
        max_nodes=200,
    )
    # The discriminator alone first: it tells the untrained encoders' modalities apart.
    critic = torch.optim.Adam(model.discriminator.parameters(), lr=0.01)
    for _ in range(100):
        critic.zero_grad()
        u, w = model.paired_views(data)
        model.discriminator_loss(u.detach(), w.detach()).backward()
        critic.step()
    before = model.discriminator_accuracy(data)
    assert before > 0.9
    u, w = _views(model, data)
    random_recall = retrieval_recall(u.numpy(), w.numpy())["recall@1"]
    # Then the game (the paired term with it): the encoders learn to fool it.
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        optimizer.zero_grad()
        model.auxiliary_loss(data, {}).backward()
        optimizer.step()
    after = model.discriminator_accuracy(data)
    assert abs(after - 0.5) < 0.1, (before, after)
    u, w = _views(model, data)
    found = retrieval_recall(u.numpy(), w.numpy())
    # 200 candidates: chance is 0.005 at Recall@1 and 0.05 at Recall@10.
    assert found["recall@1"] > 0.5 and found["recall@10"] > 0.9, found
    assert found["recall@1"] > 10 * max(random_recall, 0.005)


def test_without_the_adversarial_term_there_is_no_discriminator() -> None:
    data = toy_graph()
    model = AdversarialAlignment(
        GraphMeta.from_data(data), TARGETS, hidden_channels=16, out_channels=8
    )
    off = AdversarialAlignment(
        GraphMeta.from_data(data),
        TARGETS,
        hidden_channels=16,
        out_channels=8,
        adversarial_weight=0.0,
    )
    assert model.discriminator is not None and off.discriminator is None
    assert not any(name.startswith("discriminator") for name in off.state_dict())
    with pytest.raises(ModelConfigError, match="no discriminator"):
        off.discriminator_accuracy(data)


def test_the_gradient_reversal_flips_and_scales_the_gradient() -> None:
    x = torch.randn(4, 3, requires_grad=True)
    (grad_reverse(x, 0.25) * 2.0).sum().backward()
    torch.testing.assert_close(x.grad, torch.full((4, 3), -0.5))


def test_a_graph_without_both_modalities_on_one_type_is_refused_naming_them() -> None:
    data = toy_graph()
    del data["Item"].image_x, data["Item"].image_mask
    with pytest.raises(ModelConfigError, match=r"no node type carries both.*'text'"):
        AdversarialAlignment(GraphMeta.from_data(data), TARGETS)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"adversarial_weight": -1.0}, "adversarial_weight"),
        ({"paired_weight": -0.5}, "paired_weight"),
        ({"temperature": 0.0}, "temperature"),
        ({"max_nodes": 1}, "max_nodes"),
        ({"modalities": ("text", "text")}, "modalities"),
    ],
)
def test_bad_settings_are_refused_naming_the_argument(overrides: dict, match: str) -> None:
    with pytest.raises(ModelConfigError, match=match):
        AdversarialAlignment(GraphMeta.from_data(toy_graph()), TARGETS, **overrides)
