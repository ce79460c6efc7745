"""The emoji dataset from the real npm packages: fetch, records, counts, and known facts."""

from __future__ import annotations

import os
import struct
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from mmgraph.core.config import Settings
from mmgraph.ingest.datasets import (
    DATASETS,
    EMOJI,
    DatasetFetchError,
    UnknownDatasetError,
    emoji_records,
    expected_counts,
    fetch_emoji,
    get_dataset,
    npm_install,
)
from mmgraph.ingest.datasets import fetch as fetch_module
from mmgraph.ingest.records import Item, Location, Relation, parse_record

EMPTY_PACKAGE = '{"name": "t", "private": true}'
EMPTY_LOCK = (
    '{"name": "t", "lockfileVersion": 3, "requires": true, "packages": {"": {"name": "t"}}}'
)


@pytest.fixture(scope="session")
def root(settings: Settings) -> Path:
    return fetch_emoji(settings.cache)


@pytest.fixture(scope="session")
def raw_records(root: Path) -> list[tuple[Location, dict[str, Any]]]:
    return list(emoji_records(root))


@pytest.fixture(scope="session")
def records(raw_records: list[tuple[Location, dict[str, Any]]]) -> list[Item | Relation]:
    return [parse_record(raw, location) for location, raw in raw_records]


@pytest.fixture(scope="session")
def items(records: list[Item | Relation]) -> dict[str, Item]:
    return {r.uid: r for r in records if isinstance(r, Item)}


@pytest.fixture(scope="session")
def edges(records: list[Item | Relation]) -> dict[tuple[str, str], set[str]]:
    """Destinations by (source uid, relationship type)."""
    out: dict[tuple[str, str], set[str]] = {}
    for r in records:
        if isinstance(r, Relation):
            out.setdefault((r.src, r.type), set()).add(r.dst)
    return out


def test_every_record_validates_and_is_numbered(raw_records, records) -> None:
    assert len(records) == len(raw_records)
    assert [loc.number for loc, _ in raw_records] == list(range(1, len(raw_records) + 1))
    assert {loc.source for loc, _ in raw_records} == {"emoji"}


def test_uids_are_unique(records) -> None:
    uids = Counter(r.uid for r in records if isinstance(r, Item))
    assert [uid for uid, n in uids.items() if n > 1] == []


def test_counts_match_the_package_metadata(root, records) -> None:
    nodes = Counter(r.type for r in records if isinstance(r, Item))
    relationships = Counter(r.type for r in records if isinstance(r, Relation))
    expected = expected_counts(root)
    assert dict(nodes) == expected["nodes"]
    assert dict(relationships) == expected["relationships"]
    # emoji-datasource-google 16.0.0: every emoji and variant has a Google image.
    assert expected["nodes"]["Emoji"] == 1911 + 1875
    assert expected["relationships"]["VARIANT_OF"] == 1875


def test_relations_reference_earlier_items(records) -> None:
    seen: set[str] = set()
    for r in records:
        if isinstance(r, Item):
            seen.add(r.uid)
        else:
            assert r.src in seen and r.dst in seen, r


def test_every_emoji_has_text_and_a_64px_image(records) -> None:
    emoji = [r for r in records if isinstance(r, Item) and r.type == "Emoji"]
    for item in emoji:
        assert item.text, item.uid
        image = Path(item.image or "")
        assert image.is_absolute() and image.is_file(), item.uid
        header = image.read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n", item.uid
        assert struct.unpack(">II", header[16:24]) == (64, 64), item.uid


def test_grinning_face(items, edges) -> None:
    face = items["emoji:1f600"]
    assert face.text == "grinning face"
    assert face.props["char"] == "\U0001f600"
    assert face.props["short_name"] == "grinning"
    assert {"tag:smile", "tag:grin", "tag:happy"} <= edges["emoji:1f600", "HAS_TAG"]
    assert edges["emoji:1f600", "IN_SUBCATEGORY"] == {"subcategory:face-smiling"}
    assert edges["subcategory:face-smiling", "PART_OF"] == {"category:smileys-emotion"}
    assert items["tag:smile"].text == "smile"
    assert items["category:smileys-emotion"].text == "Smileys & Emotion"


def test_emojibase_matches_despite_variation_selectors(items, edges) -> None:
    # emoji-datasource spells red heart 2764-FE0F, emojibase 2764.
    heart = items["emoji:2764-fe0f"]
    assert heart.text == "red heart"
    assert edges["emoji:2764-fe0f", "HAS_TAG"] == {
        "tag:emotion",
        "tag:heart",
        "tag:love",
        "tag:red",
    }


