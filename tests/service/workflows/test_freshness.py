"""Items ingested after training answer ``Similar`` on a running server with embeddings from the
promoted model, without retraining or restarting; existing embeddings do not move; a retrain
happens only when the graph is stale and is promoted only if validation does not get worse.
Real Neo4j, real ingest (int8 MiniLM), real gRPC server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from typer.testing import CliRunner

from mmgraph.core.config import Settings
from mmgraph.gnn.data import export_heterodata
from mmgraph.gnn.experiment import run_experiment
from mmgraph.gnn.runs import active_run_id, list_runs, load_run
from mmgraph.gnn.split import SplitConfig, split_graph
from mmgraph.gnn.train import TrainConfig
from mmgraph.graph.store import GraphStore, NodeRow, RelRow
from mmgraph.ingest.encoders.text import make_text_encoder
from mmgraph.ingest.encoding import Encoders
from mmgraph.ingest.options import IngestOptions
from mmgraph.ingest.pipeline import ingest_files
from mmgraph.service.cli import app
from mmgraph.service.rpc.client import AnalyticsClient
from mmgraph.service.rpc.server import create_server
from mmgraph.service.serving.index import IndexShapeError, VectorIndex
from mmgraph.service.serving.registry import Registry
from mmgraph.service.workflows.freshness import refresh_embeddings, retrain_if_stale
from mmgraph.service.workflows.promotion import promote_run

WORDS = {
    0: ["red", "apple", "cherry", "tomato", "ruby"],
    1: ["blue", "ocean", "sky", "whale", "sapphire"],
}


@pytest.fixture(scope="module")
def encoders() -> Encoders:
    return Encoders(text=make_text_encoder("int8", device="cpu"))


@pytest.fixture
def fresh_home(settings: Settings, tmp_path: Path) -> Settings:
    (tmp_path / "models").mkdir()
    return settings.model_copy(update={"home": tmp_path, "text_encoder": "int8"})


@pytest.fixture
def serve() -> Iterator:
    started = []

    def start(settings: Settings, registry: Registry) -> AnalyticsClient:
        server, port = create_server(settings, registry)
        client = AnalyticsClient(f"127.0.0.1:{port}", timeout=60)
        started.append((server, client))
        return client

    yield start
    for server, client in started:
        client.close()
        server.stop(grace=None)


def _base_graph(store: GraphStore, encoders: Encoders) -> None:
    """Two colour groups of eight items, each tagged with two of its group's three tags."""
    rng = np.random.default_rng(0)
    nodes, rels, texts = [], [], []
    for g, words in WORDS.items():
        nodes.append(NodeRow(f"g:{g}", "Group"))
        for t in range(3):
            nodes.append(NodeRow(f"t:{g}.{t}", "Tag", {"text": f"{words[t]} things"}))
            texts.append(f"{words[t]} things")
        for i in range(8):
            text = " ".join(rng.choice(words, 3))
            nodes.append(NodeRow(f"i:{g}.{i}", "Item", {"text": text}))
            texts.append(text)
            rels.append(RelRow(f"i:{g}.{i}", f"g:{g}", "IN_GROUP"))
            rels += [RelRow(f"i:{g}.{i}", f"t:{g}.{t}", "HAS_TAG") for t in rng.choice(3, 2, False)]
    encoder = encoders.text_encoder()
    vectors = encoder.encode(texts)
    nodes = [
        NodeRow(
            n.uid, n.type, n.props, {"text": (vectors[texts.index(n.props["text"])], encoder.tag)}
        )
        if "text" in n.props
        else n
        for n in nodes
    ]
    store.write_batch(nodes, [], "base")
    store.write_batch([], rels, "base")


def _train_and_promote(settings: Settings, store: GraphStore) -> str:
    export = export_heterodata(store)
    config = SplitConfig(
        label_relation="IN_GROUP", num_negatives=5, num_hard_negatives=1, retrieval_ratio=0.0
    )
    result = run_experiment(
        model="hgt",
        split=split_graph(export.data, config),
        uids=export.uids,
        train_config=TrainConfig(epochs=2, device="cpu"),
        model_options={"hidden_channels": 16, "out_channels": 16},
        home=settings.home,
    )
    promote_run(settings, store, result.run_id)
    return result.run_id


