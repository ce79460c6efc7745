"""Scheduled ingestion from a drop folder: one invocation ingests what arrived there, then exits.

Made for cron and systemd timers (``docs/scheduling.md``). :func:`ingest_folder`:

- takes the folder's lock first (an exclusive, non-blocking ``flock`` on
  ``<folder>/.mmgraph.lock``): while another run holds it, :class:`FolderLockedError` is raised at
  once and nothing is changed;
- marks ``stale`` every ``:IngestRun`` still ``running`` whose process is gone: one started from
  this folder (it held the lock we now hold), or one whose recorded host is this one and whose pid
  no longer runs;
- ingests each batch file directly in the folder (``*.jsonl``, ``*.ndjson``, ``*.csv``,
  ``*.parquet``; hidden files ignored), oldest first, each as its own run: a file whose SHA-256 a
  run with status ``ok`` or ``partial`` already ingested is skipped; a file ingested (``ok`` or
  ``partial``) or skipped moves to ``done/``; a failed one to ``failed/``, with
  ``<name>.reason.txt`` beside it. When the database becomes unavailable the file stays where it
  is and the run stops: the next run takes it again. A bug (an error of none of mmgraph's kinds)
  leaves the file where it is too, and is raised as it is: a bug is not a bad file.

A file is taken as complete when the run sees it: writers should write elsewhere (or under a name
without those suffixes) and rename the finished file into the folder.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmgraph.core.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    ConflictError,
    MmgraphError,
    NotFoundError,
    UnavailableError,
    kind_of,
)
from mmgraph.graph import audit
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.encoding import Encoders
from mmgraph.ingest.options import IngestError, IngestOptions, IngestResult
from mmgraph.ingest.pipeline import ingest_files
from mmgraph.ingest.readers import SUFFIXES, file_sha256

log = logging.getLogger(__name__)

LOCK_NAME = ".mmgraph.lock"
DONE = "done"
FAILED = "failed"
# What a run leaves on an :IngestRun it started, to recognise its own runs later.
FOLDER_PROPERTY = "drop_folder"

Outcome = Literal["ingested", "skipped", "failed", "retry"]
Stopped = Literal["locked", "unavailable", "error"]


class FolderLockedError(ConflictError):
    """Another run holds the drop folder's lock; this one did nothing."""


class DropFolderNotFoundError(NotFoundError):
    """The drop folder does not exist (or is not a directory)."""


@dataclass
class FileOutcome:
    """What a run did with one file of the folder.

    ``outcome``: ``ingested`` (its run's status is ``result.status``), ``skipped`` (already
    ingested by the run ``reason`` names), ``failed`` (moved to ``failed/``) or ``retry`` (left in
    the folder: the database went away).
    """

    name: str
    sha256: str | None
    outcome: Outcome
    result: IngestResult | None = None
    moved_to: Path | None = None
    reason: str | None = None
    error: MmgraphError | None = None

    def to_json(self) -> dict[str, Any]:
        run = self.result
        return {
            "file": self.name,
            "sha256": self.sha256,
            "outcome": self.outcome,
            "run_id": run.run_id if run else None,
            "status": run.status if run else None,
            "nodes_written": run.nodes_written if run else 0,
            "relationships_written": run.relationships_written if run else 0,
            "quarantined": run.quarantined if run else 0,
            "quarantine_file": str(run.quarantine_file) if run and run.quarantine_file else None,
            "moved_to": str(self.moved_to) if self.moved_to else None,
            "reason": self.reason,
        }


