"""What an ingest run remembers of its whole input, in a temporary SQLite file, so memory stays
bounded by the batch size however large the input is."""

from __future__ import annotations

import pickle
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from mmgraph.graph.store import RelRow
from mmgraph.ingest.records import Item, JsonText, Location, Relation

# The held relations with their endpoints' items, and which of them are plain (see
# :meth:`Scratch.plain_relations`).
_JOINED = "relations r LEFT JOIN items a ON a.uid = r.src LEFT JOIN items b ON b.uid = r.dst"
_PLAIN = "r.props IS NULL AND a.written AND b.written AND r.key NOT IN repeated"


def pack(value: Any) -> bytes:
    """``value`` as bytes to keep in the scratch file. Pickle: the file is this process's own,
    in a private temporary folder, read back only by it; pickle is several times faster than
    JSON for the raw records it keeps."""
    return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> Any:
    """A value kept with :func:`pack`."""
    return pickle.loads(data)


# Relations held in memory before they are inserted together.
_HELD_AT_ONCE = 1000
# A relation as (src, dst, type, weight).
PlainRelation = tuple[str, str, str, float]


class HeldRelation(NamedTuple):
    """A relation held until every item is written: where it came from, the row to write,
    whether this run wrote each endpoint, its raw record (decoded only if it is refused; a
    :class:`JsonText` is kept as its text, not pickled), and, when asked, whether its
    (src, type, dst) may occur more than once in the input."""

    location: Location
    row: RelRow
    src_written: bool
    dst_written: bool
    packed_raw: bytes | str
    repeated: bool = False

    def raw(self) -> Any:
        # A held relation's raw record is a dict, or JSON text kept as a plain str.
        if isinstance(self.packed_raw, str):
            return JsonText(self.packed_raw)
        return unpack(self.packed_raw)


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
            CREATE TABLE relations (src TEXT, dst TEXT, type TEXT, weight REAL, props BLOB,
                                    source INTEGER, number INTEGER, raw BLOB, key INTEGER);
            CREATE TABLE numbers (type TEXT, uid TEXT, numbers BLOB);
            """
        )
        # One transaction for the whole run: the file is thrown away, never committed to.
        self.db.execute("BEGIN")
        self._sources: list[str] = []
        self._source_ids: dict[str, int] = {}
        self._repeats_flagged = False
        self._held: list[tuple[Any, ...]] = []
        self._relations = 0

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
        inserted = self.db.execute(
            "INSERT OR IGNORE INTO items (uid, type, source, number) VALUES (?, ?, ?, ?)",
            (uid, type_name, self._source(location), location.number),
        ).rowcount
        if inserted:
            return None
        type_seen, source, number = self.db.execute(
            "SELECT type, source, number FROM items WHERE uid = ?", (uid,)
        ).fetchone()
        return type_seen, Location(self._sources[source], number)

    def mark_written(self, uids: Iterable[str]) -> None:
        self.db.executemany("UPDATE items SET written = 1 WHERE uid = ?", ((u,) for u in uids))

    def hold_relation(self, location: Location, relation: Relation, raw: Any) -> None:
        self._relations += 1
        self._held.append(
            (
                relation.src,
                relation.dst,
                relation.type,
                relation.weight,
                pack(relation.props) if relation.props else None,
                self._source(location),
                location.number,
                str(raw) if isinstance(raw, JsonText) else pack(raw),
                hash((relation.src, relation.type, relation.dst)),
            )
        )
        if len(self._held) >= _HELD_AT_ONCE:
            self._insert_held()

    def _insert_held(self) -> None:
        """Insert the relations held since the last insert, in one ``executemany``."""
        self.db.executemany("INSERT INTO relations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self._held)
        self._held.clear()

    def relation_count(self) -> int:
        return self._relations

    def relations(self, flag_repeats: bool = False, plain: bool = True) -> Iterator[HeldRelation]:
        """The held relations in input order, each with whether this run wrote its endpoints;
        with ``flag_repeats``, every relation whose (src, type, dst) may occur more than once
        (by a hash of it: a collision flags a few more, never fewer) is marked ``repeated``, and
        without ``plain`` those :meth:`plain_relations` gives are left out."""
        self._insert_held()
        repeats = where = ""
        if flag_repeats:
            self._flag_repeats()
            repeats = ", r.key IN repeated"
            if not plain:
                where = f"WHERE NOT coalesce({_PLAIN}, 0) "
        rows = self.db.execute(
            "SELECT r.src, r.dst, r.type, r.weight, r.props, r.source, r.number, r.raw, "
            f"coalesce(a.written, 0), coalesce(b.written, 0){repeats} FROM {_JOINED} {where}"
            "ORDER BY r.rowid"
        )
        for src, dst, type_name, weight, props, source, number, raw, a, b, *repeated in rows:
            row = RelRow(src, dst, type_name, weight, unpack(props) if props else {})
            location = Location(self._sources[source], number)
            yield HeldRelation(location, row, bool(a), bool(b), raw, bool(repeated and repeated[0]))

    def plain_relations(self) -> Iterator[PlainRelation]:
        """The held relations that a run writing each (src, type, dst) once may write as they
        are, in input order: both endpoints written by this run, no properties, and a
        (src, type, dst) that occurs once; as bare tuples, cheap to read by the million."""
        self._flag_repeats()
        return self.db.execute(
            f"SELECT r.src, r.dst, r.type, r.weight FROM {_JOINED} WHERE {_PLAIN} ORDER BY r.rowid"
        )

    def _flag_repeats(self) -> None:
        """Keep the keys of the relations that may occur more than once (once a run)."""
        self._insert_held()
        if self._repeats_flagged:
            return
        self.db.execute(
            "CREATE TEMP TABLE repeated AS "
            "SELECT key FROM relations GROUP BY key HAVING count(*) > 1"
        )
        self.db.execute("CREATE INDEX temp.repeated_key ON repeated (key)")
        self._repeats_flagged = True

    def hold_numbers(self, item: Item) -> None:
        self.db.execute(
            "INSERT INTO numbers VALUES (?, ?, ?)", (item.type, item.uid, pack(item.numbers))
        )

    def numbers(self, type_name: str) -> Iterator[tuple[str, dict[str, float]]]:
        """The held ``(uid, numbers)`` of ``type_name`` items, in input order."""
        rows = self.db.execute(
            "SELECT uid, numbers FROM numbers WHERE type = ? ORDER BY rowid", (type_name,)
        )
        for uid, numbers in rows:
            yield uid, unpack(numbers)