def _ingest(settings: Settings, store: GraphStore, encoders: Encoders, items: list) -> None:
    """Ingest ``(uid, group, text)`` items tagged with their group's first tag, as a batch file."""
    path = settings.home / f"drop-{items[0][0].replace(':', '_')}.jsonl"
    with path.open("w") as f:
        for uid, g, text in items:
            f.write(json.dumps({"uid": uid, "type": "Item", "text": text}) + "\n")
            f.write(json.dumps({"src": uid, "dst": f"t:{g}.0", "type": "HAS_TAG"}) + "\n")
            f.write(json.dumps({"src": uid, "dst": f"g:{g}", "type": "IN_GROUP"}) + "\n")
    result = ingest_files(
        store, [path], IngestOptions(quarantine_dir=settings.home / "quarantine"), encoders
    )
    assert result.status == "ok"


def _emb(store: GraphStore, uid: str) -> tuple[np.ndarray | None, str | None]:
    with store.session() as session:
        row = session.run(
            "MATCH (n:Entity {uid: $uid}) RETURN n.emb AS emb, n.emb_model AS model", uid=uid
        ).single()
    return (None if row["emb"] is None else np.array(row["emb"])), row["model"]


NEW = [
    ("i:new.0", 0, "a bowl of cherry tomatoes"),
    ("i:new.1", 1, "whale under a sapphire sky"),
    ("i:new.2", 0, "a red apple"),
]


def test_items_ingested_after_training_answer_on_the_running_server(
    store: GraphStore, fresh_home: Settings, encoders: Encoders, serve
) -> None:
    _base_graph(store, encoders)
    run_id = _train_and_promote(fresh_home, store)
    registry = Registry(fresh_home.home, store, fresh_poll_seconds=0.0)
    registry.use_promoted()
    client = serve(fresh_home, registry)
    before_run = load_run(fresh_home.home).embeddings("fused")["Item"].copy()
    before_neo4j = _emb(store, "i:0.0")

    _ingest(fresh_home, store, encoders, NEW)
    with pytest.raises(grpc.RpcError) as missing:
        client.similar("i:new.0", k=3)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    # As `mmgraph refresh` in another process would: no registry handed over.
    report = refresh_embeddings(fresh_home, store)

    assert report.run_id == run_id and report.new_nodes == {"Item": 3}
    assert report.written == 3 and report.appended == 3 and report.served is None
    assert load_run(fresh_home.home).run_id == run_id  # nothing retrained or promoted
    for uid, _, text in NEW:
        answer = client.similar(uid, k=3)
        assert answer.run_id == run_id and len(answer.hits) == 3
        assert uid not in [h.uid for h in answer.hits]
        by_text = client.similar(text=text, k=1, space="text", types=["Item"])
        assert by_text.hits[0].uid == uid and by_text.hits[0].display == text
        emb, model = _emb(store, uid)
        assert model == run_id and emb.shape == (16,) and np.isfinite(emb).all()
    assert "i:new.0" in {h.uid for h in client.similar("i:new.2", k=30).hits}
    # Existing embeddings did not move, on disk or in Neo4j.
    after = load_run(fresh_home.home).embeddings("fused")["Item"]
    np.testing.assert_array_equal(after[: len(before_run)], before_run)
    emb, model = _emb(store, "i:0.0")
    np.testing.assert_array_equal(emb, before_neo4j[0])
    assert model == before_neo4j[1] == run_id


def test_a_refresh_in_process_serves_at_once_and_only_once(
    store: GraphStore, fresh_home: Settings, encoders: Encoders, serve
) -> None:
    _base_graph(store, encoders)
    run_id = _train_and_promote(fresh_home, store)
    registry = Registry(fresh_home.home, store, fresh_poll_seconds=None)
    registry.use_promoted()
    client = serve(fresh_home, registry)
    _ingest(fresh_home, store, encoders, NEW[:2])

    report = refresh_embeddings(fresh_home, store, registry)

    assert report.served == 2 and registry.active.run_id == run_id
    assert client.similar("i:new.1", k=2).run_id == run_id
    again = refresh_embeddings(fresh_home, store, registry)
    assert again.new_nodes == {} and again.written == 0 and again.served == 0


