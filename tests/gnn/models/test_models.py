"""Every model through the generic case, then what is specific to each."""

from __future__ import annotations

import pytest
import torch

from mmgraph.gnn.fusion import EarlyFusion, HybridFusion, LateFusion
from mmgraph.gnn.models import GCN, HGT, MGAT, MODELS, GraphMeta, ModelConfigError, isolated_view
from mmgraph.gnn.models.decoder import DistMultDecoder
from mmgraph.gnn.models.inputs import FeatureSkip

from . import cases
from .cases import TARGETS, toy_graph


class TestGCN(cases.ModelCase):
    cls = GCN
    max_loss_ratio = 0.7


class TestMGAT(cases.ModelCase):
    cls = MGAT
    max_loss_ratio = 0.7


class TestMGATClassicAttention(cases.ModelCase):
    cls = MGAT
    kwargs = {"attention": "gat", "heads": 1}


class TestMGATContrastive(cases.ModelCase):
    cls = MGAT
    kwargs = {"contrastive_weight": 0.5}


class TestHGT(cases.ModelCase):
    cls = HGT
    max_loss_ratio = 0.7


class TestEarlyFusion(cases.ModelCase):
    cls = EarlyFusion


class TestLateFusion(cases.ModelCase):
    cls = LateFusion


class TestHybridFusion(cases.ModelCase):
    cls = HybridFusion


def test_registry_names_every_model() -> None:
    assert {name: cls.__name__ for name, cls in MODELS.items()} == {
        "gcn": "GCN",
        "mgat": "MGAT",
        "hgt": "HGT",
        "early": "EarlyFusion",
        "late": "LateFusion",
        "hybrid": "HybridFusion",
        "autoencoder": "MultimodalAutoencoder",
        "adversarial": "AdversarialAlignment",
    }


def test_graph_meta_reads_types_and_modalities_and_round_trips() -> None:
    meta = GraphMeta.from_data(toy_graph())
    assert meta.node_types == ("Category", "Item", "Tag")
    assert meta.modalities == {"Category": {}, "Item": {"image": 12, "text": 8}, "Tag": {"text": 8}}
    assert ("Tag", "rev_HAS_TAG", "Item") in meta.edge_types
    assert meta.all_modalities == ("image", "text")
    assert GraphMeta.from_dict(meta.to_dict()) == meta


def test_isolated_view_holds_one_modality_on_isolated_nodes() -> None:
    view = isolated_view(toy_graph(), "Item", "image", torch.ones(5, 12))
    assert view["Item"].num_nodes == 5 and view["Tag"].num_nodes == 0
    assert view["Item"].image_mask.all() and not view["Item"].text_mask.any()
    assert all(store.edge_index.size(1) == 0 for store in view.edge_stores)


@pytest.mark.parametrize(
    ("node_type", "modality", "dim", "match"),
    [("Shop", "text", 8, "Shop"), ("Tag", "image", 12, "image"), ("Item", "text", 9, r"\(n, 8\)")],
)
def test_isolated_view_refuses_what_the_schema_lacks(
    node_type: str, modality: str, dim: int, match: str
) -> None:
    with pytest.raises(ModelConfigError, match=match):
        isolated_view(toy_graph(), node_type, modality, torch.ones(2, dim))


def test_distmult_starts_as_a_scaled_dot_product() -> None:
    a, b = torch.randn(3, 4), torch.randn(3, 4)
    for scale in (1.0, 10.0):
        decoder = DistMultDecoder(TARGETS, 4, scale=scale)
        assert torch.allclose(decoder(a, b, TARGETS[0]), scale * (a * b).sum(-1))
    with torch.no_grad():
        decoder.relation(TARGETS[0]).fill_(1.0)
    decoder.reset_parameters()
    assert torch.all(decoder.relation(TARGETS[0]) == 10.0)
    with pytest.raises(ModelConfigError, match="scale"):
        DistMultDecoder(TARGETS, 4, scale=0.0)


def test_mgat_weights_cover_exactly_the_present_modalities() -> None:
    data = toy_graph()
    model = MGAT(GraphMeta.from_data(data), TARGETS, hidden_channels=16, out_channels=8).eval()
    weights = model.modality_weights(data)
    assert model.modalities == ("image", "text")
    item = weights["Item"]
    present = torch.stack([data["Item"].image_mask, data["Item"].text_mask], dim=1)
    assert torch.all(item[~present] == 0)
    has_any = present.any(dim=1)
    assert torch.allclose(item[has_any].sum(dim=1), torch.ones(int(has_any.sum())))
    assert torch.all(item[~has_any] == 0)  # item 2 has no modality: fallback branch
    assert torch.allclose(weights["Tag"][1:, 1], torch.ones(5)) and weights["Tag"][0].sum() == 0
    assert torch.all(weights["Category"] == 0)
    z = model(data)
    assert torch.isfinite(z["Item"][:3]).all() and z["Item"][:3].abs().sum(dim=1).gt(0).all()


