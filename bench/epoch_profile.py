"""Where a full-batch training epoch spends its time and memory (a benchmark, not a test).

For each model, on the synthetic graph of ``bench/train.py``: one warm-up epoch, then per phase
of the next ``--epochs`` epochs the median seconds and the peak RSS (``VmHWM`` reset just before
the phase) with its growth over the RSS at the phase's start. Phases: the epoch's draw of
message-passing and supervision edges, the forward pass, the loss with its negatives (and the
model's auxiliary loss), the backward pass, the optimiser step, and one validation pass. Each
model runs in its own subprocess (``--_case``), so peaks are its own; with ``--memory-limit-gb``
the subprocess gets that address-space limit, so a run that would swamp the machine fails
instead ("out of memory").

    python bench/epoch_profile.py [--size 100000] [--models gcn,mgat,hgt] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from memory import hwm_bytes, reset_peak, rss_bytes
from train import bench_split, synthetic_graph

RESULTS = Path(__file__).parent / "results" / "epoch_profile.json"
PHASES = ("draw", "forward", "loss", "backward", "step", "validation")


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Profile ``case["epochs"]`` full-batch epochs of one model (after a warm-up)."""
    import torch

    from mmgraph.gnn.distributed import resolve_device
    from mmgraph.gnn.experiment import DEFAULT_OPTIONS
    from mmgraph.gnn.models import MODELS, GraphMeta
    from mmgraph.gnn.train import TrainConfig, link_loss, validation_mrr

    data = synthetic_graph(case["size"], image=True)
    split = bench_split(data)
    del data
    config = TrainConfig()
    device = resolve_device(None)
    torch.manual_seed(0)
    val_graph = split.graph("val")
    model = MODELS[case["model"]](
        GraphMeta.from_data(val_graph),
        split.target_edge_types,
        **DEFAULT_OPTIONS.get(case["model"], {}),
    )
    model.reset_parameters()
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(0)
    rows: list[dict[str, dict[str, float]]] = []
    state: dict[str, Any] = {}

    def phase(name: str, fn) -> None:
        start_rss = rss_bytes()
        reset_peak()
        t0 = time.perf_counter()
        state[name] = fn()
        rows[-1][name] = {
            "s": time.perf_counter() - t0,
            "peak_gb": hwm_bytes() / 1e9,
            "growth_gb": (hwm_bytes() - start_rss) / 1e9,
        }

    def loss() -> torch.Tensor:
        graph, supervision, z = state["draw"][0], state["draw"][1], state["forward"]
        total = sum(
            link_loss(model, z, et, pos, config, generator, graph[et].edge_index)
            for et, pos in supervision.items()
        )
        aux = model.auxiliary_loss(graph, z)
        return total if aux is None else total + aux

    for _ in range(case["epochs"] + 1):
        rows.append({})
        model.train()
        optimizer.zero_grad()

        def draw():
            graph, supervision = split.train_graph(generator)
            return graph.to(device), {et: p.to(device) for et, p in supervision.items()}

        phase("draw", draw)
        phase("forward", lambda: model(state["draw"][0]))
        phase("loss", loss)
        phase("backward", lambda: state["loss"].backward())
        phase("step", optimizer.step)
        state.clear()
        phase("validation", lambda: validation_mrr(model, split, val_graph, device))
    measured = rows[1:]
    summary = {
        name: {
            key: statistics.median(r[name][key] for r in measured)
            for key in ("s", "peak_gb", "growth_gb")
        }
        for name in PHASES
    }
    mp_edges = sum(val_graph[et].edge_index.size(1) for et in val_graph.edge_types)
    return {
        "model": case["model"],
        "size": case["size"],
        "mp_edges": mp_edges,
        "phases": summary,
        "epoch_s": sum(summary[p]["s"] for p in PHASES if p != "validation"),
        "val_mrr": state["validation"],
        # VmHWM is reset before each phase: the run's peak is the largest phase peak.
        "peak_rss_gb": max(r[name]["peak_gb"] for r in rows for name in PHASES),
    }


def _subprocess(case: dict[str, Any], limit_gb: float | None) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--_case", json.dumps(case)]
    if limit_gb:
        cmd = ["prlimit", f"--as={int(limit_gb * 2**30)}", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-2:]
        return {"model": case["model"], "size": case["size"], "error": " | ".join(tail)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _print(rows: list[dict[str, Any]]) -> None:
    print(f"{'model':<6}{'phase':<12}{'seconds':>9}{'peak GB':>9}{'growth GB':>11}")
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<6}{'failed':<12}  {r['error']}")
            continue
        for name in PHASES:
            p = r["phases"][name]
            print(
                f"{r['model']:<6}{name:<12}{p['s']:>9.2f}{p['peak_gb']:>9.2f}{p['growth_gb']:>11.2f}"
            )
        print(
            f"{r['model']:<6}{'epoch':<12}{r['epoch_s']:>9.2f}{r['peak_rss_gb']:>9.2f}"
            f"{'':>11}  ({r['mp_edges']:,} mp edges; val MRR {r['val_mrr']:.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--models", type=lambda s: s.split(","), default=["gcn", "mgat", "hgt"])
    parser.add_argument("--epochs", type=int, default=2, help="measured, after one warm-up")
    parser.add_argument("--memory-limit-gb", type=float, default=None)
    parser.add_argument("--_case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._case:
        print(json.dumps(run_case(json.loads(args._case))))
        return
    rows = []
    for model in args.models:
        print(f"... {model} at {args.size:,} nodes", flush=True)
        case = {
            "model": model,
            "size": args.size,
            "epochs": args.epochs,
        }
        rows.append(_subprocess(case, args.memory_limit_gb))
    _print(rows)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
