"""Turn an ``Ingest`` stream of protobuf records into the raw records of batch ingest, and the
run's quarantine file into per-record reasons.

Images travel as bytes and reach the pipeline as ``data:`` URIs: nothing a remote caller sends can
make the service open a file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgraph.ingest.readers import RawRecord
from mmgraph.ingest.records import Location, RecordError
from mmgraph.service.proto.mmgraph.v1 import analytics_pb2 as pb


@dataclass(frozen=True)
class Refusal:
    """A record the run quarantined: its position in the stream, field, reason and key."""

    record: int
    field: str
    message: str
    key: str


def raw_records(stream: Iterable[pb.IngestRecord], source: str) -> Iterator[RawRecord]:
    """Each streamed record as ``(location, dict)`` (numbered from 1), or a
    :class:`RecordError` in its place when it holds neither an item nor a relation."""
    for number, message in enumerate(stream, start=1):
        location = Location(source, number)
        kind = message.WhichOneof("record")
        if kind == "item":
            yield location, _item(message.item)
        elif kind == "relation":
            yield location, _relation(message.relation)
        else:
            yield location, RecordError(location, "record", "holds neither an item nor a relation")


def _item(item: pb.Item) -> dict[str, Any]:
    raw: dict[str, Any] = {"kind": "item", "uid": item.uid, "type": item.type}
    if item.HasField("text"):
        raw["text"] = item.text
    if item.image:
        raw["image"] = "data:application/octet-stream;base64," + base64.b64encode(
            item.image
        ).decode("ascii")
    if item.numbers:
        raw["numbers"] = dict(item.numbers)
    if item.vectors:
        raw["vectors"] = {name: list(v.values) for name, v in item.vectors.items()}
    if item.props:
        raw["props"] = {key: _value(v) for key, v in item.props.items()}
    return raw


def _relation(rel: pb.Relation) -> dict[str, Any]:
    raw: dict[str, Any] = {"kind": "relation", "src": rel.src, "dst": rel.dst, "type": rel.type}
    if rel.HasField("weight"):
        raw["weight"] = rel.weight
    if rel.props:
        raw["props"] = {key: _value(v) for key, v in rel.props.items()}
    return raw


def _value(value: pb.Value) -> Any:
    """A property value as Python; an unset value becomes ``None``, which validation refuses."""
    kind = value.WhichOneof("kind")
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    return None if kind is None else getattr(value, kind)


def refusals(quarantine_file: Path | None) -> list[Refusal]:
    """The reasons a run's quarantine file gives, in stream order."""
    if quarantine_file is None or not quarantine_file.exists():
        return []
    out = []
    for line in quarantine_file.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        raw = entry.get("raw") if isinstance(entry.get("raw"), dict) else {}
        key = raw.get("uid") or (f"{raw.get('src')}->{raw.get('dst')}" if "src" in raw else "")
        out.append(Refusal(entry["record"], entry["field"], entry["message"], str(key or "")))
    return sorted(out, key=lambda r: r.record)
