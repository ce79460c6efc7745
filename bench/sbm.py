"""Where message passing should win: a contextual stochastic block model, whose answer is known.

Items fall into planted communities (blocks) and links and features both say which block an item
is in, each to a tunable degree (:func:`mmgraph.gnn.synthetic.contextual_sbm`). Three mixes:

- ``structure``: links mostly inside blocks (q 0.9), features nearly noise (signal 0.1);
- ``balanced``: both half-informative (q 0.6, signal 0.3): only a model that combines the
  links with the features should do well;
- ``features``: links barely homophilous (q 0.3), features clear (signal 0.6).

Every model of the evaluation trains on one split of each graph (link prediction on ``LINKS``,
the block as the clustering label, kept out of training), beside two anchors: the raw features'
cosine and FastRP (Chen et al., "Fast and Accurate Network Embeddings via Very Sparse Random
Projection", https://arxiv.org/abs/1908.11512, as GDS computes it with its defaults: 128-d very
sparse random projections, degree-normalised propagation, iteration weights 0, 1, 1) on the test
stage's visible links. It prints MRR and NMI per model and mix, and the ratio of the best GNN to
the better of the best baseline without message passing and FastRP; writes
``bench/results/sbm.json``. No Neo4j is needed.

    python bench/sbm.py [--mixes structure,balanced,features] [--models gcn,mgat,hgt,...]
        [--blocks 40] [--block-size 50] [--degree 10] [--epochs 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

RESULTS = Path(__file__).parent / "results" / "sbm.json"
MIXES = {"structure": (0.9, 0.1), "balanced": (0.6, 0.3), "features": (0.3, 0.6)}
GNN_MODELS = ("gcn", "mgat", "hgt")
FASTRP_DIM = 128


def fastrp(n: int, edges: np.ndarray, seed: int) -> np.ndarray:
    """FastRP of an undirected graph given as one direction of its edges (see the module)."""
    rng = np.random.default_rng(seed)
    s = 3.0
    r = rng.choice(
        [np.sqrt(s), 0.0, -np.sqrt(s)],
        p=[1 / (2 * s), 1 - 1 / s, 1 / (2 * s)],
        size=(n, FASTRP_DIM),
    )
    src, dst = np.concatenate([edges[0], edges[1]]), np.concatenate([edges[1], edges[0]])
    adjacency = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    step = sp.diags(1.0 / np.maximum(np.asarray(adjacency.sum(axis=1)).ravel(), 1)) @ adjacency
    out, current = np.zeros((n, FASTRP_DIM)), r
    for weight in (1.0, 1.0):  # iteration weights 0 (the projection itself), 1, 1
        current = _unit(step @ current)
        out += weight * current
    return out.astype(np.float32)


def run_mix(mix: str, models: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Every model and both anchors on one split of the mix's graph."""
    import torch

    from mmgraph.gnn.evaluate import Embedder, cosine_score, evaluate
    from mmgraph.gnn.experiment import compare_models
    from mmgraph.gnn.split import SplitConfig, split_graph
    from mmgraph.gnn.synthetic import contextual_sbm
    from mmgraph.gnn.train import TrainConfig

    q, signal = MIXES[mix]
    data, uids = contextual_sbm(args.blocks, args.block_size, args.degree, q, signal, args.seed)
    config = SplitConfig(
        target_relations=("LINKS",), label_relation="IN_BLOCK", label_via=None, seed=args.seed
    )
    split = split_graph(data, config)
    started = time.perf_counter()
    rows = compare_models(
        split=split,
        uids=uids,
        models=models,
        train_config=TrainConfig(epochs=args.epochs, seed=args.seed),
    ).table["models"]
    visible = split.graph("test")["Item", "LINKS", "Item"].edge_index.numpy()
    z = {
        "Item": torch.from_numpy(fastrp(data["Item"].num_nodes, visible, args.seed)),
        "Block": torch.zeros(args.blocks, FASTRP_DIM),
    }
    rows["fastrp"] = evaluate(Embedder(embed=lambda _: z, score=cosine_score), split)
    return {
        "q": q,
        "signal": signal,
        "seconds": time.perf_counter() - started,
        "models": {name: {k: row.get(k) for k in ("mrr", "nmi")} for name, row in rows.items()},
    }


def verdict(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per metric: the best GNN, the better of the best baseline without message passing and
    FastRP, and their ratio."""
    out = {}
    for metric in ("mrr", "nmi"):
        scored = {n: r[metric] for n, r in models.items() if r.get(metric) is not None}
        gnn = max((n for n in scored if n in GNN_MODELS), key=scored.get)
        rival = max((n for n in scored if n not in GNN_MODELS), key=scored.get)
        out[metric] = {
            "gnn": gnn,
            "rival": rival,
            "ratio": scored[gnn] / scored[rival] if scored[rival] else None,
        }
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main() -> None:
    import torch

    from mmgraph.gnn.names import MODEL_NAMES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mixes", default=",".join(MIXES))
    parser.add_argument("--models", default=",".join(MODEL_NAMES))
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--block-size", type=int, default=50)
    parser.add_argument("--degree", type=float, default=10.0)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    models = args.models.split(",")
    results: dict[str, Any] = {"machine": platform.node(), "args": vars(args), "mixes": {}}
    for mix in args.mixes.split(","):
        found = run_mix(mix, models, args)
        found["verdict"] = verdict(found["models"])
        results["mixes"][mix] = found
        print(f"\n{mix}: q {found['q']}, signal {found['signal']} ({found['seconds']:.0f} s)")
        print(f"{'model':<10} {'MRR':>7} {'NMI':>7}")
        for name, row in found["models"].items():
            cells = [f"{row[k]:7.3f}" if row[k] is not None else "      —" for k in ("mrr", "nmi")]
            print(f"{name:<10} {' '.join(cells)}")
        for metric, v in found["verdict"].items():
            print(f"{metric}: best GNN {v['gnn']} / {v['rival']} = {v['ratio']:.3f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
