"""The local Neo4j on a real JVM: auth, detached servers, stops, class-data archives, failures.

A crash (``kill -9`` in the middle of an ingest) and the recovery after it are tested on the
session's server in ``tests/ingest/test_pipeline.py``.

Homes are temporary; the cache is the real one, so Neo4j's jars are fetched only once per machine.
Every test stops what it starts; JVM starts (about 5 s each) are kept few.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from neo4j import GraphDatabase
from neo4j.exceptions import AuthError
from test_gds import _gds_procedures

from mmgraph.core.config import Settings
from mmgraph.graph.connection import open_store
from mmgraph.graph.gds import GdsUnavailableError, fastrp_embeddings, gds_available
from mmgraph.graph.local_neo4j import (
    LAUNCHER_JAR,
    LauncherBuildError,
    LocalNeo4j,
    Neo4jStartError,
    build,
    class_archive_for,
    ensure_launcher,
    running_server,
    stop_running_server,
)

CACHE = Settings.from_env().cache


def _query(server: LocalNeo4j, cypher: str, **params: object) -> list[dict]:
    with GraphDatabase.driver(server.uri, auth=(server.user, server.password)) as driver:
        records, _, _ = driver.execute_query(cypher, params)
    return [r.data() for r in records]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie awaiting its parent counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return status.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _launcher_pids(home: Path) -> list[int]:
    """Live launcher JVMs serving ``home``, found by command line."""
    data_dir = str(home.resolve() / "neo4j").encode()
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                args = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if data_dir in args and _alive(int(proc.name)):
                pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="class")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNeo4j]:
    """A server started detached by a process that has exited since; its handle here only
    reads the state file. The class's last test stops it (and this teardown, should that fail)."""
    home = tmp_path_factory.mktemp("home")
    starter = textwrap.dedent(
        f"""
        from pathlib import Path
        from mmgraph.graph.local_neo4j import LocalNeo4j
        LocalNeo4j(Path({str(home)!r}), Path({str(CACHE)!r})).start(detach=True)
        """
    )
    try:
        subprocess.run([sys.executable, "-c", starter], check=True, timeout=180)
        yield LocalNeo4j(home, CACHE)
    finally:
        stop_running_server(home)
    assert _launcher_pids(home) == []


def test_launcher_build_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ensure_launcher(CACHE)
    # A second call must not run Maven at all: one that would fail is on the PATH.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mvn").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "mvn").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    launcher = ensure_launcher(CACHE)
    assert (launcher / LAUNCHER_JAR).is_file()
    assert len(list((launcher / "lib").glob("neo4j-*.jar"))) > 50


def test_maven_network_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_mvn = bin_dir / "mvn"
    fake_mvn.write_text(
        "#!/bin/sh\n"
        "echo '[ERROR] Failed to execute goal on project x: Could not transfer artifact "
        "org.neo4j:neo4j:pom:5.26.30 from/to central: Connection refused'\n"
        "exit 1\n"
    )
    fake_mvn.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for _ in range(2):  # a failed build leaves no marker: the second call tries again
        with pytest.raises(LauncherBuildError, match="Maven Central") as failure:
            ensure_launcher(tmp_path / "cache")
        assert "Connection refused" in failure.value.output


