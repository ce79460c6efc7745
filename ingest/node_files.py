"""The bulk load's node files, written by a process of their own on another core: formatting
vectors as the importer's CSV text (:mod:`mmgraph.graph.import_files`) is most of the cost of the
files, and the load's own process is busy reading and validating its input meanwhile.

Rows go to the worker with their vectors already as bytes (a pickled numpy array costs ten times
more), at most ``IN_FLIGHT`` batches ahead of it, so memory stays bounded and the load waits when
the worker falls behind; what the files cannot carry comes back with each row's input position.
Rows awaiting their type's first numeric fit are formatted as they come, without ``num``
columns, and spooled with their numbers in the worker's own file; once every fit is kept,
:meth:`NodeFilesWriter.release` has the worker write them with their ``num`` vectors while the
load goes on with its relations. The worker is forked before the run opens anything else (no
scratch file, no connection, no encoder threads to inherit), and ended on leaving.
"""

from __future__ import annotations

import multiprocessing
import pickle
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import IO, Any

from mmgraph.graph.import_files import ImportFiles, ImportGroup
from mmgraph.graph.schema import encoder_property, vector_property
from mmgraph.graph.store import NodeRow
from mmgraph.graph.vectors import to_bytes
from mmgraph.ingest.encoders import NumericEncoder
from mmgraph.ingest.numbers import num_vectors

# Batches sent and not yet written.
IN_FLIGHT = 4
# Rows (with their input positions) as the worker takes them and gives back what waits.
Positioned = list[tuple[int, NodeRow]]
# Rows awaiting their first numeric fit: input position, row, numbers.
Held = list[tuple[int, NodeRow, dict[str, float]]]
# The columns a held row's num vector adds, after its own.
NUM_COLUMNS = (encoder_property("num"), vector_property("num"))


class _Worker:
    """The worker process's files, and its spool of held rows."""

    def __init__(self, folder: Path, run_id: str) -> None:
        self.files = ImportFiles(folder, run_id)
        self.spool_dir = tempfile.TemporaryDirectory(prefix="held-", dir=folder)
        self.spool_path = Path(self.spool_dir.name) / "held.pickle"
        self.spool: IO[bytes] = self.spool_path.open("wb")


_worker: _Worker | None = None


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
        return self._send(_add, [(position, _bare(row)) for position, row in rows])

    def hold(self, rows: Held) -> Positioned:
        """Send rows awaiting their type's first numeric fit, with their numbers, to be written by
        :meth:`release`; return as :meth:`add` does."""
        if not rows:
            return []
        return self._send(
            _hold, [(position, _bare(row), numbers) for position, row, numbers in rows]
        )

    def release(self, fits: dict[str, NumericEncoder]) -> None:
        """Have the held rows written, each with the ``num`` vector of its type's first fit (in
        ``fits``), while the caller goes on."""
        self._pending.append(self._pool.submit(_release, fits))

    def close(self) -> tuple[list[ImportGroup], Positioned]:
        """Wait for every row; the node groups written, and what the last rows left for later."""
        later: Positioned = []
        while self._pending:
            later += self._pending.popleft().result()
        return self._pool.submit(_close).result(), later

    def _send(self, task: Callable[[Any], Positioned], rows: Positioned | Held) -> Positioned:
        self._pending.append(self._pool.submit(task, rows))
        later: Positioned = []
        while len(self._pending) > IN_FLIGHT:
            later += self._pending.popleft().result()
        return later


def _bare(row: NodeRow) -> NodeRow:
    """``row`` with its vectors as bytes among its properties: it pickles ten times faster."""
    return NodeRow(row.uid, row.type, row.properties())


def _open(folder: Path, run_id: str) -> None:
    global _worker
    _worker = _Worker(folder, run_id)


def _started() -> None:
    return None


def _this() -> _Worker:
    if _worker is None:
        raise RuntimeError("the node files worker was not started")
    return _worker


def _add(rows: Positioned) -> Positioned:
    positions = {row.uid: position for position, row in rows}
    later = _this().files.add_nodes([row for _, row in rows])
    return [(positions[row.uid], row) for row in later]


def _hold(rows: Held) -> Positioned:
    worker = _this()
    groups, later = worker.files.node_lines([row for _, row, _ in rows])
    types_and_numbers = [(row.type, numbers) for _, row, numbers in rows]
    pickle.dump((groups, types_and_numbers), worker.spool, protocol=pickle.HIGHEST_PROTOCOL)
    positions = {row.uid: position for position, row, _ in rows}
    return [(positions[row.uid], row) for row in later]


def _release(fits: dict[str, NumericEncoder]) -> Positioned:
    worker = _this()
    worker.spool.close()
    with worker.spool_path.open("rb") as spool:
        while spool.peek(1):
            groups, types_and_numbers = pickle.load(spool)
            nums = _num_columns(fits, types_and_numbers)
            for group in groups:
                given = [k for k, i in enumerate(group.indices) if nums[i] is not None]
                if given:
                    values = [nums[group.indices[k]] for k in given]
                    tags, vectors = (list(column) for column in zip(*values, strict=True))
                    columns = dict(zip(NUM_COLUMNS, (tags, vectors), strict=True))
                    worker.files.add_node_lines(group.subset(given), columns)
                if len(given) < len(group.indices):
                    without = [k for k, i in enumerate(group.indices) if nums[i] is None]
                    worker.files.add_node_lines(group.subset(without))
    worker.spool_dir.cleanup()
    return []


def _num_columns(
    fits: dict[str, NumericEncoder], types_and_numbers: list[tuple[str, dict[str, float]]]
) -> list[tuple[str, bytes] | None]:
    """Each held row's ``num`` tag and vector (as bytes), or ``None`` when it gets none."""
    by_type: dict[str, list[int]] = {}
    for i, (type_name, _) in enumerate(types_and_numbers):
        by_type.setdefault(type_name, []).append(i)
    nums: list[tuple[str, bytes] | None] = [None] * len(types_and_numbers)
    for type_name, rows in by_type.items():
        encoder = fits[type_name]
        vectors = num_vectors(encoder, [types_and_numbers[i][1] for i in rows])
        for i, vector in zip(rows, vectors, strict=True):
            if vector is not None:
                nums[i] = (encoder.tag, to_bytes(vector))
    return nums


def _close() -> list[ImportGroup]:
    nodes, _ = _this().files.close()
    return nodes
