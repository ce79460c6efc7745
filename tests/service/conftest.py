"""Fixtures of the service tests: a tiny emoji-like graph in the real Neo4j, model runs saved
under a temporary home, and servers on loopback port 0 stopped in teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from model_runs import EDGES, EMOJI, TAGS, TEXTS

from mmgraph.core.config import Settings
from mmgraph.graph.store import GraphStore, NodeRow, RelRow


@pytest.fixture
def graph(store: GraphStore) -> GraphStore:
    """Six emoji, two tags and four HAS_TAG links in the real Neo4j."""
    nodes = [NodeRow(u, "Emoji", {"text": TEXTS[u]}) for u in EMOJI]
    nodes += [NodeRow(u, "Tag", {"text": TEXTS[u]}) for u in TAGS]
    store.write_batch(nodes, [], "test")
    store.write_batch([], [RelRow(s, d, "HAS_TAG") for s, d in EDGES], "test")
    return store


@pytest.fixture
def home(settings: Settings, tmp_path: Path) -> Settings:
    """Settings with a home of this test's own (its own model runs)."""
    (tmp_path / "models").mkdir()
    return settings.model_copy(update={"home": tmp_path, "text_encoder": "int8"})


@pytest.fixture
def serve() -> Iterator[Callable]:
    """Start servers with ``serve(settings, registry) -> (server, client)``; all are stopped in
    teardown."""
    from mmgraph.service.rpc.client import AnalyticsClient
    from mmgraph.service.rpc.server import create_server

    started = []

    def start(settings: Settings, registry, token: str | None = None, **client_kw):
        server, port = create_server(settings, registry)
        client = AnalyticsClient(f"127.0.0.1:{port}", token=token, timeout=60, **client_kw)
        started.append((server, client))
        return server, client

    yield start
    for server, client in started:
        client.close()
        server.stop(grace=None)
