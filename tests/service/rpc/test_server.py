"""The gRPC service against a real server on loopback and the real local Neo4j."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import grpc
import neo4j
import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from model_runs import EMOJI, save_run, train_run
from PIL import Image

from mmgraph.core.config import Settings
from mmgraph.gnn.runs import load_run
from mmgraph.graph.store import GraphStore, RelRow
from mmgraph.service.rpc import codegen
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2 as pb
from mmgraph.service.serving.options import ClusterOptions
from mmgraph.service.serving.registry import Registry

C = grpc.StatusCode


def _code(call, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kwargs)
    return info.value.code()


@pytest.fixture
def served(home: Settings, graph: GraphStore, serve):
    """A server answering from run "r1" (promoted), with "r2" saved beside it."""
    save_run(home.home, "r1", seed=1, created="2026-11-25T10:00:00Z")
    save_run(home.home, "r2", seed=2, created="2026-11-25T11:00:00Z")
    registry = Registry(home.home, graph)
    registry.use("r1", promote=True)
    server, client = serve(home, registry)
    return client


def test_generated_code_is_not_older_than_the_proto() -> None:
    assert codegen.proto_files(), "no protos"
    assert codegen.stale_protos() == [], "run: python -m mmgraph.service.rpc.codegen"


def test_generated_code_goes_stale_when_a_proto_changes(tmp_path: Path) -> None:
    protos = tmp_path / "protos" / "mmgraph" / "v1"
    protos.mkdir(parents=True)
    proto = protos / "analytics.proto"
    proto.write_text((codegen.PROTO_DIR / "mmgraph/v1/analytics.proto").read_text())
    out = tmp_path / "out"
    assert codegen.generate(tmp_path / "protos", out)
    assert codegen.stale_protos(tmp_path / "protos", out) == []
    assert (
        "from mmgraph.service.rpc.proto.mmgraph.v1 import"
        in (out / "mmgraph/v1/analytics_pb2_grpc.py").read_text()
    )
    proto.write_text(proto.read_text() + "\n// changed\n")
    assert codegen.stale_protos(tmp_path / "protos", out) == ["mmgraph/v1/analytics.proto"]


def test_similar_by_uid_excludes_the_node_and_keeps_k_across_type_filters(served) -> None:
    reply = served.similar("e:grin", k=2, types=["Emoji"])
    assert [h.uid for h in reply.hits] and "e:grin" not in [h.uid for h in reply.hits]
    assert {h.uid for h in reply.hits} == {"e:smile", "e:joy"}
    assert reply.hits[0].score >= reply.hits[1].score
    assert reply.hits[0].display in ("smiling face", "face with tears of joy")
    assert (reply.run_id, reply.space) == ("r1", "fused")
    every = served.similar("e:grin", k=7).hits  # 6 emoji + 2 tags, minus itself
    assert len(every) == 7 and {h.type for h in every} == {"Emoji", "Tag"}
    assert len(served.similar("e:grin", k=5, types=["Tag"]).hits) == 2
    assert len(served.similar("e:grin", k=3, types=["Tag", "Emoji"]).hits) == 3


def test_similar_by_text_in_the_image_space_returns_only_nodes_with_images(served) -> None:
    reply = served.similar(text="a laughing face", types=["Emoji"], space="image", k=10)
    uids = [h.uid for h in reply.hits]
    assert sorted(uids) == sorted(u for u in EMOJI if u != "e:fox")
    assert reply.space == "image"


def test_a_run_that_cannot_align_refuses_cross_modal_search(
    home: Settings, graph: GraphStore, serve
) -> None:
    save_run(home.home, "plain", seed=1, created="2026-11-25T10:00:00Z", aligned=False)
    save_run(home.home, "aligned", seed=2, created="2026-11-25T11:00:00Z")
    registry = Registry(home.home, graph)
    registry.use("plain")
    _, client = serve(home, registry)
    info = {m.run_id: list(m.aligned_spaces) for m in client.list_models()}
    assert info == {"plain": [], "aligned": ["image", "text"]}
    with pytest.raises(grpc.RpcError) as refused:
        client.similar(text="a laughing face", types=["Emoji"], space="image")
    assert refused.value.code() == C.FAILED_PRECONDITION
    assert "not aligned" in refused.value.details()
    assert _code(client.similar, image=_png(), space="text") == C.FAILED_PRECONDITION
    # Within one modality's own space, and in the fused space, it still answers.
    assert client.similar(text="a laughing face", types=["Emoji"], space="text", k=2).hits
    assert client.similar(text="a laughing face", types=["Emoji"], k=2).hits
    client.use_model("aligned")
    assert client.similar(text="a laughing face", types=["Emoji"], space="image", k=2).hits


def test_answers_explain_themselves_on_request(served, graph: GraphStore) -> None:
    graph.write_batch([], [RelRow("e:smile", "t:animal", "HAS_TAG")], "test")
    (hit,) = served.similar("e:grin", k=1, types=["Emoji"], explain=True).hits
    assert hit.uid == "e:smile"  # it shares t:face with e:grin
    assert [(s.relation, s.count, list(s.uids)) for s in hit.explanation.shared] == [
        ("HAS_TAG", 1, ["t:face"])
    ]
    assert not served.similar("e:grin", k=1, types=["Emoji"]).hits[0].HasField("explanation")
    links = served.predict_links("e:grin", "HAS_TAG", k=1, explain=True).links
    assert [x.dst for x in links] == ["t:animal"]
    # e:smile has the predicted link and shares t:face with e:grin.
    assert [(p.uid, p.shared) for p in links[0].explanation.peers] == [("e:smile", 1)]


def test_similar_by_image_skips_types_without_images(served) -> None:
    reply = served.similar(image=_png(), k=10)  # tags have no image modality: skipped
    assert sorted(h.uid for h in reply.hits) == sorted(EMOJI)
    assert _code(served.similar, image=_png(), types=["Tag"]) == C.INVALID_ARGUMENT


def test_cluster_methods_and_summaries(served) -> None:
    reply = served.cluster(types=["Emoji"], options=ClusterOptions("kmeans", clusters=2, top=2))
    groups: dict[int, set[str]] = {}
    for a in reply.assignments:
        groups.setdefault(a.cluster, set()).add(a.uid)
    assert sorted(map(sorted, groups.values())) == [
        ["e:cat", "e:dog", "e:fox"],
        ["e:grin", "e:joy", "e:smile"],
    ]
    assert [c.size for c in reply.clusters] == [3, 3] and reply.method == "kmeans"
    faces = next(c for c in reply.clusters if "e:grin" in groups[c.cluster])
    assert len(faces.central) == 2 and {h.uid for h in faces.central} <= groups[faces.cluster]
    assert [(n.relation, n.uid, n.count) for n in faces.neighbors] == [("HAS_TAG", "t:face", 2)]
    assert faces.neighbors[0].display == "face"

    community = served.cluster(
        types=["Emoji"], options=ClusterOptions("community", neighbors=2, seed=1)
    )
    assert len(community.assignments) == 6 and community.method == "community"
    assert sum(c.size for c in community.clusters) == 6
    density = served.cluster(uids=EMOJI, options=ClusterOptions("hdbscan", min_cluster_size=2))
    assert {a.uid for a in density.assignments} == set(EMOJI)
    assert all(a.cluster >= -1 for a in density.assignments)


def test_predict_links_excludes_existing_links(served) -> None:
    reply = served.predict_links("e:grin", "HAS_TAG", k=10)
    assert [(x.dst, x.dst_type) for x in reply.links] == [("t:animal", "Tag")]  # t:face exists
    assert 0 <= reply.links[0].probability <= 1 and reply.links[0].display == "animal"
    fresh = served.predict_links("e:joy", "HAS_TAG", k=2)
    assert [x.dst for x in fresh.links] == ["t:face", "t:animal"]
    assert fresh.links[0].probability >= fresh.links[1].probability


def test_score_links_in_request_order(served) -> None:
    probs = served.score_links("HAS_TAG", [("e:grin", "t:face"), ("e:grin", "t:animal")])
    assert len(probs) == 2 and all(0 <= p <= 1 for p in probs)
    assert probs[0] > probs[1]


def test_a_trained_run_answers_end_to_end(home: Settings, graph: GraphStore, serve) -> None:
    run_id = train_run(graph, home.home, model="hgt")
    registry = Registry(home.home, graph)
    assert registry.use_promoted() is not None
    _, client = serve(home, registry)
    (info,) = client.list_models()
    assert (info.run_id, info.model, info.promoted, info.serving) == (run_id, "hgt", True, True)
    assert "mrr" in info.metrics and set(info.spaces) == {"fused", "text"}
    every = client.similar("e:grin", k=10)
    assert every.run_id == run_id and len(every.hits) == 7  # 6 emoji + 2 tags, minus itself
    assert "e:grin" not in {h.uid for h in every.hits}
    by_text = client.similar(text="a laughing face", types=["Emoji"], space="text", k=3)
    assert len(by_text.hits) == 3 and {h.type for h in by_text.hits} == {"Emoji"}
    assert _code(client.similar, "e:grin", space="image") == C.INVALID_ARGUMENT  # no images
    (link,) = client.predict_links("e:grin", "HAS_TAG", k=10).links  # t:face exists
    assert link.dst == "t:animal" and 0 <= link.probability <= 1
    pairs = [("e:grin", "t:face"), ("e:fox", "t:animal"), ("e:grin", "t:animal")]
    probs = client.score_links("HAS_TAG", pairs)
    run = load_run(home.home, run_id)
    rows = {u: i for uids in run.uids.values() for i, u in enumerate(uids)}
    expected = run.score_links(
        ("Emoji", "HAS_TAG", "Tag"),
        np.array([rows[s] for s, _ in pairs]),
        np.array([rows[d] for _, d in pairs]),
    )
    assert np.allclose(probs, expected, atol=1e-6)
    assert probs[2] == pytest.approx(link.probability, abs=1e-6)


def test_errors_map_to_status_codes(served) -> None:
    assert _code(served.similar, "e:nope") == C.NOT_FOUND
    assert _code(served.predict_links, "e:nope", "HAS_TAG") == C.NOT_FOUND
    assert _code(served.score_links, "HAS_TAG", [("e:grin", "t:nope")]) == C.NOT_FOUND
    assert _code(served.use_model, "no-such-run") == C.NOT_FOUND
    assert _code(served.similar, "e:grin", k=5000) == C.INVALID_ARGUMENT
    assert _code(served.similar, "e:grin", types=["Emoji\n"]) == C.INVALID_ARGUMENT
    assert _code(served.similar, "e:grin", space="audio") == C.INVALID_ARGUMENT
    assert _code(served.similar, "e:fox", space="image") == C.INVALID_ARGUMENT  # no image
    assert _code(served.predict_links, "e:grin", "LIKES") == C.INVALID_ARGUMENT
    assert (
        _code(served.cluster, options=ClusterOptions("kmeans")) == C.INVALID_ARGUMENT
    )  # no node set
    assert (
        _code(served.cluster, types=["Emoji"], options=ClusterOptions(clusters=1))
        == C.INVALID_ARGUMENT
    )
    assert _code(served.similar, image=b"not an image") == C.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        served.similar("e:nope")
    assert "e:nope" in info.value.details()


def test_no_model_is_failed_precondition(home: Settings, graph: GraphStore, serve) -> None:
    _, client = serve(home, Registry(home.home, graph))
    assert client.list_models() == []
    assert _code(client.similar, "e:grin") == C.FAILED_PRECONDITION
    assert _code(client.cluster, types=["Emoji"]) == C.FAILED_PRECONDITION
    assert _code(client.predict_links, "e:grin", "HAS_TAG") == C.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as info:
        client.score_links("HAS_TAG", [("e:grin", "t:face")])
    assert "UseModel" in info.value.details()


def test_database_down_is_unavailable(home: Settings, serve) -> None:
    save_run(home.home, "r1", seed=1, created="2026-11-25T10:00:00Z")
    driver = neo4j.GraphDatabase.driver(
        "bolt://127.0.0.1:1", auth=("neo4j", "x"), max_transaction_retry_time=0.0
    )  # no retry: each call meets the refused connection at once
    with driver:
        _, client = serve(home, Registry(home.home, GraphStore(driver)))
        item = pb.IngestRecord(item=pb.Item(uid="x:1", type="Thing"))
        assert _code(client.ingest, [item]) == C.UNAVAILABLE
        assert _code(client.use_model, "r1") == C.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as info:
            client.use_model("r1")
        assert "retry" in info.value.details()


def test_bearer_token(home: Settings, graph: GraphStore, serve) -> None:
    secured = home.model_copy(update={"token": "s3cret"})
    registry = Registry(home.home, graph)
    server, anonymous = serve(secured, registry)
    target = f"127.0.0.1:{server.port}"
    from mmgraph.service.rpc.client import AnalyticsClient

    with (
        AnalyticsClient(target, token="wrong") as wrong,
        AnalyticsClient(target, token="s3cret") as right,
    ):
        assert _code(anonymous.list_models) == C.UNAUTHENTICATED
        assert _code(wrong.list_models) == C.UNAUTHENTICATED
        assert _code(anonymous.ingest, []) == C.UNAUTHENTICATED
        assert right.list_models() == []
        assert _code(right.similar, "e:grin") == C.FAILED_PRECONDITION
    # Health stays open without a token.
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_health_and_reflection(served) -> None:
    target = served.channel._channel.target().decode()
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "mmgraph.v1.Analytics"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = stub.ServerReflectionInfo(iter([request]), timeout=10)
        names = {s.name for s in answer.list_services_response.service}
        assert {"mmgraph.v1.Analytics", "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize(
    "symbol",
    [
        "mmgraph.v1.Analytics",  # a service
        "mmgraph.v1.Analytics.Similar",  # a method: what ghz --call and grpcurl describe ask
        "mmgraph.v1.Analytics.Ingest",
        "mmgraph.v1.SimilarRequest",  # a message
        "mmgraph.v1.SimilarRequest.uid",  # a field
        "mmgraph.v1.SimilarRequest.query",  # a oneof
        "mmgraph.v1.Item.NumbersEntry",  # a nested message
        "mmgraph.v1.ClusterMethod",  # an enum
        "mmgraph.v1.CLUSTER_METHOD_KMEANS",  # an enum value (scoped beside its enum)
        "mmgraph.v1.ClusterMethod.CLUSTER_METHOD_KMEANS",  # the same, as grpcurl names it
    ],
)
def test_reflection_resolves_every_symbol_to_its_file(served, symbol: str) -> None:
    target = served.channel._channel.target().decode()
    with grpc.insecure_channel(target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        asked = [
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=f"{symbol}Nope"),
        ]
        found, missing = stub.ServerReflectionInfo(iter(asked), timeout=10)
    (proto,) = found.file_descriptor_response.file_descriptor_proto
    file = descriptor_pb2.FileDescriptorProto.FromString(proto)
    assert (file.name, file.package) == ("mmgraph/v1/analytics.proto", "mmgraph.v1")
    assert [m.name for m in file.service[0].method][0] == "Similar"
    assert missing.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


def test_list_and_use_models(served, home: Settings) -> None:
    models = served.list_models()
    assert [m.run_id for m in models] == ["r2", "r1"]  # newest first
    r1 = models[1]
    assert r1.serving and r1.promoted and r1.model == "cca"
    assert list(r1.spaces) == ["fused", "text", "image"]
    assert list(r1.relations) == ["Emoji-HAS_TAG->Tag"] and r1.nodes["Emoji"] == 6
    reply = served.use_model("r2")
    assert (reply.model.run_id, reply.previous_run_id) == ("r2", "r1")
    assert reply.model.serving and not reply.model.promoted
    assert served.similar("e:grin").run_id == "r2"
    assert served.use_model("r2", promote=True).model.promoted


def test_model_switch_under_load_loses_no_call(served) -> None:
    errors: list[BaseException] = []
    runs: list[str] = []
    stop = threading.Event()

    def query() -> None:
        while not stop.is_set():
            try:
                runs.append(served.similar("e:grin", k=3).run_id)
            except grpc.RpcError as e:
                errors.append(e)

    threads = [threading.Thread(target=query) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for run_id in ("r2", "r1", "r2"):
            served.use_model(run_id)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert {"r1", "r2"} <= set(runs)
    after = served.similar("e:grin", k=3)
    assert after.run_id == "r2"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, format="PNG")
    return out.getvalue()


def test_ingest_stream_writes_good_records_and_reports_bad_ones(
    served, graph: GraphStore, tmp_path: Path
) -> None:
    picture = tmp_path / "pic.png"
    picture.write_bytes(_png())
    records = [
        pb.IngestRecord(
            item=pb.Item(
                uid="p:1",
                type="Product",
                numbers={"price": 3.5},
                props={"colour": pb.Value(string_value="red"), "stock": pb.Value(int_value=4)},
            )
        ),
        pb.IngestRecord(item=pb.Item(uid="p:2", type="product")),  # bad type name
        pb.IngestRecord(item=pb.Item(uid="p:3", type="Product", image=str(picture).encode())),
        pb.IngestRecord(relation=pb.Relation(src="p:1", dst="t:face", type="HAS_TAG")),
        pb.IngestRecord(relation=pb.Relation(src="p:1", dst="p:404", type="HAS_TAG")),
        pb.IngestRecord(),
    ]
    reply = served.ingest(records)
    assert reply.status == "partial" and reply.run_id
    assert (reply.nodes_written, reply.relationships_written) == (1, 1)
    refused = {q.record: q for q in reply.quarantined}
    assert sorted(refused) == [2, 3, 5, 6]
    assert refused[2].field == "type" and refused[2].key == "p:2"
    assert refused[3].field == "image" and refused[3].key == "p:3"  # a path is not an image
    assert "p:404" in refused[5].message and refused[5].key == "p:1->p:404"
    stored = graph.get_node("p:1")
    assert stored is not None and stored.props["colour"] == "red" and stored.props["stock"] == 4
    assert graph.get_node("p:3") is None
    assert ("HAS_TAG", "t:face", 1.0) in graph.relationships_of("p:1")
