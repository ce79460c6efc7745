"""Scheduled runs over a drop folder against the real local Neo4j: once per file, lock, stale."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mmgraph.core.config import Settings
from mmgraph.core.errors import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_RETRY, ConflictError
from mmgraph.graph import audit
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.options import IngestOptions
from mmgraph.ingest.readers import file_sha256
from mmgraph.ingest.scheduled import FolderLockedError, FolderResult, folder_lock, ingest_folder
from mmgraph.service.workflows.ingest import ingest_drop_folder


def run_scheduled(settings: Settings, folder: Path, **options: bool) -> tuple[FolderResult, int]:
    """One scheduled run as ``mmgraph ingest --from-dir`` makes it: its result and exit code."""
    result = ingest_drop_folder(settings, folder, **options)
    return result, result.exit_code


def _jsonl(path: Path, records: list[dict], age: int = 0) -> Path:
    """Write ``records``; ``age``: seconds to backdate the file by (oldest is taken first)."""
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    if age:
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - age * 10**9))
    return path


def _items(prefix: str, n: int) -> list[dict]:
    return [{"uid": f"{prefix}:{i}", "type": "Doc", "props": {"i": i}} for i in range(n)]


def _options(tmp_path: Path) -> IngestOptions:
    return IngestOptions(
        quarantine_dir=tmp_path / "quarantine", encode_text=False, encode_images=False
    )


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_each_file_is_ingested_once_and_a_later_run_takes_only_the_new_one(
    store: GraphStore, drop: Path, tmp_path: Path
) -> None:
    _jsonl(drop / "b.jsonl", [{"src": "a:0", "dst": "a:1", "type": "CITES"}], age=10)
    _jsonl(drop / "a.jsonl", _items("a", 3), age=20)
    (drop / "notes.txt").write_text("not a batch file")

    first = ingest_folder(store, drop, _options(tmp_path))
    assert first.exit_code == EXIT_OK
    assert [(f.name, f.outcome) for f in first.files] == [
        ("a.jsonl", "ingested"),
        ("b.jsonl", "ingested"),
    ]
    assert _names(drop) == [".mmgraph.lock", "done", "notes.txt"]
    assert _names(drop / "done") == ["a.jsonl", "b.jsonl"]
    counts = store.counts().to_dict()
    assert counts == {"nodes": {"Doc": 3}, "relationships": {"CITES": 1}}
    runs = audit.runs(store)
    assert {r["drop_folder"] for r in runs} == {str(drop.resolve())}

    # The same content dropped again, under another name: recognised by its hash, skipped.
    shutil.copy(drop / "done" / "a.jsonl", drop / "a-again.jsonl")
    second = ingest_folder(store, drop, _options(tmp_path))
    assert second.exit_code == EXIT_OK
    (skipped,) = second.files
    assert (skipped.name, skipped.outcome) == ("a-again.jsonl", "skipped")
    assert skipped.reason == f"already ingested by run {first.files[0].result.run_id}"
    assert skipped.sha256 == file_sha256(drop / "done" / "a.jsonl")
    assert len(audit.runs(store)) == len(runs) and store.counts().to_dict() == counts

    _jsonl(drop / "c.jsonl", _items("c", 2))
    third = ingest_folder(store, drop, _options(tmp_path))
    assert [(f.name, f.outcome) for f in third.files] == [("c.jsonl", "ingested")]
    assert third.files[0].result.nodes_written == 2
    assert _names(drop / "done") == ["a-again.jsonl", "a.jsonl", "b.jsonl", "c.jsonl"]
    assert store.counts().nodes == {"Doc": 5}
    assert ingest_folder(store, drop, _options(tmp_path)).files == []


def test_a_locked_folder_is_refused_at_once_and_nothing_changes(
    store: GraphStore, env: Settings, drop: Path, tmp_path: Path
) -> None:
    _jsonl(drop / "a.jsonl", _items("a", 2))
    with folder_lock(drop):
        with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}") as raised:
            ingest_folder(store, drop, _options(tmp_path))
        assert isinstance(raised.value, ConflictError)
        result, code = run_scheduled(env, drop, encode_text=False, encode_images=False)
        assert (code, result.stopped) == (EXIT_RETRY, "locked")
        assert result.to_json()["error"].startswith(f"drop folder {drop} is locked")
        # Another process is refused too (flock is per open file, not per process).
        other = subprocess.run(
            [sys.executable, "-c", _LOCK_SCRIPT, str(drop)], capture_output=True, text=True
        )
        assert other.stdout.strip() == "FolderLockedError", other.stderr
    assert _names(drop) == [".mmgraph.lock", "a.jsonl"]
    assert audit.runs(store) == [] and store.counts().nodes == {}

    result, code = run_scheduled(env, drop, encode_text=False, encode_images=False)
    assert code == EXIT_OK and result.count("ingested") == 1
    assert store.counts().nodes == {"Doc": 2}


_LOCK_SCRIPT = """
import sys
from pathlib import Path
from mmgraph.ingest.scheduled import FolderLockedError, folder_lock
try:
    with folder_lock(Path(sys.argv[1])):
        print("locked it")
