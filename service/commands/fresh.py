"""``mmgraph refresh`` and ``mmgraph retrain-if-stale``: fresh embeddings for new nodes without
retraining, and a retrain only when the graph has outgrown the promoted model
(:mod:`mmgraph.service.freshness`). Both suit a scheduler, after ``mmgraph ingest --from-dir``::

    */10 * * * * mmgraph ingest --from-dir /srv/drop && mmgraph refresh --json
    0 3 * * *    mmgraph retrain-if-stale --threshold 0.2 --json

``mmgraph refresh --json`` prints::

    {"run_id": str, "new_nodes": {type: n}, "written": n, "appended": n,
     "served": null, "unknown_types": {type: n},
     "staleness": {"new_nodes": n, "new_edges": m, "node_share": x, "edge_share": y,
                   "trained_nodes": n, "trained_edges": m},
     "seconds": {"export": s, "infer": s, "write": s, "append": s, "index": s}}

(``served`` is null: a running server picks the nodes up on its own within a second.)

``mmgraph retrain-if-stale --json`` prints ``{"active_run_id", "threshold", "staleness": {...},
"stale": bool, "action": "none" | "promoted" | "kept", "message"}``; after a retrain also
``"run_id"`` (the new run), ``"promoted": bool``, ``"validation_mrr": {"active", "candidate",
"min_gain"}`` and ``"metrics": {"active": {...}, "candidate": {...}}`` (test metrics of each run
on its own split). Exit code 0 in every case above; errors exit as every command's do.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console

from mmgraph.core.config import Settings
from mmgraph.gnn.inductive import DEFAULT_THRESHOLD
from mmgraph.graph.connection import open_store
from mmgraph.service.errors import cli_errors
from mmgraph.service.freshness import refresh_embeddings, retrain_if_stale

console = Console(stderr=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Print a JSON object for programs.")]


def register(app: typer.Typer) -> None:
    """Add ``refresh`` and ``retrain-if-stale`` to ``app``."""
    app.command("refresh")(refresh_command)
    app.command("retrain-if-stale")(retrain_command)


def refresh_command(as_json: JsonOption = False) -> None:
    """Embed the nodes added since the promoted model was trained with that model (no
    retraining), write them to Neo4j and serve them (a running server picks them up)."""
    settings = Settings.from_env()
    with cli_errors(), open_store(settings) as store:
        report = refresh_embeddings(settings, store)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    total = sum(report.new_nodes.values())
    console.print(
        f"run {report.run_id}: {total} new node(s) embedded, {report.written} written to Neo4j "
        f"in {sum(report.seconds.values()):.1f} s"
    )
    _staleness(report.staleness)
    if report.unknown_types:
        console.print(f"not embedded (types the model does not know): {report.unknown_types}")


def retrain_command(
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Retrain when the share of new nodes or new edges passes this."
        ),
    ] = DEFAULT_THRESHOLD,
    min_gain: Annotated[
        float,
        typer.Option(help="Promote only if validation MRR gains at least this (may be < 0)."),
    ] = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Retrain the promoted model on the current graph if it is stale; promote the new run only
    if its validation MRR is not worse than the promoted one's on the same split."""
    settings = Settings.from_env()
    with cli_errors(), open_store(settings) as store:
        out = retrain_if_stale(settings, store, threshold=threshold, min_gain=min_gain)
    if as_json:
        typer.echo(json.dumps(out, indent=2, default=float))
        return
    _staleness(out["staleness"])
    console.print(out["message"])
    if "validation_mrr" in out:
        mrr = out["validation_mrr"]
        console.print(f"validation MRR: active {_num(mrr['active'])}, new {_num(mrr['candidate'])}")


def _staleness(found: dict[str, Any]) -> None:
    console.print(
        f"since training: {found['new_nodes']} new nodes ({found['node_share']:.1%}), "
        f"{found['new_edges']} new target edges ({found['edge_share']:.1%})"
    )


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
