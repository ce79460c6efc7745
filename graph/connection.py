"""Open the graph store on the configured Neo4j: a server named by ``NEO4J_URI``, or the local one.

Without ``NEO4J_URI``, a local Neo4j already running for ``MMGRAPH_HOME`` (``mmgraph neo4j start``)
is used; if none runs, one is started for the duration of the ``with`` block and stopped after.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import neo4j

from mmgraph.graph.config import Settings
from mmgraph.graph.local_neo4j import LocalNeo4j
from mmgraph.graph.store import GraphStore


class ConfigurationError(ValueError):
    """The settings do not name a usable Neo4j."""


@contextmanager
def open_store(settings: Settings) -> Iterator[GraphStore]:
    """Yield a :class:`GraphStore` on the configured Neo4j, closing what it opened afterwards."""
    with ExitStack() as stack:
        if settings.neo4j_uri:
            if settings.neo4j_password is None:
                raise ConfigurationError("NEO4J_URI is set but NEO4J_PASSWORD is not")
            uri, auth = settings.neo4j_uri, (settings.neo4j_user, settings.neo4j_password)
        else:
            local = LocalNeo4j.from_settings(settings)
            if not local.is_running():
                stack.enter_context(local)
            uri, auth = local.uri, (local.user, local.password)
        driver = stack.enter_context(neo4j.GraphDatabase.driver(uri, auth=auth))
        driver.verify_connectivity()
        yield GraphStore(driver, settings.neo4j_database)
