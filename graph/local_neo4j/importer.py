"""Neo4j's offline importer (``neo4j-admin database import full``), run from the launcher's own
jars against the local Neo4j's data folder while its server is stopped.

The import replaces the database's files (``--overwrite-destination``); a failed import leaves
no database behind, so the next start creates an empty one, as it was before the load.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmgraph.graph.import_files import ARRAY_DELIMITER_OPTION, ImportGroup
from mmgraph.graph.local_neo4j import build
from mmgraph.graph.local_neo4j.errors import LocalNeo4jError, tail
from mmgraph.graph.local_neo4j.state import neo4j_dir

logger = logging.getLogger(__name__)

ADMIN_TOOL = "org.neo4j.cli.AdminTool"
# The importer's own memory: its heap, and its off-heap caches (its default, 90% of the
# machine's memory, is not for a machine that others share).
IMPORT_HEAP = "1g"
IMPORT_OFF_HEAP = "2g"
_IMPORTED = re.compile(r"Imported:\s+(\d+) nodes\s+(\d+) relationships\s+(\d+) properties")


class ImportFailedError(LocalNeo4jError):
    """The offline importer refused the files or failed; the database was left empty."""


@dataclass(frozen=True)
class ImportReport:
    """What the importer reported loading, and how long it ran."""

    nodes: int
    relationships: int
    properties: int
    seconds: float


def import_full(
    home: Path,
    cache: Path,
    nodes: Sequence[ImportGroup],
    relationships: Sequence[ImportGroup],
    work: Path,
    database: str = "neo4j",
) -> ImportReport:
    """Import the CSV groups (see :mod:`mmgraph.graph.import_files`) as the whole of
    ``database`` in the local Neo4j of ``home``, whose server must be stopped. ``work`` holds
    the importer's configuration and report; the files are named relative to it."""
    launcher = build.ensure_launcher(cache)
    data_dir = neo4j_dir(home)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    conf = work / "conf"
    conf.mkdir(exist_ok=True)
    multiline = [str(g.data.relative_to(work)) for g in (*nodes, *relationships) if g.multiline]
    command = [
        build.java(),
        f"-Xmx{IMPORT_HEAP}",
        "-cp",
        f"{launcher / 'lib'}/*",
        ADMIN_TOOL,
        "database",
        "import",
        "full",
        database,
        "--verbose",
        "--overwrite-destination=true",
        "--bad-tolerance=0",
        "--normalize-types=false",
        f"--array-delimiter={ARRAY_DELIMITER_OPTION}",
        f"--max-off-heap-memory={IMPORT_OFF_HEAP}",
        "--report-file=import.report",
        *(
            ["--multiline-fields-format=v2", f"--multiline-fields={','.join(multiline)}"]
            if multiline
            else []
        ),
        *(f"--nodes={_files(group, work)}" for group in nodes),
        *(f"--relationships={_files(group, work)}" for group in relationships),
    ]
    env = {"NEO4J_HOME": str(data_dir), "NEO4J_CONF": str(conf), "PATH": build.java_path()}
    logger.info("Importing %d node and %d relationship files", len(nodes), len(relationships))
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    except BaseException:  # an interrupt: the importer got it too, mid-write
        _remove_database(data_dir, database)
        raise
    seconds = time.monotonic() - started
    counts = _IMPORTED.search(done.stdout)
    if done.returncode != 0 or counts is None:
        _remove_database(data_dir, database)
        raise ImportFailedError(
            f"the offline import into {data_dir} failed (exit status {done.returncode}); "
            "the database was left empty",
            tail(done.stdout),
        )
    logger.info("Imported in %.1f s: %s", seconds, " ".join(counts.groups()))
    return ImportReport(*(int(n) for n in counts.groups()), seconds=seconds)


def _files(group: ImportGroup, work: Path) -> str:
    return f"{group.header.relative_to(work)},{group.data.relative_to(work)}"


def _remove_database(data_dir: Path, database: str) -> None:
    for folder in ("databases", "transactions"):
        shutil.rmtree(data_dir / "data" / folder / database, ignore_errors=True)
