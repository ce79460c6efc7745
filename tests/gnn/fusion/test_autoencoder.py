"""The multimodal autoencoder: the generic model case, its reconstruction, missing modalities."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmgraph.gnn.fusion import MultimodalAutoencoder
from mmgraph.gnn.models import GraphMeta, isolated_view

from ..models import cases
from ..models.cases import TARGETS, toy_graph


class TestMultimodalAutoencoder(cases.ModelCase):
    cls = MultimodalAutoencoder


class TestMultimodalAutoencoderWithoutSkip(cases.ModelCase):
    cls = MultimodalAutoencoder
    kwargs = {"input_skip": False}


def _model(**overrides) -> MultimodalAutoencoder:
    torch.manual_seed(0)
    options = {"hidden_channels": 16, "out_channels": 8, "dropout": 0.0, **overrides}
    return MultimodalAutoencoder(GraphMeta.from_data(toy_graph()), TARGETS, **options)


def test_training_on_the_reconstruction_lowers_it() -> None:
    data = toy_graph()
    model = _model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = model.reconstruction_loss(data)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_a_node_missing_a_modality_is_embedded_from_the_others() -> None:
    data = toy_graph()  # item 0 lacks text, item 1 the image, item 2 both
    model = _model().eval()
    meta = GraphMeta.from_data(data)
    with torch.no_grad():
        z = model(data)["Item"]
        image_alone = model(isolated_view(meta, "Item", "image", data["Item"].image_x[:1]))
        text_alone = model(isolated_view(meta, "Item", "text", data["Item"].text_x[1:2]))
    assert torch.isfinite(z).all() and bool((z[:3].abs().sum(dim=1) > 0).all())
    # The absent modality's zeros play no part: the node is its present modality alone.
    torch.testing.assert_close(z[0], image_alone["Item"][0])
    torch.testing.assert_close(z[1], text_alone["Item"][0])
    # With neither, the node gets its type's learned vector (the skip adds nothing).
    torch.testing.assert_close(z[2], model.encoders.fallback["Item"])


def test_held_out_nodes_only_reconstruct_each_modality_from_itself() -> None:
    data = toy_graph()
    data["Item"].contrastive_exclude = torch.ones(data["Item"].num_nodes, dtype=torch.bool)
    model = _model().eval()
    with torch.no_grad():
        loss = model.reconstruction_loss(data)
        expected = 0.0
        for modality in ("image", "text"):
            rows = [
                F.normalize(data[t][f"{modality}_x"][data[t][f"{modality}_mask"]], dim=-1)
                for t in ("Item", "Tag")
                if f"{modality}_x" in data[t]
            ]
            x = torch.cat(rows)
            out = model.reconstructors[modality](model.encoders.encode_rows(modality, x))
            expected += (out - x).pow(2).sum(dim=-1).mean()
    torch.testing.assert_close(loss, expected)


def test_reconstruction_weight_zero_adds_no_loss() -> None:
    data = toy_graph()
    model = _model(reconstruction_weight=0.0)
    assert model.auxiliary_loss(data, model(data)) is None
    assert _model().auxiliary_loss(data, model(data)) is not None
