"""The alignment family side by side on the graph in Neo4j (a benchmark, not a test).

For each split seed, the graph (as ``mmgraph evaluate`` reads it) is split as ``mmgraph
evaluate --seed S`` splits it, and each row, a model with its options, is trained and evaluated
as ``evaluate`` does (:func:`~mmgraph.gnn.experiment.run_experiment`, ``TrainConfig(epochs,
seed=S)``, nothing saved): link MRR, NMI, text -> image Recall@1/10 on the held-out retrieval
nodes, training seconds, and the best validation MRR (what a choice between options may look
at; the test columns are for the report). The default rows are early fusion, the multimodal
autoencoder, adversarial alignment with and without its adversarial term
(``adversarial_weight=0``), closed-form CCA and deep CCA; ``--row NAME=MODEL:JSON`` adds a row
with other options. Prints each row's mean and standard deviation over the seeds and writes
``bench/results/alignment.json`` (``--output``).

Uses the Neo4j named by ``NEO4J_URI``, else the local one of ``MMGRAPH_HOME``:

    mmgraph ingest --dataset emoji && python bench/alignment.py --seeds 0,1,2
    python bench/alignment.py --rows autoencoder --row 'ae-noskip=autoencoder:{"input_skip": false}'

With ``--synthetic N`` the graph is instead ``bench/train.py``'s synthetic one of ``N`` nodes
(random 384-d texts, random 128-d images on half of the items, random links: nothing to learn,
a measure of cost only), split by ``split_graph`` as ``bench/train.py`` does up to 100k nodes
(one split: the graph's seed and the split's are 0), and each row trains exactly ``--epochs``
epochs:

    python bench/alignment.py --synthetic 100000 --epochs 10 --output /tmp/alignment-100k.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "alignment.json"
ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "early": ("early", {}),
    "autoencoder": ("autoencoder", {}),
    "adversarial": ("adversarial", {}),
    "adversarial w/o adv.": ("adversarial", {"adversarial_weight": 0.0}),
    "cca": ("cca", {}),
    "dcca": ("dcca", {}),
}
COLUMNS = ("mrr", "nmi", "recall@1", "recall@10", "train_seconds", "epochs", "val_mrr")


def parse_row(text: str) -> tuple[str, tuple[str, dict[str, Any]]]:
    """``NAME=MODEL:JSON`` -> ``(NAME, (MODEL, options))``."""
    name, _, rest = text.partition("=")
    model, _, options = rest.partition(":")
    return name, (model, json.loads(options) if options else {})


def run_row(model: str, options: dict[str, Any], split, uids, config) -> dict:
    """One row's metrics on one split with one ``TrainConfig`` (``epochs``: how many ran;
    ``val_mrr``: the best epoch's validation MRR)."""
    from mmgraph.gnn.experiment import run_experiment

    result = run_experiment(
        model=model, split=split, uids=uids, train_config=config, model_options=options
    )
    val = [row["val_mrr"] for row in result.history if "val_mrr" in row]
    return {
        **{k: result.metrics.get(k) for k in COLUMNS},
        "epochs": len(result.history),
        "val_mrr": max(val) if val else None,
    }


def graph_and_splits(args: argparse.Namespace):  # -> (uids, {seed: LinkSplit})
    """The graph in Neo4j split as ``mmgraph evaluate --seed S`` splits it, or the synthetic
    graph of ``--synthetic`` split as ``bench/train.py`` splits it."""
    from mmgraph.gnn.split import SplitConfig, split_graph

    if args.synthetic:
        from train import bench_split, synthetic_graph

        data = synthetic_graph(args.synthetic, image=True)
        uids = {t: [f"{t}:{i}" for i in range(data[t].num_nodes)] for t in data.node_types}
        splits = {seed: bench_split(data) for seed in args.seeds}
        return uids, splits

    from mmgraph.core.config import Settings
    from mmgraph.gnn.data import export_heterodata
    from mmgraph.graph.connection import open_store

    settings = Settings.from_env()
    with open_store(settings) as store:
        export = export_heterodata(store, cache_dir=settings.home / "cache" / "export")
    splits = {seed: split_graph(export.data, SplitConfig(seed=seed)) for seed in args.seeds}
    return export.uids, splits


def summary(per_seed: list[dict[str, Any]]) -> dict[str, tuple[float, float] | None]:
    """Per column, the mean and standard deviation over the seeds (``None`` if missing)."""
    out = {}
    for column in COLUMNS:
        values = [row[column] for row in per_seed if row.get(column) is not None]
        out[column] = (statistics.fmean(values), statistics.pstdev(values)) if values else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0])
    parser.add_argument("--rows", type=lambda s: s.split(","), default=list(ROWS))
    parser.add_argument("--row", action="append", type=parse_row, default=[])
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--synthetic", type=int, help="nodes of a synthetic graph instead")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    unknown = [name for name in args.rows if name not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)} or add --row")
    rows = {**{name: ROWS[name] for name in args.rows}, **dict(args.row)}

    from mmgraph.gnn.train import TrainConfig

    uids, splits = graph_and_splits(args)
    # A synthetic graph has nothing to learn: every row runs its epochs, for a cost per epoch.
    patience = args.epochs if args.synthetic else TrainConfig.patience
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in rows}
    for seed, split in splits.items():
        config = TrainConfig(epochs=args.epochs, patience=patience, seed=seed)
        for name, (model, options) in rows.items():
            found = run_row(model, options, split, uids, config)
            results[name].append({"seed": seed, **found})
            print(f"seed {seed} {name}: {json.dumps(found)}", flush=True)
    print(f"\n{'row':<24}" + "".join(f"{c:>18}" for c in COLUMNS))
    summaries = {name: summary(per_seed) for name, per_seed in results.items()}
    for name, columns in summaries.items():
        cells = "".join(
            f"{'-' if v is None else f'{v[0]:.3f} ± {v[1]:.3f}':>18}" for v in columns.values()
        )
        print(f"{name:<24}{cells}")
    args.output.parent.mkdir(exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "seeds": args.seeds,
                "epochs": args.epochs,
                "synthetic": args.synthetic,
                "rows": rows,
                "results": results,
                "summary": summaries,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
