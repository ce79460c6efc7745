"""The bulk first load through Neo4j's offline importer, against a transactional load of the same
input, on local Neo4j servers of their own (the import needs its database stopped)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mmgraph.core.config import Settings
from mmgraph.graph import audit
from mmgraph.graph.bulk_load import BulkLoadRefusedError, bulk_load_possible
from mmgraph.graph.connection import open_store
from mmgraph.graph.local_neo4j import LocalNeo4j, running_server, stop_running_server
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.bulk import bulk_ingest
from mmgraph.ingest.datasets import EMOJI
from mmgraph.ingest.encoding import Encoders
from mmgraph.ingest.options import IngestOptions
from mmgraph.ingest.pipeline import ingest
from mmgraph.ingest.records import Location

EMOJI_PER_RELATION = 4
# Cases the importer cannot take as they come, each written after the import by the upsert.
PROBES = [
    {
        "uid": "probe:1",
        "type": "Probe",
        "text": 'two\nlines, a "quote"',
        "numbers": {"weight": 1.0},
        "props": {"tags": ["x", "y;z"], "none": [], "blank": "", "n": 3, "f": 0.1, "b": True},
    },
    {"uid": "probe:2", "type": "Probe", "numbers": {"weight": 3.0}, "props": {"odd": ["", "u"]}},
    {"uid": "probe:3", "type": "Probe"},
    {"src": "probe:1", "dst": "probe:2", "type": "PROBES", "weight": 0.5},
    {"src": "probe:1", "dst": "probe:2", "type": "PROBES", "weight": 2.0, "props": {"k": "v"}},
    {"src": "probe:2", "dst": "probe:1", "type": "PROBES", "props": {"empty": []}},
    {"src": "probe:1", "dst": "ghost", "type": "PROBES"},
    {"uid": "probe:1", "type": "Probe", "props": {"n": 4, "later": "yes"}},
    {"uid": "probe:3", "type": "Probe", "numbers": {"weight": 2.0}},
]


@pytest.fixture(scope="module")
def records(settings: Settings) -> list[tuple[Location, dict[str, Any]]]:
    """A slice of the emoji graph with every relation type (the first emoji with each, their
    tags, every category and subcategory, and the relations among them), then the probes."""
    everything = list(EMOJI.records(EMOJI.fetch(settings.cache)))
    relations = [raw for _, raw in everything if raw["kind"] == "relation"]
    keep = {raw["uid"] for _, raw in everything if raw.get("type") in ("Category", "Subcategory")}
    for kind in sorted({raw["type"] for raw in relations}):
        firsts = [raw for raw in relations if raw["type"] == kind][:EMOJI_PER_RELATION]
        keep |= {uid for raw in firsts for uid in (raw["src"], raw["dst"])}
    keep |= {raw["dst"] for raw in relations if raw["type"] == "HAS_TAG" and raw["src"] in keep}
    sample = [
        (location, raw)
        for location, raw in everything
        if raw.get("uid", raw.get("src")) in keep and raw.get("dst", raw.get("uid")) in keep
    ]
    probes = [(Location("probes", i), raw) for i, raw in enumerate(PROBES, start=1)]
    return sample + probes


@pytest.fixture(scope="module")
def encoders() -> Encoders:
    return Encoders()


def _graph(store: GraphStore) -> dict[str, Any]:
    """Every node and relationship with its labels, type and properties (but ``source``, the
    id of the run that created it), and the kept encoder states."""
    nodes = {
        r["p"]["uid"]: (sorted(r["labels"]), _without_source(r["p"]))
        for r in store.read("MATCH (n:Entity) RETURN labels(n) AS labels, properties(n) AS p")
    }
    relationships = sorted(
        (r["a"], r["type"], r["b"], sorted(_without_source(r["p"]).items()))
        for r in store.read(
            "MATCH (a:Entity)-[r]->(b:Entity) "
            "RETURN a.uid AS a, type(r) AS type, b.uid AS b, properties(r) AS p"
        )
    )
    states = {
        r["key"]: r["value"]
        for r in store.read("MATCH (s:EncoderState) RETURN s.key AS key, s.value AS value")
    }
    return {"nodes": nodes, "relationships": relationships, "states": states}


def _without_source(props: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in props.items() if key != "source"}


def _options(home: Path) -> IngestOptions:
    return IngestOptions(quarantine_dir=home / "quarantine", batch_size=50)


def test_bulk_and_transactional_loads_give_the_same_graph(
    settings: Settings, tmp_path: Path, records: list, encoders: Encoders
) -> None:
    local = settings.model_copy(update={"home": tmp_path / "home"})
    server = LocalNeo4j.from_settings(local)
    server.start(detach=True)  # as `mmgraph neo4j start` does
    try:
        port = server.port
        assert bulk_load_possible(local)
        loaded = bulk_ingest(local, records, "dataset:emoji+probes", _options(local.home), encoders)
        restarted = running_server(local.home)
        assert restarted is not None and restarted.detached and restarted.port == port
        assert (loaded.status, loaded.quarantined) == ("partial", 1)  # the relation to a ghost
        with open_store(local) as store:
            bulk_graph = _graph(store)
            counts = store.counts().to_dict()
            # A second run over the loaded database is transactional and changes nothing.
            assert not bulk_load_possible(local)
            again = ingest(store, records, "dataset:emoji+probes", _options(local.home), encoders)
            assert (again.nodes_written, again.relationships_written) == (
                loaded.nodes_written,
                loaded.relationships_written,
            )
            assert (again.nodes_created, again.relationships_created) == (0, 0)
            assert "encode_text" not in again.timings and "encode_image" not in again.timings
            assert _graph(store) == bulk_graph and store.counts().to_dict() == counts
            runs = audit.runs(store)
            assert [(r["id"], r.get("mode")) for r in runs] == [
                (again.run_id, None),
                (loaded.run_id, "bulk"),
            ]
            assert runs[1]["nodes_created"] == loaded.nodes_created == len(bulk_graph["nodes"])
            with pytest.raises(BulkLoadRefusedError, match="holds"):
                bulk_ingest(local, records, "again", _options(local.home), encoders)
            assert _graph(store) == bulk_graph and len(audit.runs(store)) == 2

            # The same records through transactions into the emptied database.
            store.write("MATCH (n) DETACH DELETE n")
            written = ingest(store, records, "dataset:emoji+probes", _options(local.home), encoders)
            transactional_graph = _graph(store)
    finally:
        stop_running_server(local.home)
    assert transactional_graph == bulk_graph
    assert written.to_json() | {"run_id": None, "quarantine_file": None} == (
        loaded.to_json() | {"run_id": None, "quarantine_file": None}
    )
    emoji = [uid for uid in bulk_graph["nodes"] if uid.startswith("emoji:")]
    assert emoji and all("text_vec" in bulk_graph["nodes"][u][1] for u in emoji)
    assert all("image_vec" in bulk_graph["nodes"][u][1] for u in emoji)
    assert set(bulk_graph["states"]) == {"num:Probe"}
    probe = bulk_graph["nodes"]["probe:1"][1]
    assert (probe["none"], probe["blank"], probe["n"], probe["later"]) == ([], "", 4, "yes")

    # With no server running, the database is started to be looked at, and refused again.
    with pytest.raises(BulkLoadRefusedError, match="holds"):
        bulk_ingest(local, records, "again", _options(local.home), encoders)
    assert running_server(local.home) is None


def test_bulk_refuses_a_server_named_by_neo4j_uri_before_reading(
    settings: Settings, tmp_path: Path
) -> None:
    remote = settings.model_copy(
        update={"home": tmp_path / "remote", "neo4j_uri": "bolt://127.0.0.1:1"}
    )
    read: list[int] = []

    def records() -> Iterator[tuple[Location, dict[str, Any]]]:
        read.append(1)
        yield Location("x", 1), {"uid": "x:1", "type": "X"}

    assert not bulk_load_possible(remote)
    with pytest.raises(BulkLoadRefusedError, match="NEO4J_URI"):
        bulk_ingest(remote, records(), "x", _options(remote.home))
    assert read == []
    assert not (remote.home / "neo4j").exists() and not (remote.home / "quarantine").exists()
