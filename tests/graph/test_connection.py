"""Which Neo4j ``open_store`` uses."""

from __future__ import annotations

import pytest

from mmgraph.core.config import Settings
from mmgraph.graph.connection import ConfigurationError, open_store
from mmgraph.graph.local_neo4j import LocalNeo4j


def test_a_server_uri_needs_a_password(settings: Settings) -> None:
    configured = settings.model_copy(update={"neo4j_uri": "bolt://127.0.0.1:1"})
    with pytest.raises(ConfigurationError, match="NEO4J_PASSWORD"), open_store(configured):
        pass


def test_a_server_named_by_uri_is_used(settings: Settings, neo4j_server: LocalNeo4j) -> None:
    configured = settings.model_copy(
        update={"neo4j_uri": neo4j_server.uri, "neo4j_password": neo4j_server.password}
    )
    with open_store(configured) as store:
        assert store.driver.execute_query("RETURN 1 AS one").records[0]["one"] == 1


def test_another_commands_local_server_is_not_shared(
    settings: Settings, neo4j_server: LocalNeo4j
) -> None:
    # The session's server runs attached to pytest, as one started by a command would.
    assert neo4j_server.is_running()
    with pytest.raises(ConfigurationError, match="mmgraph neo4j start"), open_store(settings):
        pass
