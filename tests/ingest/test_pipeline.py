"""Batch ingestion end to end against the real local Neo4j."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import neo4j
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mmgraph.core.config import Settings
from mmgraph.graph import audit
from mmgraph.graph.export import read_graph
from mmgraph.graph.local_neo4j import LocalNeo4j, running_server
from mmgraph.graph.store import GraphStore, NodeRow, RelRow
from mmgraph.ingest.encoding import REMOTE_PATH_REFUSED, Encoders
from mmgraph.ingest.options import IngestError, IngestOptions, IngestResult
from mmgraph.ingest.pipeline import ingest, ingest_files
from mmgraph.ingest.progress import READING, RELATIONS, Progress
from mmgraph.ingest.records import Location

DIM = 8


def _items(n: int, prefix: str = "p", type_name: str = "Product") -> list[dict]:
    rng = np.random.default_rng(len(prefix) + n)
    return [
        {
            "kind": "item",
            "uid": f"{prefix}:{i}",
            "type": type_name,
            "text": f"product number {i}",
            "vectors": {"clip": rng.standard_normal(DIM).round(4).tolist()},
            "props": {"rank": i},
        }
        for i in range(n)
    ]


def _relations(n: int, prefix: str = "p") -> list[dict]:
    return [
        {
            "kind": "relation",
            "src": f"{prefix}:{i}",
            "dst": f"{prefix}:{(i * 7 + 1) % n}",
            "type": "BOUGHT_WITH",
            "weight": 0.5,
        }
        for i in range(n)
    ]


def _jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _options(tmp_path: Path, batch_size: int = 50) -> IngestOptions:
    return IngestOptions(
        quarantine_dir=tmp_path / "quarantine",
        batch_size=batch_size,
        encode_text=False,
        encode_images=False,
    )


def _quarantine(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_ingesting_the_same_files_twice_changes_no_counts(
    store: GraphStore, tmp_path: Path
) -> None:
    items = _jsonl(tmp_path / "items.jsonl", _items(120))
    csv = tmp_path / "more.csv"
    pd.DataFrame(
        [{"uid": "t:a", "type": "Tag", "text": "a tag", "props": json.dumps({"x": 1})}]
        + [{"kind": "relation", "src": "p:1", "dst": "t:a", "type": "HAS_TAG", "weight": "2.5"}]
    ).to_csv(csv, index=False)
    parquet = tmp_path / "rels.parquet"
    pd.DataFrame(_relations(120)).to_parquet(parquet)
    paths = [items, csv, parquet]

    first = ingest_files(store, paths, _options(tmp_path))
    counts = store.counts().to_dict()
    second = ingest_files(store, paths, _options(tmp_path))

    assert first.status == second.status == "ok"
    assert (first.nodes_written, first.relationships_written) == (121, 121)
    assert (first.nodes_created, first.relationships_created) == (121, 121)
    assert (second.nodes_created, second.relationships_created) == (0, 0)
    assert (
        store.counts().to_dict()
        == counts
        == {
            "nodes": {"Product": 120, "Tag": 1},
            "relationships": {"BOUGHT_WITH": 120, "HAS_TAG": 1},
        }
    )
    assert store.relationships_of("p:1")[-1] == ("HAS_TAG", "t:a", 2.5)
    runs = audit.runs(store)
    assert [r["status"] for r in runs] == ["ok", "ok"]
    assert runs[0]["inputs"][0].startswith(f"{items} sha256:")


def test_malformed_records_are_quarantined_and_good_ones_written(
    store: GraphStore, tmp_path: Path
) -> None:
    bad = [
        {"kind": "item", "type": "Product", "text": "no uid"},
        {"kind": "item", "uid": "bad:vec", "type": "Product", "vectors": {"clip": ["a", 1]}},
        {"kind": "item", "uid": "bad:type", "type": "Item) DETACH DELETE n //"},
        {"kind": "relation", "src": "p:0", "dst": "ghost:1", "type": "BOUGHT_WITH"},
        {"kind": "relation", "src": "p:0", "dst": "p:1", "type": "bad type"},
        {"kind": "item", "uid": "p:0", "type": "Tag"},
    ]
    path = tmp_path / "mixed.jsonl"
    good = _items(10)
    lines = [json.dumps(r) for r in good[:5]]
    lines += [json.dumps(r) for r in bad]
    lines.insert(3, "{not json")
    lines += [json.dumps(r) for r in good[5:] + _relations(10)]
    path.write_text("\n".join(lines) + "\n")

    result = ingest_files(store, [path], _options(tmp_path, batch_size=4))

    assert result.status == "partial"
    assert (result.nodes_written, result.relationships_written, result.quarantined) == (10, 10, 7)
    entries = _quarantine(result.quarantine_file)
    reasons = {(e["record"], e["field"]) for e in entries}
    assert reasons == {
        (4, "<record>"),  # not JSON
        (7, "uid"),
        (8, "vectors.clip.0"),
        (9, "type"),
        (10, "dst"),
        (11, "type"),
        (12, "type"),  # p:0 is a Product earlier in the input
    }
    assert all(e["source"] == str(path) and e["message"] for e in entries)
    assert "ghost:1" in next(e["message"] for e in entries if e["field"] == "dst")
    assert store.counts().to_dict() == {
        "nodes": {"Product": 10},
        "relationships": {"BOUGHT_WITH": 10},
    }
    assert store.existing_types(["bad:vec", "bad:type", "ghost:1"]) == {}
    assert store.get_node("p:0").type == "Product"
    assert audit.runs(store)[0]["quarantined"] == 7


def test_type_clash_with_the_stored_graph_is_quarantined(store: GraphStore, tmp_path: Path) -> None:
    store.write_batch([NodeRow("p:3", "Tag")], [], "earlier")
    result = ingest_files(store, [_jsonl(tmp_path / "a.jsonl", _items(5))], _options(tmp_path))
    assert (result.status, result.nodes_written, result.quarantined) == ("partial", 4, 1)
    (entry,) = _quarantine(result.quarantine_file)
    assert (entry["field"], entry["raw"]["uid"]) == ("type", "p:3")
    assert "stored as a Tag" in entry["message"]


def test_all_bad_input_fails_and_writes_nothing(store: GraphStore, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "bad.jsonl", [{"kind": "item", "type": "Product"}])
    result = ingest_files(store, [path], _options(tmp_path))
    assert (result.status, result.nodes_written, result.quarantined) == ("failed", 0, 1)
    assert store.counts().nodes == {}


class _FailingStore(GraphStore):
    """Makes the n-th write batch fail inside its transaction, after its rows were merged: its
    last row carries a value Neo4j refuses to store (a map)."""

    def __init__(self, store: GraphStore, fail_at: int) -> None:
        super().__init__(store.driver, store.database)
        self.calls = 0
        self.fail_at = fail_at

    def write_batch(self, nodes, relationships, run_id):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == self.fail_at:
            nodes = [*nodes, NodeRow("bad:1", "Product", {"nested": {"a": 1}})]
        return super().write_batch(nodes, relationships, run_id)


def test_a_batch_failing_part_way_leaves_no_partial_writes(
    store: GraphStore, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "items.jsonl", _items(100) + _relations(100))
    failing = _FailingStore(store, fail_at=2)

    with pytest.raises(IngestError) as raised:
        ingest_files(failing, [path], _options(tmp_path, batch_size=40))

    assert raised.value.result.status == "failed"
    assert raised.value.result.nodes_written == 40
    assert store.counts().to_dict() == {"nodes": {"Product": 40}, "relationships": {}}
    assert store.existing_types([f"p:{i}" for i in range(40, 80)]) == {}
    assert audit.runs(store)[0]["status"] == "failed"

    rerun = ingest_files(store, [path], _options(tmp_path, batch_size=40))
    assert rerun.status == "ok"
    assert store.counts().to_dict() == {
        "nodes": {"Product": 100},
        "relationships": {"BOUGHT_WITH": 100},
    }


def test_neo4j_killed_mid_ingest_then_rerun_equals_a_clean_run(
    neo4j_server: LocalNeo4j, store: GraphStore, tmp_path: Path
) -> None:
    n = 1500  # killed at 500 nodes: a third of the way in
    path = _jsonl(tmp_path / "big.jsonl", _items(n) + _relations(n))
    options = _options(tmp_path, batch_size=100)
    clean = {"nodes": {"Product": n}, "relationships": {"BOUGHT_WITH": n}}

    auth = (neo4j_server.user, neo4j_server.password)
    errors: list[BaseException] = []
    # No driver retries: the doomed run fails at once rather than after seconds of waiting.
    with neo4j.GraphDatabase.driver(
        neo4j_server.uri, auth=auth, max_transaction_retry_time=0.0
    ) as driver:
        doomed = GraphStore(driver)

        def run() -> None:
            try:
                ingest_files(doomed, [path], options)
            except IngestError as e:
                errors.append(e)

        worker = threading.Thread(target=run)
        worker.start()
        while worker.is_alive() and sum(store.counts().nodes.values()) < 500:
            threading.Event().wait(0.05)
        neo4j_server.kill()
        worker.join(timeout=120)
    assert not worker.is_alive()
    assert errors, "the ingest should have failed when Neo4j died"
    state = neo4j_server.data_dir / "server.json"
    assert state.exists()  # what a crash leaves behind
    assert running_server(neo4j_server.home) is None  # ... and is cleaned up
    assert not state.exists()

    neo4j_server.start()
    with neo4j.GraphDatabase.driver(neo4j_server.uri, auth=auth) as driver:
        recovered = GraphStore(driver)
        partial = sum(recovered.counts().nodes.values())
        assert 0 < partial < n
        rerun = ingest_files(recovered, [path], options)
        assert rerun.status == "ok"
        assert recovered.counts().to_dict() == clean
        statuses = sorted(r["status"] for r in audit.runs(recovered))
        assert statuses == ["ok", "running"]

    neo4j_server.stop()  # a clean stop and start keep everything as well
    neo4j_server.start()
    with neo4j.GraphDatabase.driver(neo4j_server.uri, auth=auth) as driver:
        assert GraphStore(driver).counts().to_dict() == clean


def test_export_round_trip_equals_what_was_ingested(store: GraphStore, tmp_path: Path) -> None:
    items, relations = _items(30), _relations(30)
    ingest_files(store, [_jsonl(tmp_path / "g.jsonl", items + relations)], _options(tmp_path))

    exported = read_graph(store, page_size=7)
    uids = exported.uids["Product"]
    assert len(uids) == 30
    row = exported.index("Product")
    expected = np.zeros((30, DIM), dtype=np.float32)
    for item in items:
        expected[row[item["uid"]]] = item["vectors"]["clip"]
    x, mask = exported.features["Product", "clip"]
    np.testing.assert_array_equal(x, expected)
    assert mask.all()
    src, dst, weight = exported.edges["Product", "BOUGHT_WITH", "Product"]
    got = sorted(
        (uids[s], uids[d], w)
        for s, d, w in zip(src.tolist(), dst.tolist(), weight.tolist(), strict=True)
    )
    assert got == sorted((r["src"], r["dst"], r["weight"]) for r in relations)
    assert exported.encoders["Product"] == {"clip": "clip@given"}


def test_images_resolve_beside_the_file_and_bad_ones_are_quarantined(
    store: GraphStore, tmp_path: Path
) -> None:
    path = _jsonl(
        tmp_path / "imgs.jsonl",
        [
            {"uid": "i:1", "type": "Photo", "image": "missing.png"},
            {"uid": "i:2", "type": "Photo", "image": "data:image/png;base64,@@@"},
            {"uid": "i:3", "type": "Photo", "text": "fine"},
        ],
    )
    result = ingest_files(store, [path], _options(tmp_path))
    # The malformed data URI refuses its record; the missing file only its picture (issue 21).
    assert (result.nodes_written, result.quarantined, result.warnings) == (2, 1, 1)
    assert {e["field"] for e in _quarantine(result.quarantine_file)} == {"image"}
    assert store.get_node("i:3").props["text"] == "fine"
    assert "image_ref" not in store.get_node("i:1").props


def test_relation_rows_use_the_store_for_endpoints(store: GraphStore, tmp_path: Path) -> None:
    store.write_batch([NodeRow("a:1", "A"), NodeRow("b:1", "B")], [], "earlier")
    path = _jsonl(tmp_path / "r.jsonl", [{"src": "a:1", "dst": "b:1", "type": "LINKS"}])
    result = ingest_files(store, [path], _options(tmp_path))
    assert (result.status, result.relationships_written) == ("ok", 1)
    assert store.relationships_of("a:1") == [("LINKS", "b:1", 1.0)]
    store.write_batch([], [RelRow("a:1", "b:1", "LINKS", 3.0)], "later")
    assert store.relationships_of("a:1") == [("LINKS", "b:1", 3.0)]


@pytest.fixture(scope="module")
def encoders() -> Encoders:
    return Encoders()


def test_both_encoders_run_on_the_settings_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMGRAPH_DEVICE", "cpu")
    # Nothing is loaded: each encoder holds the device it was given.
    encoders = Encoders.from_settings(Settings.from_env())
    assert encoders.image_encoder().requested_device == "cpu"
    assert encoders.text_encoder().requested_device == "cpu"


def test_unchanged_text_is_not_encoded_again_and_stale_vectors_go(
    store: GraphStore, tmp_path: Path, encoders: Encoders
) -> None:
    def run(texts: list[str], encode: bool) -> IngestResult:
        path = _jsonl(
            tmp_path / "t.jsonl",
            [{"uid": f"d:{i}", "type": "Doc", "text": t} for i, t in enumerate(texts)],
        )
        options = IngestOptions(quarantine_dir=tmp_path, encode_text=encode, encode_images=False)
        return ingest_files(store, [path], options, encoders)

    first = run(["a red apple", "a blue car"], encode=True)
    assert "encode_text" in first.timings
    before = store.get_nodes(["d:0", "d:1"])

    again = run(["a red apple", "a blue car"], encode=True)
    assert "encode_text" not in again.timings
    same = store.get_nodes(["d:0", "d:1"])
    for uid in ("d:0", "d:1"):
        np.testing.assert_array_equal(same[uid].vectors["text"][0], before[uid].vectors["text"][0])

    changed = run(["a red apple", "a green bicycle"], encode=True)
    assert "encode_text" in changed.timings
    after = store.get_nodes(["d:0", "d:1"])
    assert not np.array_equal(after["d:1"].vectors["text"][0], before["d:1"].vectors["text"][0])
    np.testing.assert_array_equal(after["d:0"].vectors["text"][0], before["d:0"].vectors["text"][0])

    run(["a red apple", "no longer a bicycle"], encode=False)
    stale = store.get_nodes(["d:0", "d:1"])
    assert "text" in stale["d:0"].vectors
    assert "text" not in stale["d:1"].vectors
    assert stale["d:1"].props["text"] == "no longer a bicycle"


def test_numbers_keep_the_first_fit_across_runs(store: GraphStore, tmp_path: Path) -> None:
    def run(name: str, prices: list[float]) -> None:
        records = [
            {"uid": f"{name}:{i}", "type": "Product", "numbers": {"price": p}}
            for i, p in enumerate(prices)
        ]
        ingest_files(store, [_jsonl(tmp_path / f"{name}.jsonl", records)], _options(tmp_path))

    run("a", [1.0, 3.0])
    run("b", [100.0, 5.0])

    exported = read_graph(store)
    assert exported.encoders["Product"]["num"].startswith("standardize@")
    x = exported.features["Product", "num"][0][:, 0].tolist()
    uids = exported.uids["Product"]
    # Fitted on the first run only: mean 2, std 1.
    assert dict(zip(uids, x, strict=True)) == {"a:0": -1.0, "a:1": 1.0, "b:0": 98.0, "b:1": 3.0}


def test_relations_to_an_item_refused_in_this_run_are_refused(
    store: GraphStore, tmp_path: Path
) -> None:
    store.write_batch([NodeRow("g:2", "Tag"), NodeRow("g:3", "Tag")], [], "earlier")
    records = [
        {"uid": "g:1", "type": "Product"},
        {"uid": "g:2", "type": "Product"},  # clashes with the stored Tag
        {"uid": "g:3", "type": "Tag", "vectors": {"clip": ["x"]}},  # invalid
        {"src": "g:1", "dst": "g:2", "type": "BOUGHT_WITH"},
        {"src": "g:1", "dst": "g:3", "type": "HAS_TAG"},
    ]
    result = ingest_files(store, [_jsonl(tmp_path / "r.jsonl", records)], _options(tmp_path))
    assert (result.nodes_written, result.relationships_written, result.quarantined) == (1, 0, 4)
    fields = [(e["record"], e["field"]) for e in _quarantine(result.quarantine_file)]
    assert sorted(fields) == [(2, "type"), (3, "vectors.clip.0"), (4, "dst"), (5, "dst")]
    assert store.relationships_of("g:1") == []


def test_precomputed_dimensions_are_checked_per_type_and_against_the_graph(
    store: GraphStore, tmp_path: Path
) -> None:
    first = [
        {"uid": "d:1", "type": "D", "vectors": {"clip": [1.0, 2.0]}},
        {"uid": "e:1", "type": "E", "vectors": {"clip": [1.0, 2.0, 3.0]}},
    ]
    result = ingest_files(store, [_jsonl(tmp_path / "a.jsonl", first)], _options(tmp_path))
    assert (result.status, result.nodes_written) == ("ok", 2)

    later = [
        {"uid": "d:2", "type": "D", "vectors": {"clip": [1.0, 2.0, 3.0]}},
        {"uid": "d:3", "type": "D", "vectors": {"clip": [4.0, 5.0]}},
    ]
    result = ingest_files(store, [_jsonl(tmp_path / "b.jsonl", later)], _options(tmp_path))
    (entry,) = _quarantine(result.quarantine_file)
    assert (entry["record"], entry["field"]) == (1, "vectors.clip")
    assert entry["message"] == "has 3 dimensions; the stored D vectors have 2"
    exported = read_graph(store)
    assert exported.features["D", "clip"][0].shape == (2, 2)
    assert exported.features["E", "clip"][0].shape == (1, 3)


def test_numbers_unknown_to_the_stored_fit_give_no_vector(
    store: GraphStore, tmp_path: Path
) -> None:
    a = [{"uid": "p:1", "type": "P", "numbers": {"price": 1.0}}]
    b = [{"uid": "p:2", "type": "P", "numbers": {"weight": 10.0}}]
    ingest_files(store, [_jsonl(tmp_path / "a.jsonl", a)], _options(tmp_path))
    ingest_files(store, [_jsonl(tmp_path / "b.jsonl", b)], _options(tmp_path))
    nodes = store.get_nodes(["p:1", "p:2"])
    assert "num" in nodes["p:1"].vectors and "num" not in nodes["p:2"].vectors


def test_quarantine_lines_stay_json_for_nan_and_data_uris_are_checked(
    store: GraphStore, tmp_path: Path
) -> None:
    csv = tmp_path / "rels.csv"
    csv.write_text("src,dst,type,weight\na,b,R,nan\n")
    images = _jsonl(
        tmp_path / "imgs.jsonl",
        [
            {"uid": "i:1", "type": "Photo", "image": "data:image/png,not-base64"},
            {"uid": "i:2", "type": "Photo", "image": "data:image/png;base64,"},
        ],
    )
    result = ingest_files(store, [csv, images], _options(tmp_path))
    entries = _quarantine(result.quarantine_file)
    assert [(e["field"], e["record"]) for e in entries] == [
        ("weight", 1),
        ("image", 1),
        ("image", 2),
    ]
    assert "nan" in entries[0]["raw"]


def _blank_png_uri(width: int, height: int) -> str:
    """A ``data:`` URI of a tiny PNG of ``width`` x ``height`` blank pixels (a pixel bomb)."""
    out = io.BytesIO()
    Image.new("1", (width, height)).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


_opened: list[str] | None = None


def _record_opens(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str | Path):
        _opened.append(str(args[0]))


sys.addaudithook(_record_opens)


def test_remote_options_refuse_image_paths_and_open_nothing(
    store: GraphStore, tmp_path: Path
) -> None:
    global _opened
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    (pictures / "real.png").write_bytes(b"\x89PNG not really")
    records = [
        (Location("grpc:peer", 1), {"uid": "r:1", "type": "Photo", "image": str(pictures)}),
        (Location("grpc:peer", 2), {"uid": "r:2", "type": "Photo", "image": "real.png"}),
        (Location("grpc:peer", 3), {"uid": "r:3", "type": "Photo", "image": "/etc/passwd"}),
        (Location("grpc:peer", 4), {"uid": "r:4", "type": "Photo", "text": "no picture"}),
    ]
    options = IngestOptions(
        quarantine_dir=tmp_path / "q", encode_text=False, allow_image_paths=False
    )
    _opened = []
    try:
        result = ingest(store, records, "grpc:peer", options)
        opened = [p for p in _opened if p.startswith((str(pictures), "/etc/passwd", "real.png"))]
    finally:
        _opened = None
    assert opened == []
    assert (result.status, result.nodes_written, result.quarantined) == ("partial", 1, 3)
    entries = _quarantine(result.quarantine_file)
    assert sorted((e["record"], e["field"]) for e in entries) == [(i, "image") for i in (1, 2, 3)]
    assert all(e["message"] == REMOTE_PATH_REFUSED for e in entries)
    assert "send the bytes" in REMOTE_PATH_REFUSED
    assert store.existing_types(["r:1", "r:2", "r:3", "r:4"]) == {"r:4": "Photo"}


def test_a_pixel_bomb_is_quarantined_with_its_reason_before_decoding(
    store: GraphStore, tmp_path: Path
) -> None:
    bomb = _blank_png_uri(9000, 9000)
    assert len(bomb) < 200_000
    records = [
        (Location("grpc:peer", 1), {"uid": "b:1", "type": "Photo", "image": bomb}),
        (Location("grpc:peer", 2), {"uid": "b:2", "type": "Photo", "text": "fine"}),
    ]
    options = IngestOptions(
        quarantine_dir=tmp_path,
        encode_text=False,
        allow_image_paths=False,
        max_image_pixels=1_000_000,
    )
    result = ingest(store, records, "grpc:peer", options)
    # Written without its picture since issue 21, the refusal a warning.
    assert (result.status, result.nodes_written, result.quarantined) == ("partial", 2, 0)
    (entry,) = _quarantine(result.quarantine_file)
    assert (entry["record"], entry["field"], entry["kind"]) == (1, "image", "warning")
    assert "9000x9000 is 81,000,000 pixels" in entry["message"]
    assert "limit of 1,000,000" in entry["message"] and "before decoding" in entry["message"]
    # The picture's base64 is not copied whole into the quarantine file.
    assert len(entry["raw"]["image"]) < 400 < len(bomb)
    assert "encode_image" not in result.timings


def test_small_chunks_give_the_same_graph_and_refusals_as_one_chunk(
    store: GraphStore, tmp_path: Path
) -> None:
    records = [
        {"src": "c:3", "dst": "c:0", "type": "LINKS"},  # before both of its items
        {"uid": "c:0", "type": "C", "vectors": {"clip": [1.0, 2.0]}, "numbers": {"n": 1.0}},
        {"uid": "c:1", "type": "C", "vectors": {"clip": [1.0, 2.0]}, "numbers": {"n": 2.0}},
        {"uid": "c:2", "type": "C", "numbers": {"n": 3.0, "m": 5.0}},
        {"uid": "c:3", "type": "C", "vectors": {"clip": [3.0, 4.0]}, "numbers": {"n": 6.0}},
        {"uid": "c:0", "type": "D"},  # a type clash with record 2, chunks away
        {"uid": "c:4", "type": "C", "vectors": {"clip": [1.0, 2.0, 3.0]}},  # dimension clash
        {"src": "c:1", "dst": "c:4", "type": "LINKS"},  # names a refused item
        {"src": "c:2", "dst": "c:5", "type": "LINKS"},  # names an item later in the input
        {"uid": "c:5", "type": "C", "text": "last"},
    ]
    path = _jsonl(tmp_path / "c.jsonl", records)
    outcomes = []
    for batch_size in (1000, 1, 2):
        store.driver.execute_query("MATCH (n) DETACH DELETE n")
        result = ingest_files(store, [path], _options(tmp_path, batch_size=batch_size))
        entries = _quarantine(result.quarantine_file)
        exported = read_graph(store)
        num_x = exported.features["C", "num"][0]
        outcomes.append(
            (
                result.to_json() | {"run_id": None, "quarantine_file": None},
                sorted((e["record"], e["field"], e["message"]) for e in entries),
                store.counts().to_dict(),
                sorted(store.relationships_of("c:3") + store.relationships_of("c:2")),
                {uid: num_x[row].tolist() for uid, row in exported.index("C").items()},
                exported.encoders["C"]["num"],
            )
        )
    assert outcomes[0] == outcomes[1] == outcomes[2]
    summary, refusals, counts, links, num_x, _ = outcomes[0]
    assert (summary["nodes_written"], summary["relationships_written"]) == (5, 2)
    assert [(r, f) for r, f, _ in refusals] == [(6, "type"), (7, "vectors.clip"), (8, "dst")]
    assert f"is a C at {path}#2" in refusals[0][2]
    assert links == [("LINKS", "c:0", 1.0), ("LINKS", "c:5", 1.0)]
    # The first fit of C's numbers used every chunk: n has mean 3, std sqrt(3.5).
    n = np.array([1.0, 2.0, 3.0, 6.0])
    expected = (n - n.mean()) / n.std()
    got = [num_x[f"c:{i}"][1] for i in range(4)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_runs_are_named_in_utc_and_record_hashes_pid_and_host(
    store: GraphStore, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path / "u.jsonl", _items(3))
    before = datetime.now(UTC).replace(microsecond=0)
    result = ingest_files(store, [path], _options(tmp_path))
    stamp, _, suffix = result.run_id.partition("-")
    started = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= started <= datetime.now(UTC) and len(suffix) == 8
    (run,) = audit.runs(store)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert run["inputs"] == [f"{path} sha256:{sha}"] and run["sha256s"] == [sha]
    assert (run["pid"], run["host"]) == (os.getpid(), socket.gethostname())
    assert audit.ingested_sha256s(store, [sha, "0" * 64]) == {sha: result.run_id}


_FLAT_MEMORY = """
import json, resource, sys
from pathlib import Path
import neo4j
from mmgraph.graph import audit
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.options import IngestOptions
from mmgraph.ingest.pipeline import ingest_files

