"""Analysts' read-only Cypher: a query runs only if its plan reads, and then in a READ
transaction, in which the server itself refuses any write; its rows come back as JSON values.

A query is thus refused twice over: its plan (``EXPLAIN``, which runs nothing) must be read-only,
and the transaction it runs in cannot write.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import neo4j
from neo4j.exceptions import ClientError, CypherSyntaxError
from neo4j.graph import Node, Path, Relationship
from neo4j.spatial import Point
from neo4j.time import Date, DateTime, Duration, Time

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.graph.store import GraphStore

READ_ONLY = (
    "mmgraph cypher runs read-only queries; CREATE/MERGE/DELETE/SET/REMOVE and schema commands "
    "are refused"
)
ACCESS_MODE = "Neo.ClientError.Statement.AccessMode"
PARAMETER_MISSING = "Neo.ClientError.Statement.ParameterMissing"
# What a plan's query type means, for the refusal's message.
PLAN_KINDS = {"w": "writes", "rw": "reads and writes", "s": "changes the schema or the DBMS"}
# A query that already asks for its plan or profile is checked with EXPLAIN in place of that word.
_EXECUTION_MODE = re.compile(r"^\s*(?:EXPLAIN|PROFILE)\b", re.IGNORECASE)


class CypherQueryError(InvalidArgumentError):
    """Neo4j refused the query: a syntax error, a missing parameter, an unknown procedure..."""


class WriteQueryRefusedError(CypherQueryError):
    """The query would write (data or schema); analysts' Cypher only reads."""


@dataclass(frozen=True)
class QueryRows:
    """A read query's columns, its rows as JSON-able values, and whether rows were left out."""

    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows}


def query_type(store: GraphStore, query: str, params: dict[str, Any] | None = None) -> str | None:
    """The type of ``query``'s plan: ``'r'`` (reads only), ``'w'``, ``'rw'`` or ``'s'``
    (schema or DBMS), from ``EXPLAIN``, which plans the query without running it."""
    with store.session(read_only=True) as session:
        return session.execute_read(
            lambda tx: tx.run("EXPLAIN " + query, params or {}).consume().query_type
        )


def read_query(
    store: GraphStore, query: str, params: dict[str, Any] | None = None, limit: int = 1000
) -> tuple[list[str], list[list[Any]], bool]:
    """Run ``query`` in a read transaction: its column names, its first ``limit`` rows (lists
    of driver values) and whether more rows followed. A write fails on the server."""

    def work(tx: neo4j.ManagedTransaction) -> tuple[list[str], list[list[Any]], bool]:
        result = tx.run(query, params or {})
        records = result.fetch(limit + 1)
        rows = [list(record.values()) for record in records[:limit]]
        return list(result.keys()), rows, len(records) > limit

    with store.session(read_only=True) as session:
        return session.execute_read(work)


def jsonable(value: Any) -> Any:
    """A driver value as JSON: a node as its properties (byte arrays left out), a relationship as
    its properties and ``type``, a path as its nodes and relationships in order, temporal values
    as ISO 8601 strings, byte arrays as ``"<N bytes>"``."""
    if isinstance(value, Node):
        return {k: jsonable(v) for k, v in value.items() if not isinstance(v, bytes | bytearray)}
    if isinstance(value, Relationship):
        props = {k: jsonable(v) for k, v in value.items() if not isinstance(v, bytes | bytearray)}
        return {**props, "type": value.type}
    if isinstance(value, Path):
        out: list[Any] = [jsonable(value.start_node)]
        for rel, node in zip(value.relationships, value.nodes[1:], strict=True):
            out += [jsonable(rel), jsonable(node)]
        return out
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, DateTime | Date | Time | Duration):
        return value.iso_format()
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Point):
        return {"srid": value.srid, "coordinates": list(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@contextmanager
def refused_queries() -> Iterator[None]:
    """Turn the server's refusal of a query into a :class:`CypherQueryError` with a one-line
    message; a write in a read transaction becomes a :class:`WriteQueryRefusedError`."""
    try:
        yield
    except ClientError as e:
        if e.code == ACCESS_MODE:
            raise WriteQueryRefusedError(READ_ONLY) from e
        message = (e.message or str(e)).strip().splitlines()[0]
        if e.code == PARAMETER_MISSING:
            message += " (give it with --param NAME=VALUE)"
        raise CypherQueryError(f"Neo4j refused the query: {message}") from e


def run_read_only(
    store: GraphStore, query: str, params: dict[str, Any] | None, limit: int
) -> QueryRows:
    """Run ``query`` if its plan only reads, in a read transaction; its first ``limit`` rows."""
    if not query.strip():
        raise CypherQueryError("the query is empty")
    with refused_queries():
        try:
            kind = query_type(store, _EXECUTION_MODE.sub("", query, count=1), params)
        except CypherSyntaxError:
            # Parsed again as written below, so the error's line and column are the caller's;
            # a query that does not parse runs nothing.
            kind = None
        if kind not in ("r", None):
            raise WriteQueryRefusedError(f"{READ_ONLY} (its plan {PLAN_KINDS.get(kind, kind)})")
        columns, rows, truncated = read_query(store, query, params, limit)
    return QueryRows(columns, [[jsonable(v) for v in row] for row in rows], truncated)
