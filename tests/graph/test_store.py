"""The Neo4j store against the real local Neo4j."""

from __future__ import annotations

import numpy as np
import pytest

from mmgraph.graph import audit
from mmgraph.graph.schema import SchemaError
from mmgraph.graph.store import (
    GraphStore,
    MissingEndpointError,
    NodeRow,
    RelRow,
    TypeConflictError,
    WriteRefusedError,
)


def _nodes(n: int, type_name: str = "Item", dim: int = 4) -> list[NodeRow]:
    rng = np.random.default_rng(0)
    return [
        NodeRow(
            f"{type_name.lower()}:{i}",
            type_name,
            {"rank": i, "name": f"n{i}"},
            {"clip": (rng.standard_normal(dim).astype(np.float32), "clip@given")},
        )
        for i in range(n)
    ]


def _total_nodes(store: GraphStore) -> int:
    return sum(store.counts().nodes.values())


def test_schema_setup_is_idempotent(store: GraphStore) -> None:
    store.setup_schema()
    store.setup_schema()
    records, _, _ = store.driver.execute_query(
        "SHOW CONSTRAINTS YIELD labelsOrTypes, properties WHERE 'Entity' IN labelsOrTypes "
        "RETURN properties"
    )
    assert [r["properties"] for r in records] == [["uid"]]


def test_nodes_round_trip_with_vectors_and_labels(store: GraphStore) -> None:
    rows = _nodes(3)
    result = store.write_batch(rows, [], "run-1")
    assert (result.nodes_written, result.nodes_created) == (3, 3)

    node = store.get_node("item:1")
    assert node is not None
    assert (node.type, node.props["rank"], node.props["name"]) == ("Item", 1, "n1")
    assert node.props["source"] == "run-1"
    vector, tag = node.vectors["clip"]
    assert tag == "clip@given"
    np.testing.assert_array_equal(vector, rows[1].vectors["clip"][0])
    records, _, _ = store.driver.execute_query(
        "MATCH (n:Entity:Item {uid: 'item:1'}) RETURN labels(n) AS labels"
    )
    assert sorted(records[0]["labels"]) == ["Entity", "Item"]


def test_vectors_set_by_uid_reach_only_nodes_of_their_type(store: GraphStore) -> None:
    store.write_batch(_nodes(2), [], "run-1")
    vector = np.ones(3, dtype=np.float32)
    # A uid stored under another type (an item refused for its type) is left as it is.
    assert store.set_vectors("num", "Tag", "num@fit", [("item:0", vector)]) == 0
    assert "num" not in store.get_node("item:0").vectors
    assert store.set_vectors("num", "Item", "num@fit", [("item:0", vector), ("nope", vector)]) == 1
    stored, tag = store.get_node("item:0").vectors["num"]
    np.testing.assert_array_equal(stored, vector)
    assert tag == "num@fit"


def test_upsert_again_creates_nothing_and_updates_properties(store: GraphStore) -> None:
    store.write_batch(_nodes(3), [RelRow("item:0", "item:1", "NEXT", 0.5)], "run-1")
    changed = [NodeRow("item:0", "Item", {"rank": 99})]
    again = store.write_batch(changed, [RelRow("item:0", "item:1", "NEXT", 2.0)], "run-2")

    assert (again.nodes_created, again.relationships_created) == (0, 0)
    assert store.counts().to_dict() == {"nodes": {"Item": 3}, "relationships": {"NEXT": 1}}
    node = store.get_node("item:0")
    assert node is not None and node.props["rank"] == 99 and "clip" in node.vectors
    records, _, _ = store.driver.execute_query(
        "MATCH ()-[r:NEXT]->() RETURN r.weight AS w, r.source AS source"
    )
    assert (records[0]["w"], records[0]["source"]) == (2.0, "run-1")


def test_batch_failing_part_way_leaves_nothing(store: GraphStore) -> None:
    rows = _nodes(1000)
    # Neo4j refuses a map as a property value: the 600th row fails inside the transaction,
    # after the first 599 were already merged in it.
    rows[599] = NodeRow("item:599", "Item", {"bad": {"nested": 1}})
    with pytest.raises(WriteRefusedError):
        store.write_batch(rows, [], "run-1")
    assert _total_nodes(store) == 0


def test_relationship_to_missing_endpoint_rolls_back_the_batch(store: GraphStore) -> None:
    with pytest.raises(MissingEndpointError):
        store.write_batch(_nodes(2), [RelRow("item:0", "item:404", "NEXT")], "run-1")
    assert _total_nodes(store) == 0


def test_type_conflict_rolls_back_the_batch(store: GraphStore) -> None:
    store.write_batch(_nodes(1), [], "run-1")
    with pytest.raises(TypeConflictError, match="item:0"):
        store.write_batch([NodeRow("other:1", "Item"), NodeRow("item:0", "Tag")], [], "run-2")
    assert store.counts().nodes == {"Item": 1}
    assert store.get_node("item:0").type == "Item"


@pytest.mark.parametrize("bad", ["Item) DETACH DELETE n //", "item", "Entity", "A-B"])
def test_unsafe_type_names_never_reach_cypher(store: GraphStore, bad: str) -> None:
    store.write_batch(_nodes(2), [], "run-1")
    with pytest.raises(SchemaError):
        store.write_batch([NodeRow("x:1", bad)], [], "run-2")
    with pytest.raises(SchemaError):
        store.write_batch([], [RelRow("item:0", "item:1", bad)], "run-2")
    assert store.counts().to_dict() == {"nodes": {"Item": 2}, "relationships": {}}


def test_counts_by_type_label_and_relationship_type(store: GraphStore) -> None:
    store.write_batch(
        _nodes(3) + _nodes(2, "Tag"),
        [RelRow("item:0", "tag:0", "HAS_TAG"), RelRow("item:1", "tag:0", "HAS_TAG")],
        "run-1",
    )
    audit.start_run(store, "run-1", "test")
    assert store.counts().to_dict() == {
        "nodes": {"Item": 3, "Tag": 2},
        "relationships": {"HAS_TAG": 2},
    }


def test_runs_record_status_and_counts(store: GraphStore) -> None:
    audit.start_run(store, "run-1", "a.jsonl", inputs=["a.jsonl sha256:00"])
    audit.finish_run(store, "run-1", "partial", {"nodes_written": 3, "quarantined": 1})
    (run,) = audit.runs(store)
    assert run["id"] == "run-1" and run["status"] == "partial"
    assert (run["nodes_written"], run["quarantined"]) == (3, 1)
    assert run["finished"] >= run["started"]
