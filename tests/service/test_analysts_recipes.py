"""Every Cypher recipe of docs/analysts.md runs read-only and returns rows on the emoji graph.

The graph is the real emoji dataset's records (the npm packages, cached) restricted to the
"Smileys & Emotion" category (its emoji, their tags, subcategories and category, and the relations
among them), ingested through the real pipeline without encoders: the whole graph would take
~25 s to write here, its encoding minutes. Embeddings, clusters and predicted links are written
back through the store's methods: embeddings spread from random vectors over each node's links,
so linked items are near each other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import neo4j
import numpy as np
import pytest
from sklearn.cluster import KMeans

from mmgraph.core.config import Settings
from mmgraph.graph import writeback
from mmgraph.graph.cypher import run_read_only
from mmgraph.graph.local_neo4j import LocalNeo4j
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.datasets import emoji_records, fetch_emoji
from mmgraph.ingest.options import IngestOptions
from mmgraph.ingest.pipeline import ingest

DOC = Path(__file__).resolve().parents[2] / "docs" / "analysts.md"
CATEGORY = "category:smileys-emotion"
RUN = "hgt-20260101T000000Z-recipes"
DIM = 16
PARAMETER_ROW = re.compile(r"^\| `\$(\w+)` \| `(.+?)` \|", re.MULTILINE)


def recipes() -> list[tuple[str, str]]:
    """Each ```cypher block of the doc's recipes with the title above it."""
    found, title, block = [], "", None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if block is not None:
            if line.strip() == "```":
                found.append((title, "\n".join(block)))
                block = None
            else:
                block.append(line)
        elif line.startswith("### "):
            title = line[4:].strip()
        elif line.strip() == "```cypher":
            block = []
    return found


def documented_parameters() -> dict[str, Any]:
    """The doc's parameter table: name -> example value (JSON)."""
    text = DOC.read_text(encoding="utf-8")
    return {name: json.loads(value) for name, value in PARAMETER_ROW.findall(text)}


RECIPES = recipes()


def _slice(records: list[tuple[Any, dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
    """The category's emoji (with their subcategories and the category) and everything they
    link to, with the relations among those nodes."""
    kept = {CATEGORY}
    for _, raw in records:
        if raw.get("kind") == "relation" and raw["dst"] == CATEGORY:
            kept.add(raw["src"])  # the category's subcategories
    for _, raw in records:
        if raw.get("kind") == "relation" and raw["type"] == "IN_SUBCATEGORY" and raw["dst"] in kept:
            kept.add(raw["src"])  # their emoji
    emoji = set(kept)
    for _, raw in records:
        if raw.get("kind") == "relation" and raw["src"] in emoji:
            kept.add(raw["dst"])  # the emoji's tags (and the parts of sequences)
    return [
        (location, raw)
        for location, raw in records
        if (raw.get("kind") == "item" and raw["uid"] in kept)
        or (raw.get("kind") == "relation" and raw["src"] in kept and raw["dst"] in kept)
    ]


def _embeddings(records: list[tuple[Any, dict[str, Any]]]) -> tuple[list[str], np.ndarray]:
    """Unit vectors: each node's random vector plus its neighbours'."""
    uids = [raw["uid"] for _, raw in records if raw.get("kind") == "item"]
    row = {uid: i for i, uid in enumerate(uids)}
    base = np.random.default_rng(0).normal(size=(len(uids), DIM)).astype(np.float32)
    vectors = base.copy()
    for _, raw in records:
        if raw.get("kind") == "relation":
            src, dst = row[raw["src"]], row[raw["dst"]]
            vectors[src] += base[dst]
            vectors[dst] += base[src]
    return uids, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _write_back(store: GraphStore, records: list[tuple[Any, dict[str, Any]]]) -> None:
    """Embeddings, a vector index, the active model, k-means clusters of the emoji and each
    emoji's three likeliest new tags, as promotion and ``mmgraph analysts`` write them."""
    uids, vectors = _embeddings(records)
    writeback.write_embeddings(store, RUN, uids, vectors)
    writeback.ensure_vector_index(store, DIM)
    writeback.record_model(
        store,
        RUN,
        {"model": "hgt", "created": "2026-01-01T00:00:00Z", "metrics": json.dumps({"mrr": 0.4})},
    )
    types = {raw["uid"]: raw["type"] for _, raw in records if raw.get("kind") == "item"}
    emoji = [i for i, uid in enumerate(uids) if types[uid] == "Emoji"]
    tags = [i for i, uid in enumerate(uids) if types[uid] == "Tag"]
    labels = KMeans(n_clusters=6, n_init="auto", random_state=0).fit_predict(vectors[emoji])
    assignments = {uids[i]: int(label) for i, label in zip(emoji, labels, strict=True)}
    members = [[u for u, c in assignments.items() if c == k] for k in range(6)]
    summaries = {k: {"central": uids_k[:3]} for k, uids_k in enumerate(members)}
    assert writeback.write_clusters(store, RUN, "kmeans", assignments, summaries) == 6
    linked = {
        (raw["src"], raw["dst"])
        for _, raw in records
        if raw.get("kind") == "relation" and raw["type"] == "HAS_TAG"
    }
    scores = vectors[emoji] @ vectors[tags].T
    links = []
    for position, i in enumerate(emoji):
        best = [
            (uids[i], uids[tags[j]], float(scores[position, j]))
            for j in np.argsort(-scores[position])
            if (uids[i], uids[tags[j]]) not in linked
        ]
        links += best[:3]
    assert writeback.write_predicted_links(store, RUN, "HAS_TAG", links) == len(links)


@pytest.fixture(scope="module")
def emoji_graph(
    neo4j_server: LocalNeo4j, settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GraphStore]:
    """The emoji graph's slice in the emptied real Neo4j, with results written back."""
    records = _slice(list(emoji_records(fetch_emoji(settings.cache))))
    with neo4j.GraphDatabase.driver(
        neo4j_server.uri, auth=(neo4j_server.user, neo4j_server.password)
    ) as driver:
        with driver.session() as session:
            session.run("MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS").consume()
        store = GraphStore(driver)
        options = IngestOptions(
            tmp_path_factory.mktemp("quarantine"), encode_text=False, encode_images=False
        )
        result = ingest(store, records, "emoji (Smileys & Emotion)", options)
        assert result.status == "ok", result
        _write_back(store, records)
        yield store


def test_the_doc_has_recipes_and_documents_their_parameters() -> None:
    assert len(RECIPES) >= 10
    documented = documented_parameters()
    used = {name for _, query in RECIPES for name in re.findall(r"\$(\w+)", query)}
    assert used <= set(documented), f"undocumented parameters: {sorted(used - set(documented))}"


@pytest.mark.parametrize(("title", "query"), RECIPES, ids=[title for title, _ in RECIPES])
def test_recipe_runs_read_only_and_returns_rows(
    emoji_graph: GraphStore, title: str, query: str
) -> None:
    result = run_read_only(emoji_graph, query, documented_parameters(), limit=1000)
    assert result.rows, f"recipe {title!r} returned no rows"
    assert all(len(row) == len(result.columns) for row in result.rows)