@pytest.mark.parametrize("num_layers", [1, 2])
def test_mgat_runs_every_layer(num_layers: int) -> None:
    """Tag 1 is two hops from tag 4 (tag - item - tag): only a second layer carries it over."""
    data = toy_graph()
    model = MGAT(
        GraphMeta.from_data(data),
        TARGETS,
        hidden_channels=16,
        out_channels=8,
        num_layers=num_layers,
    ).eval()
    with torch.no_grad():
        before = model(data)["Tag"][1]
        data["Tag"].text_x[4] += 5.0
        after = model(data)["Tag"][1]
    assert torch.allclose(before, after) is (num_layers == 1)


def test_mgat_contrastive_term() -> None:
    data = toy_graph()
    meta = GraphMeta.from_data(data)
    assert MGAT(meta, TARGETS).auxiliary_loss(data, {}) is None
    model = MGAT(meta, TARGETS, hidden_channels=16, out_channels=8, contrastive_weight=2.0)
    loss = model.auxiliary_loss(data, {})
    assert loss is not None and loss.dim() == 0 and torch.isfinite(loss) and loss > 0
    for node_type in data.node_types:  # nodes held out for retrieval never enter the term
        data[node_type].contrastive_exclude = torch.ones(data[node_type].num_nodes, dtype=bool)
    assert model.auxiliary_loss(data, {}) is None
    with pytest.raises(ModelConfigError, match="contrastive_modalities"):
        MGAT(meta, TARGETS, contrastive_weight=1.0, contrastive_modalities=("text", "audio"))
    with pytest.raises(ModelConfigError, match="temperature"):
        MGAT(meta, TARGETS, temperature=0.0)


def test_mgat_contrastive_training_aligns_text_with_image() -> None:
    """Training the InfoNCE term alone raises how often an item's text-alone embedding has its
    own image-alone embedding as nearest neighbour."""
    data = toy_graph(num_items=30)
    meta = GraphMeta.from_data(data)
    torch.manual_seed(0)
    model = MGAT(
        meta, TARGETS, hidden_channels=16, out_channels=8, dropout=0.0, contrastive_weight=1.0
    )
    both = (data["Item"].text_mask & data["Item"].image_mask).nonzero().view(-1)

    def matched() -> float:
        with torch.no_grad():
            text = model(isolated_view(meta, "Item", "text", data["Item"].text_x[both]))["Item"]
            image = model(isolated_view(meta, "Item", "image", data["Item"].image_x[both]))["Item"]
        sim = (
            torch.nn.functional.normalize(text, dim=-1)
            @ torch.nn.functional.normalize(image, dim=-1).t()
        )
        groups = both % cases.GROUPS
        return (groups[sim.argmax(dim=1)] == groups).float().mean().item()

    start = matched()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(30):
        optimizer.zero_grad()
        model.auxiliary_loss(data, {}).backward()
        optimizer.step()
    assert matched() > max(start, 0.9)


@pytest.mark.parametrize("heads", [3, 7])
def test_hgt_refuses_heads_not_dividing_hidden(heads: int) -> None:
    with pytest.raises(
        ModelConfigError, match=rf"hidden_channels \(got 16\).*heads \(got {heads}\)"
    ):
        HGT(GraphMeta.from_data(toy_graph()), TARGETS, hidden_channels=16, heads=heads)


def test_hgt_keeps_node_types_without_incoming_edges() -> None:
    """A batch with only item -> category edges: items receive nothing, their input passes."""
    data = toy_graph()
    model = HGT(GraphMeta.from_data(data), TARGETS, hidden_channels=16, out_channels=8).eval()
    for edge_type in list(data.edge_types):
        if edge_type != ("Item", "IN", "Category"):
            del data[edge_type]
    z = model(data)
    assert all(torch.isfinite(emb).all() for emb in z.values())
    assert z["Item"].shape == (12, 8)