uri, password, path, quarantine, headroom = sys.argv[1:]
with neo4j.GraphDatabase.driver(uri, auth=("neo4j", password)) as driver:
    store = GraphStore(driver)
    store.setup_schema()
    audit.runs(store)
    status = Path("/proc/self/status").read_text()
    size = int(next(l for l in status.splitlines() if l.startswith("VmSize")).split()[1]) * 1024
    limit = size + int(headroom)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    options = IngestOptions(Path(quarantine), batch_size=250, encode_text=False)
    print(json.dumps(ingest_files(store, [Path(path)], options).to_json()))
"""


def test_an_input_larger_than_the_memory_limit_ingests(
    neo4j_server: LocalNeo4j, store: GraphStore, tmp_path: Path
) -> None:
    n, dim, headroom = 12_000, 256, 120 * 2**20
    rng = np.random.default_rng(0)
    path = tmp_path / "big.jsonl"
    with path.open("w") as out:
        for i in range(n):
            vector = rng.standard_normal(dim).round(5).tolist()
            out.write(json.dumps({"uid": f"m:{i}", "type": "M", "vectors": {"v": vector}}) + "\n")
            if i:
                out.write(json.dumps({"src": f"m:{i}", "dst": f"m:{i - 1}", "type": "NEXT"}))
                out.write("\n")
    # Held as parsed records (the raw JSON and the validated lists of floats, ~32 bytes per
    # number each), the input would need about 2 * 12k * 256 * 32 bytes = 190 MB.
    assert 2 * n * dim * 32 > 1.5 * headroom
    script = tmp_path / "flat.py"
    script.write_text(_FLAT_MEMORY)
    args = [neo4j_server.uri, neo4j_server.password, str(path), str(tmp_path / "q"), str(headroom)]
    # One malloc arena: glibc reserves 64 MB of address space for each further one (a thread's
    # first allocation may open one), which took 140 MB of the limit where the ingest's own
    # growth is 36 MB, and made the run fail now and then where an allocation met the limit.
    env = {**os.environ, "MALLOC_ARENA_MAX": "1"}
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert (result["status"], result["nodes_written"]) == ("ok", n)
    assert result["relationships_written"] == n - 1
    assert store.counts().to_dict() == {"nodes": {"M": n}, "relationships": {"NEXT": n - 1}}


def test_an_item_whose_picture_is_refused_keeps_its_text_and_relations(
    store: GraphStore, tmp_path: Path
) -> None:
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    Image.new("1", (2000, 2000)).save(pictures / "poster.png")  # 4 MP: above the limit below
    (pictures / "broken.png").write_bytes(b"\x89PNG not a picture")
    store.write_batch(
        [NodeRow("p:old", "Poster", {"image_ref": "sha256:old"}, {"image": ([1.0], "old@1")})],
        [],
        "earlier",
    )
    records = [
        {"uid": "p:big", "type": "Poster", "text": "a big poster", "image": "pictures/poster.png"},
        {"uid": "p:old", "type": "Poster", "text": "now broken", "image": "pictures/broken.png"},
        {"uid": "t:art", "type": "Tag", "text": "art"},
        {"src": "p:big", "dst": "t:art", "type": "HAS_TAG"},
        {"src": "p:old", "dst": "t:art", "type": "HAS_TAG"},
    ]
    path = _jsonl(tmp_path / "posters.jsonl", records)
    options = IngestOptions(
        quarantine_dir=tmp_path / "q", encode_text=False, max_image_pixels=1_000_000
    )
    result = ingest_files(store, [path], options)

    assert (result.status, result.nodes_written, result.relationships_written) == ("partial", 3, 2)
    assert (result.quarantined, result.warnings) == (0, 2)
    assert result.to_json()["warnings"] == 2
    big, old = store.get_node("p:big"), store.get_node("p:old")
    assert big.props["text"] == "a big poster" and old.props["text"] == "now broken"
    # Without the modality: no vector, and no picture stored before is left to stand for it.
    assert "image" not in big.vectors and "image" not in old.vectors
    assert "image_ref" not in big.props and "image_ref" not in old.props
    assert (
        store.relationships_of("p:big")
        == store.relationships_of("p:old")
        == [("HAS_TAG", "t:art", 1.0)]
    )
    warnings = {e["raw"]["uid"]: e for e in _quarantine(result.quarantine_file)}
    assert {e["kind"] for e in warnings.values()} == {"warning"}
    assert "2000x2000 is 4,000,000 pixels" in warnings["p:big"]["message"]
    assert "cannot decode image" in warnings["p:old"]["message"]
    assert "encode_image" not in result.timings
    (run,) = [r for r in audit.runs(store) if r["id"] == result.run_id]
    assert (run["warnings"], run["quarantined"], run["status"]) == (2, 0, "partial")


def test_a_refused_picture_refuses_its_item_where_warnings_cannot_be_told(
    store: GraphStore, tmp_path: Path
) -> None:
    records = [
        (Location("grpc:peer", 1), {"uid": "b:1", "type": "Photo", "image": b"not a picture"}),
        (Location("grpc:peer", 2), {"uid": "b:2", "type": "Photo", "text": "fine"}),
    ]
    options = IngestOptions(
        quarantine_dir=tmp_path, encode_text=False, keep_items_without_image=False
    )
    result = ingest(store, records, "grpc:peer", options)
    assert (result.nodes_written, result.quarantined, result.warnings) == (1, 1, 0)
    (entry,) = _quarantine(result.quarantine_file)
    assert (entry["kind"], entry["field"]) == ("refused", "image")
    assert store.existing_types(["b:1", "b:2"]) == {"b:2": "Photo"}


def test_a_run_reports_how_far_it_is_by_stage(store: GraphStore, tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "p.jsonl", _items(120) + _relations(120))
    seen: list[Progress] = []
    ingest_files(store, [path], _options(tmp_path), progress=seen.append)
    reading = [p for p in seen if p.stage == READING]
    assert len(reading) > 2 and reading[-1].records == 240
    assert reading[-1].done == reading[-1].total == path.stat().st_size
    assert all(a.done <= b.done for a, b in zip(reading, reading[1:], strict=False))
    relations = [p for p in seen if p.stage == RELATIONS]
    assert relations[0].done == 0 and relations[-1].done == relations[-1].total == 120
    assert [p.stage for p in seen] == [READING] * len(reading) + [RELATIONS] * len(relations)
