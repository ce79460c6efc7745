"""A first load of the local Neo4j through the offline importer: which database may be loaded
(the local one of ``MMGRAPH_HOME``, never a server named by ``NEO4J_URI``, and only while it
holds nothing), and the server's stop and restart around the import.

A server started with ``mmgraph neo4j start`` is stopped for the import and started again as it
ran (same port, GDS if it had it); with none running, one is started after the import for the
writes that follow it (constraints, audit, leftovers) and stopped at the end. A server another
command runs for its own duration is not touched: the load is refused.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

import neo4j

from mmgraph.core.config import Settings
from mmgraph.core.errors import FailedPreconditionError
from mmgraph.graph.import_files import ImportGroup
from mmgraph.graph.local_neo4j import LocalNeo4j, running_server, stop_running_server
from mmgraph.graph.local_neo4j.importer import ImportReport, import_full
from mmgraph.graph.local_neo4j.state import ServerInfo, neo4j_dir
from mmgraph.graph.schema import SCHEMA_NAMES
from mmgraph.graph.store import GraphStore, driver_errors


class BulkLoadRefusedError(FailedPreconditionError):
    """A bulk load asked of a database it may not replace; nothing was changed."""


def bulk_load_possible(settings: Settings) -> bool:
    """Whether a bulk load of ``settings`` would be taken, judged without starting anything:
    no ``NEO4J_URI``, and either no local database yet (no server running, no database files)
    or a server started with ``mmgraph neo4j start`` whose database is empty."""
    if settings.neo4j_uri:
        return False
    server = running_server(settings.home)
    if server is None:
        return not _database_dir(settings).exists()
    if not server.detached:
        return False
    with _driver(settings, server.uri) as driver:
        return _contents(GraphStore(driver, settings.neo4j_database)) is None


class LocalBulkLoad:
    """A bulk load of the local database of ``settings``, refused on entry (with
    :class:`BulkLoadRefusedError`) for ``NEO4J_URI``, a server another command runs, or a
    database that holds anything.

    :attr:`work` is a temporary folder on the home's disk for the import files; :meth:`load`
    imports them; :meth:`store` is the loaded database. Leaving stops any server it started.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = ExitStack()
        self._server: ServerInfo | None = None
        self._store: GraphStore | None = None
        self.work = Path()

    def __enter__(self) -> LocalBulkLoad:
        if self.settings.neo4j_uri:
            raise BulkLoadRefusedError(
                f"--bulk loads only the local Neo4j, and NEO4J_URI names "
                f"{self.settings.neo4j_uri}: ingest without --bulk (transactional)"
            )
        self._server = running_server(self.settings.home)
        if self._server is not None and not self._server.detached:
            raise BulkLoadRefusedError(
                f"another mmgraph command runs the local Neo4j for {self.settings.home} "
                f"(pid {self._server.pid}); --bulk must stop it: let that command end first"
            )
        with self._running_store() as store:
            self._check_empty(store)
        self.settings.home.mkdir(parents=True, exist_ok=True)
        folder = tempfile.TemporaryDirectory(prefix="bulk-import-", dir=self.settings.home)
        self.work = Path(self._stack.enter_context(folder))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def load(
        self, nodes: Sequence[ImportGroup], relationships: Sequence[ImportGroup]
    ) -> ImportReport:
        """Check the database is still empty (a running server may have taken writes since),
        stop its server, import the files, and start the server again (or one for this load)."""
        if self._server is not None:
            with self._running_store() as store:
                self._check_empty(store)
            stop_running_server(self.settings.home)
        try:
            return import_full(
                self.settings.home,
                self.settings.cache,
                nodes,
                relationships,
                self.work,
                self.settings.neo4j_database,
            )
        finally:
            self._start()

    def store(self) -> GraphStore:
        """The loaded database (after :meth:`load`)."""
        if self._store is None:
            raise RuntimeError("LocalBulkLoad.store() before load()")
        return self._store

    @contextlib.contextmanager
    def _running_store(self) -> Iterator[GraphStore | None]:
        """The database as it is before the load: ``None`` when it has no files yet; a database
        with files and no server is started to be looked at, and stopped again."""
        if self._server is None and not _database_dir(self.settings).exists():
            yield None
            return
        with ExitStack() as stack:
            if self._server is not None:
                uri = self._server.uri
            else:
                uri = stack.enter_context(LocalNeo4j.from_settings(self.settings)).uri
            driver = stack.enter_context(_driver(self.settings, uri))
            yield GraphStore(driver, self.settings.neo4j_database)

    def _check_empty(self, store: GraphStore | None) -> None:
        found = None if store is None else _contents(store)
        if found is not None:
            raise BulkLoadRefusedError(
                f"--bulk replaces the whole database, and the local Neo4j for "
                f"{self.settings.home} holds {found}: ingest without --bulk (transactional)"
            )

    def _start(self) -> None:
        settings = self.settings
        if self._server is not None:
            # As it ran: detached, on its port, with GDS if it had it.
            local = LocalNeo4j(
                settings.home,
                settings.cache,
                settings.neo4j_heap,
                settings.neo4j_pagecache,
                port=self._server.port,
                gds=self._server.gds,
            )
            local.start(detach=True)
        else:
            local = self._stack.enter_context(LocalNeo4j.from_settings(settings))
        driver = self._stack.enter_context(_driver(settings, local.uri))
        self._store = GraphStore(driver, settings.neo4j_database)


def _database_dir(settings: Settings) -> Path:
    return neo4j_dir(settings.home) / "data" / "databases" / settings.neo4j_database


@contextlib.contextmanager
def _driver(settings: Settings, uri: str) -> Iterator[neo4j.Driver]:
    local = LocalNeo4j.from_settings(settings)
    with neo4j.GraphDatabase.driver(uri, auth=(local.user, local.password)) as driver:
        with driver_errors():
            driver.verify_connectivity()
        yield driver


def _contents(store: GraphStore) -> str | None:
    """What the database holds that a load would replace, in words, or ``None`` when it holds
    nothing: any node, or an index or constraint besides mmgraph's own schema."""
    nodes = store.read("MATCH (n) RETURN count(n) AS n")[0]["n"]
    if nodes:
        return f"{nodes:,} nodes"
    indexes = store.read(
        "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN collect(name) AS names"
    )[0]["names"]
    others = sorted(set(indexes) - SCHEMA_NAMES)
    return f"the indexes {', '.join(others)}" if others else None
