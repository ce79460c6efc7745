"""Batch files read one after another as one stream of records, each hashed as it is read: the
run's ledger of inputs (path and SHA-256) without a second read."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from mmgraph.ingest.readers import Digest, RawRecord, read_records


class HashedFiles:
    """Batch files read one after another, each hashed (SHA-256) as it is read, JSONL lines as
    :class:`~mmgraph.ingest.records.JsonText` (validation parses them); ``size`` is their bytes
    in all and ``position`` the bytes read so far."""

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = list(paths)
        self.sha256: list[str | None] = [None] * len(self.paths)
        self.size = sum(path.stat().st_size for path in self.paths)
        self.position = 0

    def records(self) -> Iterator[RawRecord]:
        for i, path in enumerate(self.paths):
            digest = hashlib.sha256()
            yield from read_records(path, _Counted(digest, self), json_text=True)
            self.sha256[i] = digest.hexdigest()

    def progress(self) -> tuple[int, int | None]:
        """Bytes read so far, and in all."""
        return self.position, self.size

    def ledger(self) -> dict[str, Any]:
        """``inputs`` (``"<path> sha256:<hex>"``) and ``sha256s``; a file not read to its end
        (the run stopped) is listed by path alone."""
        return {
            "inputs": [
                f"{path} sha256:{sha}" if sha else str(path)
                for path, sha in zip(self.paths, self.sha256, strict=True)
            ],
            "sha256s": [sha for sha in self.sha256 if sha],
        }


class _Counted:
    """A digest that also counts the bytes it is fed into ``files.position``."""

    def __init__(self, digest: Digest, files: HashedFiles) -> None:
        self.digest = digest
        self.files = files

    def update(self, data: bytes | memoryview, /) -> None:
        self.digest.update(data)
        self.files.position += len(data)
