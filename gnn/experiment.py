"""One keyword-only entry point per job: train and evaluate a model by name on a split, or every
model (and the GDS FastRP anchor) on one split, as PyKEEN's ``pipeline`` does.

The models resolve by name: the message-passing ``gcn``, ``mgat``, ``hgt``, the trained fusion
baselines ``early``, ``late``, ``hybrid``, ``autoencoder``, ``adversarial``
(:data:`mmgraph.gnn.models.MODELS`), and the projections ``cca`` (closed-form) and ``dcca`` (deep
CCA, trained on its own pairs). Every model sees the same split, candidates and seeds, so one
table compares them all.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch_geometric
from sklearn.linear_model import LogisticRegression
from torch_geometric.data import HeteroData

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.gnn.evaluate import Embedder, cosine_score, evaluate, held_out_scores
from mmgraph.gnn.fusion.cca_embedding import CCAEmbedding
from mmgraph.gnn.fusion.dcca_embedding import DCCAEmbedding
from mmgraph.gnn.models import MODELS, GraphMeta, isolated_view
from mmgraph.gnn.names import MODEL_NAMES, REPORT_METRICS
from mmgraph.gnn.runs import RunRecord, list_runs, new_run_id, save_run
from mmgraph.gnn.spaces import centered_unit
from mmgraph.gnn.split import LinkSplit
from mmgraph.gnn.train import TrainConfig, TrainResult, embed, resolve_device, train_model

log = logging.getLogger(__name__)

# Settings each model starts from; a caller's options override them.
DEFAULT_OPTIONS: dict[str, dict[str, Any]] = {
    "mgat": {"contrastive_weight": 0.5},
    "cca": {"n_components": 64},
}
QUERY_BATCH = 4096


class UnknownModelError(InvalidArgumentError):
    """A model name that is not one of :data:`MODEL_NAMES`."""


@dataclass
class ExperimentResult:
    """A trained and evaluated model: its metrics, training record, and run directory."""

    model: str
    metrics: dict[str, float | None]
    run_id: str | None = None
    path: Path | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    embeddings: dict[str, torch.Tensor] = field(default_factory=dict)


def run_experiment(
    *,
    model: str,
    split: LinkSplit,
    uids: dict[str, list[str]],
    train_config: TrainConfig | None = None,
    model_options: dict[str, Any] | None = None,
    home: Path | None = None,
    progress: Callable[[int, dict[str, float]], None] | None = None,
) -> ExperimentResult:
    """Train ``model`` on ``split``, evaluate it on the test edges, and (with ``home``) save it
    as a run directory whose embeddings cover the whole graph."""
    if model not in MODEL_NAMES:
        raise UnknownModelError(f"unknown model {model!r}; choose one of {list(MODEL_NAMES)}")
    config = train_config or TrainConfig()
    options = {**DEFAULT_OPTIONS.get(model, {}), **(model_options or {})}
    if model in ("cca", "dcca"):
        return _run_cca(model, split, uids, config, options, home)
    meta = GraphMeta.from_data(split.graph("val"))
    net = MODELS[model](meta, split.target_edge_types, **options)
    trained = train_model(net, split, config, progress)
    device = resolve_device(config.device)
    mini = config if trained.mode == "mini" else None
    embedder = Embedder(
        embed=lambda graph: embed(net, graph, device, mini),
        score=lambda z, et, index: net.link_logits(
            {t: v.to(device) for t, v in z.items()}, et, index.to(device)
        ).cpu(),
        embed_one=lambda t, m, x: _embed_one(net, meta, t, m, x, device),
    )
    metrics = evaluate(embedder, split)
    metrics["train_seconds"] = trained.seconds
    result = ExperimentResult(
        model, metrics, history=trained.history, train_seconds=trained.seconds
    )
    full = embedder.embed(split.full_graph())
    result.embeddings = full
    if home is not None:
        weights = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        _save(result, home, split, uids, meta, config, options, trained, full, embedder, weights)
    return result


def _embed_one(
    net: torch.nn.Module,
    meta: GraphMeta,
    node_type: str,
    modality: str,
    x: torch.Tensor,
    device: torch.device,
) -> torch.Tensor:
    """Embed nodes from one modality alone (isolated nodes), in batches."""
    parts = []
    with torch.no_grad():
        for start in range(0, x.size(0), QUERY_BATCH):
            view = isolated_view(
                meta, node_type, modality, x[start : start + QUERY_BATCH].to(device)
            )
            parts.append(net(view)[node_type].cpu())
    return torch.cat(parts) if parts else torch.empty(0)


def _run_cca(
    model: str,
    split: LinkSplit,
    uids: dict[str, list[str]],
    config: TrainConfig,
    options: dict[str, Any],
    home: Path | None,
) -> ExperimentResult:
    """A projection (closed-form CCA, or deep CCA trained on its own pairs with ``config``),
    scored by cosine."""
    started = time.perf_counter()
    if model == "dcca":
        cca = DCCAEmbedding(**options).fit(split.base, split.retrieval_nodes, config)
        trained = TrainResult(cca.best_epoch, -1.0, cca.history, mode="pairs")
    else:
        cca = CCAEmbedding(**options).fit(split.base, exclude=split.retrieval_nodes)
        trained = TrainResult(0, -1.0, mode="closed-form")
    seconds = trained.seconds = time.perf_counter() - started
    embedder = Embedder(
        embed=cca.embed,
        score=cosine_score,
        embed_one=lambda t, m, x: torch.from_numpy(cca.transform_modality(m, x.numpy())),
    )
    metrics = evaluate(embedder, split)
    metrics["train_seconds"] = seconds
    result = ExperimentResult(model, metrics, history=trained.history, train_seconds=seconds)
    full = cca.embed(split.full_graph())
    result.embeddings = full
    if home is not None:
        meta = GraphMeta.from_data(split.graph("val"))
        calibration = _calibrate(embedder, split)
        _save(
            result,
            home,
            split,
            uids,
            meta,
            config,
            options,
            trained,
            full,
            embedder,
            cca.state_dict(),
            calibration=calibration,
        )
    return result


def _calibrate(embedder: Embedder, split: LinkSplit) -> list[float]:
    """Logistic fit of cosine to link/no-link on validation edges: cosine -> probability."""
    z = embedder.embed(split.graph("val"))
    pos, neg = [], []
    for edge_type, held in split.val.items():
        p, n = held_out_scores(embedder, z, edge_type, held)
        pos.append(p)
        neg.append(n.ravel())
    x = np.concatenate(pos + neg)[:, None]
    y = np.concatenate([np.ones(sum(len(p) for p in pos)), np.zeros(sum(len(n) for n in neg))])
    fit = LogisticRegression(class_weight="balanced").fit(x, y)
    return [float(fit.coef_[0, 0]), float(fit.intercept_[0])]


def _save(
    result: ExperimentResult,
    home: Path,
    split: LinkSplit,
    uids: dict[str, list[str]],
    meta: GraphMeta,
    config: TrainConfig,
    options: dict[str, Any],
    trained: TrainResult,
    full: dict[str, torch.Tensor],
    embedder: Embedder,
    weights: dict[str, Any],
    calibration: list[float] | None = None,
) -> None:
    raw_spaces: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {
        "fused": {t: (z.numpy(), np.arange(z.size(0))) for t, z in full.items()}
    }
    if embedder.embed_one is not None:
        for modality in ("text", "image"):
            per_type = {}
            for node_type, mods in meta.modalities.items():
                if modality not in mods:
                    continue
                rows = torch.nonzero(split.base[node_type][f"{modality}_mask"]).flatten()
                if rows.numel():
                    x = split.base[node_type][f"{modality}_x"][rows]
                    per_type[node_type] = (
                        embedder.embed_one(node_type, modality, x).numpy(),
                        rows.numpy(),
                    )
            if per_type:
                raw_spaces[modality] = per_type
    centers = {
        space: {t: emb.mean(axis=0) for t, (emb, _) in per_type.items() if len(emb)}
        for space, per_type in raw_spaces.items()
    }
    spaces = {
        space: {
            t: (centered_unit(emb, centers[space].get(t, 0.0)), rows)
            for t, (emb, rows) in per_type.items()
        }
        for space, per_type in raw_spaces.items()
    }
    run_id = new_run_id(result.model)
    record = RunRecord(
        run_id=run_id,
        model=result.model,
        config={
            "model_options": options,
            "code": code_version(),
            "train": config.to_dict(),
            "split": split.describe(),
            "mode": trained.mode,
            "best_epoch": trained.best_epoch,
            **({"calibration": calibration} if calibration else {}),
        },
        metrics=result.metrics,
        uids=uids,
        meta=meta,
        target_edge_types=split.target_edge_types,
        raw={t: z.numpy() for t, z in full.items()},
        spaces=spaces,
        weights=weights,
        history=trained.history,
        centers=centers,
    )
    result.path = save_run(home, record)
    result.run_id = run_id


def feature_embeddings(graph: HeteroData) -> dict[str, torch.Tensor]:
    """The raw-feature anchor: each node's L2-normalised modalities side by side (every modality
    of the graph in name order, zeros where absent), so that cosine ranks a node's candidates by
    the encoders' own similarity over the modalities both ends carry. No training, no edges:
    what every model has to beat."""
    meta = GraphMeta.from_data(graph)
    dims = {m: d for mods in meta.modalities.values() for m, d in mods.items()}
    out = {}
    for node_type in meta.node_types:
        n = graph[node_type].num_nodes or 0
        blocks = []
        for modality in meta.all_modalities:
            if modality in meta.modalities[node_type]:
                x = torch.nn.functional.normalize(graph[node_type][f"{modality}_x"].float(), dim=1)
                mask = graph[node_type][f"{modality}_mask"].bool().unsqueeze(1)
                blocks.append(x * mask)
            else:
                blocks.append(torch.zeros(n, dims[modality]))
        out[node_type] = torch.cat(blocks, dim=1) if blocks else torch.zeros(n, 0)
    return out


def fastrp_metrics(embeddings: dict[str, np.ndarray], split: LinkSplit) -> dict[str, float | None]:
    """The protocol's metrics for precomputed embeddings (GDS FastRP) of the test graph,
    scored by cosine; FastRP cannot embed a modality alone, so retrieval is ``None``."""
    z = {t: torch.from_numpy(np.asarray(v, dtype=np.float32)) for t, v in embeddings.items()}
    return evaluate(Embedder(embed=lambda graph: z, score=cosine_score), split)


def visible_edges(split: LinkSplit, uids: dict[str, list[str]]) -> list[tuple[str, str]]:
    """The test stage's message-passing edges as uid pairs (forward types only): what an
    outside embedding method may see without leaking test edges or labels."""
    graph = split.graph("test")
    pairs: list[tuple[str, str]] = []
    for src, rel, dst in graph.edge_types:
        if rel.startswith("rev_"):
            continue
        index = graph[src, rel, dst].edge_index
        pairs.extend(
            (uids[src][a], uids[dst][b])
            for a, b in zip(index[0].tolist(), index[1].tolist(), strict=True)
        )
    return pairs


def models_to_run(names: Sequence[str] | None) -> list[str]:
    """The model names to run (all of them by default), checked."""
    chosen = list(names) if names else list(MODEL_NAMES)
    unknown = [n for n in chosen if n not in MODEL_NAMES]
    if unknown:
        raise UnknownModelError(f"unknown model(s) {unknown}; choose from {list(MODEL_NAMES)}")
    return chosen


@dataclass
class Comparison:
    """Every model on one split: the table ``mmgraph evaluate --json`` prints, and what the
    report draws (training curves; labelled nodes' embeddings with their classes)."""

    table: dict[str, Any]
    histories: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    maps: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    run_ids: dict[str, str] = field(default_factory=dict)


def compare_models(
    *,
    split: LinkSplit,
    uids: dict[str, list[str]],
    models: Sequence[str],
    train_config: TrainConfig | None = None,
    home: Path | None = None,
    fastrp: Callable[[list[tuple[str, str]]], dict[str, np.ndarray]] | None = None,
    progress: Callable[[str, int, dict[str, float]], None] | None = None,
    features: bool = True,
) -> Comparison:
    """Train and evaluate ``models`` on ``split`` (reusing a saved run made on the very same
    split and settings), plus the anchor rows: ``features`` (the raw encoders' cosine,
    :func:`feature_embeddings`) unless turned off, and FastRP when ``fastrp`` (test-graph edges
    as uid pairs -> embeddings per node type) is given."""
    config = train_config or TrainConfig()
    described = split.describe()
    comparison = Comparison({"split": described, "models": {}})
    saved = _saved_runs(home, described, config) if home is not None else {}
    for name in models_to_run(models):
        run = saved.get(name)
        if run is not None:
            log.info("%s: reusing run %s (same split and settings)", name, run.run_id)
            metrics, history = dict(run.metrics), run.history
            embeddings = {t: torch.from_numpy(v) for t, v in run.raw_embeddings().items()}
            comparison.run_ids[name] = run.run_id
        else:
            result = run_experiment(
                model=name,
                split=split,
                uids=uids,
                train_config=config,
                home=home,
                progress=(lambda e, row, name=name: progress(name, e, row)) if progress else None,
            )
            metrics, history, embeddings = result.metrics, result.history, result.embeddings
            if result.run_id:
                comparison.run_ids[name] = result.run_id
        comparison.table["models"][name] = {k: metrics.get(k) for k in REPORT_METRICS}
        if history:
            comparison.histories[name] = history
        comparison.maps.update(_labelled(name, embeddings, split))
    if features:
        started = time.perf_counter()
        metrics = evaluate(Embedder(embed=feature_embeddings, score=cosine_score), split)
        metrics["train_seconds"] = time.perf_counter() - started
        comparison.table["models"]["features"] = {k: metrics.get(k) for k in REPORT_METRICS}
        comparison.maps.update(_labelled("features", feature_embeddings(split.full_graph()), split))
    if fastrp is not None:
        started = time.perf_counter()
        embeddings = fastrp(visible_edges(split, uids))
        metrics = fastrp_metrics(embeddings, split)
        metrics["train_seconds"] = time.perf_counter() - started
        comparison.table["models"]["fastrp"] = {k: metrics.get(k) for k in REPORT_METRICS}
        z = {t: torch.from_numpy(np.asarray(v)) for t, v in embeddings.items()}
        comparison.maps.update(_labelled("fastrp", z, split))
    return comparison


@functools.cache
def code_version() -> str:
    """A fingerprint of the code a run's numbers come from: the sources of :mod:`mmgraph.gnn`
    and the torch and PyG versions. A saved run is reused only by the same code."""
    digest = hashlib.sha256(f"{torch.__version__}\0{torch_geometric.__version__}".encode())
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(b"\0" + str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _saved_runs(home: Path, described: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """The newest saved run per model made on this split, with these training settings, the
    model's default options and this code (:func:`code_version`)."""
    found: dict[str, Any] = {}
    wanted = json.loads(json.dumps({"split": described, "train": config.to_dict()}))
    for run in list_runs(home):
        if run.model in found:
            continue
        options = json.loads(json.dumps(DEFAULT_OPTIONS.get(run.model, {})))
        if (
            run.config.get("split") == wanted["split"]
            and run.config.get("train") == wanted["train"]
            and run.config.get("model_options") == options
            and run.config.get("code") == code_version()
        ):
            found[run.model] = run
    return found


def _labelled(
    name: str, embeddings: dict[str, torch.Tensor], split: LinkSplit
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    for node_type, y in split.labels.items():
        rows = torch.nonzero(y >= 0).flatten()
        if rows.numel() and node_type in embeddings:
            return {name: (embeddings[node_type][rows].numpy(), y[rows].numpy())}
    return {}
