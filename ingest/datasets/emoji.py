"""The emoji graph: emoji with their 64 px Google images, tags, subcategories and categories.

Data from two pinned npm packages, installed into the cache by :func:`fetch_emoji`:
``emoji-datasource-google`` 16.0.0 (emoji, names, categories, skin-tone variants; images
Apache-2.0, data MIT) and ``emojibase-data`` 17.0.0 (English CLDR labels and tags, MIT).

Nodes: ``Emoji`` (``emoji:<code points>``, lower-case and ``-``-joined as emoji-datasource spells
them, FE0F included: ``emoji:2764-fe0f``), ``Tag`` (``tag:<tag>``), ``Subcategory``
(``subcategory:<slug>``) and ``Category`` (``category:<slug>``). Relationships: ``HAS_TAG``
(Emoji → Tag), ``IN_SUBCATEGORY`` (base Emoji → Subcategory), ``PART_OF`` (Subcategory →
Category), ``COMPOSED_OF`` (ZWJ sequence → each distinct component that is a node, with the
component's ``count``) and ``VARIANT_OF`` (skin-tone variant → base Emoji).

An Emoji's text is its CLDR label from emojibase ("grinning face", "flag: Germany",
"waving hand: light skin tone"), the lower-cased Unicode name where emojibase has none. Tags are
left out of the text on purpose: they are ``HAS_TAG`` edges, and text that repeated them would
hand a link predictor the answer. emojibase spells code points without the FE0F variation
selector where emoji-datasource has it (``2764`` vs ``2764-FE0F``), so the two are matched on code
points with FE0F removed.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgraph.ingest.datasets.base import Counts, Dataset, DatasetError, DatasetRecord
from mmgraph.ingest.datasets.fetch import npm_install
from mmgraph.ingest.records import Location

logger = logging.getLogger(__name__)

SOURCE = "emoji"
NPM_SPEC = Path(__file__).with_name("npm")
DATASOURCE = "node_modules/emoji-datasource-google"
EMOJI_JSON = f"{DATASOURCE}/emoji.json"
IMAGES = f"{DATASOURCE}/img/google/64"
EMOJIBASE_JSON = "node_modules/emojibase-data/en/data.json"

ZWJ = "200D"
VARIATION_SELECTOR = "FE0F"
# Fitzpatrick modifiers 1F3FB..1F3FF are skin tones 1..5.
FIRST_TONE = 0x1F3FB
TONE_NAMES = (
    "light skin tone",
    "medium-light skin tone",
    "medium skin tone",
    "medium-dark skin tone",
    "dark skin tone",
)


def fetch_emoji(cache: Path) -> Path:
    """Install the pinned emoji packages under ``cache/datasets/emoji/<lock hash>`` (once) and
    return that folder, the root that :func:`emoji_records` reads."""
    return npm_install(
        NPM_SPEC, cache / "datasets" / "emoji", required=(EMOJI_JSON, EMOJIBASE_JSON, IMAGES)
    )


def emoji_uid(unified: str) -> str:
    """The uid of the emoji whose code points emoji-datasource spells ``unified``."""
    return f"emoji:{unified.lower()}"


def tag_uid(tag: str) -> str:
    """The uid of a normalised tag."""
    return f"tag:{tag}"


def slug(name: str) -> str:
    """``"Smileys & Emotion"`` → ``"smileys-emotion"``: lower-case words joined by ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def normalise_tag(tag: str) -> str:
    """NFKC and single spaces; case is kept, since emojibase's upper-case tags are region codes
    (``NO`` Norway, ``DE`` Germany) that lower-casing would merge with words (``no``, ``de``)."""
    return " ".join(unicodedata.normalize("NFKC", tag).split())


def bare_code_points(hexcode: str) -> str:
    """Upper-case code points without FE0F: the key both packages agree on."""
    return "-".join(cp for cp in hexcode.upper().split("-") if cp != VARIATION_SELECTOR)


@dataclass(frozen=True)
class _Emoji:
    """One Emoji node: a base emoji or one of its skin-tone variants."""

    unified: str
    text: str
    image: Path
    props: dict[str, Any]
    base: str | None  # the base's unified code points, for a variant


class EmojiDataError(DatasetError):
    """The installed emoji packages do not hold what the loader expects."""