except FolderLockedError:
    print("FolderLockedError")
"""


def test_runs_left_running_by_a_killed_process_are_marked_stale(
    store: GraphStore, drop: Path, tmp_path: Path
) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    audit.start_run(
        store, "from-this-folder", "x", drop_folder=str(drop.resolve()), pid=os.getpid()
    )
    audit.start_run(store, "dead-process", "y", host=host, pid=gone.pid)
    audit.start_run(store, "alive-process", "z", host=host, pid=os.getpid())
    audit.start_run(store, "other-host", "w", host=f"not-{host}", pid=gone.pid)

    result = ingest_folder(store, drop, _options(tmp_path))

    assert sorted(result.stale_runs) == ["dead-process", "from-this-folder"]
    status = {r["id"]: r["status"] for r in audit.runs(store)}
    assert status == {
        "from-this-folder": "stale",
        "dead-process": "stale",
        "alive-process": "running",
        "other-host": "running",
    }
    assert all("stale_reason" in r for r in audit.runs(store) if r["status"] == "stale")


def test_failed_and_partial_files_and_the_exit_codes(
    store: GraphStore, drop: Path, tmp_path: Path
) -> None:
    _jsonl(drop / "half.jsonl", _items("h", 2) + [{"uid": "h:9"}], age=20)
    first = ingest_folder(store, drop, _options(tmp_path))
    assert first.exit_code == EXIT_PARTIAL
    assert (first.files[0].outcome, first.files[0].result.status) == ("ingested", "partial")

    _jsonl(drop / "bad.jsonl", [{"uid": "x"}, {"type": "Doc"}], age=10)
    _jsonl(drop / "good.jsonl", _items("g", 1))
    second = ingest_folder(store, drop, _options(tmp_path))
    assert second.exit_code == EXIT_FAILED
    assert [(f.name, f.outcome) for f in second.files] == [
        ("bad.jsonl", "failed"),
        ("good.jsonl", "ingested"),
    ]
    assert _names(drop / "failed") == ["bad.jsonl", "bad.jsonl.reason.txt"]
    reason = (drop / "failed" / "bad.jsonl.reason.txt").read_text()
    assert "every record was quarantined" in reason and second.files[0].result.run_id in reason
    shape = second.to_json()
    assert (shape["exit_code"], shape["ingested"], shape["failed"]) == (EXIT_FAILED, 1, 1)
    assert set(shape["files"][0]) == {
        "file",
        "sha256",
        "outcome",
        "run_id",
        "status",
        "nodes_written",
        "relationships_written",
        "quarantined",
        "quarantine_file",
        "moved_to",
        "reason",
    }
    # A file that failed is not in the ledger as ingested: dropped again, it is tried again.
    shutil.copy(drop / "failed" / "bad.jsonl", drop / "bad.jsonl")
    third = ingest_folder(store, drop, _options(tmp_path))
    assert [(f.outcome, f.moved_to.name) for f in third.files] == [("failed", "bad.1.jsonl")]


def test_an_unreachable_database_is_a_temporary_failure_that_keeps_the_files(
    drop: Path, tmp_path: Path
) -> None:
    _jsonl(drop / "a.jsonl", _items("a", 1))
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = Settings(
        home=tmp_path / "home", neo4j_uri=f"bolt://127.0.0.1:{port}", neo4j_password="x"
    )
    result, code = run_scheduled(settings, drop)
    assert (code, result.stopped) == (EXIT_RETRY, "unavailable")
    assert _names(drop) == [".mmgraph.lock", "a.jsonl"]

    missing, code = run_scheduled(settings, tmp_path / "nowhere")
    assert (code, missing.stopped) == (4, "error")  # not found
    assert "does not exist" in missing.error


def test_a_file_from_a_run_with_only_the_older_ledger_form_is_skipped(
    store: GraphStore, drop: Path, tmp_path: Path
) -> None:
    path = _jsonl(drop / "old.jsonl", _items("o", 1))
    sha = file_sha256(path)
    audit.start_run(store, "legacy", "old.jsonl", inputs=[f"/elsewhere/old.jsonl sha256:{sha}"])
    audit.finish_run(store, "legacy", "ok", {})
    audit.start_run(store, "failed-one", "x", inputs=[f"/x sha256:{'0' * 64}"], sha256s=["0" * 64])
    audit.finish_run(store, "failed-one", "failed", {})

    result = ingest_folder(store, drop, _options(tmp_path))
    assert [(f.outcome, f.reason) for f in result.files] == [
        ("skipped", "already ingested by run legacy")
    ]
    assert audit.ingested_sha256s(store, ["0" * 64]) == {}
