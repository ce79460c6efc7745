"""Open the graph store on the configured Neo4j: a server named by ``NEO4J_URI``, or the local one.

Without ``NEO4J_URI``, the local Neo4j started in the background for ``MMGRAPH_HOME`` (``mmgraph
neo4j start``) is used; if none runs, one is started for the duration of the ``with`` block and
stopped after. A server that another command started for its own duration is not shared.
Asked for GDS (``gds=True``), the local server started for the block loads it; a server already
running without it, local or named by ``NEO4J_URI``, is refused with a :class:`GdsUnavailableError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import neo4j

from mmgraph.core.config import Settings
from mmgraph.core.errors import FailedPreconditionError
from mmgraph.graph.gds import GdsUnavailableError, gds_available
from mmgraph.graph.local_neo4j import LocalNeo4j, running_server
from mmgraph.graph.store import GraphStore, driver_errors


class ConfigurationError(FailedPreconditionError):
    """The settings do not name a usable Neo4j."""


@contextmanager
def open_store(settings: Settings, gds: bool = False) -> Iterator[GraphStore]:
    """Yield a :class:`GraphStore` on the configured Neo4j, closing what it opened afterwards.

    With ``gds`` the store's Neo4j must offer Open GDS's ``gds.*`` procedures.
    """
    with ExitStack() as stack:
        if settings.neo4j_uri:
            if settings.neo4j_password is None:
                raise ConfigurationError("NEO4J_URI is set but NEO4J_PASSWORD is not")
            uri, auth = settings.neo4j_uri, (settings.neo4j_user, settings.neo4j_password)
        else:
            local = LocalNeo4j.from_settings(settings, gds=gds)
            server = running_server(settings.home)
            if server is None:
                stack.enter_context(local)
            elif not server.detached:
                # Another command's server stops when that command ends, under our feet.
                raise ConfigurationError(
                    f"another mmgraph command runs a local Neo4j for {settings.home} "
                    f"(pid {server.pid}); to share one, run `mmgraph neo4j start` first"
                )
            elif gds and not server.gds:
                raise GdsUnavailableError(
                    f"the local Neo4j for {settings.home} (pid {server.pid}) runs without GDS; "
                    "restart it with `mmgraph neo4j stop` and `mmgraph neo4j start --gds`"
                )
            uri, auth = local.uri, (local.user, local.password)
        driver = stack.enter_context(neo4j.GraphDatabase.driver(uri, auth=auth))
        with driver_errors():
            driver.verify_connectivity()
        store = GraphStore(driver, settings.neo4j_database)
        if gds and settings.neo4j_uri and not gds_available(store):
            raise GdsUnavailableError(
                f"the Neo4j at {settings.neo4j_uri} has no Graph Data Science plugin "
                "(gds.* procedures); install Open GDS there, or unset NEO4J_URI and run "
                "`mmgraph neo4j start --gds`"
            )
        yield store
