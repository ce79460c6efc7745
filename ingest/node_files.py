"""The bulk load's node files, written by a process of their own on another core: formatting
vectors as the importer's CSV text (:mod:`mmgraph.graph.import_files`) is most of the cost of the
files, and the load's own process is busy reading and validating its input meanwhile.

Rows go to the worker with their vectors already as bytes (a pickled numpy array costs ten times
more), at most ``IN_FLIGHT`` batches ahead of it, so memory stays bounded and the load waits when
the worker falls behind; what the files cannot carry comes back with each row's input position.
The worker is forked before the run opens anything else (no scratch file, no connection, no
encoder threads to inherit), and ended on leaving, whatever happened.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from mmgraph.graph.import_files import ImportFiles, ImportGroup
from mmgraph.graph.store import NodeRow

# Batches sent and not yet written.
IN_FLIGHT = 4
# Rows (with their input positions) as the worker takes them and gives back what waits.
Positioned = list[tuple[int, NodeRow]]

_files: ImportFiles | None = None  # the worker's own


class NodeFilesWriter:
    """Node rows written as the importer's files in ``folder`` by a worker process (see the
    module); :meth:`close` waits for every row and gives the node groups to import."""

    def __init__(self, folder: Path, run_id: str) -> None:
        context = multiprocessing.get_context("fork")
        self._pool = ProcessPoolExecutor(1, context, initializer=_open, initargs=(folder, run_id))
        self._pool.submit(_started).result()  # forked now, not at the first batch
        self._pending: deque[Future[Positioned]] = deque()

    def __enter__(self) -> NodeFilesWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(cancel_futures=True)

    def add(self, rows: Positioned) -> Positioned:
        """Send rows (with their input positions) to be written; return, for rows sent before
        and written since, the values the files cannot carry (see :meth:`ImportFiles.add_nodes`)."""
        sent = [(position, NodeRow(row.uid, row.type, row.properties())) for position, row in rows]
        self._pending.append(self._pool.submit(_add, sent))
        later: Positioned = []
        while len(self._pending) > IN_FLIGHT:
            later += self._pending.popleft().result()
        return later

    def close(self) -> tuple[list[ImportGroup], Positioned]:
        """Wait for every row; the node groups written, and what the last rows left for later."""
        later: Positioned = []
        while self._pending:
            later += self._pending.popleft().result()
        return self._pool.submit(_close).result(), later


def _open(folder: Path, run_id: str) -> None:
    global _files
    _files = ImportFiles(folder, run_id)


def _started() -> None:
    return None


def _worker_files() -> ImportFiles:
    if _files is None:
        raise RuntimeError("the node files worker was not started")
    return _files


def _add(rows: Positioned) -> Positioned:
    positions = {row.uid: position for position, row in rows}
    later = _worker_files().add_nodes([row for _, row in rows])
    return [(positions[row.uid], row) for row in later]


def _close() -> list[ImportGroup]:
    nodes, _ = _worker_files().close()
    return nodes
