"""Open GDS in the local Neo4j: off by default, on when asked, and FastRP over given edges.

One JVM starts here, with GDS, for the module (that a default server offers no ``gds.*``
procedure is checked on the detached server of ``test_local_neo4j.py``). The cache is the real one,
so GDS's jars are fetched once per machine.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from mmgraph.core.config import Settings
from mmgraph.graph.connection import open_store
from mmgraph.graph.gds import (
    FastRPArgumentError,
    UnknownNodeError,
    fastrp_embeddings,
    gds_available,
)
from mmgraph.graph.local_neo4j import (
    ensure_gds_plugins,
    ensure_launcher,
    running_server,
)
from mmgraph.graph.store import GraphStore, NodeRow, RelRow

# Two dense communities joined by one edge, and a node with no edge at all.
LEFT = [f"left{i}" for i in range(6)]
RIGHT = [f"right{i}" for i in range(6)]
NODES = [*LEFT, *RIGHT, "alone"]
EDGES = [
    *itertools.combinations(LEFT, 2),
    *itertools.combinations(RIGHT, 2),
    ("left0", "right0"),
]


def _gds_procedures(store: GraphStore) -> int:
    with store.session() as session:
        query = "SHOW PROCEDURES YIELD name WHERE name STARTS WITH 'gds.' RETURN count(*) AS n"
        return session.run(query).single(strict=True)["n"]


def _projected_graphs(store: GraphStore) -> int:
    with store.session() as session:
        query = "CALL gds.graph.list() YIELD graphName RETURN count(*) AS n"
        return session.run(query).single(strict=True)["n"]


def _cosine(x: np.ndarray) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit @ unit.T


def test_gds_jars_add_to_neo4j_s_own(settings: Settings) -> None:
    plugins = {path.name for path in ensure_gds_plugins(settings.cache).glob("*.jar")}
    lib = {path.name for path in (ensure_launcher(settings.cache) / "lib").glob("*.jar")}
    assert {"proc-2.13.9.jar", "opengds-extension-2.13.9.jar"} <= plugins
    assert not plugins & lib


@pytest.fixture(scope="module")
def gds_home(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return settings.model_copy(update={"home": tmp_path_factory.mktemp("gds_home")})


@pytest.fixture(scope="module")
def gds_store(gds_home: Settings) -> Iterator[GraphStore]:
    """The two communities on a local Neo4j that ``open_store`` starts with GDS for the module."""
    with open_store(gds_home, gds=True) as store:
        store.setup_schema()
        store.write_batch(
            [NodeRow(uid, "Item") for uid in NODES],
            [RelRow(a, b, "LINKS") for a, b in EDGES],
            run_id="test-gds",
        )
        yield store
    assert running_server(gds_home.home) is None


def test_server_started_with_gds_offers_it(gds_store: GraphStore, gds_home: Settings) -> None:
    info = running_server(gds_home.home)
    assert info is not None and info.gds
    assert gds_available(gds_store)
    assert _gds_procedures(gds_store) > 0


def test_fastrp_embeds_every_node_and_keeps_communities_apart(gds_store: GraphStore) -> None:
    uids, matrix = fastrp_embeddings(gds_store, EDGES, NODES, dim=64)
    assert uids == NODES
    assert matrix.dtype == np.float32 and matrix.shape == (len(NODES), 64)
    assert np.isfinite(matrix).all()
    # (0, 1, 1) weights ignore a node's random start: one without edges has nothing to add up.
    assert not matrix[-1].any()
    similarity = _cosine(matrix[:-1])
    left, right = slice(0, len(LEFT)), slice(len(LEFT), len(LEFT) + len(RIGHT))
    same = np.concatenate([similarity[left, left].ravel(), similarity[right, right].ravel()])
    across = similarity[left, right].ravel()
    assert same.mean() > across.mean() + 0.3
    assert _projected_graphs(gds_store) == 0


def test_fastrp_is_seeded(gds_store: GraphStore) -> None:
    _, first = fastrp_embeddings(gds_store, EDGES, NODES, dim=32, seed=7)
    _, again = fastrp_embeddings(gds_store, EDGES, NODES, dim=32, seed=7)
    _, other = fastrp_embeddings(gds_store, EDGES, NODES, dim=32, seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_fastrp_uses_only_the_given_edges_each_once(gds_store: GraphStore) -> None:
    _, once = fastrp_embeddings(gds_store, EDGES, NODES, dim=32)
    both_ways = np.array([*EDGES, *((b, a) for a, b in EDGES)], dtype=object)
    _, twice = fastrp_embeddings(gds_store, both_ways, NODES, dim=32)
    np.testing.assert_array_equal(once, twice)
    # The store's LINKS relationships are not projected: with no edges given, nothing propagates.
    _, none = fastrp_embeddings(gds_store, [], NODES, dim=32)
    assert not none.any()


def test_fastrp_refuses_bad_input(gds_store: GraphStore) -> None:
    with pytest.raises(FastRPArgumentError, match="not in nodes"):
        fastrp_embeddings(gds_store, EDGES, LEFT)
    with pytest.raises(FastRPArgumentError, match="duplicate"):
        fastrp_embeddings(gds_store, [], ["left0", "left0"])
    with pytest.raises(FastRPArgumentError, match="dim"):
        fastrp_embeddings(gds_store, [], NODES, dim=0)
    with pytest.raises(UnknownNodeError, match="nowhere"):
        fastrp_embeddings(gds_store, [("left0", "nowhere")], ["left0", "nowhere"])
    assert _projected_graphs(gds_store) == 0
