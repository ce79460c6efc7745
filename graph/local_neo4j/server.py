"""A local Neo4j started and stopped from Python: one ``LocalNeo4j`` per home.

A server started with ``detach=False`` dies with the Python process that started it, however that
process ends: the launcher shuts down cleanly when its stdin (a pipe from us) reaches its end. One
started with ``detach=True`` runs in its own session until stopped; other processes find it
through :func:`~mmgraph.graph.local_neo4j.state.running_server`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType

from neo4j import GraphDatabase

from mmgraph.core.config import Settings
from mmgraph.graph.local_neo4j import build
from mmgraph.graph.local_neo4j.class_archive import class_archive
from mmgraph.graph.local_neo4j.errors import LocalNeo4jError, Neo4jStartError, tail
from mmgraph.graph.local_neo4j.state import (
    LAUNCHER_CLASS,
    neo4j_dir,
    read_state,
    running_server,
    stop_running_server,
    wait_gone,
)

logger = logging.getLogger(__name__)

READY_PREFIX = "MMGRAPH_NEO4J_READY"
USER = "neo4j"

# Serial GC and a small initial heap: an idle server with the default sizes holds about 340 MB.
JVM_OPTIONS = (
    "-XX:+UseSerialGC",
    "-Xms64m",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-OmitStackTraceInFastThrow",
    "-Dlog4j2.disable.jmx=true",
)


class LocalNeo4j:
    """A local Neo4j whose data lives in ``<home>/neo4j``, started and stopped from Python.

    ``heap`` and ``pagecache`` are JVM sizes (``512m``, ``2g``). ``port`` defaults to a free one
    chosen at each start, so :attr:`uri` is only meaningful while the server runs. With
    ``gds=True`` the server also loads Open GDS (its jars are fetched on the first such start).
    The same object also describes a server another process started on ``home`` (``detach=True``).
    """

    user = USER

    def __init__(
        self,
        home: Path,
        cache: Path,
        heap: str = "512m",
        pagecache: str = "256m",
        port: int | None = None,
        gds: bool = False,
        dump_classes_to: Path | None = None,
    ) -> None:
        self.home = Path(home)
        self.cache = Path(cache)
        self.heap = heap
        self.pagecache = pagecache
        self.gds = gds
        self.data_dir = neo4j_dir(self.home)
        self._requested_port = port
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.dump_classes_to = dump_classes_to

    @classmethod
    def from_settings(cls, settings: Settings, gds: bool = False) -> LocalNeo4j:
        """The local Neo4j of ``settings.home``, sized by the settings' heap and page cache, with
        Open GDS loaded if ``gds``."""
        return cls(
            home=settings.home,
            cache=settings.cache,
            heap=settings.neo4j_heap,
            pagecache=settings.neo4j_pagecache,
            gds=gds,
        )

    @property
    def password_file(self) -> Path:
        return self.data_dir / "password"

    @property
    def password(self) -> str:
        """The ``neo4j`` user's password, generated on first use and kept (mode 0600)."""
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return self.password_file.read_text().strip()
        password = secrets.token_urlsafe(24)
        with os.fdopen(fd, "w") as f:
            f.write(password)
        return password

    @property
    def port(self) -> int | None:
        """The Bolt port of the running server (ours or a detached one), else ``None``."""
        if self._owns_live_process():
            return self._port
        info = running_server(self.home)
        return info.port if info is not None else None

    @property
    def uri(self) -> str:
        port = self.port
        if port is None:
            raise LocalNeo4jError(f"no local Neo4j runs for {self.home}")
        return f"bolt://127.0.0.1:{port}"

    def is_running(self) -> bool:
        """Whether a server for this home runs, started by this object or by another process."""
        return self.port is not None

    def start(self, timeout: float = 120.0, detach: bool = False) -> None:
        """Start the server and return once Bolt accepts the ``neo4j`` user's password.

        The first call may first spend a while building the launcher (see
        :func:`~mmgraph.graph.local_neo4j.build.ensure_launcher`); ``timeout`` bounds only the
        server's own start. With ``detach=True`` the server runs in its own session and outlives
        this process.
        """
        if self._owns_live_process():
            return
        other = read_state(self.data_dir)
        if other is not None:
            raise Neo4jStartError(f"a local Neo4j already runs for {self.home} (pid {other.pid})")
        launcher = build.ensure_launcher(self.cache)
        plugins = build.ensure_gds_plugins(self.cache) if self.gds else None
        port = self._requested_port or _free_port()
        password = self.password
        log_path = self.data_dir / "logs" / "console.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        java = build.java()
        classpath = build.classpath(launcher, plugins)
        if self.dump_classes_to is not None:
            sharing = f"-XX:ArchiveClassesAtExit={self.dump_classes_to}"
        else:
            archive = class_archive_for(self.cache, java, classpath, self.gds)
            sharing = f"-XX:SharedArchiveFile={archive}" if archive is not None else None
        command = self._jvm_command(java, classpath, sharing, port, not detach, plugins)
        kind = "a local Neo4j with GDS" if self.gds else "a local Neo4j"
        logger.info("Starting %s for %s on port %d", kind, self.home, port)
        started = time.monotonic()
        with open(log_path, "ab") as log:
            offset = log.tell()
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL if detach else subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=detach,
            )
        self._process, self._port = process, port
        try:
            self._wait_ready(process, log_path, offset, port, started + timeout)
            self._verify_login(port, password, _read_from(log_path, offset))
        except BaseException:
            self._discard_process()
            raise
        if not detach:
            _attached.add(self)
        logger.info(
            "Local Neo4j ready at bolt://127.0.0.1:%d (pid %d) in %.1f s",
            port,
            process.pid,
            time.monotonic() - started,
        )

    def stop(self, timeout: float = 60.0) -> int | None:
        """Shut the server down cleanly (SIGTERM), killing it only if ``timeout`` passes; the
        JVM's exit status when this object started it, else ``None``."""
        _attached.discard(self)
        process, self._process = self._process, None
        if process is None:
            stop_running_server(self.home, timeout)
            return None
        if process.poll() is None:
            logger.info("Stopping the local Neo4j for %s (pid %d)", self.home, process.pid)
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "Neo4j (pid %d) ignored SIGTERM for %.0f s: killed", process.pid, timeout
                )
                process.kill()
                process.wait()
            if process.returncode != 0:
                logger.warning(
                    "Neo4j (pid %d) exited with status %d", process.pid, process.returncode
                )
        _close_stdin(process)
        (self.data_dir / "server.json").unlink(missing_ok=True)
        return process.returncode

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would; its state file is left behind."""
        _attached.discard(self)
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            _close_stdin(process)
            return
        info = read_state(self.data_dir)
        if info is not None:
            os.kill(info.pid, signal.SIGKILL)
            wait_gone(info.pid, self.data_dir, 10.0)

    def __enter__(self) -> LocalNeo4j:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _jvm_command(
        self,
        java: str,
        classpath: str,
        sharing: str | None,
        port: int,
        watch_stdin: bool,
        plugins: Path | None,
    ) -> list[str]:
        options = ["--watch-stdin"] if watch_stdin else []
        if plugins is not None:
            # GDS needs both: its extension is found on the classpath, its procedures in the
            # plugin folder; either alone leaves no gds.* procedure (or no start at all).
            options += ["--plugin-dir", str(plugins)]
        command = [
            java,
            f"-Xmx{self.heap}",
            *JVM_OPTIONS,
            *([sharing] if sharing else []),
            "-cp",
            classpath,
            LAUNCHER_CLASS,
            "--home",
            str(self.data_dir),
            "--port",
            str(port),
            "--password-file",
            str(self.password_file),
            "--pagecache",
            self.pagecache,
            "--state-file",
            str(self.data_dir / "server.json"),
        ]
        return [*command, *options]

    def _wait_ready(
        self,
        process: subprocess.Popen[bytes],
        log_path: Path,
        offset: int,
        port: int,
        deadline: float,
    ) -> None:
        """Wait for the launcher's ready line; raise if it exits or the deadline passes."""
        ready = f"{READY_PREFIX} {port}"
        while True:
            output = _read_from(log_path, offset)
            if ready in output.splitlines():
                return
            status = process.poll()
            if status is not None:
                if "Lock file has been locked by another process" in output:
                    other = read_state(self.data_dir)
                    pid = f" (pid {other.pid})" if other is not None else ""
                    message = f"a local Neo4j already runs for {self.home}{pid}"
                else:
                    message = (
                        f"the local Neo4j for {self.home} exited with status {status} before it "
                        f"was ready (see also {self.data_dir / 'logs' / 'debug.log'})"
                    )
                raise Neo4jStartError(message, tail(output))
            if time.monotonic() > deadline:
                raise Neo4jStartError(
                    f"the local Neo4j for {self.home} was not ready in time", tail(output)
                )
            time.sleep(0.1)

    def _verify_login(self, port: int, password: str, output: str) -> None:
        """Log in over Bolt as the driver will: proves auth is on and the password was set."""
        try:
            with GraphDatabase.driver(f"bolt://127.0.0.1:{port}", auth=(USER, password)) as d:
                d.verify_connectivity()
        except Exception as e:
            raise Neo4jStartError(
                f"the local Neo4j for {self.home} refused the login: {e}", tail(output)
            ) from e

    def _owns_live_process(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _discard_process(self) -> None:
        """Kill the process a failed start left behind, if it still runs."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
            _close_stdin(process)


# Servers started with detach=False; stopped cleanly at interpreter exit.
_attached: weakref.WeakSet[LocalNeo4j] = weakref.WeakSet()


@atexit.register
def _stop_attached() -> None:
    for server in list(_attached):
        server.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _close_stdin(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def class_archive_for(cache: Path, java: str, classpath: str, gds: bool) -> Path | None:
    """The class-data archive of ``classpath`` on ``java`` (see
    :func:`~mmgraph.graph.local_neo4j.class_archive.class_archive`), dumped on first use by a
    throwaway server on a temporary home."""

    def dump(archive: Path) -> bool:
        with tempfile.TemporaryDirectory(prefix="mmgraph-cds-") as home:
            dumper = LocalNeo4j(Path(home), cache, gds=gds, dump_classes_to=archive)
            try:
                dumper.start()
            except Neo4jStartError as error:
                logger.warning("No class-data archive, starting without one: %s", error)
                return False
            return dumper.stop() == 0

    return class_archive(cache, java, classpath, dump)
