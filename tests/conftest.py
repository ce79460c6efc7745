"""Shared fixtures: one real local Neo4j for the whole session, and a clean store per test.

Tests of the server's own lifecycle start servers of their own; they are run first so that no two
Neo4j JVMs run at the same time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import neo4j
import pytest

from mmgraph.core.config import Settings
from mmgraph.graph.local_neo4j import LocalNeo4j
from mmgraph.graph.store import GraphStore

OWN_SERVER_MODULES = ("test_local_neo4j.py", "test_gds.py", "test_bulk.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: Path(str(item.fspath)).name not in OWN_SERVER_MODULES)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """Tests run tiny tensors: a second torch thread only adds contention (tiny models ran 50x
    slower with two threads on the shared 2-core machine)."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings with a temporary home and the real (shared) download cache."""
    base = Settings.from_env()
    return base.model_copy(update={"home": tmp_path_factory.mktemp("home"), "neo4j_uri": None})


@pytest.fixture(scope="session")
def neo4j_server(settings: Settings) -> Iterator[LocalNeo4j]:
    """The session's local Neo4j; a test may kill and restart it (its uri then changes)."""
    server = LocalNeo4j.from_settings(settings)
    with server:
        yield server


@pytest.fixture
def store(neo4j_server: LocalNeo4j) -> Iterator[GraphStore]:
    """A store on an emptied database with the schema in place."""
    with neo4j.GraphDatabase.driver(
        neo4j_server.uri, auth=(neo4j_server.user, neo4j_server.password)
    ) as driver:
        with driver.session() as session:
            session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS").consume()
        graph = GraphStore(driver)
        graph.setup_schema()
        yield graph


@pytest.fixture
def env(settings: Settings, neo4j_server: LocalNeo4j, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Point the CLI (which reads the environment) at the session's home and Neo4j."""
    monkeypatch.setenv("MMGRAPH_HOME", str(settings.home))
    monkeypatch.setenv("MMGRAPH_CACHE", str(settings.cache))
    monkeypatch.setenv("NEO4J_URI", neo4j_server.uri)
    monkeypatch.setenv("NEO4J_PASSWORD", neo4j_server.password)
    return Settings.from_env()
