"""``mmgraph cypher`` (read-only queries) and ``mmgraph analysts write-clusters|write-predictions``
(results written back for Cypher), on the real local Neo4j."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from model_runs import EDGES, EMOJI, save_run
from typer.testing import CliRunner

from mmgraph.core.config import Settings
from mmgraph.graph import audit, cypher, writeback
from mmgraph.graph.cypher import WriteQueryRefusedError, refused_queries
from mmgraph.graph.schema import SchemaError, check_type_name
from mmgraph.graph.store import GraphStore, MissingEndpointError, NodeRow, RelRow
from mmgraph.service.cli import app
from mmgraph.service.cli.analysts import ParameterFormatError, parse_param

runner = CliRunner()
RUN = "cca-20260101T000000Z-analysts"
FACES = {"e:grin", "e:smile", "e:joy"}


def _cypher(*args: str) -> Any:
    return runner.invoke(app, ["cypher", *args])


def _snapshot(store: GraphStore) -> dict[str, Any]:
    """Everything a write could change: nodes with labels and properties, relationships, indexes
    and constraints."""
    with store.session() as session:
        nodes = session.run(
            "MATCH (n) RETURN labels(n) AS labels, properties(n) AS props ORDER BY n.uid, n.id"
        ).data()
        rels = session.run(
            "MATCH (a)-[r]->(b) RETURN a.uid AS a, type(r) AS t, properties(r) AS p, b.uid AS b "
            "ORDER BY a, t, b"
        ).data()
        indexes = session.run("SHOW INDEXES YIELD name RETURN name ORDER BY name").data()
        constraints = session.run("SHOW CONSTRAINTS YIELD name RETURN name ORDER BY name").data()
    return {"nodes": nodes, "rels": rels, "indexes": indexes, "constraints": constraints}


def _scalar(store: GraphStore, query: str, **params: Any) -> Any:
    with store.session() as session:
        return session.run(query, params).single(strict=True)[0]


# -- mmgraph cypher -----------------------------------------------------------------------------


def test_a_read_with_parameters_prints_columns_and_rows_as_json(
    env: Settings, graph: GraphStore
) -> None:
    result = _cypher(
        "MATCH (e:Emoji)-[:HAS_TAG]->(:Tag {uid: $tag}) RETURN e.uid AS uid, e.text AS text "
        "ORDER BY uid LIMIT $n",
        "--param",
        "tag=t:face",
        "--param",
        "n=5",
        "--json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "columns": ["uid", "text"],
        "rows": [["e:grin", "grinning face"], ["e:smile", "smiling face"]],
    }


def test_a_read_prints_a_table(env: Settings, graph: GraphStore) -> None:
    result = _cypher("MATCH (t:Tag) RETURN t.uid AS uid ORDER BY uid")
    assert result.exit_code == 0, result.output
    assert "uid" in result.stdout and "t:animal" in result.stdout and "t:face" in result.stdout


def test_values_become_json(env: Settings, store: GraphStore) -> None:
    vector = np.arange(4, dtype=np.float32)
    store.write_batch(
        [NodeRow("a", "Item", {"text": "a"}, {"text": (vector, "t@1")}), NodeRow("b", "Item")],
        [RelRow("a", "b", "LIKES", 0.5)],
        "run-1",
    )
    audit.start_run(store, "run-1", "test")
    result = _cypher(
        "MATCH (n:Entity {uid: 'a'})-[r:LIKES]->() MATCH p = (:Entity {uid: 'b'})<-[:LIKES]-() "
        "MATCH (run:IngestRun) "
        "RETURN n, n.text_vec AS vec, r, p, run.started AS started, date('2026-01-02') AS day",
        "--json",
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)["rows"]
    node, vec, rel, path, started, day = row
    assert node == {"uid": "a", "type": "Item", "text": "a", "text_enc": "t@1", "source": "run-1"}
    assert vec == "<16 bytes>"
    assert rel == {"weight": 0.5, "source": "run-1", "type": "LIKES"}
    assert path == [{"uid": "b", "type": "Item", "source": "run-1"}, rel, node]  # in path order
    assert started.startswith(str(datetime.now(UTC).year)) and "T" in started
    assert day == "2026-01-02"


def test_limit_caps_the_rows_and_says_so(env: Settings, graph: GraphStore) -> None:
    result = _cypher("MATCH (e:Emoji) RETURN e.uid AS uid ORDER BY uid", "--limit", "2", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == [["e:cat"], ["e:dog"]]
    assert "first 2 rows" in result.stderr


@pytest.mark.parametrize(
    "query",
    [
        "CREATE (:Emoji:Entity {uid: 'e:new', type: 'Emoji'})",
        "MERGE (t:Entity {uid: 't:new'}) RETURN t",
        "MATCH (e:Entity {uid: 'e:grin'}) DETACH DELETE e",
        "MATCH ()-[r:HAS_TAG]->() DELETE r",
        "MATCH (e:Entity) SET e.text = 'x'",
        "MATCH (e:Entity) REMOVE e.text",
        "MATCH (e:Emoji) REMOVE e:Emoji",
        "MATCH (e:Entity) FOREACH (x IN [1] | SET e.n = x)",
        "CALL db.createLabel('Probe')",
        "CREATE INDEX probe IF NOT EXISTS FOR (n:Entity) ON (n.text)",
        "DROP CONSTRAINT entity_uid",
        "profile MATCH (e:Entity) SET e.text = 'x'",
    ],
)
def test_writes_are_refused_and_change_nothing(
    env: Settings, graph: GraphStore, query: str
) -> None:
    before = _snapshot(graph)
    result = _cypher(query, "--json")
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "mmgraph cypher runs read-only queries" in output
    assert "(its plan " in output  # refused from its plan, before it ran
    assert "Traceback" not in output
    assert result.stdout == ""
    assert _snapshot(graph) == before


def test_the_server_refuses_a_write_even_unchecked(graph: GraphStore) -> None:
    """The read transaction is the second guard: a write that skipped the plan check fails on the
    server and maps to the same refusal."""
    with pytest.raises(WriteQueryRefusedError, match="read-only"), refused_queries():
        cypher.read_query(graph, "CREATE (:Entity:Probe {uid: 'probe', type: 'Probe'})")
    assert _scalar(graph, "MATCH (n:Entity {uid: 'probe'}) RETURN count(n)") == 0


def test_a_syntax_error_is_one_clear_error(env: Settings, graph: GraphStore) -> None:
    result = _cypher("MATCH (n RETURN n")
    assert result.exit_code == 2
    output = " ".join(result.output.split())
    assert "Neo4j refused the query: Invalid input 'RETURN'" in output
    assert "(line 1, column 10 (offset: 9))" in output  # the position in the query as given
    assert "Traceback" not in result.output


def test_a_missing_parameter_names_the_option(env: Settings, graph: GraphStore) -> None:
    result = _cypher("MATCH (n:Entity {uid: $uid}) RETURN n")
    assert result.exit_code == 2
    assert "uid" in result.output and "--param" in result.output


def test_a_malformed_param_is_refused(env: Settings, graph: GraphStore) -> None:
    result = _cypher("RETURN 1 AS one", "--param", "novalue")
    assert result.exit_code == 2
    assert "NAME=VALUE" in result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("uid=emoji:1f600", ("uid", "emoji:1f600")),
        ("k=10", ("k", 10)),
        ("x=0.5", ("x", 0.5)),
        ('ids=["a", "b"]', ("ids", ["a", "b"])),
        ('code="123"', ("code", "123")),
        ("flag=true", ("flag", True)),
        ("q=a=b", ("q", "a=b")),
        ("empty=", ("empty", "")),
    ],
)
def test_parse_param_reads_json_else_a_string(text: str, expected: tuple[str, Any]) -> None:
    assert parse_param(text) == expected


@pytest.mark.parametrize("text", ["novalue", "=3", ""])
def test_parse_param_refuses_a_missing_name_or_equals(text: str) -> None:
    with pytest.raises(ParameterFormatError, match="NAME=VALUE"):
        parse_param(text)


# -- results written back -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Cluster", "IN_CLUSTER", "PREDICTED"])
def test_written_back_names_are_reserved(name: str) -> None:
    with pytest.raises(SchemaError, match="reserved"):
        check_type_name(name)


def test_write_clusters_replaces_that_run_and_methods_clusters(graph: GraphStore) -> None:
    writeback.write_clusters(
        graph, "r1", "kmeans", {"e:grin": 0, "e:smile": 0, "e:cat": 1, "e:fox": -1}
    )
    writeback.write_clusters(graph, "r1", "hdbscan", {"e:grin": 0})
    assert (
        writeback.write_clusters(graph, "r1", "kmeans", {"e:joy": 0}, {0: {"central": ["e:joy"]}})
        == 1
    )
    rows = graph.read(
        "MATCH (c:Cluster) OPTIONAL MATCH (n:Entity)-[:IN_CLUSTER]->(c) "
        "RETURN c.id AS id, c.size AS size, c.central AS central, collect(n.uid) AS members "
        "ORDER BY id"
    )
    assert [r.data() for r in rows] == [
        {"id": "r1/hdbscan/0", "size": 1, "central": None, "members": ["e:grin"]},
        {"id": "r1/kmeans/0", "size": 1, "central": ["e:joy"], "members": ["e:joy"]},
    ]


def test_write_clusters_with_an_unknown_member_writes_nothing(graph: GraphStore) -> None:
    writeback.write_clusters(graph, "r1", "kmeans", {"e:grin": 0})
    with pytest.raises(MissingEndpointError, match="1 cluster member"):
        writeback.write_clusters(graph, "r1", "kmeans", {"e:cat": 0, "e:nope": 1})
    assert _scalar(graph, "MATCH (c:Cluster) RETURN collect(c.id)") == ["r1/kmeans/0"]
    assert _scalar(graph, "MATCH (n)-[:IN_CLUSTER]->() RETURN collect(n.uid)") == ["e:grin"]


def test_write_predicted_links_never_adds_real_links(graph: GraphStore) -> None:
    writeback.write_predicted_links(
        graph, "r1", "HAS_TAG", [("e:joy", "t:face", 0.9), ("e:fox", "t:animal", 0.8)]
    )
    writeback.write_predicted_links(graph, "r2", "HAS_TAG", [("e:joy", "t:animal", 0.1)])
    # r1's HAS_TAG predictions from e:joy are replaced; e:fox's stay.
    assert (
        writeback.write_predicted_links(graph, "r1", "HAS_TAG", [("e:joy", "t:animal", 0.7)]) == 1
    )
    rows = graph.read(
        "MATCH (a)-[p:PREDICTED]->(b) "
        "RETURN a.uid AS a, b.uid AS b, p.relation AS rel, p.model AS model, p.score AS score "
        "ORDER BY model, a"
    )
    assert [tuple(r.values()) for r in rows] == [
        ("e:fox", "t:animal", "HAS_TAG", "r1", pytest.approx(0.8)),
        ("e:joy", "t:animal", "HAS_TAG", "r1", pytest.approx(0.7)),
        ("e:joy", "t:animal", "HAS_TAG", "r2", pytest.approx(0.1)),
    ]
    assert graph.counts().relationships["HAS_TAG"] == len(EDGES)


def test_write_predicted_links_refuses_bad_links_whole(graph: GraphStore) -> None:
    with pytest.raises(MissingEndpointError):
        writeback.write_predicted_links(
            graph, "r1", "HAS_TAG", [("e:joy", "t:face", 0.9), ("e:joy", "t:x", 1)]
        )
    with pytest.raises(SchemaError):
        writeback.write_predicted_links(graph, "r1", "PREDICTED", [("e:joy", "t:face", 0.9)])
    assert _scalar(graph, "MATCH ()-[p:PREDICTED]->() RETURN count(p)") == 0


def test_analysts_commands_write_the_services_answers_back(
    env: Settings, graph: GraphStore
) -> None:
    save_run(env.home, RUN, seed=0, created="2026-01-01T00:00:00Z")
    args = ["analysts", "write-clusters", "--run", RUN, "--type", "Emoji", "--json"]
    result = runner.invoke(app, [*args, "--clusters", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "run_id": RUN,
        "method": "kmeans",
        "clusters": 2,
        "members": len(EMOJI),
    }
    members = graph.read(
        "MATCH (c:Cluster {run: $run})<-[:IN_CLUSTER]-(n) RETURN c.id AS id, collect(n.uid) AS m",
        run=RUN,
    )
    assert sorted(sorted(r["m"]) for r in members) == [["e:cat", "e:dog", "e:fox"], sorted(FACES)]
    rerun = runner.invoke(app, [*args, "--clusters", "3"])
    assert rerun.exit_code == 0, rerun.output
    assert _scalar(graph, "MATCH (c:Cluster) RETURN count(c)") == 3
    assert _scalar(graph, "MATCH ()-[r:IN_CLUSTER]->() RETURN count(r)") == len(EMOJI)

    args = ["analysts", "write-predictions", "--run", RUN, "--relation", "HAS_TAG", "--json"]
    result = runner.invoke(app, [*args, "--k", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "run_id": RUN,
        "relation": "HAS_TAG",
        "sources": len(EMOJI),
        "links": len(EMOJI),
    }
    predicted = {
        r["a"]: r["b"]
        for r in graph.read(
            "MATCH (a)-[p:PREDICTED {relation: 'HAS_TAG', model: $run}]->(b) "
            "WHERE 0 < p.score < 1 RETURN a.uid AS a, b.uid AS b",
            run=RUN,
        )
    }
    # Existing links are never predicted; the nearest tag otherwise.
    assert predicted["e:grin"] == "t:animal" and predicted["e:cat"] == "t:face"
    assert predicted["e:joy"] == "t:face" and predicted["e:fox"] == "t:animal"
    assert graph.counts().relationships["HAS_TAG"] == len(EDGES)
    more = runner.invoke(app, [*args, "--uid", "e:joy", "--k", "2"])
    assert more.exit_code == 0, more.output
    assert _scalar(graph, "MATCH ()-[p:PREDICTED]->() RETURN count(p)") == len(EMOJI) + 1


def test_predicting_a_relation_the_model_does_not_score_is_refused(
    env: Settings, graph: GraphStore
) -> None:
    run = save_run(env.home, f"{RUN}-b", seed=0, created="2026-01-01T00:00:00Z")
    result = runner.invoke(
        app, ["analysts", "write-predictions", "--run", run, "--relation", "LIKES"]
    )
    assert result.exit_code == 2
    assert "scores no 'LIKES' links" in result.output