def emoji_records(root: Path) -> Iterator[DatasetRecord]:
    """Yield the emoji graph's records from a :func:`fetch_emoji` root: all items (categories,
    subcategories, tags, emoji, variants), then all relations, numbered from 1."""
    images = root / IMAGES
    entries = sorted(_read_json(root / EMOJI_JSON), key=lambda e: e["sort_order"])
    kept = [e for e in entries if _has_image(e, images)]
    labels = _emojibase_index(_read_json(root / EMOJIBASE_JSON))
    emoji = _emoji_nodes(kept, labels, images)
    variants = sum(e.base is not None for e in emoji)
    logger.info(
        "emoji: %d emoji + %d skin-tone variants, %d skipped without a Google image; "
        "emojibase labels for %d of %d",
        len(kept),
        variants,
        sum(1 + len(e.get("skin_variations") or {}) for e in entries) - len(emoji),
        sum(bare_code_points(e.unified) in labels for e in emoji),
        len(emoji),
    )
    tags = {e["unified"]: _tags(labels.get(bare_code_points(e["unified"]))) for e in kept}
    pairs = list(dict.fromkeys((e["subcategory"], e["category"]) for e in kept))
    records = [
        *_categories(category for _, category in pairs),
        *_subcategories(pairs),
        *(_tag_item(tag) for tag in sorted({t for ts in tags.values() for t in ts})),
        *(_emoji_item(e) for e in emoji),
        *(_relation(_subcategory_uid(s), _category_uid(c), "PART_OF") for s, c in pairs),
        *(
            _relation(emoji_uid(e["unified"]), _subcategory_uid(e["subcategory"]), "IN_SUBCATEGORY")
            for e in kept
        ),
        *(_relation(emoji_uid(u), tag_uid(t), "HAS_TAG") for u, ts in tags.items() for t in ts),
        *_composed_of(emoji),
        *(
            _relation(emoji_uid(e.unified), emoji_uid(e.base), "VARIANT_OF")
            for e in emoji
            if e.base is not None
        ),
    ]
    for number, raw in enumerate(records, start=1):
        yield Location(SOURCE, number), raw


def expected_counts(root: Path) -> Counts:
    """Node and relationship counts derived straight from the packages' JSON, apart from
    :func:`emoji_records`, so a test can check one against the other."""
    emoji = [e for e in _read_json(root / EMOJI_JSON) if e["has_img_google"]]
    variants = [
        v for e in emoji for v in (e.get("skin_variations") or {}).values() if v["has_img_google"]
    ]
    base_keys = {bare_code_points(e["unified"]) for e in emoji}
    node_keys = base_keys | {bare_code_points(v["unified"]) for v in variants}
    tags: set[str] = set()
    tag_links = 0
    for entry in _read_json(root / EMOJIBASE_JSON):
        if bare_code_points(entry["hexcode"]) in base_keys:
            tags.update(entry.get("tags", []))
            tag_links += len(set(entry.get("tags", [])))
    composed = 0
    for e in emoji:
        parts = e["unified"].split(f"-{ZWJ}-")
        if len(parts) > 1:
            composed += len({bare_code_points(p) for p in parts} & node_keys)
    return {
        "nodes": {
            "Emoji": len(emoji) + len(variants),
            "Tag": len(tags),
            "Subcategory": len({e["subcategory"] for e in emoji}),
            "Category": len({e["category"] for e in emoji}),
        },
        "relationships": {
            "HAS_TAG": tag_links,
            "IN_SUBCATEGORY": len(emoji),
            "PART_OF": len({(e["category"], e["subcategory"]) for e in emoji}),
            "COMPOSED_OF": composed,
            "VARIANT_OF": len(variants),
        },
    }


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise EmojiDataError(f"{path}: cannot read the emoji data: {e}") from e
    if not isinstance(data, list):
        raise EmojiDataError(f"{path}: expected a JSON list, got {type(data).__name__}")
    return data


