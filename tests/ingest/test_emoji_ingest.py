"""The emoji graph through the real pipeline, with the real text and image encoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmgraph.core.config import Settings
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.datasets import EMOJI
from mmgraph.ingest.pipeline import Encoders, IngestOptions, ingest


@pytest.fixture(scope="module")
def emoji_root(settings: Settings) -> Path:
    return EMOJI.fetch(settings.cache)


def test_emoji_graph_ingests_with_both_modalities_and_is_idempotent(
    store: GraphStore, emoji_root: Path, tmp_path: Path
) -> None:
    options = IngestOptions(quarantine_dir=tmp_path)
    encoders = Encoders()
    first = ingest(store, EMOJI.records(emoji_root), "dataset:emoji", options, encoders)
    assert first.status == "ok", first
    expected = EMOJI.expected_counts(emoji_root)
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

    second = ingest(store, EMOJI.records(emoji_root), "dataset:emoji", options, encoders)
    assert second.status == "ok"
    assert (second.nodes_created, second.relationships_created) == (0, 0)
    assert store.counts().to_dict() == expected
