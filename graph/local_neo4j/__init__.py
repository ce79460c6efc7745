"""A local Neo4j Community 5.26 for mmgraph, run as a child JVM when no ``NEO4J_URI`` is given.

The server is an embedded ``DatabaseManagementService`` opened by a small launcher class (the
Maven module in ``graph/launcher/``), with Bolt on 127.0.0.1 only and auth on. The launcher and
Neo4j's jars are built and fetched from Maven Central once into the cache (:mod:`.build`); the
database, its logs, the generated password and a state file (``server.json``: pid and port of the
running server, and whether GDS is on; :mod:`.state`) live in ``<home>/neo4j/``.

Open GDS (Graph Data Science) is optional: a server started with ``gds=True`` also loads GDS's jars
(the Maven module in ``graph/launcher/gds/``, fetched on first use only) and offers its ``gds.*``
procedures; the default start-up never fetches or loads them.

Every start maps Neo4j's classes from a class-data-sharing archive (:mod:`.class_archive`)
instead of loading them from the jars. :class:`LocalNeo4j` (:mod:`.server`) starts and stops one.
"""

from mmgraph.graph.local_neo4j import build
from mmgraph.graph.local_neo4j.build import LAUNCHER_JAR, ensure_gds_plugins, ensure_launcher
from mmgraph.graph.local_neo4j.errors import LauncherBuildError, LocalNeo4jError, Neo4jStartError
from mmgraph.graph.local_neo4j.server import LocalNeo4j, class_archive_for
from mmgraph.graph.local_neo4j.state import ServerInfo, running_server, stop_running_server

__all__ = [
    "LAUNCHER_JAR",
    "LauncherBuildError",
    "LocalNeo4j",
    "LocalNeo4jError",
    "Neo4jStartError",
    "ServerInfo",
    "build",
    "class_archive_for",
    "ensure_gds_plugins",
    "ensure_launcher",
    "running_server",
    "stop_running_server",
]