def test_retrain_only_when_stale_and_promote_only_if_not_worse(
    store: GraphStore, fresh_home: Settings, encoders: Encoders
) -> None:
    _base_graph(store, encoders)
    first = _train_and_promote(fresh_home, store)
    registry = Registry(fresh_home.home, store, fresh_poll_seconds=None)
    registry.use_promoted()
    _ingest(fresh_home, store, encoders, NEW[:1])  # 1 node of 24, 1 edge of 32

    quiet = retrain_if_stale(fresh_home, store, threshold=0.2)

    assert quiet.stale is False and quiet.message == "fresh enough"
    assert len(list_runs(fresh_home.home)) == 1
    more = [(f"i:more.{k}", k % 2, f"{WORDS[k % 2][k % 5]} and more") for k in range(8)]
    _ingest(fresh_home, store, encoders, more)  # 9 of 24 nodes (0.375), 9 of 32 edges

    kept = retrain_if_stale(fresh_home, store, threshold=0.2, min_gain=1.01, registry=registry)

    assert kept.stale is True and kept.action == "kept" and kept.promoted is False
    assert active_run_id(fresh_home.home) == first and registry.active.run_id == first
    assert kept.run_id in {r.run_id for r in list_runs(fresh_home.home)}
    mrr = kept.validation_mrr
    assert 0.0 < mrr["active"] <= 1.0 and 0.0 < mrr["candidate"] <= 1.0

    promoted = retrain_if_stale(fresh_home, store, threshold=0.2, min_gain=-1.01, registry=registry)

    new = promoted.run_id
    assert promoted.action == "promoted" and new not in (first, kept.run_id)
    assert active_run_id(fresh_home.home) == new and registry.active.run_id == new
    assert "i:more.7" in load_run(fresh_home.home).trained_uids["Item"]
    assert _emb(store, "i:more.7")[1] == new and _emb(store, "i:0.0")[1] == new
    # The same protocol for both: the kept run and the one promoted saw the same split.
    assert promoted.validation_mrr["active"] == pytest.approx(mrr["active"])


def test_the_commands_print_their_json(
    store: GraphStore, env: Settings, tmp_path: Path, encoders: Encoders, monkeypatch
) -> None:
    home = env.model_copy(update={"home": tmp_path})
    (tmp_path / "models").mkdir()
    monkeypatch.setenv("MMGRAPH_HOME", str(tmp_path))
    _base_graph(store, encoders)
    run_id = _train_and_promote(home, store)
    _ingest(home, store, encoders, NEW[:1])
    runner = CliRunner()

    refreshed = runner.invoke(app, ["refresh", "--json"])
    stale = runner.invoke(app, ["retrain-if-stale", "--threshold", "0.5", "--json"])
    bad = runner.invoke(app, ["retrain-if-stale", "--threshold", "2"])

    assert refreshed.exit_code == 0, refreshed.output
    out = json.loads(refreshed.stdout)
    assert out["run_id"] == run_id and out["new_nodes"] == {"Item": 1} and out["written"] == 1
    assert set(out["staleness"]) >= {"new_nodes", "new_edges", "node_share", "edge_share"}
    assert set(out["seconds"]) == {"export", "infer", "write", "append", "index"}
    assert stale.exit_code == 0, stale.output
    assert json.loads(stale.stdout)["action"] == "none"
    assert bad.exit_code == 2


@pytest.mark.parametrize("exact_below", [1000, 10])
def test_an_extended_index_is_a_copy_with_the_new_rows(exact_below: int) -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex.build(vectors[:40], exact_below=exact_below)

    grown = index.extended(vectors[40:])

    assert (len(index), len(grown), grown.exact) == (40, 50, index.exact)
    assert grown.search(vectors[45:46], 1)[1][0, 0] == 45
    assert index.search(vectors[45:46], 1)[1][0, 0] < 40
    with pytest.raises(IndexShapeError):
        index.extended(vectors[:, :4])
