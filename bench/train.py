"""Cost of the GNNs and of the export (a benchmark, not a test); and the emoji quality table.

Training: for each model and size, a synthetic heterogeneous graph that looks like a real
catalogue (:func:`synthetic_graph`: ``Item`` nodes with a 384-d ``text`` and, on half of them, a
128-d ``image``; ``Tag`` nodes with ``text``; about 5 ``Item-HAS_TAG->Tag`` and 5
``Item-LIKE->Item`` edges per item, power-law degrees with hub tags and items, planted
communities that the features reveal only in part) is split for link prediction on ``HAS_TAG``
and trained with the project's ``train_model``, each (model, size, ranks) in its own subprocess
so that its peak RSS (``ru_maxrss``, graph and split included; the largest rank's) is its own:
``--epochs`` + 1 epochs (the first a warm-up; the table gives the median training pass and the
validation pass after it) or, with ``--converge``, to early stopping; then the test MRR. Mode
``auto`` lets the trainer's memory budget choose between full-batch and mini-batches (the
trainer's own rule; ``--memory-budget-gb``, default 8 as ``MMGRAPH_TRAIN_MEMORY``), ``full`` and
``mini`` (``--batch-size``) force one. ``--nproc 1,2`` trains each case on one rank and on two
(DistributedDataParallel through :mod:`mmgraph.gnn.launch`).

Export: ``--export-nodes`` nodes with a 384-d vector (and ``--export-rels`` relationships) are
written with ``GraphStore.write_batch``, then ``read_graph`` runs in a fresh subprocess that
reports its time and its RSS growth (the peak resident set ``VmHWM``, reset just before the call,
minus the RSS then: numpy arrays, driver buffers and Python objects such as the uid lists alike)
against ``GraphArrays.nbytes``; the target is a peak under 1.5x the final matrices.

Uses the Neo4j named by ``NEO4J_URI``, else starts the local one under a temporary
``MMGRAPH_HOME``. Prints a table and writes ``bench/results/train.json``.

    python bench/train.py [--sizes 10000,100000,1000000] [--models gcn,mgat,hgt]
        [--epochs 3] [--converge] [--mode auto|full|mini] [--nproc 1,2]
        [--export-nodes 1000000] [--skip-export] [--skip-train]
    python bench/train.py --emoji-report evaluate.json   # `mmgraph evaluate --all --json` output
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from memory import hwm_bytes, maxrss_bytes, reset_peak, rss_bytes

import mmgraph.core  # noqa: F401  (before torch: the product's allocator settings)

RESULTS = Path(__file__).parent / "results" / "train.json"
TEXT_DIM, IMAGE_DIM, EXPORT_DIM = 384, 128, 384
EDGES_PER_ITEM = 5
COMMUNITY_SIZE = 1000  # nodes per planted community (items and tags)
IN_COMMUNITY = 0.8  # share of an item's links that stay in its community
ACTIVITY_EXPONENT, POPULARITY_EXPONENT = 0.6, 0.8  # power-law weights: rank ** -exponent
TEXT_NOISE, IMAGE_NOISE = 1.5, 2.0  # noise norm relative to the community centre's (1)
VAL_EDGES = 5000  # held-out validation edges (about): bounds the validation pass's memory
GNN_MODELS = ("gcn", "mgat", "hgt")
BASELINES = ("early", "late", "hybrid", "cca")
MRR_TARGET, RECALL_TARGET, RIDGE_RECALL = 1.10, 0.60, 0.38


# -- the synthetic graph ----------------------------------------------------------------------


def synthetic_graph(n: int, image: bool, seed: int = 0):  # -> HeteroData
    """``n`` nodes that look like a real catalogue: a tenth ``Tag``, the rest ``Item``, in
    planted communities of about ``COMMUNITY_SIZE`` nodes. Every relation has
    ``EDGES_PER_ITEM`` edges per item on average; each edge's source is an item drawn with a
    power-law weight (activity) and its destination a node drawn with a power-law weight
    (popularity: a few hub tags and items take a large share of the links), within the
    source's community with probability ``IN_COMMUNITY``, else anywhere. Features carry part of
    the signal: a node's text (and, on half the items, image) is its community's centre plus
    stronger noise, so the text says roughly where a node belongs and the links say the rest."""
    import torch
    from torch_geometric.data import HeteroData

    rng = np.random.default_rng(seed)
    n_tag = max(10, n // 10)
    n_item = n - n_tag
    k = max(4, n // COMMUNITY_SIZE)
    community = {
        "Item": rng.integers(0, k, n_item),
        "Tag": np.arange(n_tag) % k,  # every community has tags
    }
    data = HeteroData()
    centres = _unit(rng.standard_normal((k, TEXT_DIM), dtype=np.float32))
    for node_type, count in (("Item", n_item), ("Tag", n_tag)):
        noise = rng.standard_normal((count, TEXT_DIM), dtype=np.float32) * TEXT_NOISE
        noise /= np.sqrt(TEXT_DIM)
        noise += centres[community[node_type]]
        data[node_type].num_nodes = count
        data[node_type].text_x = torch.from_numpy(_unit(noise))
        data[node_type].text_mask = torch.ones(count, dtype=torch.bool)
    if image:
        image_centres = _unit(rng.standard_normal((k, IMAGE_DIM), dtype=np.float32))
        mask = rng.random(n_item) < 0.5
        x = np.zeros((n_item, IMAGE_DIM), dtype=np.float32)
        noise = rng.standard_normal((int(mask.sum()), IMAGE_DIM), dtype=np.float32)
        x[mask] = _unit(
            image_centres[community["Item"][mask]] + noise * IMAGE_NOISE / np.sqrt(IMAGE_DIM)
        )
        data["Item"].image_x = torch.from_numpy(x)
        data["Item"].image_mask = torch.from_numpy(mask)
    activity = _power_law(n_item, ACTIVITY_EXPONENT, rng)
    for rel, dst_type in (("HAS_TAG", "Tag"), ("LIKE", "Item")):
        m = EDGES_PER_ITEM * n_item
        src = _draw(np.cumsum(activity), rng.random(m))
        popularity = _power_law(data[dst_type].num_nodes, POPULARITY_EXPONENT, rng)
        dst = _draw_in_community(popularity, community[dst_type], k, community["Item"][src], rng)
        data["Item", rel, dst_type].edge_index = torch.from_numpy(np.stack([src, dst]))
    return data


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _power_law(count: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Weights ``rank ** -exponent`` over a random order of ``count`` nodes."""
    return (rng.permutation(count) + 1.0) ** -exponent


