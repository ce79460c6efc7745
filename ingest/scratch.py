"""What an ingest run remembers of its whole input, in a temporary SQLite file, so memory stays
bounded by the batch size however large the input is."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mmgraph.graph.store import RelRow
from mmgraph.ingest.records import Item, Location, Relation


class Scratch:
    """What a run remembers of its whole input, kept in a temporary SQLite file, not in memory.

    Holds each item uid's type and first location, whether it was written, the relations (written
    after every item), and numbers waiting for their type's first standardisation fit.
    """

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="mmgraph-ingest-")
        self.db = sqlite3.connect(Path(self._dir.name) / "run.sqlite", isolation_level=None)
        self.db.executescript(
            """
            PRAGMA journal_mode = OFF;
            PRAGMA synchronous = OFF;
            PRAGMA cache_size = -16384;
            CREATE TABLE items (uid TEXT PRIMARY KEY, type TEXT NOT NULL, source INTEGER NOT NULL,
                                number INTEGER NOT NULL, written INTEGER NOT NULL DEFAULT 0)
                WITHOUT ROWID;
            CREATE TABLE relations (src TEXT, dst TEXT, type TEXT, weight REAL, props TEXT,
                                    source INTEGER, number INTEGER, raw TEXT);
            CREATE TABLE numbers (type TEXT, uid TEXT, numbers TEXT);
            """
        )
        # One transaction for the whole run: the file is thrown away, never committed to.
        self.db.execute("BEGIN")
        self._sources: list[str] = []
        self._source_ids: dict[str, int] = {}

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()
        self._dir.cleanup()

    def _source(self, location: Location) -> int:
        # File names are kept once, in memory (a path may hold bytes SQLite cannot store).
        if location.source not in self._source_ids:
            self._source_ids[location.source] = len(self._sources)
            self._sources.append(location.source)
        return self._source_ids[location.source]

    def claim(self, uid: str, type_name: str, location: Location) -> tuple[str, Location] | None:
        """Remember that ``uid`` is a ``type_name`` first seen at ``location``; if it was seen
        before, return the type and location it was first seen with instead."""
        row = self.db.execute(
            "SELECT type, source, number FROM items WHERE uid = ?", (uid,)
        ).fetchone()
        if row is not None:
            return row[0], Location(self._sources[row[1]], row[2])
        self.db.execute(
            "INSERT INTO items (uid, type, source, number) VALUES (?, ?, ?, ?)",
            (uid, type_name, self._source(location), location.number),
        )
        return None

    def mark_written(self, uids: Iterable[str]) -> None:
        self.db.executemany("UPDATE items SET written = 1 WHERE uid = ?", ((u,) for u in uids))

    def unwritten(self, uids: Iterable[str]) -> set[str]:
        """The uids among ``uids`` that this run did not write."""
        query = "SELECT 1 FROM items WHERE uid = ? AND written = 1"
        return {uid for uid in uids if self.db.execute(query, (uid,)).fetchone() is None}

    def hold_relation(self, location: Location, relation: Relation, raw: Any) -> None:
        self.db.execute(
            "INSERT INTO relations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                relation.src,
                relation.dst,
                relation.type,
                relation.weight,
                json.dumps(relation.props),
                self._source(location),
                location.number,
                json.dumps(raw, default=repr),
            ),
        )

    def relations(self) -> Iterator[tuple[Location, RelRow, Any]]:
        """The held relations in input order."""
        rows = self.db.execute("SELECT * FROM relations ORDER BY rowid")
        for src, dst, type_name, weight, props, source, number, raw in rows:
            location = Location(self._sources[source], number)
            yield location, RelRow(src, dst, type_name, weight, json.loads(props)), json.loads(raw)

    def hold_numbers(self, item: Item) -> None:
        self.db.execute(
            "INSERT INTO numbers VALUES (?, ?, ?)",
            (item.type, item.uid, json.dumps(item.numbers)),
        )

    def numbers(self, type_name: str) -> Iterator[tuple[str, dict[str, float]]]:
        """The held ``(uid, numbers)`` of ``type_name`` items, in input order."""
        rows = self.db.execute(
            "SELECT uid, numbers FROM numbers WHERE type = ? ORDER BY rowid", (type_name,)
        )
        for uid, numbers in rows:
            yield uid, json.loads(numbers)