def test_late_fusion_weights_embedding_blocks_and_skips_unshared_modalities() -> None:
    data = toy_graph()
    model = LateFusion(GraphMeta.from_data(data), TARGETS, hidden_channels=16, out_channels=8)
    model.eval()
    with torch.no_grad():
        model.modality_logits.copy_(torch.tensor([0.0, 1.0]))
        weights = model.modality_weights()
        assert list(weights) == ["image", "text"]
        assert sum(weights.values()) == pytest.approx(1.0)
        z = model(data)
        assert z["Item"].shape == (12, 16)
        assert torch.all(z["Item"][0, 8:] == 0)  # item 0 lacks text
        # item 0 has only the image, tag 1 only text: nothing shared, logit 0
        pair = torch.tensor([[0, 0], [1, 1]])
        logits = model.link_logits(z, TARGETS[0], pair)
        assert logits[0] == 0
        # item 3 and tag 1 share text only: the weighted text score renormalised to weight 1
        pair = torch.tensor([[3], [1]])
        text_rel = model.decoder.relation(TARGETS[0])[8:]
        expected = (z["Item"][3, 8:] * text_rel * z["Tag"][1, 8:]).sum() / weights["text"]
        assert torch.allclose(model.link_logits(z, TARGETS[0], pair), expected)


def test_late_fusion_refuses_a_graph_without_modalities() -> None:
    meta = GraphMeta(("A",), (("A", "R", "A"),), {"A": {}})
    with pytest.raises(ModelConfigError, match="modality"):
        LateFusion(meta, [("A", "R", "A")])


def test_hybrid_logit_mixes_early_and_late() -> None:
    data = toy_graph()
    model = HybridFusion(GraphMeta.from_data(data), TARGETS, hidden_channels=16, out_channels=8)
    model.eval()
    with torch.no_grad():
        model.mix_logit.fill_(0.7)
        a = model.mix()
        z = model(data)
        assert z["Item"].shape == (12, 8 + 16)
        edges = data[TARGETS[1]].edge_index
        early = model.early.link_logits(model.early(data), TARGETS[1], edges)
        late = model.late.link_logits(model.late(data), TARGETS[1], edges)
        assert torch.allclose(
            model.link_logits(z, TARGETS[1], edges), a * early + (1 - a) * late, atol=1e-5
        )


def test_feature_skip_shares_one_map_per_modality_across_node_types() -> None:
    data = toy_graph()
    skip = FeatureSkip(GraphMeta.from_data(data), 8)
    # item 5 and tag 2 get the same text: only item 5's image tells their skips apart
    data["Tag"].text_x[2] = data["Item"].text_x[5]
    num_nodes = {t: data[t].num_nodes for t in data.node_types}
    with torch.no_grad():
        parts = skip.project(data, num_nodes)
        out = skip(data, num_nodes)
    assert torch.allclose(parts["Item"]["text"][0][5], parts["Tag"]["text"][0][2])
    item = (parts["Item"]["text"][0][5] + parts["Item"]["image"][0][5]) / 2
    assert torch.allclose(out["Item"][5], item)
    assert torch.allclose(out["Item"][0], parts["Item"]["image"][0][0])  # item 0: image only
    assert torch.all(out["Item"][2] == 0)  # item 2: no modality
    assert torch.all(out["Category"] == 0)


def test_feature_skip_refuses_one_modality_of_two_sizes() -> None:
    meta = GraphMeta(("A", "B"), (), {"A": {"text": 4}, "B": {"text": 5}})
    with pytest.raises(ModelConfigError, match="text"):
        FeatureSkip(meta, 8)


@pytest.mark.parametrize("name", ["gcn", "mgat", "hgt", "early", "late", "hybrid"])
def test_input_skip_can_be_turned_off(name: str) -> None:
    data = toy_graph()
    on = MODELS[name](GraphMeta.from_data(data), TARGETS, hidden_channels=16, out_channels=8)
    off = MODELS[name](
        GraphMeta.from_data(data), TARGETS, hidden_channels=16, out_channels=8, input_skip=False
    )
    assert any("skip.lins" in key for key in on.state_dict())
    assert not any("skip.lins" in key for key in off.state_dict())


@pytest.mark.parametrize("cls", [HGT, MGAT])
def test_recomputed_layers_give_the_same_loss_and_gradients(cls) -> None:
    """Layers rebuilt in the backward pass give the loss and gradients of kept layers, with
    dropout on (its draws around the layers must not shift)."""
    data = toy_graph()
    model = cls(GraphMeta.from_data(data), TARGETS, hidden_channels=16, out_channels=8, dropout=0.5)
    results = []
    for recompute in (False, True):
        model.recompute_layers = recompute
        model.zero_grad()
        torch.manual_seed(0)
        loss = sum(z.square().sum() for z in model.train()(data).values())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    (kept_loss, kept_grads), (rebuilt_loss, rebuilt_grads) = results
    torch.testing.assert_close(rebuilt_loss, kept_loss)
    assert rebuilt_grads.keys() == kept_grads.keys()
    torch.testing.assert_close(rebuilt_grads, kept_grads)
