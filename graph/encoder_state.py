"""State kept with the graph beside the data: fitted encoders (``(:EncoderState {key, value})``),
such as a node type's numeric standardisation, so every later run shares its tag."""

from __future__ import annotations

from datetime import UTC, datetime

from mmgraph.graph.store import GraphStore


def get_state(store: GraphStore, key: str) -> str | None:
    """A value kept with :func:`put_state_once`, or ``None``."""
    records = store.read("MATCH (s:EncoderState {key: $key}) RETURN s.value AS v", key=key)
    return records[0]["v"] if records else None


def put_state_once(store: GraphStore, key: str, value: str) -> str:
    """Keep ``value`` (e.g. a fitted encoder as JSON) under ``key`` unless a value is already
    kept there; return the value kept, so concurrent first writers agree on one."""
    with store.session() as session:
        return session.execute_write(
            lambda tx: tx.run(
                "MERGE (s:EncoderState {key: $key}) "
                "ON CREATE SET s.value = $value, s.created = $now RETURN s.value AS v",
                key=key,
                value=value,
                now=datetime.now(UTC),
            ).single(strict=True)["v"]
        )