def test_region_code_tags_keep_their_case(items, edges) -> None:
    assert "tag:NO" in edges["emoji:1f1f3-1f1f4", "HAS_TAG"]  # flag: Norway
    assert "tag:no" in edges["emoji:26d4", "HAS_TAG"]  # no entry
    assert items["tag:NO"].uid != items["tag:no"].uid


def test_zwj_family_is_composed_of_its_members(items, edges, records) -> None:
    family = "emoji:1f468-200d-1f469-200d-1f467"
    assert items[family].text == "family: man, woman, girl"
    assert edges[family, "COMPOSED_OF"] == {"emoji:1f468", "emoji:1f469", "emoji:1f467"}
    two_men = [
        r
        for r in records
        if isinstance(r, Relation)
        and r.type == "COMPOSED_OF"
        and r.src == "emoji:1f468-200d-1f468-200d-1f466"
    ]
    assert {(r.dst, r.props["count"]) for r in two_men} == {("emoji:1f468", 2), ("emoji:1f466", 1)}
    # FE0F-qualified components: man gesturing NO → person gesturing NO + male sign.
    assert edges["emoji:1f645-200d-2642-fe0f", "COMPOSED_OF"] == {"emoji:1f645", "emoji:2642-fe0f"}


def test_skin_tone_variants(items, edges) -> None:
    wave = items["emoji:1f44b-1f3fb"]
    assert wave.text == "waving hand: light skin tone"
    assert wave.props["skin_tones"] == [1]
    assert edges["emoji:1f44b-1f3fb", "VARIANT_OF"] == {"emoji:1f44b"}
    assert ("emoji:1f44b-1f3fb", "IN_SUBCATEGORY") not in edges
    mixed = "emoji:1f9d1-1f3fb-200d-1f91d-200d-1f9d1-1f3fc"
    assert items[mixed].props["skin_tones"] == [1, 2]
    assert items[mixed].text == "people holding hands: light skin tone, medium-light skin tone"
    assert edges[mixed, "VARIANT_OF"] == {"emoji:1f9d1-200d-1f91d-200d-1f9d1"}


def test_second_fetch_is_a_no_op(settings, root, tmp_path, monkeypatch) -> None:
    marker = root / fetch_module.MARKER
    before = marker.stat().st_mtime_ns
    # npm must not run again: one that would fail is first on the PATH.
    (tmp_path / "npm").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert fetch_emoji(settings.cache) == root
    assert marker.stat().st_mtime_ns == before


def test_registry_resolves_by_name() -> None:
    assert get_dataset("emoji") is EMOJI is DATASETS["emoji"]
    with pytest.raises(UnknownDatasetError, match="emoji"):
        get_dataset("emojis")


def _spec(folder: Path, package: str = EMPTY_PACKAGE) -> Path:
    folder.mkdir()
    (folder / "package.json").write_text(package)
    (folder / "package-lock.json").write_text(EMPTY_LOCK)
    return folder


def test_npm_install_redoes_an_interrupted_install(tmp_path) -> None:
    spec = _spec(tmp_path / "spec")
    target = tmp_path / "cache" / fetch_module.lock_hash(spec)
    target.mkdir(parents=True)
    (target / "half-written").write_text("")
    assert npm_install(spec, tmp_path / "cache") == target
    assert (target / fetch_module.MARKER).is_file()
    assert not (target / "half-written").exists()
    # A required path gone from a completed install also makes it install again.
    (target / "package.json").unlink()
    npm_install(spec, tmp_path / "cache", required=("package.json",))
    assert (target / "package.json").is_file()


def test_npm_failure_raises_with_its_output(tmp_path) -> None:
    spec = _spec(tmp_path / "spec", '{"name": "t", "dependencies": {"left-pad": "1.3.0"}}')
    with pytest.raises(DatasetFetchError, match="Missing: left-pad"):
        npm_install(spec, tmp_path / "cache")
    assert not (tmp_path / "cache" / fetch_module.lock_hash(spec) / fetch_module.MARKER).exists()


def test_concurrent_fetches_run_npm_once(tmp_path, monkeypatch) -> None:
    spec = _spec(tmp_path / "spec")
    calls: list[object] = []
    real_run = subprocess.run

    def counting_run(*args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append(args)
        time.sleep(0.3)  # keep the lock held while the other thread arrives
        return real_run(*args, **kwargs)

    monkeypatch.setattr(fetch_module.subprocess, "run", counting_run)
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(npm_install(spec, tmp_path / "cache")))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and results[0] == results[1]
    assert len(calls) == 1