@dataclass
class FolderResult:
    """What one scheduled run did; :meth:`to_json` is the shape ``--from-dir --json`` prints."""

    folder: Path
    files: list[FileOutcome] = field(default_factory=list)
    stale_runs: list[str] = field(default_factory=list)
    stopped: Stopped | None = None
    error: str | None = None
    stopped_exit_code: int | None = None

    def stop(self, how: Stopped, error: MmgraphError) -> None:
        """Record why the run stopped early, with the exit code of the error's kind."""
        self.stopped, self.error = how, str(error)
        self.stopped_exit_code = kind_of(error).exit_code
        log.error("scheduled ingest of %s stopped (%s): %s", self.folder, how, error)

    @property
    def exit_code(self) -> int:
        """The exit code of the error that stopped the run early (75, retry later, when another
        run holds the folder or the database is unavailable), else 1 when a file failed, else 3
        when records were quarantined, else 0."""
        if self.stopped_exit_code is not None:
            return self.stopped_exit_code
        if any(f.outcome == "failed" for f in self.files):
            return EXIT_FAILED
        if any(f.result is not None and f.result.status == "partial" for f in self.files):
            return EXIT_PARTIAL
        return EXIT_OK

    def count(self, outcome: Outcome) -> int:
        return sum(f.outcome == outcome for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "exit_code": self.exit_code,
            "stopped": self.stopped,
            "error": self.error,
            "ingested": self.count("ingested"),
            "skipped": self.count("skipped"),
            "failed": self.count("failed"),
            "retry": self.count("retry"),
            "stale_runs": list(self.stale_runs),
            "files": [f.to_json() for f in self.files],
        }


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``<folder>/.mmgraph.lock`` exclusively for the block, or raise
    :class:`FolderLockedError` at once (changing nothing) when another process holds it.

    The lock is the kernel's (``flock``): it goes with the process, so a killed run leaves none.
    """
    if not folder.is_dir():
        raise DropFolderNotFoundError(f"drop folder {folder} does not exist or is not a directory")
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise FolderLockedError(
                f"drop folder {folder} is locked by another run ({holder}); nothing was done"
            ) from e
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def pending_files(folder: Path) -> list[Path]:
    """The batch files directly in ``folder``, oldest (modification time) first."""
    files = [
        path
        for path in folder.iterdir()
        if path.suffix.lower() in SUFFIXES and not path.name.startswith(".") and path.is_file()
    ]
    return sorted(files, key=lambda path: (path.stat().st_mtime_ns, path.name))


def ingest_folder(
    store: GraphStore,
    folder: Path,
    options: IngestOptions,
    encoders: Encoders | None = None,
) -> FolderResult:
    """Ingest the files that arrived in a drop folder (see the module's description).

    Raises :class:`FolderLockedError` when another run holds the folder, and
    :class:`DropFolderNotFoundError` when there is no such folder; a database that becomes
    unavailable ends the run with ``stopped="unavailable"`` instead.
    """
    folder = folder.resolve()
    with folder_lock(folder):
        return ingest_locked(store, folder, options, encoders or Encoders())


def ingest_locked(
    store: GraphStore, folder: Path, options: IngestOptions, encoders: Encoders
) -> FolderResult:
    """:func:`ingest_folder` for a caller that holds the folder's lock (:func:`folder_lock`)."""
    result = FolderResult(folder)
    try:
        result.stale_runs = mark_stale_runs(store, folder)
        for path in pending_files(folder):
            outcome = _ingest_file(store, folder, path, options, encoders)
            result.files.append(outcome)
            if outcome.outcome == "retry" and outcome.error is not None:
                result.stop("unavailable", outcome.error)
                break
    except UnavailableError as e:
        result.stop("unavailable", e)
    return result


def mark_stale_runs(store: GraphStore, folder: Path) -> list[str]:
    """Mark ``stale`` the runs left ``running`` by a process that is gone: those started from
    ``folder`` (call only while holding its lock) and those of this host whose pid is not
    alive. Returns their ids."""
    host = socket.gethostname()
    stale = []
    for run in audit.running_runs(store):
        pid = run.get("pid")
        ours = run.get(FOLDER_PROPERTY) == str(folder)
        dead = run.get("host") == host and isinstance(pid, int) and not _alive(pid)
        if ours or dead:
            why = "its drop folder's lock was free" if ours else f"pid {pid} on {host} is gone"
            audit.finish_run(store, run["id"], "stale", {}, stale_reason=f"left running: {why}")
            log.warning("ingest run %s was left running (%s): marked stale", run["id"], why)
            stale.append(run["id"])
    return stale


def _ingest_file(
    store: GraphStore, folder: Path, path: Path, options: IngestOptions, encoders: Encoders
) -> FileOutcome:
    try:
        sha = file_sha256(path)
    except OSError as e:
        return FileOutcome(path.name, None, "failed", reason=f"cannot read {path}: {e}")
    earlier = audit.ingested_sha256s(store, [sha]).get(sha)
    if earlier is not None:
        moved = _move(path, folder / DONE)
        reason = f"already ingested by run {earlier}"
        return FileOutcome(path.name, sha, "skipped", moved_to=moved, reason=reason)
    try:
        result = ingest_files(store, [path], options, encoders, {FOLDER_PROPERTY: str(folder)})
    except IngestError as e:
        if isinstance(e.__cause__, UnavailableError):
            return FileOutcome(path.name, sha, "retry", e.result, reason=str(e), error=e)
        return _fail(folder, path, sha, e.result, f"the ingest run stopped: {e}")
    if result.status == "failed":
        why = f"every record was quarantined: see {result.quarantine_file}"
        return _fail(folder, path, sha, result, why)
    return FileOutcome(path.name, sha, "ingested", result, moved_to=_move(path, folder / DONE))


def _fail(
    folder: Path, path: Path, sha: str, result: IngestResult | None, reason: str
) -> FileOutcome:
    moved = _move(path, folder / FAILED)
    run = result.run_id if result else None
    moved.with_name(f"{moved.name}.reason.txt").write_text(f"run {run}: {reason}\n")
    return FileOutcome(path.name, sha, "failed", result, moved, reason)


def _move(path: Path, directory: Path) -> Path:
    """Move ``path`` into ``directory``, numbering the name (``a.1.jsonl``) if it is taken."""
    directory.mkdir(exist_ok=True)
    target = directory / path.name
    n = 0
    while target.exists():
        n += 1
        target = directory / f"{path.stem}.{n}{path.suffix}"
    path.rename(target)
    return target


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        return True
    return True