class TestOneServer:
    """Checks that share one detached server, stopped by the last of them (before the tests
    that start servers of their own)."""

    def test_detached_server_outlives_its_starter_and_serves_cypher(
        self, server: LocalNeo4j
    ) -> None:
        info = running_server(server.home)
        assert info is not None
        assert os.getsid(info.pid) == info.pid  # its own session: a Ctrl-C here does not reach it
        assert server.is_running()
        assert server.uri == info.uri
        assert _query(server, "RETURN 1 AS x") == [{"x": 1}]

    def test_password_is_generated_and_private(self, server: LocalNeo4j) -> None:
        assert stat.S_IMODE(server.password_file.stat().st_mode) == 0o600
        assert len(server.password) >= 32
        state = json.loads((server.data_dir / "server.json").read_text())
        assert running_server(server.home) is not None
        assert running_server(server.home).pid == state["pid"]
        assert server.uri == f"bolt://127.0.0.1:{state['port']}"

    def test_wrong_password_is_refused(self, server: LocalNeo4j) -> None:
        with (
            GraphDatabase.driver(server.uri, auth=(server.user, "not-the-password")) as driver,
            pytest.raises(AuthError),
        ):
            driver.verify_connectivity()

    def test_second_server_on_same_home_is_refused(self, server: LocalNeo4j) -> None:
        pid = running_server(server.home).pid
        with pytest.raises(Neo4jStartError, match=f"already runs for .* \\(pid {pid}\\)"):
            LocalNeo4j(server.home, CACHE).start()

        # Without the state file the JVM starts, meets Neo4j's store lock, and says the same.
        state = server.data_dir / "server.json"
        hidden = state.rename(state.with_suffix(".hidden"))
        try:
            with pytest.raises(Neo4jStartError, match="already runs for"):
                LocalNeo4j(server.home, CACHE).start()
        finally:
            hidden.rename(state)
        assert _launcher_pids(server.home) == [pid]

    def test_its_classes_are_mapped_from_the_shared_archive(self, server: LocalNeo4j) -> None:
        info = running_server(server.home)
        assert info is not None
        archives = set((CACHE / "cds").glob("*.jsa"))
        args = Path(f"/proc/{info.pid}/cmdline").read_bytes().decode().split("\0")
        used = {Path(a.split("=", 1)[1]) for a in args if a.startswith("-XX:SharedArchiveFile=")}
        assert len(used) == 1 and used <= archives
        # Mapped, so the JVM accepted it (it ignores an archive that does not fit its classpath).
        assert str(used.pop()) in Path(f"/proc/{info.pid}/maps").read_text()

    def test_started_without_gds_offers_none(self, server: LocalNeo4j) -> None:
        info = running_server(server.home)
        assert info is not None and not info.gds
        settings = Settings.from_env().model_copy(update={"home": server.home, "neo4j_uri": None})
        with open_store(settings) as store:
            assert not gds_available(store)
            assert _gds_procedures(store) == 0
            with pytest.raises(GdsUnavailableError):
                fastrp_embeddings(store, [], ["x"])
        with (
            pytest.raises(GdsUnavailableError, match="start --gds"),
            open_store(settings, gds=True),
        ):
            pass

    def test_stopping_it_ends_the_jvm_and_frees_the_port(self, server: LocalNeo4j) -> None:
        info = running_server(server.home)
        assert info is not None
        assert stop_running_server(server.home)
        assert not _alive(info.pid)
        assert not _port_open(info.port)
        assert running_server(server.home) is None
        assert not (server.data_dir / "server.json").exists()
        assert not server.is_running()
        assert not stop_running_server(server.home)


def test_a_jvm_that_cannot_dump_classes_gets_no_archive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real_java = build.java()
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text(
        "#!/bin/sh\n"
        'case "$*" in *ArchiveClassesAtExit*) echo "Unrecognized VM option"; exit 1;; esac\n'
        f'exec {real_java} "$@"\n'
    )
    java.chmod(0o755)
    monkeypatch.setenv("PATH", f"{java.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("JAVA_HOME", raising=False)
    before = set((CACHE / "cds").glob("*"))
    try:
        classpath = build.classpath(ensure_launcher(CACHE), None)
        assert class_archive_for(CACHE, str(java), classpath, gds=False) is None
    finally:
        for path in set((CACHE / "cds").glob("*")) - before:  # this fake JVM's lock file
            path.unlink()
    assert "No class-data archive" in caplog.text
    assert "Unrecognized VM option" in caplog.text


def test_failed_start_reports_output_and_leaves_no_jvm(tmp_path: Path) -> None:
    with pytest.raises(Neo4jStartError, match="exited with status 1") as failure:
        LocalNeo4j(tmp_path, CACHE, pagecache="lots").start()
    assert "lots" in failure.value.output
    with pytest.raises(Neo4jStartError, match="not ready in time"):
        LocalNeo4j(tmp_path, CACHE).start(timeout=0.5)
    assert _launcher_pids(tmp_path) == []
    assert not (tmp_path / "neo4j" / "server.json").exists()
