"""The emoji graph through the real pipeline, with the real text and image encoders."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mmgraph.core.config import Settings
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.datasets import EMOJI
from mmgraph.ingest.encoding import Encoders
from mmgraph.ingest.options import IngestOptions
from mmgraph.ingest.pipeline import ingest

SAMPLE_EMOJI = 200  # the first 200 already bring all five relation types


@pytest.fixture(scope="module")
def emoji_root(settings: Settings) -> Path:
    return EMOJI.fetch(settings.cache)


def _sample(root: Path) -> tuple[list, dict[str, dict[str, int]]]:
    """The dataset's records for its categories, first ``SAMPLE_EMOJI`` emoji and their tags,
    with every relation among them (in the dataset's order), and the counts they make. Every
    record of the whole dataset is checked against the packages in ``test_emoji.py``, and
    ``make run`` ingests all of it; the encoders here run on a slice, for the suite's time."""
    records = list(EMOJI.records(root))
    emoji = [raw["uid"] for _, raw in records if raw.get("type") == "Emoji"][:SAMPLE_EMOJI]
    keep = set(emoji)
    keep |= {
        raw["dst"]
        for _, raw in records
        if raw["kind"] == "relation" and raw["type"] == "HAS_TAG" and raw["src"] in keep
    }
    keep |= {raw["uid"] for _, raw in records if raw.get("type") in ("Category", "Subcategory")}
    sample = [
        (location, raw)
        for location, raw in records
        if (raw["kind"] == "item" and raw["uid"] in keep)
        or (raw["kind"] == "relation" and raw["src"] in keep and raw["dst"] in keep)
    ]
    nodes = Counter(raw["type"] for _, raw in sample if raw["kind"] == "item")
    links = {(raw["src"], raw["type"], raw["dst"]) for _, raw in sample if raw["kind"] != "item"}
    relationships = Counter(rel for _, rel, _ in links)
    return sample, {"nodes": dict(nodes), "relationships": dict(relationships)}


def test_emoji_graph_ingests_with_both_modalities_and_is_idempotent(
    store: GraphStore, emoji_root: Path, tmp_path: Path
) -> None:
    options = IngestOptions(quarantine_dir=tmp_path)
    encoders = Encoders()
    sample, expected = _sample(emoji_root)
    assert set(expected["relationships"]) == set(EMOJI.expected_counts(emoji_root)["relationships"])
    first = ingest(store, sample, "dataset:emoji", options, encoders)
    assert first.status == "ok", first
    assert store.counts().to_dict() == expected

    records, _, _ = store.driver.execute_query(
        "MATCH (e:Entity:Emoji) RETURN count(e) AS n, "
        "count(e.text_vec) AS texts, count(e.image_vec) AS images, "
        "collect(DISTINCT e.text_enc) AS text_encs, collect(DISTINCT e.image_enc) AS image_encs"
    )
    row = records[0]
    assert row["n"] == row["texts"] == row["images"] == expected["nodes"]["Emoji"]
    assert len(row["text_encs"]) == len(row["image_encs"]) == 1

    grin = store.get_node("emoji:1f600")
    assert grin is not None and grin.props["text"] == "grinning face"
    text_vec, _ = grin.vectors["text"]
    image_vec, _ = grin.vectors["image"]
    assert text_vec.shape == (384,) and image_vec.shape == (1280,)
    assert np.isclose(np.linalg.norm(text_vec), 1.0, atol=1e-4)

    second = ingest(store, sample, "dataset:emoji", options, encoders)
    assert second.status == "ok"
    assert (second.nodes_created, second.relationships_created) == (0, 0)
    assert store.counts().to_dict() == expected