def _emojibase_index(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """emojibase entries and their skins by FE0F-less code points."""
    index: dict[str, dict[str, Any]] = {}
    for entry in entries:
        index[bare_code_points(entry["hexcode"])] = entry
        for skin in entry.get("skins", []):
            index[bare_code_points(skin["hexcode"])] = skin
    return index


def _emoji_nodes(
    entries: list[dict[str, Any]], labels: dict[str, dict[str, Any]], images: Path
) -> list[_Emoji]:
    """The base emoji, each followed by its skin-tone variants that have a Google image."""
    nodes: list[_Emoji] = []
    for entry in entries:
        unified = entry["unified"]
        text = labels.get(bare_code_points(unified), {}).get("label") or entry["name"].lower()
        props = {
            "name": entry["name"],
            "short_name": entry["short_name"],
            "short_names": entry["short_names"],
            "char": _char(unified),
            "added_in": entry["added_in"],
            "sort_order": entry["sort_order"],
            "category": entry["category"],
            "subcategory": entry["subcategory"],
        }
        nodes.append(_Emoji(unified, text, images / entry["image"], props, None))
        for tones, variant in (entry.get("skin_variations") or {}).items():
            if not _has_image(variant, images):
                continue
            numbers = [int(cp, 16) - FIRST_TONE + 1 for cp in tones.split("-")]
            label = labels.get(bare_code_points(variant["unified"]), {}).get("label")
            variant_props = {
                "name": entry["name"],
                "short_name": entry["short_name"],
                "char": _char(variant["unified"]),
                "added_in": variant["added_in"],
                "sort_order": entry["sort_order"],
                "skin_tones": numbers,
            }
            nodes.append(
                _Emoji(
                    variant["unified"],
                    label or f"{text}: {', '.join(TONE_NAMES[n - 1] for n in numbers)}",
                    images / variant["image"],
                    variant_props,
                    unified,
                )
            )
    return nodes


def _has_image(entry: dict[str, Any], images: Path) -> bool:
    return bool(entry.get("has_img_google")) and (images / entry["image"]).is_file()


def _char(unified: str) -> str:
    return "".join(chr(int(cp, 16)) for cp in unified.split("-"))


def _tags(entry: dict[str, Any] | None) -> list[str]:
    """An emojibase entry's tags, normalised, each once, in their order."""
    tags = (normalise_tag(t) for t in (entry or {}).get("tags", []))
    return list(dict.fromkeys(t for t in tags if t))


def _category_uid(name: str) -> str:
    return f"category:{slug(name)}"


def _subcategory_uid(name: str) -> str:
    return f"subcategory:{slug(name)}"


def _categories(names: Iterable[str]) -> Iterator[dict[str, Any]]:
    for name in dict.fromkeys(names):
        yield {
            "kind": "item",
            "uid": _category_uid(name),
            "type": "Category",
            "text": name,
            "props": {"name": name},
        }


def _subcategories(pairs: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    """One item per subcategory; its text reads "face smiling" for "face-smiling"."""
    categories: dict[str, str] = {}
    for name, category in pairs:
        categories.setdefault(name, category)
    for name, category in categories.items():
        yield {
            "kind": "item",
            "uid": _subcategory_uid(name),
            "type": "Subcategory",
            "text": name.replace("-", " "),
            "props": {"name": name, "category": category},
        }


def _tag_item(tag: str) -> dict[str, Any]:
    return {"kind": "item", "uid": tag_uid(tag), "type": "Tag", "text": tag}


def _emoji_item(emoji: _Emoji) -> dict[str, Any]:
    return {
        "kind": "item",
        "uid": emoji_uid(emoji.unified),
        "type": "Emoji",
        "text": emoji.text,
        "image": str(emoji.image),
        "props": emoji.props,
    }


def _composed_of(emoji: list[_Emoji]) -> Iterator[dict[str, Any]]:
    """ZWJ sequence → each distinct component that is a node; ``count`` says how often it occurs
    (a family of two men holds the man twice). Components without a node (hair styles, which
    emoji-datasource-google 16 has no images for) are left out."""
    nodes = {bare_code_points(e.unified): e.unified for e in emoji}
    for sequence in emoji:
        if sequence.base is not None:
            continue
        parts = sequence.unified.split(f"-{ZWJ}-")
        if len(parts) < 2:
            continue
        counts = Counter(nodes[key] for p in parts if (key := bare_code_points(p)) in nodes)
        for component, count in counts.items():
            yield _relation(
                emoji_uid(sequence.unified), emoji_uid(component), "COMPOSED_OF", count=count
            )


def _relation(src: str, dst: str, type_: str, **props: Any) -> dict[str, Any]:
    relation: dict[str, Any] = {"kind": "relation", "src": src, "dst": dst, "type": type_}
    if props:
        relation["props"] = props
    return relation


EMOJI = Dataset(
    name="emoji",
    description=(
        "Unicode emoji with 64 px Google images, CLDR tags, subcategories and categories "
        "(npm: emoji-datasource-google 16.0.0, emojibase-data 17.0.0)"
    ),
    license="images Apache-2.0; data MIT",
    fetch=fetch_emoji,
    records=emoji_records,
    expected_counts=expected_counts,
)
