"""The deep CCA baseline as an embedding model: :class:`~mmgraph.gnn.fusion.dcca.DeepCCA`
between ``text`` and ``image``, then a linear CCA of its outputs.

Trained on the nodes that carry both modalities, the retrieval nodes held out (as closed-form
CCA is fitted); a share of those pairs is kept aside, and training stops when their total
correlation has not improved for ``patience`` epochs, keeping the best epoch's weights. A node's
embedding is the mean of the canonical projections of the modalities it has, as for
:class:`~mmgraph.gnn.fusion.cca_embedding.CCAEmbedding`, and links are scored by cosine.
Everything fitted is a few arrays: :meth:`DCCAEmbedding.state_dict` is ready for safetensors.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData

from mmgraph.gnn import distributed
from mmgraph.gnn.fusion.cca import CCA
from mmgraph.gnn.fusion.cca_embedding import CCABaselineError, CCAEmbedding, paired_matrices
from mmgraph.gnn.fusion.dcca import DeepCCA
from mmgraph.gnn.models.base import ModelConfigError
from mmgraph.gnn.train import TrainConfig

_ARCHITECTURE = ("x_channels", "y_channels", "hidden_channels", "out_channels", "num_layers")


class DCCAEmbedding(CCAEmbedding):
    """Deep CCA between the ``text`` and ``image`` modalities, as node embeddings.

    Both modalities are L2-normalised before their networks (the encoders' cosine geometry,
    on one scale).

    Args:
        hidden_channels: hidden size of both networks.
        out_channels: output size of both networks, and the number of canonical dimensions
            kept (the embedding size, at most the pairs' count less one).
        num_layers: hidden layers of each network.
        dropout: dropout between layers.
        reg: ridge added to the output covariances, in training and in the final linear CCA.
        val_ratio: share of the training pairs kept aside for early stopping.
        batch_size: pairs per optimiser step (the correlation is estimated on each batch, so
            it should be large); a smaller last batch is merged into the one before it.
    """

    name = "dcca"

    def __init__(
        self,
        hidden_channels: int = 256,
        out_channels: int = 64,
        num_layers: int = 2,
        dropout: float = 0.0,
        reg: float = 1e-3,
        val_ratio: float = 0.1,
        batch_size: int = 4096,
    ) -> None:
        if not 0.0 < val_ratio < 1.0:
            raise ModelConfigError(f"val_ratio must be in (0, 1), got {val_ratio!r}")
        if batch_size < 2:
            raise ModelConfigError(f"batch_size must be at least 2, got {batch_size!r}")
        # Checks the network's settings now, before any data is read.
        DeepCCA(1, 1, hidden_channels, out_channels, num_layers, dropout, reg)
        self.options = {
            "hidden_channels": hidden_channels,
            "out_channels": out_channels,
            "num_layers": num_layers,
            "dropout": dropout,
            "reg": reg,
        }
        self.val_ratio = val_ratio
        self.batch_size = batch_size
        self.network: DeepCCA | None = None
        self.cca = CCA(n_components=out_channels, reg=reg)
        self.history: list[dict[str, float]] = []
        self.best_epoch = -1

    def fit(
        self,
        data: HeteroData,
        exclude: dict[str, torch.Tensor] | None = None,
        config: TrainConfig | None = None,
    ) -> DCCAEmbedding:
        """Train on the nodes of ``data`` having both modalities, except ``exclude``'s, with
        ``config``'s epochs, patience, learning rate, weight decay, time bound, device and
        seed; then fit the linear CCA on the best networks' outputs of all those pairs."""
        config = config or TrainConfig()
        x, y = paired_matrices(data, exclude, 8, "deep CCA")
        x = F.normalize(torch.from_numpy(x).float(), dim=-1)
        y = F.normalize(torch.from_numpy(y).float(), dim=-1)
        torch.manual_seed(config.seed)
        device = distributed.resolve_device(config.device)
        network = DeepCCA(x.size(1), y.size(1), **self.options).to(device)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(config.seed))
        n_val = max(2, round(self.val_ratio * len(x)))
        val, train = order[:n_val], order[n_val:]
        x_val, y_val = x[val].to(device), y[val].to(device)
        optimizer = torch.optim.Adam(
            network.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        best_corr, best_state = -1.0, copy.deepcopy(network.state_dict())
        self.history, self.best_epoch = [], -1
        started = time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            network.train()
            losses = []
            for batch in _batches(train[torch.randperm(len(train))], self.batch_size):
                optimizer.zero_grad()
                loss = -network.correlation(x[batch].to(device), y[batch].to(device))
                loss.backward()
                optimizer.step()
                losses.append(float(loss.detach()))
            network.eval()
            with torch.no_grad():
                corr = float(network.correlation(x_val, y_val))
            seconds = time.perf_counter() - t0
            self.history.append(
                {
                    "epoch": epoch,
                    "loss": float(np.mean(losses)),
                    "val_corr": corr,
                    "seconds": seconds,
                }
            )
            if corr > best_corr:
                best_corr, self.best_epoch = corr, epoch
                best_state = copy.deepcopy(network.state_dict())
            elif epoch - self.best_epoch >= config.patience:
                break
            if (
                config.max_seconds is not None
                and time.perf_counter() - started > config.max_seconds
            ):
                break
        network.load_state_dict(best_state)
        self.network = network.cpu().eval()
        with torch.no_grad():
            a, b = self.network(x, y)
        limit = min(self.options["out_channels"], len(x) - 1)
        self.cca = CCA(n_components=limit, reg=self.options["reg"]).fit(
            a.double().numpy(), b.double().numpy()
        )
        return self

    def transform_modality(self, modality: str, x: np.ndarray) -> np.ndarray:
        """Canonical projection of raw ``text`` or ``image`` vectors through their network."""
        if self.network is None:
            raise CCABaselineError("deep CCA must be fitted (fit or from_state_dict) before use")
        if modality not in ("text", "image"):
            raise CCABaselineError(f"deep CCA embeds only ('text', 'image'), not {modality!r}")
        network = self.network.f_x if modality == "text" else self.network.f_y
        with torch.no_grad():
            out = network(F.normalize(torch.as_tensor(x, dtype=torch.float32), dim=-1))
        return super().transform_modality(modality, out.double().numpy())

    def state_dict(self) -> dict[str, np.ndarray]:
        """The networks' weights (``net.*``), their sizes (``arch.*``) and the linear CCA's
        arrays (``cca.*``), all numpy."""
        if self.network is None:
            raise CCABaselineError("deep CCA must be fitted before its state is taken")
        state = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.network.state_dict().items()}
        for key in _ARCHITECTURE:
            state[f"arch.{key}"] = np.array(getattr(self.network, key), dtype=np.int64)
        for key in ("dropout", "reg"):
            state[f"arch.{key}"] = np.array(getattr(self.network, key), dtype=np.float64)
        state.update({f"cca.{k}": v for k, v in self.cca.state_dict().items()})
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> DCCAEmbedding:
        """Rebuild a fitted :class:`DCCAEmbedding` from :meth:`state_dict`'s arrays."""
        missing = [
            f"arch.{k}" for k in (*_ARCHITECTURE, "dropout", "reg") if f"arch.{k}" not in state
        ]
        if missing:
            raise CCABaselineError(f"deep CCA state is missing {missing}")
        sizes = {k: int(state[f"arch.{k}"]) for k in _ARCHITECTURE}
        network = DeepCCA(
            **sizes, dropout=float(state["arch.dropout"]), reg=float(state["arch.reg"])
        )
        weights = {
            k[4:]: torch.from_numpy(np.array(v)) for k, v in state.items() if k.startswith("net.")
        }
        network.load_state_dict(weights)
        model = cls(
            hidden_channels=network.hidden_channels,
            out_channels=network.out_channels,
            num_layers=network.num_layers,
            dropout=network.dropout,
            reg=network.reg,
        )
        model.network = network.eval()
        model.cca = CCA.from_state_dict(
            {k[4:]: v for k, v in state.items() if k.startswith("cca.")}
        )
        return model


def _batches(order: torch.Tensor, size: int) -> list[torch.Tensor]:
    """``order`` in chunks of ``size``, a last chunk smaller than half of ``size`` merged into
    the one before (a covariance needs rows)."""
    chunks = list(order.split(size))
    if len(chunks) > 1 and len(chunks[-1]) < size // 2:
        chunks[-2:] = [torch.cat(chunks[-2:])]
    return chunks