def _draw(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indices drawn with the weights whose running sum is ``cumulative`` (``u`` in [0, 1))."""
    return np.minimum(
        np.searchsorted(cumulative, u * cumulative[-1], side="right"), len(cumulative) - 1
    )


def _draw_in_community(
    weight: np.ndarray, group: np.ndarray, k: int, wanted: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One node per entry of ``wanted`` (a community), drawn by ``weight`` within that community
    with probability ``IN_COMMUNITY``, else by ``weight`` among all nodes."""
    order = np.argsort(group, kind="stable")
    cumulative = np.cumsum(weight[order])
    bounds = np.searchsorted(group[order], np.arange(k + 1))
    low = np.where(bounds[:-1] > 0, cumulative[np.maximum(bounds[:-1] - 1, 0)], 0.0)
    high = cumulative[bounds[1:] - 1]
    inside = rng.random(wanted.size) < IN_COMMUNITY
    u = rng.random(wanted.size)
    target = np.where(inside, low[wanted] + u * (high[wanted] - low[wanted]), u * cumulative[-1])
    picked = np.minimum(np.searchsorted(cumulative, target, side="right"), len(order) - 1)
    return order[picked]


def bench_split(data):  # -> LinkSplit
    """The project's ``split_graph`` on ``HAS_TAG``, holding out about ``VAL_EDGES`` edges for
    validation and as many for test (no label relation: the synthetic graph has no classes)."""
    from mmgraph.gnn.split import SplitConfig, split_graph

    n_edges = data["Item", "HAS_TAG", "Tag"].edge_index.size(1)
    ratio = min(0.1, VAL_EDGES / n_edges)
    return split_graph(data, SplitConfig(label_relation=None, val_ratio=ratio, test_ratio=ratio))


# -- one training case, in its own process (or its own ranks) --------------------------------


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Train one model on one graph size as the case says (in ``case["nproc"]`` ranks through
    the project's launcher when above 1) and report its cost and quality."""
    if case["nproc"] > 1:
        from mmgraph.gnn.launch import launch

        return launch(_rank_case, case["nproc"], case)
    return _rank_case(case)


def _rank_case(case: dict[str, Any]) -> dict[str, Any] | None:
    """:func:`run_case` in this process: train with ``train_model`` (``--epochs`` + 1, the
    first a warm-up, or to early stopping with ``--converge``), then the test MRR."""
    import torch

    from mmgraph.gnn import distributed
    from mmgraph.gnn.experiment import DEFAULT_OPTIONS
    from mmgraph.gnn.models import MODELS, GraphMeta
    from mmgraph.gnn.train import TrainConfig, train_model, validation_mrr

    t0 = time.perf_counter()
    data = synthetic_graph(case["size"], case["image"])
    graph_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    split = bench_split(data)
    split_s = time.perf_counter() - t0
    del data
    budget = {"full": 2**62, "mini": None, "auto": int(case["memory_budget_gb"] * 1e9)}
    epochs = (
        {} if case["converge"] else {"epochs": case["epochs"] + 1, "patience": case["epochs"] + 1}
    )
    config = TrainConfig(
        batch_size=case["batch_size"] if case["mode"] == "mini" else None,
        memory_budget=budget[case["mode"]],
        **epochs,
    )
    device = distributed.resolve_device(config.device)
    val_graph = split.graph("val")
    model = MODELS[case["model"]](
        GraphMeta.from_data(val_graph),
        split.target_edge_types,
        **DEFAULT_OPTIONS.get(case["model"], {}),
    )
    setup_rss = rss_bytes()
    t0 = time.perf_counter()
    trained = train_model(model, split, config)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    mini = config if trained.mode == "mini" else None
    test_mrr = validation_mrr(model, split, split.graph("test"), device, mini, stage="test")
    test_s = time.perf_counter() - t0
    peaks = [maxrss_bytes()]
    if distributed.active():
        peaks = [None] * distributed.world_size()
        torch.distributed.all_gather_object(peaks, maxrss_bytes())
    if distributed.rank() != 0:
        return None
    history = trained.history
    measured = history[1:] if len(history) > 1 else history
    train_epoch = [row["train_seconds"] for row in measured]
    # Epochs that validated (in mini-batch mode not all do): their extra seconds.
    validation = [
        row["seconds"] - row["train_seconds"]
        for row in measured
        if row["seconds"] - row["train_seconds"] > 0.05 * row["train_seconds"]
    ] or [0.0]
    return {
        "model": case["model"],
        "size": case["size"],
        "nproc": case["nproc"],
        "mode": trained.mode,
        "batch_size": trained.batch_size,
        "recompute_layers": trained.recompute_layers,
        "device": str(device),
        "mp_edges": sum(val_graph[et].edge_index.size(1) for et in val_graph.edge_types),
        "epoch_s": statistics.median(train_epoch),
        "val_s": statistics.median(validation),
        "epochs": len(history),
        "best_epoch": trained.best_epoch,
        "val_mrr": trained.best_val_mrr,
        "test_mrr": test_mrr,
        "train_s": train_s,
        "test_s": test_s,
        "graph_s": graph_s,
        "split_s": split_s,
        "estimated_full_gb": trained.full_batch_bytes / 1e9,
        "budget_gb": trained.memory_budget / 1e9,
        "setup_rss_gb": setup_rss / 1e9,
        "peak_rss_gb": max(peaks) / 1e9,
        "peak_rss_gb_per_rank": [p / 1e9 for p in peaks],
    }


def _subprocess(flag: str, payload: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    """Run this script with a hidden ``flag`` in a fresh interpreter; its last stdout line is
    the JSON answer. A crash (e.g. killed for memory) becomes ``{"error": ...}``."""
    cmd = [sys.executable, __file__, flag, json.dumps(payload)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: {' | '.join(tail)}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def train_cases(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (model, size, nproc) in its own subprocess, in the mode ``--mode`` asks."""
    rows = []
    for size in args.sizes:
        for model in args.models:
            for nproc in args.nproc:
                case = {
                    "model": model,
                    "size": size,
                    "nproc": nproc,
                    "image": args.image,
                    "epochs": args.epochs,
                    "converge": args.converge,
                    "mode": args.mode,
                    "batch_size": args.batch_size,
                    "memory_budget_gb": args.memory_budget_gb,
                }
                print(f"... {model} at {size:,} nodes, {args.mode}, {nproc} rank(s)", flush=True)
                row = _subprocess("--_case", case, args.case_timeout)
                rows.append({"model": model, "size": size, "nproc": nproc, **row})
    return rows


# -- export ------------------------------------------------------------------------------------


def run_export(payload: dict[str, Any]) -> dict[str, Any]:
    """``read_graph`` once in this (fresh) process: seconds, RSS growth and final size."""
    import neo4j

    from mmgraph.graph.export import read_graph
    from mmgraph.graph.store import GraphStore

    with neo4j.GraphDatabase.driver(payload["uri"], auth=tuple(payload["auth"])) as driver:
        store = GraphStore(driver, payload["database"])
        store.counts()  # connect (and load the driver's code paths) before measuring
        before = rss_bytes()
        reset = reset_peak()
        t0 = time.perf_counter()
        arrays = read_graph(store)
        seconds = time.perf_counter() - t0
        peak = hwm_bytes()
        after = rss_bytes()
    nodes = sum(len(u) for u in arrays.uids.values())
    edges = sum(len(e[0]) for e in arrays.edges.values())
    growth = peak - before
    return {
        "nodes": nodes,
        "edges": edges,
        "seconds": seconds,
        "nodes_per_s": nodes / seconds,
        "final_bytes": arrays.nbytes,
        "rss_before_bytes": before,
        "peak_growth_bytes": growth,
        "held_after_bytes": after - before,
        "peak_over_final": growth / arrays.nbytes,
        # Without the reset the peak is the process's lifetime one (an upper bound).
        "peak_reset_before_call": reset,
    }


def export_benchmark(args: argparse.Namespace, settings) -> dict[str, Any]:
    """Write the export graph into Neo4j, then time ``read_graph`` in a subprocess."""
    import neo4j

    from mmgraph.graph.local_neo4j import LocalNeo4j
    from mmgraph.graph.store import GraphStore, NodeRow, RelRow

    n, m, batch = args.export_nodes, args.export_rels, args.export_batch
    with ExitStack() as stack:
        if settings.neo4j_uri:
            uri, auth = settings.neo4j_uri, (settings.neo4j_user, settings.neo4j_password)
        else:
            home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            server = stack.enter_context(
                LocalNeo4j.from_settings(settings.model_copy(update={"home": home}))
            )
            uri, auth = server.uri, (server.user, server.password)
        driver = stack.enter_context(neo4j.GraphDatabase.driver(uri, auth=auth))
        store = GraphStore(driver, settings.neo4j_database)
        store.setup_schema()
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            stop = min(start + batch, n)
            vectors = rng.standard_normal((stop - start, EXPORT_DIM), dtype=np.float32)
            rows = [
                NodeRow(f"x:{i}", "Item", {"rank": i}, {"text": (vectors[i - start], "bench@1")})
                for i in range(start, stop)
            ]
            store.write_batch(rows, [], "bench")
        write_s = time.perf_counter() - t0
        src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
        for start in range(0, m, batch):
            rels = [
                RelRow(f"x:{s}", f"x:{d}", "LINKS")
                for s, d in zip(src[start : start + batch], dst[start : start + batch], strict=True)
            ]
            store.write_batch([], rels, "bench")
        payload = {"uri": uri, "auth": list(auth), "database": settings.neo4j_database}
        print(f"... export of {n:,} nodes (written in {write_s:.0f} s)", flush=True)
        result = _subprocess("--_export", payload, None)
    return {"write_nodes_s": write_s, "dim": EXPORT_DIM, **result}


# -- the emoji quality report ------------------------------------------------------------------


def emoji_report(path: Path) -> dict[str, Any]:
    """Print ``mmgraph evaluate --all --json`` output as a table with the issue's ratio checks."""
    raw = json.loads(path.read_text())
    models: dict[str, dict[str, Any]] = raw["models"]
    columns = ("mrr", "hits@1", "hits@3", "hits@10", "auc", "nmi", "ari", "recall@1", "recall@10")
    print(f"{'model':<10}" + "".join(f"{c:>10}" for c in columns) + f"{'train s':>10}")
    for name, metrics in models.items():
        values = [metrics.get(c) for c in columns]
        cells = "".join(f"{'-' if v is None else f'{v:.3f}':>10}" for v in values)
        seconds = metrics.get("train_seconds")
        print(f"{name:<10}{cells}{'-' if seconds is None else f'{seconds:.0f}':>10}")

    def best(names: tuple[str, ...], metric: str) -> tuple[str | None, float | None]:
        found = [(models[n][metric], n) for n in names if models.get(n, {}).get(metric) is not None]
        return (max(found)[1], max(found)[0]) if found else (None, None)

    gnn, gnn_mrr = best(GNN_MODELS, "mrr")
    base, base_mrr = best(BASELINES, "mrr")
    _, fastrp_mrr = best(("fastrp",), "mrr")
    _, features_mrr = best(("features",), "mrr")
    retrieval, recall = best(tuple(models), "recall@10")
    checks = {
        "best_gnn": gnn,
        "best_baseline": base,
        "gnn_over_baseline_mrr": gnn_mrr / base_mrr if gnn_mrr and base_mrr else None,
        "gnn_over_fastrp_mrr": gnn_mrr / fastrp_mrr if gnn_mrr and fastrp_mrr else None,
        "gnn_over_features_mrr": gnn_mrr / features_mrr if gnn_mrr and features_mrr else None,
        "best_text_to_image_recall@10": recall,
        "best_retrieval_model": retrieval,
    }
    print()
    for label, key, target in (
        (f"best GNN ({gnn}) / best baseline ({base}) MRR", "gnn_over_baseline_mrr", MRR_TARGET),
        (f"best GNN ({gnn}) / fastrp MRR", "gnn_over_fastrp_mrr", MRR_TARGET),
        (f"best GNN ({gnn}) / raw features' cosine MRR", "gnn_over_features_mrr", None),
        (
            f"text->image recall@10 ({retrieval}; ridge {RIDGE_RECALL})",
            "best_text_to_image_recall@10",
            RECALL_TARGET,
        ),
    ):
        value = checks[key]
        shown = "-" if value is None else f"{value:.3f}"
        if target is None:
            print(f"{label:<62}{shown:>8}  (no target)")
            continue
        verdict = "n/a" if value is None else ("ok" if value >= target else "MISSED")
        print(f"{label:<62}{shown:>8}  target >= {target:.2f}  {verdict}")
    return {"split": raw.get("split"), "models": models, "checks": checks}


# -- main ----------------------------------------------------------------------------------------


def _print_train(rows: list[dict[str, Any]]) -> None:
    head = ("mode", "batch", "layers", "mp edges", "s/epoch", "val s", "epochs", "best", "val MRR")
    tail = ("test MRR", "est. GB", "peak GB", "split s")
    print(f"{'model':<7}{'nodes':>10}{'ranks':>6}" + "".join(f"{h:>11}" for h in head + tail))
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<7}{r['size']:>10,}{r['nproc']:>6}  {r['error']}")
            continue
        cells = (
            r["mode"],
            "-" if r["batch_size"] is None else f"{r['batch_size']:,}",
            "rebuilt" if r["recompute_layers"] else "kept",
            f"{r['mp_edges']:,}",
            f"{r['epoch_s']:.2f}",
            f"{r['val_s']:.2f}",
            r["epochs"],
            r["best_epoch"],
            f"{r['val_mrr']:.3f}",
            f"{r['test_mrr']:.3f}",
            f"{r['estimated_full_gb']:.2f}",
            f"{r['peak_rss_gb']:.2f}",
            f"{r['split_s']:.1f}",
        )
        print(
            f"{r['model']:<7}{r['size']:>10,}{r['nproc']:>6}" + "".join(f"{c:>11}" for c in cells)
        )
    print("s/epoch: median training pass after the first epoch; val s: validation that follows it")
    print("layers: kept for the backward pass, or rebuilt there (keeping them exceeds the budget)")
    print("random ranking of a held-out edge among its 120 candidates: MRR about 0.045")


def _print_export(e: dict[str, Any]) -> None:
    if "error" in e:
        print(f"export: {e['error']}")
        return
    print(
        f"export {e['nodes']:,} nodes x {e['dim']}-d + {e['edges']:,} edges: "
        f"{e['seconds']:.1f} s ({e['nodes_per_s']:,.0f} nodes/s); final matrices "
        f"{e['final_bytes'] / 1e6:,.0f} MB, peak RSS growth {e['peak_growth_bytes'] / 1e6:,.0f} MB"
        f" = {e['peak_over_final']:.2f}x (target < 1.5x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    parser.add_argument("--sizes", type=ints, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--models", type=lambda s: s.split(","), default=list(GNN_MODELS))
    parser.add_argument("--epochs", type=int, default=3, help="measured, after one warm-up")
    parser.add_argument(
        "--mode",
        choices=("auto", "full", "mini"),
        default="auto",
        help="auto: the memory budget decides (the trainer's rule)",
    )
    parser.add_argument("--batch-size", type=int, default=4096, help="with --mode mini")
    parser.add_argument("--memory-budget-gb", type=float, default=8.0, help="with --mode auto")
    parser.add_argument("--converge", action="store_true", help="train to early stopping")
    parser.add_argument("--nproc", type=ints, default=[1], help="ranks, e.g. 1,2")
    parser.add_argument("--no-image", dest="image", action="store_false")
    parser.add_argument("--case-timeout", type=float, default=None, help="seconds per case")
    parser.add_argument("--export-nodes", type=int, default=1_000_000)
    parser.add_argument("--export-rels", type=int, default=None, help="default: = nodes")
    parser.add_argument("--export-batch", type=int, default=2000)
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-export", action="store_true")
    parser.add_argument("--emoji-report", type=Path, help="print this evaluate JSON and stop")
    parser.add_argument("--_case", help=argparse.SUPPRESS)
    parser.add_argument("--_export", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._case:
        print(json.dumps(run_case(json.loads(args._case))))
        return
    if args._export:
        print(json.dumps(run_export(json.loads(args._export))))
        return
    if args.emoji_report:
        # Kept beside the cost figures of an earlier run, if any.
        figures = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        figures["emoji"] = emoji_report(args.emoji_report)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2, default=str))
        return
    if args.epochs < 0:
        parser.error("--epochs must be at least 0 (0: the warm-up epoch alone)")
    if args.export_rels is None:
        args.export_rels = args.export_nodes

    from mmgraph.core.config import Settings

    settings = Settings.from_env()
    figures: dict[str, Any] = {
        "machine": f"{platform.node()} {platform.machine()}",
        "args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
    }
    if not args.skip_train:
        figures["train"] = train_cases(args)
    if not args.skip_export:
        figures["export"] = export_benchmark(args, settings)
        figures["neo4j_heap"], figures["neo4j_pagecache"] = (
            settings.neo4j_heap,
            settings.neo4j_pagecache,
        )
    print()
    if "train" in figures:
        _print_train(figures["train"])
    if "export" in figures:
        _print_export(figures["export"])
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
