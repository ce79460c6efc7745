"""The ingest audit trail: one ``(:IngestRun)`` node per run, from its start to how it ended.

A run is recorded ``running`` when it starts and gets its status, counts and end time when it
ends; a run left ``running`` by a dead process is what scheduled runs mark ``stale``. The ledger
of ingested files (each run's ``sha256s``) lets a scheduled run skip a file already ingested.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from mmgraph.graph.store import GraphStore


def start_run(
    store: GraphStore, run_id: str, source: str, started: datetime | None = None, **props: Any
) -> None:
    """Record the start of an ingest run (status ``running``), at ``started`` (default: now;
    a bulk load records its run once the database it started writing exists)."""
    store.write(
        "CREATE (r:IngestRun {id: $id, source: $source, started: $now, status: 'running'}) "
        "SET r += $props",
        id=run_id,
        source=source,
        now=started or datetime.now(UTC),
        props=props,
    )


def finish_run(
    store: GraphStore, run_id: str, status: str, counts: dict[str, int], **props: Any
) -> None:
    """Record how an ingest run ended: its status and counts."""
    store.write(
        "MATCH (r:IngestRun {id: $id}) "
        "SET r.status = $status, r.finished = $now, r += $counts, r += $props",
        id=run_id,
        status=status,
        now=datetime.now(UTC),
        counts=counts,
        props=props,
    )


def runs(store: GraphStore, limit: int = 20) -> list[dict[str, Any]]:
    """The most recent ingest runs, newest first, as plain dicts."""
    records = store.read(
        "MATCH (r:IngestRun) RETURN properties(r) AS r ORDER BY r.started DESC LIMIT $limit",
        limit=limit,
    )
    return [r["r"] for r in records]


def ingested_sha256s(store: GraphStore, sha256s: Iterable[str]) -> dict[str, str]:
    """Which of these file SHA-256 digests (hex) a run with status ``ok`` or ``partial``
    ingested, each mapped to the id of the earliest such run. Runs record ``sha256s``; older
    ones only ``inputs`` entries ending in ``" sha256:<hex>"``, which are matched too."""
    records = store.read(
        "UNWIND $hashes AS h "
        "MATCH (r:IngestRun) WHERE r.status IN ['ok', 'partial'] "
        "AND (h IN coalesce(r.sha256s, []) "
        "OR any(i IN coalesce(r.inputs, []) WHERE i ENDS WITH ' sha256:' + h)) "
        "WITH h, r ORDER BY r.started "
        "RETURN h, collect(r.id)[0] AS run",
        hashes=list(sha256s),
    )
    return {r["h"]: r["run"] for r in records}


def running_runs(store: GraphStore) -> list[dict[str, Any]]:
    """The ingest runs whose status is still ``running``, oldest first, as plain dicts."""
    records = store.read(
        "MATCH (r:IngestRun {status: 'running'}) RETURN properties(r) AS r ORDER BY r.started"
    )
    return [r["r"] for r in records]
