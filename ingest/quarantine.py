"""The records a run refused, and what it left out of records it wrote: appended to
``<quarantine dir>/<run_id>.jsonl`` as they are found, each with its kind (``refused``: the record
was not written; ``warning``: it was written without the field named, such as a picture that could
not be used), where it came from, the field at fault and why. Refusals are also handed to a
listener if given (the gRPC ``Ingest`` reply lists them without reading the file back)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgraph.ingest.records import RecordError, raw_value

log = logging.getLogger(__name__)

# A data: URI longer than this is shortened in quarantine files.
QUARANTINE_URI_CHARS = 256


@dataclass(frozen=True)
class Refusal:
    """A refused record: its source and number, the field at fault, the reason, and its key (an
    item's uid, a relation's ``src->dst``, or "" when the record has neither)."""

    source: str
    record: int
    field: str
    message: str
    key: str


REFUSED = "refused"
WARNING = "warning"


class Quarantine:
    """Bad records of one run, appended to ``<directory>/<run_id>.jsonl`` as they are found;
    ``count`` records refused, ``warnings`` records written without a field.

    Args:
        directory: the quarantine folder.
        run_id: the run's id, the file's name.
        listener: called with each :class:`Refusal` as it is written, or ``None``.
    """

    def __init__(
        self, directory: Path, run_id: str, listener: Callable[[Refusal], None] | None = None
    ) -> None:
        self.path = directory / f"{run_id}.jsonl"
        self.run_id = run_id
        self.listener = listener
        self.count = 0
        self.warnings = 0
        # uids of items refused in this run: relations naming them are refused too.
        self.rejected: set[str] = set()

    def add(self, error: RecordError, raw: Any) -> None:
        """Refuse the record: write ``error`` with its raw record (shortened) as one line."""
        raw = raw_value(raw)
        self._write(REFUSED, error, raw)
        if isinstance(raw, dict) and isinstance(raw.get("uid"), str):
            self.rejected.add(raw["uid"])
        self.count += 1
        log.warning("quarantined %s", error)
        if self.listener is not None:
            location = error.location
            self.listener(
                Refusal(location.source, location.number, error.field, error.message, _key(raw))
            )

    def warn(self, error: RecordError, raw: Any) -> None:
        """Note that the record is written without ``error.field``, and why."""
        self._write(WARNING, error, raw_value(raw))
        self.warnings += 1
        log.warning("written without %s: %s", error.field, error)

    def _write(self, kind: str, error: RecordError, raw: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {
            "run_id": self.run_id,
            "kind": kind,
            "source": error.location.source,
            "record": error.location.number,
            "field": error.field,
            "message": error.message,
            "raw": _shorten(raw) if not isinstance(raw, RecordError) else None,
        }
        try:
            line = json.dumps(entry, default=repr, allow_nan=False)
        except ValueError:  # NaN or infinity somewhere in the raw record
            line = json.dumps({**entry, "raw": repr(entry["raw"])})
        with self.path.open("a", encoding="utf-8") as out:
            out.write(line + "\n")


def _key(raw: Any) -> str:
    if not isinstance(raw, dict):
        return ""
    if raw.get("uid"):
        return str(raw["uid"])
    return f"{raw.get('src')}->{raw.get('dst')}" if "src" in raw else ""


def _shorten(raw: Any) -> Any:
    """``raw`` with a picture's bytes or a long ``data:`` image URI cut, so a refused picture
    does not bloat the file."""
    image = raw.get("image") if isinstance(raw, dict) else None
    if isinstance(image, bytes):
        return {**raw, "image": f"<{len(image)} bytes>"}
    if isinstance(image, str) and image.startswith("data:") and len(image) > QUARANTINE_URI_CHARS:
        cut = image[:QUARANTINE_URI_CHARS]
        return {**raw, "image": f"{cut}... ({len(image) - len(cut)} more characters)"}
    return raw
