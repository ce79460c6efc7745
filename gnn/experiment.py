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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch_geometric
from torch_geometric.data import HeteroData

from mmgraph.core.errors import InvalidArgumentError, MmgraphError
from mmgraph.gnn import distributed
from mmgraph.gnn.alignment import (
    Alignment,
    choice_nodes,
    choose_alignment,
    excluded_pairs,
    without_choice_nodes,
)
from mmgraph.gnn.evaluate import (
    Embedder,
    cosine_score,
    evaluate,
    fit_calibration,
    retrieval_metrics,
)
from mmgraph.gnn.fusion.cca_embedding import CCAEmbedding
from mmgraph.gnn.fusion.dcca_embedding import DCCAEmbedding
from mmgraph.gnn.models import MODELS, GraphMeta, isolated_view
from mmgraph.gnn.names import MODEL_NAMES, REPORT_METRICS
from mmgraph.gnn.runs import RunRecord, list_runs, new_run_id, save_run
from mmgraph.gnn.spaces import centered_unit
from mmgraph.gnn.split import LinkSplit
from mmgraph.gnn.train import TrainConfig, TrainResult, embed, train_model

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
    """Train ``model`` on ``split``, calibrate its link probabilities on the validation edges,
    evaluate it on the test edges, and (with ``home``) save it as a run directory whose
    embeddings cover the whole graph."""
    if model not in MODEL_NAMES:
        raise UnknownModelError(f"unknown model {model!r}; choose one of {list(MODEL_NAMES)}")
    config = train_config or TrainConfig()
    meta = GraphMeta.from_data(split.graph("val"))
    options = {**default_options(model, meta), **(model_options or {})}
    # Pairs held out to choose the run's alignment: no cross-modal training term sees them.
    held = choice_nodes(split, config.seed)
    if model in ("cca", "dcca"):
        fitted = _fit_projection(model, split, excluded_pairs(split, held), config, options)
    else:
        trained_on = without_choice_nodes(split, held)
        fitted = _train(model, meta, trained_on, config, options, progress)
    embedder = fitted.embedder
    embedder.calibration = fit_calibration(embedder, split)
    fitted.alignment = choose_alignment(split, embedder.embed_one, held)
    own = replace(embedder)
    if fitted.alignment is not None:
        embedder.embed_one = fitted.alignment.embed_one(embedder.embed_one)
    metrics = evaluate(embedder, split)
    if fitted.alignment is not None and fitted.alignment.kind == "cca":
        # What the model's own spaces retrieve, beside what the run serves through the CCA.
        metrics |= {f"own_{k}": v for k, v in retrieval_metrics(own, split).items()}
    metrics["train_seconds"] = fitted.trained.seconds
    result = ExperimentResult(
        model, metrics, history=fitted.trained.history, train_seconds=fitted.trained.seconds
    )
    result.embeddings = embedder.embed(split.full_graph())
    if home is not None:
        _save(result, home, split, uids, meta, config, options, fitted)
    return result


def default_options(model: str, meta: GraphMeta) -> dict[str, Any]:
    """The options ``model`` starts from on a graph of schema ``meta``: MGAT's cross-modal term
    only where a node type carries both modalities it aligns."""
    options = dict(DEFAULT_OPTIONS.get(model, {}))
    if model == "mgat" and not any(
        {"text", "image"} <= set(mods) for mods in meta.modalities.values()
    ):
        options.pop("contrastive_weight", None)
    return options


@dataclass
class _Fitted:
    """A model ready to evaluate and save: how to embed and score with it, its weights, and
    what its training did."""

    embedder: Embedder
    weights: dict[str, Any]
    trained: TrainResult
    alignment: Alignment | None = None
    # node type -> each node's weight per modality, for a model that learns them per node
    modality_weights: Callable[[HeteroData], dict[str, torch.Tensor] | None] = lambda graph: None


