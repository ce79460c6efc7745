"""What an ingest run is asked to do (:class:`IngestOptions`) and what it did
(:class:`IngestResult`, or :class:`IngestError` when it stopped part-way)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError, RunStoppedError
from mmgraph.ingest.encoders.image import DEFAULT_MAX_PIXELS

Status = Literal["ok", "partial", "failed"]


class IngestError(RunStoppedError):
    """An ingest run that an error of one of the kinds (its cause: a database that went away,
    say) stopped before the end; ``result`` holds what it had written."""

    def __init__(self, message: str, result: IngestResult) -> None:
        super().__init__(message)
        self.result = result


class IngestOptionsError(InvalidArgumentError):
    """An :class:`IngestOptions` value out of range."""


@dataclass(frozen=True)
class IngestOptions:
    """How a run ingests.

    Args:
        quarantine_dir: where ``<run_id>.jsonl`` quarantine files go.
        batch_size: items per chunk read, validated, encoded and written (one transaction each).
        encode_text: run the text encoder.
        encode_images: run the image encoder.
        allow_image_paths: let an item's ``image`` name a file on this machine. ``False`` for
            remote callers: their images come as bytes (or ``data:<type>;base64,...`` URIs), and
            a path is quarantined without being opened.
        max_image_pixels: a picture whose header declares more pixels is refused before it is
            decoded (when images are encoded).
        keep_items_without_image: write an item whose picture is refused (over the pixel limit,
            unreadable, undecodable) without it, the refusal noted as a warning; else the item
            is quarantined whole (the gRPC stream's reply has no place for warnings).
    """

    quarantine_dir: Path
    batch_size: int = 2000
    encode_text: bool = True
    encode_images: bool = True
    allow_image_paths: bool = True
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    keep_items_without_image: bool = True

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> IngestOptions:
        """The options of a run on ``settings`` (its quarantine folder under the home, its
        picture limit), with ``options`` overriding the defaults."""
        return cls(
            quarantine_dir=settings.home / "quarantine",
            max_image_pixels=settings.max_image_pixels,
            **options,
        )

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise IngestOptionsError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_image_pixels < 1:
            raise IngestOptionsError(
                f"max_image_pixels must be at least 1, got {self.max_image_pixels}"
            )


@dataclass
class IngestResult:
    """What a run did; :meth:`to_json` is the fixed shape of ``mmgraph ingest --json``.
    ``quarantined``: records refused; ``warnings``: records written without a refused field
    (a picture); both are lines of ``quarantine_file``."""

    run_id: str | None
    status: Status = "ok"
    nodes_written: int = 0
    relationships_written: int = 0
    quarantined: int = 0
    quarantine_file: Path | None = None
    nodes_created: int = 0
    relationships_created: int = 0
    warnings: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "nodes_written": self.nodes_written,
            "relationships_written": self.relationships_written,
            "quarantined": self.quarantined,
            "warnings": self.warnings,
            "quarantine_file": str(self.quarantine_file) if self.quarantine_file else None,
        }

    def counts(self) -> dict[str, int]:
        return {
            "nodes_written": self.nodes_written,
            "nodes_created": self.nodes_created,
            "relationships_written": self.relationships_written,
            "relationships_created": self.relationships_created,
            "quarantined": self.quarantined,
            "warnings": self.warnings,
        }
