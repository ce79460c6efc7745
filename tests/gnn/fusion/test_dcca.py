"""Deep CCA: its objective against closed-form CCA, training that stops on held-out pairs and
keeps the best epoch, single-modality embeddings, state through safetensors, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from torch_geometric.data import HeteroData

from mmgraph.gnn.fusion.cca import CCA
from mmgraph.gnn.fusion.cca_embedding import CCABaselineError
from mmgraph.gnn.fusion.dcca import DeepCCA, total_correlation
from mmgraph.gnn.fusion.dcca_embedding import DCCAEmbedding
from mmgraph.gnn.metrics import retrieval_recall
from mmgraph.gnn.models import ModelConfigError
from mmgraph.gnn.train import TrainConfig


def _graph(n: int = 300, seed: int = 0) -> HeteroData:
    """``n`` items whose text (12-d) and image (10-d) are two nonlinear images of one 4-d
    latent; items 0-9 lack the image, tags carry text only."""
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, 4, generator=gen)
    data = HeteroData()
    data["Item"].num_nodes = n
    data["Item"].text_x = torch.tanh(latent @ torch.randn(4, 12, generator=gen))
    data["Item"].image_x = (latent @ torch.randn(4, 10, generator=gen)).relu()
    data["Item"].image_x += 0.05 * torch.randn(n, 10, generator=gen)
    data["Item"].text_mask = torch.ones(n, dtype=torch.bool)
    data["Item"].image_mask = torch.arange(n) >= 10
    data["Tag"].num_nodes = 5
    data["Tag"].text_x = torch.randn(5, 12, generator=gen)
    data["Tag"].text_mask = torch.ones(5, dtype=torch.bool)
    return data


def _fit(**options) -> DCCAEmbedding:
    settings = {"hidden_channels": 32, "out_channels": 4, **options}
    config = TrainConfig(epochs=60, patience=60, lr=0.01, seed=0)
    return DCCAEmbedding(**settings).fit(_graph(), {"Item": torch.arange(200, 300)}, config)


def test_total_correlation_is_closed_form_ccas_sum_of_correlations() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 3))
    x = z @ rng.normal(size=(3, 6)) + 0.5 * rng.normal(size=(400, 6))
    y = z @ rng.normal(size=(3, 5)) + 0.5 * rng.normal(size=(400, 5))
    expected = CCA(n_components=5, reg=1e-3).fit(x, y).canonical_correlations_.sum()
    found = total_correlation(torch.from_numpy(x), torch.from_numpy(y), reg=1e-3)
    assert found.item() == pytest.approx(expected, rel=1e-6)


def test_total_correlation_has_finite_gradients_with_dead_units() -> None:
    a = torch.randn(50, 6, requires_grad=True)
    b = torch.randn(50, 6, requires_grad=True)
    dead = torch.cat([a[:, :3], torch.zeros(50, 3)], dim=1)  # three units that never fire
    total_correlation(dead, b, reg=1e-3).backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_training_keeps_the_epoch_with_the_best_held_out_correlation() -> None:
    model = _fit()
    corr = [row["val_corr"] for row in model.history]
    assert model.best_epoch == 1 + int(np.argmax(corr))
    assert max(corr) > corr[0] + 0.5  # it learned: four latent factors, at most 4.0
    # the embeddings pair a held-out item's text with its own image, far above chance (0.1)
    graph = _graph()
    text = model.transform_modality("text", graph["Item"].text_x[200:].numpy())
    image = model.transform_modality("image", graph["Item"].image_x[200:].numpy())
    assert text.shape == (100, 4) and text.dtype == np.float32
    assert retrieval_recall(text, image)["recall@10"] > 0.5


def test_patience_stops_training() -> None:
    config = TrainConfig(epochs=200, patience=3, lr=0.5, seed=0)
    model = DCCAEmbedding(hidden_channels=16, out_channels=4).fit(_graph(), None, config)
    assert len(model.history) <= model.best_epoch + 3 < 200


def test_nodes_are_embedded_from_what_they_have_and_the_state_round_trips(tmp_path) -> None:
    model = _fit()
    graph = _graph()
    z = model.embed(graph)
    assert z["Item"].shape == (300, 4) and z["Tag"].shape == (5, 4)
    np.testing.assert_allclose(
        z["Item"][:10].numpy(), model.transform_modality("text", graph["Item"].text_x[:10].numpy())
    )
    save_file(model.state_dict(), str(tmp_path / "weights.safetensors"))
    loaded = DCCAEmbedding.from_state_dict(load_file(str(tmp_path / "weights.safetensors")))
    for modality in ("text", "image"):
        x = graph["Item"][f"{modality}_x"][:7].numpy()
        np.testing.assert_allclose(
            loaded.transform_modality(modality, x), model.transform_modality(modality, x)
        )


def test_a_graph_without_images_is_refused_naming_what_is_missing() -> None:
    graph = _graph()
    del graph["Item"].image_x, graph["Item"].image_mask
    with pytest.raises(CCABaselineError, match="deep CCA needs at least 8 nodes with both text"):
        DCCAEmbedding().fit(graph)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"hidden_channels": 0}, "hidden_channels"),
        ({"out_channels": 0}, "out_channels"),
        ({"num_layers": 0}, "num_layers"),
        ({"dropout": 1.0}, "dropout"),
        ({"reg": 0.0}, "reg"),
        ({"val_ratio": 0.0}, "val_ratio"),
        ({"batch_size": 1}, "batch_size"),
    ],
)
def test_bad_settings_are_refused_naming_the_argument(options: dict, match: str) -> None:
    with pytest.raises(ModelConfigError, match=match):
        DCCAEmbedding(**options)


def test_the_networks_map_each_view_to_the_output_size() -> None:
    network = DeepCCA(12, 10, hidden_channels=8, out_channels=3)
    a, b = network(torch.randn(5, 12), torch.randn(5, 10))
    assert a.shape == b.shape == (5, 3)