def _train(
    model: str,
    meta: GraphMeta,
    split: LinkSplit,
    config: TrainConfig,
    options: dict[str, Any],
    progress: Callable[[int, dict[str, float]], None] | None,
) -> _Fitted:
    net = MODELS[model](meta, split.target_edge_types, **options)
    trained = train_model(net, split, config, progress)
    device = distributed.resolve_device(config.device)
    mini = config if trained.mode == "mini" else None
    embedder = Embedder(
        embed=lambda graph: embed(net, graph, device, mini),
        score=lambda z, et, index: net.link_logits(
            {t: v.to(device) for t, v in z.items()}, et, index.to(device)
        ).cpu(),
        embed_one=lambda t, m, x: _embed_one(net, meta, t, m, x, device),
    )
    weights = {k: v.detach().cpu() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def modality_weights(graph: HeteroData) -> dict[str, torch.Tensor] | None:
        net.eval()
        found = net.node_modality_weights(graph.to(device))
        return None if found is None else {t: w.cpu() for t, w in found.items()}

    return _Fitted(embedder, weights, trained, modality_weights=modality_weights)


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


def _fit_projection(
    model: str,
    split: LinkSplit,
    exclude: dict[str, torch.Tensor],
    config: TrainConfig,
    options: dict[str, Any],
) -> _Fitted:
    """A projection (closed-form CCA, or deep CCA trained on its own pairs with ``config``),
    fitted on the pairs outside ``exclude`` and scored by cosine."""
    started = time.perf_counter()
    if model == "dcca":
        cca = DCCAEmbedding(**options).fit(split.base, exclude, config)
        trained = TrainResult(cca.best_epoch, -1.0, cca.history, mode="pairs")
    else:
        cca = CCAEmbedding(**options).fit(split.base, exclude=exclude)
        trained = TrainResult(0, -1.0, mode="closed-form")
    trained.seconds = time.perf_counter() - started
    embedder = Embedder(
        embed=cca.embed,
        score=cosine_score,
        embed_one=lambda t, m, x: torch.from_numpy(cca.transform_modality(m, x.numpy())),
    )
    return _Fitted(embedder, cca.state_dict(), trained)


def _save(
    result: ExperimentResult,
    home: Path,
    split: LinkSplit,
    uids: dict[str, list[str]],
    meta: GraphMeta,
    config: TrainConfig,
    options: dict[str, Any],
    fitted: _Fitted,
) -> None:
    embedder, trained, full = fitted.embedder, fitted.trained, result.embeddings
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
            "calibration": embedder.calibration.to_list() if embedder.calibration else None,
            "alignment": None
            if fitted.alignment is None
            else {"kind": fitted.alignment.kind, "choice": fitted.alignment.choice},
        },
        metrics=result.metrics,
        uids=uids,
        meta=meta,
        target_edge_types=split.target_edge_types,
        raw={t: z.numpy() for t, z in full.items()},
        spaces=spaces,
        weights=fitted.weights,
        history=trained.history,
        centers=centers,
        alignment=(
            fitted.alignment.cca.state_dict()
            if fitted.alignment is not None and fitted.alignment.cca is not None
            else None
        ),
        modality_weights={
            t: w.numpy() for t, w in (fitted.modality_weights(split.full_graph()) or {}).items()
        },
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
    as uid pairs -> embeddings per node type) is given.

    A model that does not apply to this graph (CCA without nodes carrying text and image, say)
    gets a row with its ``reason`` and no metrics; the others' rows and runs are kept."""
    config = train_config or TrainConfig()
    described = split.describe()
    comparison = Comparison({"split": described, "models": {}})
    meta = GraphMeta.from_data(split.graph("val"))
    saved = _saved_runs(home, described, config, meta) if home is not None else {}
    for name in models_to_run(models):
        run = saved.get(name)
        if run is not None:
            log.info("%s: reusing run %s (same split and settings)", name, run.run_id)
            metrics, history = dict(run.metrics), run.history
            embeddings = {t: torch.from_numpy(v) for t, v in run.raw_embeddings().items()}
            comparison.run_ids[name] = run.run_id
        else:
            try:
                result = run_experiment(
                    model=name,
                    split=split,
                    uids=uids,
                    train_config=config,
                    home=home,
                    progress=(
                        (lambda e, row, name=name: progress(name, e, row)) if progress else None
                    ),
                )
            except MmgraphError as e:
                log.warning("%s does not apply to this graph: %s", name, e)
                comparison.table["models"][name] = dict.fromkeys(REPORT_METRICS) | {
                    "reason": str(e)
                }
                continue
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


def _saved_runs(
    home: Path, described: dict[str, Any], config: TrainConfig, meta: GraphMeta
) -> dict[str, Any]:
    """The newest saved run per model made on this split, with these training settings, the
    model's default options on this graph and this code (:func:`code_version`)."""
    found: dict[str, Any] = {}
    wanted = json.loads(json.dumps({"split": described, "train": config.to_dict()}))
    for run in list_runs(home):
        if run.model in found:
            continue
        options = json.loads(json.dumps(default_options(run.model, meta)))
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
