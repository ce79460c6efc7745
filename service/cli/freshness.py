"""``mmgraph refresh`` and ``mmgraph retrain-if-stale``: fresh embeddings for new nodes without
retraining, and a retrain only when the graph has outgrown the promoted model
(:mod:`mmgraph.service.workflows.freshness`). Both suit a scheduler, after
``mmgraph ingest --from-dir``::

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

from typing import Annotated, Any

import typer

from mmgraph.core.config import Settings
from mmgraph.gnn.names import DEFAULT_STALENESS_THRESHOLD
from mmgraph.service.cli.options import JsonOption
from mmgraph.service.cli.output import emit_json, errors


def register(app: typer.Typer) -> None:
    """Add ``refresh`` and ``retrain-if-stale`` to ``app``."""
    app.command("refresh")(refresh_command)
    app.command("retrain-if-stale")(retrain_command)


def refresh_command(as_json: JsonOption = False) -> None:
    """Embed the nodes added since the promoted model was trained with that model (no
    retraining), write them to Neo4j and serve them (a running server picks them up)."""
    from mmgraph.service.workflows.freshness import refresh

    report = refresh(Settings.from_env())
    if as_json:
        emit_json(report.to_json())
        return
    total = sum(report.new_nodes.values())
    console = errors()
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
    ] = DEFAULT_STALENESS_THRESHOLD,
    min_gain: Annotated[
        float,
        typer.Option(help="Promote only if validation MRR gains at least this (may be < 0)."),
    ] = 0.0,
    as_json: JsonOption = False,
) -> None:
    """Retrain the promoted model on the current graph if it is stale; promote the new run only
    if its validation MRR is not worse than the promoted one's on the same split."""
    from mmgraph.service.workflows.freshness import retrain

    report = retrain(Settings.from_env(), threshold=threshold, min_gain=min_gain)
    if as_json:
        emit_json(report.to_json())
        return
    _staleness(report.staleness)
    errors().print(report.message)
    if report.validation_mrr:
        mrr = report.validation_mrr
        errors().print(
            f"validation MRR: active {_num(mrr['active'])}, new {_num(mrr['candidate'])}"
        )


def _staleness(found: dict[str, Any]) -> None:
    errors().print(
        f"since training: {found['new_nodes']} new nodes ({found['node_share']:.1%}), "
        f"{found['new_edges']} new target edges ({found['edge_share']:.1%})"
    )


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
