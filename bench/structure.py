"""How much can the graph's structure add to a model's link ranking? (a benchmark, not a test)

For each split seed, the graph in Neo4j (as ``mmgraph train`` reads it) is split as
``mmgraph evaluate`` splits it, each ``--models`` model is trained as ``evaluate`` trains it, and
its scores of every held-out edge and its fixed candidates (100 random + 20 two-hop, filtered)
are taken on the validation and test stages. Beside them, structural scores of each (source,
candidate) pair are computed from the message-passing graph of the stage alone (never from the
held-out edges), with the similarity of the raw normalised features (``features`` anchor):

- ``degree``: log(1 + the candidate's visible degree in the target relation) and whether that
  degree is 0 (a candidate whose every link is held out: an artefact of random edge hold-out,
  since a positive's end is far more often "cold" than a random candidate's);
- ``neighbours``: the largest feature cosine between the source and the candidate's visible
  sources (collaborative filtering), between the candidate and the source's visible ends, the
  log count of source -> end' <- source' -> candidate paths, and of the source's neighbours
  through the other relations between sources (variants, components) linked to the candidate.

A softmax over each candidate row, with one weight per score (seven at most), is fitted on the
validation stage by L-BFGS, and the test MRR of the weighted sum is reported: model alone, model +
degree, model + everything. It estimates what message passing could add to a model that sees no
edges, on this split, if it learned these signals perfectly: a rough ceiling, since weights
fitted on the validation stage are a luxury no trained model has.

Uses the Neo4j named by ``NEO4J_URI``, else the local one of ``MMGRAPH_HOME`` (``mmgraph neo4j
start``; one is started for the run if none is). Prints a table per seed and writes
``bench/results/structure.json`` (``--output``).

    mmgraph ingest --dataset emoji && python bench/structure.py --seeds 0,1 --models late,hgt
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "structure.json"
GROUPS = {
    "degree": ("log_degree", "cold"),
    "neighbours": ("source_sim", "end_sim", "paths", "via"),
}
DENSE_MAX = 40_000  # nodes per side of the target relation: the similarity matrices are dense


def _held_out(split, stage: str):  # (LinkSplit, str) -> HeldOut
    """The held-out edges of ``stage`` ("val" or "test") of the first target edge type."""
    return (split.val if stage == "val" else split.test)[split.target_edge_types[0]]


def structural_scores(split, stage: str) -> dict[str, np.ndarray]:  # LinkSplit -> name -> (n, k)
    """Every structural score of every held-out edge (column 0) and its candidates, one
    ``(edges, 1 + candidates)`` matrix per score, over the first target edge type."""
    from mmgraph.gnn.experiment import feature_embeddings
    from mmgraph.gnn.split import REVERSE_PREFIX

    edge_type = split.target_edge_types[0]
    src_type, _, dst_type = edge_type
    graph = split.graph(stage)
    held = _held_out(split, stage)
    n_src, n_dst = graph[src_type].num_nodes, graph[dst_type].num_nodes
    if max(n_src, n_dst) > DENSE_MAX:
        raise SystemExit(f"{n_src:,} x {n_dst:,} nodes: above {DENSE_MAX:,}, too big to be dense")
    visible = graph[edge_type].edge_index
    features = feature_embeddings(graph)
    f_src = torch.nn.functional.normalize(features[src_type], dim=1)
    f_dst = torch.nn.functional.normalize(features[dst_type], dim=1)
    adjacency = torch.zeros(n_src, n_dst)
    adjacency[visible[0], visible[1]] = 1.0
    sources = held.edge_index[0]
    candidates = torch.cat([held.edge_index[1].unsqueeze(1), held.negatives], dim=1)
    degree = adjacency.sum(0)
    rows = torch.arange(len(sources)).unsqueeze(1)

    def neighbour_max(similarity: torch.Tensor, linked: torch.Tensor) -> torch.Tensor:
        """max over ``linked`` (bool, per row and column) of ``similarity``, 0 where none."""
        return similarity.masked_fill(~linked, -1.0).amax(-1).clamp(min=0.0)

    source_sim = torch.zeros(candidates.shape)
    end_sim = torch.zeros(candidates.shape)
    for start in range(0, len(sources), 64):  # bounded memory: (64, k, n) at a time
        part = slice(start, start + 64)
        s, c = sources[part], candidates[part]
        sim_ss = f_src[s] @ f_src.t()  # (b, n_src)
        linked_to_c = adjacency.t()[c] > 0  # (b, k, n_src)
        source_sim[part] = neighbour_max(sim_ss.unsqueeze(1).expand_as(linked_to_c), linked_to_c)
        sim_cd = f_dst[c] @ f_dst.t()  # (b, k, n_dst)
        linked_to_s = (adjacency[s] > 0).unsqueeze(1).expand_as(sim_cd)
        end_sim[part] = neighbour_max(sim_cd, linked_to_s)
    cooccurrence = adjacency.t() @ adjacency  # (n_dst, n_dst)
    paths = (adjacency[sources] @ cooccurrence)[rows, candidates]
    among_sources = torch.zeros(n_src, n_src)
    target = {edge_type[1], f"{REVERSE_PREFIX}{edge_type[1]}"}
    for (a, rel, b), index in graph.collect("edge_index").items():
        if a == b == src_type and rel not in target:
            among_sources[index[0], index[1]] = 1.0
            among_sources[index[1], index[0]] = 1.0
    via = (among_sources[sources] @ adjacency)[rows, candidates]
    return {
        "log_degree": torch.log1p(degree[candidates]).numpy(),
        "cold": (degree[candidates] == 0).float().numpy(),
        "source_sim": source_sim.numpy(),
        "end_sim": end_sim.numpy(),
        "paths": torch.log1p(paths).numpy(),
        "via": torch.log1p(via).numpy(),
    }


def model_scores(name: str, split, epochs: int, seed: int) -> dict[str, Any]:
    """Train ``name`` as ``mmgraph evaluate`` does; its scores of each stage's candidates."""
    from mmgraph.gnn.evaluate import Embedder, cosine_score, held_out_scores
    from mmgraph.gnn.experiment import DEFAULT_OPTIONS, feature_embeddings
    from mmgraph.gnn.models import MODELS, GraphMeta
    from mmgraph.gnn.train import TrainConfig, candidate_scores, embed, train_model

    edge_type = split.target_edge_types[0]
    if name == "features":
        started = time.perf_counter()
        anchor = Embedder(embed=feature_embeddings, score=cosine_score)
        out: dict[str, Any] = {"best_epoch": None}
        for stage in ("val", "test"):
            z = feature_embeddings(split.graph(stage))
            pos, neg = held_out_scores(anchor, z, edge_type, _held_out(split, stage))
            out[stage] = np.concatenate([pos[:, None], neg], axis=1)
        out["seconds"] = time.perf_counter() - started
        return out
    meta = GraphMeta.from_data(split.graph("val"))
    net = MODELS[name](meta, split.target_edge_types, **DEFAULT_OPTIONS.get(name, {}))
    trained = train_model(net, split, TrainConfig(epochs=epochs, seed=seed))
    out = {"best_epoch": trained.best_epoch, "seconds": trained.seconds}
    for stage in ("val", "test"):
        z = embed(net, split.graph(stage))
        pos, neg = candidate_scores(net, z, edge_type, _held_out(split, stage))
        out[stage] = np.concatenate([pos[:, None], neg], axis=1)
    return out


