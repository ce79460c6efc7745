"""The graph itself: its counts and ingest audit trail, the local Neo4j's life, and datasets
fetched into the cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgraph.core.config import Settings
from mmgraph.core.errors import FailedPreconditionError
from mmgraph.graph import audit
from mmgraph.graph.connection import open_store
from mmgraph.graph.local_neo4j import LocalNeo4j, ServerInfo, running_server, stop_running_server
from mmgraph.graph.store import GraphCounts
from mmgraph.ingest.datasets import get_dataset


class GdsRestartNeededError(FailedPreconditionError):
    """A local Neo4j without GDS already runs, and GDS was asked for."""


@dataclass(frozen=True)
class LocalStatus:
    """Whether the local Neo4j of a home runs, and where; :meth:`to_json` is ``mmgraph neo4j
    status --json``."""

    home: Path
    server: ServerInfo | None

    def to_json(self) -> dict[str, Any]:
        server = self.server
        return {
            "running": server is not None,
            "uri": server.uri if server else None,
            "pid": server.pid if server else None,
            "gds": server.gds if server else None,
            "home": str(self.home),
        }


def counts(settings: Settings) -> GraphCounts:
    """Nodes by type label and relationships by type."""
    with open_store(settings) as store:
        return store.counts()


def ingest_runs(settings: Settings, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` most recent ingest runs, newest first."""
    with open_store(settings) as store:
        return audit.runs(store, limit)


def start_local(settings: Settings, gds: bool = False) -> LocalStatus:
    """Start the local Neo4j in the background unless one already runs (it keeps running)."""
    server = running_server(settings.home)
    if server is not None and gds and not server.gds:
        raise GdsRestartNeededError(
            "a local Neo4j without GDS already runs: `mmgraph neo4j stop` first"
        )
    if server is None:
        LocalNeo4j.from_settings(settings, gds=gds).start(detach=True)
    return local_status(settings)


def stop_local(settings: Settings) -> bool:
    """Stop the local Neo4j of the home, whoever started it; whether one ran."""
    return stop_running_server(settings.home)


def local_status(settings: Settings) -> LocalStatus:
    """Whether the local Neo4j of the home runs, and where."""
    return LocalStatus(settings.home, running_server(settings.home))


def fetch_dataset(settings: Settings, name: str) -> Path:
    """Fetch a dataset's packages into the cache (once); the folder they are in."""
    return get_dataset(name).fetch(settings.cache)