def fit_weights(columns: list[np.ndarray]) -> np.ndarray:
    """One weight per score column: a softmax over each row with the positive in column 0."""
    x = torch.from_numpy(np.stack(columns, axis=-1)).float()
    weights = torch.zeros(x.size(-1), requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200)
    target = torch.zeros(x.size(0), dtype=torch.long)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (
            torch.nn.functional.cross_entropy(x @ weights, target) + 1e-4 * weights.square().sum()
        )
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach().numpy()


def mrr(scores: np.ndarray) -> float:
    from mmgraph.gnn.metrics import ranking_metrics

    return ranking_metrics(scores[:, 0], scores[:, 1:])["mrr"]


def headroom(
    model: dict[str, Any], structure: dict[str, dict[str, np.ndarray]]
) -> dict[str, dict[str, Any]]:
    """Test MRR of the model's scores alone, plus the degree scores, plus every score."""
    out = {"alone": {"val": mrr(model["val"]), "test": mrr(model["test"])}}
    for label, names in (
        ("+degree", GROUPS["degree"]),
        ("+all", GROUPS["degree"] + GROUPS["neighbours"]),
    ):
        weights = fit_weights([model["val"]] + [structure["val"][n] for n in names])
        combined = {
            stage: np.stack([model[stage]] + [structure[stage][n] for n in names], -1) @ weights
            for stage in ("val", "test")
        }
        out[label] = {
            "val": mrr(combined["val"]),
            "test": mrr(combined["test"]),
            "weights": dict(zip(("model", *names), weights.round(3).tolist(), strict=True)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    parser.add_argument("--models", type=lambda s: s.split(","), default=["late", "hgt"])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--target-relation", default="HAS_TAG")
    parser.add_argument("--label-relation", default="IN_SUBCATEGORY")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    from mmgraph.core.config import Settings
    from mmgraph.gnn.data import export_heterodata
    from mmgraph.gnn.models import MODELS
    from mmgraph.gnn.split import SplitConfig, split_graph
    from mmgraph.graph.connection import open_store

    unknown = set(args.models) - {"features", *MODELS}
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}: choose from features, {sorted(MODELS)}")
    settings = Settings.from_env()
    with open_store(settings) as store:
        export = export_heterodata(store, cache_dir=settings.home / "cache" / "export")
    results: dict[str, Any] = {"models": args.models, "epochs": args.epochs, "seeds": {}}
    for seed in args.seeds:
        split = split_graph(
            export.data,
            SplitConfig(
                target_relations=(args.target_relation,),
                label_relation=args.label_relation,
                seed=seed,
            ),
        )
        structure = {stage: structural_scores(split, stage) for stage in ("val", "test")}
        per_model = {}
        for name in args.models:
            scores = model_scores(name, split, args.epochs, seed)
            per_model[name] = {
                "best_epoch": scores["best_epoch"],
                "train_seconds": scores["seconds"],
                **headroom(scores, structure),
            }
        results["seeds"][str(seed)] = per_model
        _print(seed, per_model)
    args.output.parent.mkdir(exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))


def _print(seed: int, per_model: dict[str, dict[str, Any]]) -> None:
    print(f"split seed {seed}: test MRR (validation MRR)")
    print(f"{'model':<10}{'alone':>18}{'+ degree':>18}{'+ all structure':>18}")
    for name, row in per_model.items():
        cells = "".join(
            f"{row[key]['test']:>9.3f} ({row[key]['val']:.3f})"
            for key in ("alone", "+degree", "+all")
        )
        print(f"{name:<10}{cells}")
    if len(per_model) > 1:
        base, *others = per_model
        alone = per_model[base]["alone"]["test"]
        for name in others:
            print(f"{name} / {base}, test MRR: {per_model[name]['alone']['test'] / alone:.3f}")
        print(f"{base} + all structure / {base}: {per_model[base]['+all']['test'] / alone:.3f}")


if __name__ == "__main__":
    main()
