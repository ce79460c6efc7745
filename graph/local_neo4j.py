"""A local Neo4j Community 5.26 for mmgraph, run as a child JVM when no ``NEO4J_URI`` is given.

The server is an embedded ``DatabaseManagementService`` opened by a small launcher class (the
Maven module in ``launcher/``), with Bolt on 127.0.0.1 only and auth on. The launcher and Neo4j's
jars are built and fetched from Maven Central once into the cache; the database, its logs, the
generated password and a state file (``server.json``: pid and port of the running server, and
whether GDS is on) live in ``<home>/neo4j/``.

Open GDS (Graph Data Science) is optional: a server started with ``gds=True`` also loads GDS's jars
(the Maven module in ``launcher/gds/``, fetched on first use only) and offers its ``gds.*``
procedures; the default start-up never fetches or loads them.

Every start maps Neo4j's classes from a class-data-sharing archive (the JVM's
``-XX:SharedArchiveFile``) instead of loading them from the jars; a throwaway server dumps the
archive into ``<cache>/cds/`` on the first start with a given classpath and JVM.

A server started with ``detach=False`` dies with the Python process that started it, however that
process ends: the launcher shuts down cleanly when its stdin (a pipe from us) reaches its end. One
started with ``detach=True`` runs in its own session until stopped; other processes find it
through :func:`running_server` and stop it with :func:`stop_running_server`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from neo4j import GraphDatabase

from mmgraph.core.config import Settings
from mmgraph.core.errors import UnavailableError

__all__ = [
    "LauncherBuildError",
    "LocalNeo4j",
    "LocalNeo4jError",
    "Neo4jStartError",
    "ServerInfo",
    "ensure_gds_plugins",
    "ensure_launcher",
    "running_server",
    "stop_running_server",
]

logger = logging.getLogger(__name__)

LAUNCHER_SOURCE = Path(__file__).parent / "launcher"
GDS_SOURCE = LAUNCHER_SOURCE / "gds"
LAUNCHER_CLASS = "io.mmgraph.launcher.Neo4jLauncher"
LAUNCHER_JAR = Path("target") / "mmgraph-neo4j-launcher.jar"
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
_TAIL_LINES = 40
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# Phrases in Maven's output that mean the artifacts could not be downloaded.
_NETWORK_FAILURES = (
    "Could not transfer artifact",
    "Could not resolve dependencies",
    "Could not resolve artifact",
    "Non-resolvable",
    "UnknownHostException",
    "Connection refused",
    "Connect timed out",
    "Network is unreachable",
    "Unknown host",
)


class LocalNeo4jError(UnavailableError):
    """Base of this module's errors; ``output`` holds the tail of the failing tool's output."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(f"{message}\n{output}" if output else message)
        self.output = output


class LauncherBuildError(LocalNeo4jError):
    """Maven could not build the launcher or fetch Neo4j's (or GDS's) jars."""


class Neo4jStartError(LocalNeo4jError):
    """The local Neo4j did not come up (or one already runs on the same home)."""


@dataclass(frozen=True)
class ServerInfo:
    """A running local Neo4j, as its state file describes it."""

    pid: int
    port: int
    gds: bool = False

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def detached(self) -> bool:
        """Started by ``start(detach=True)``: it leads a session of its own and outlives the
        process that started it; an attached server stops when its starter does."""
        try:
            return os.getsid(self.pid) == self.pid
        except ProcessLookupError:
            return False


def ensure_launcher(cache: Path) -> Path:
    """Build the launcher once per source version and return its folder.

    The folder (``<cache>/launcher/<hash of the sources>``) holds ``lib/*.jar`` (Neo4j and its
    dependencies) and ``target/mmgraph-neo4j-launcher.jar``. A marker written after a successful
    build makes later calls return at once; a file lock keeps two processes from building at once;
    an interrupted build is redone. The first build downloads about 120 MB from Maven Central into
    ``<cache>/m2``.
    """
    sources = [
        LAUNCHER_SOURCE / "pom.xml",
        *sorted(LAUNCHER_SOURCE.glob("src/main/java/**/*.java")),
    ]
    return _ensure_built(Path(cache), "launcher", LAUNCHER_SOURCE, sources, "Neo4j 5.26")


def ensure_gds_plugins(cache: Path) -> Path:
    """Fetch Open GDS's jars once per module version and return the folder holding them.

    The folder (``<cache>/gds/<hash of launcher/gds/pom.xml>/plugins``) holds the jars GDS adds to
    Neo4j's own (about 130, 15 MB); it is both the server's ``plugin_dir`` and part of its
    classpath. Built, marked and locked as :func:`ensure_launcher` does; only a server started with
    ``gds=True`` asks for it.
    """
    sources = [GDS_SOURCE / "pom.xml"]
    return _ensure_built(Path(cache), "gds", GDS_SOURCE, sources, "Open GDS 2.13") / "plugins"


def _ensure_built(cache: Path, kind: str, root: Path, sources: list[Path], what: str) -> Path:
    """Run ``mvn package`` on a copy of the module at ``root`` once per version of its sources.

    Returns ``<cache>/<kind>/<hash of the sources>``; see :func:`ensure_launcher`.
    """
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    build_dir = cache / kind / digest.hexdigest()[:12]
    marker = build_dir / ".built"
    if marker.exists():
        return build_dir
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(build_dir.parent / f"{build_dir.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            _maven_package(root, sources, build_dir, cache / "m2", what)
            marker.touch()
    return build_dir


def _maven_package(root: Path, sources: list[Path], build_dir: Path, repo: Path, what: str) -> None:
    """Copy the Maven module into ``build_dir`` and run ``mvn package`` there (see its pom)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LauncherBuildError(f"Maven ('mvn') is not on PATH; it is needed once to fetch {what}")
    shutil.rmtree(build_dir, ignore_errors=True)
    for path in sources:
        target = build_dir / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    command = [mvn, "-q", "-B", f"-Dmaven.repo.local={repo}", "package"]
    logger.info("Building %s in %s (downloads from Maven Central)", what, build_dir)
    started = time.monotonic()
    result = subprocess.run(
        command, cwd=build_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if result.returncode != 0:
        output = _tail(_ANSI_ESCAPE.sub("", result.stdout))
        if any(phrase in result.stdout for phrase in _NETWORK_FAILURES):
            message = (
                f"Maven could not download {what} from Maven Central "
                "(https://repo.maven.apache.org/maven2): check the network, proxy or mirror "
                "settings; the local Neo4j cannot be built without these artifacts"
            )
        else:
            message = f"Maven failed (exit status {result.returncode}) building {build_dir}"
        raise LauncherBuildError(message, output)
    logger.info("Built %s in %.1f s", what, time.monotonic() - started)


def running_server(home: Path) -> ServerInfo | None:
    """The local Neo4j serving ``home`` if one runs and answers on its port, else ``None``.

    A state file left by a server that no longer runs (a crash, a killed machine) is removed.
    """
    info = _read_state(_data_dir(home))
    return info if info is not None and _port_answers(info.port) else None


def stop_running_server(home: Path, timeout: float = 60.0) -> bool:
    """Stop the local Neo4j serving ``home``, whoever started it; ``False`` if none ran."""
    data_dir = _data_dir(home)
    info = _read_state(data_dir)
    if info is None:
        return False
    logger.info("Stopping the local Neo4j for %s (pid %d)", home, info.pid)
    _terminate_pid(info.pid, data_dir, timeout)
    (data_dir / "server.json").unlink(missing_ok=True)
    return True


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
    ) -> None:
        self.home = Path(home)
        self.cache = Path(cache)
        self.heap = heap
        self.pagecache = pagecache
        self.gds = gds
        self.data_dir = _data_dir(self.home)
        self._requested_port = port
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        # Set only on the throwaway server that dumps the class-data archive.
        self._dump_classes_to: Path | None = None

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
        :func:`ensure_launcher`); ``timeout`` bounds only the server's own start. With
        ``detach=True`` the server runs in its own session and outlives this process.
        """
        if self._owns_live_process():
            return
        other = _read_state(self.data_dir)
        if other is not None:
            raise Neo4jStartError(f"a local Neo4j already runs for {self.home} (pid {other.pid})")
        launcher = ensure_launcher(self.cache)
        plugins = ensure_gds_plugins(self.cache) if self.gds else None
        port = self._requested_port or _free_port()
        password = self.password
        log_path = self.data_dir / "logs" / "console.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        java = _java()
        classpath = _classpath(launcher, plugins)
        if self._dump_classes_to is not None:
            sharing = f"-XX:ArchiveClassesAtExit={self._dump_classes_to}"
        else:
            archive = _class_archive(self.cache, java, classpath, self.gds)
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

    def stop(self, timeout: float = 60.0) -> None:
        """Shut the server down cleanly (SIGTERM), killing it only if ``timeout`` passes."""
        _attached.discard(self)
        process, self._process = self._process, None
        if process is None:
            stop_running_server(self.home, timeout)
            return
        if process.poll() is None:
            logger.info("Stopping the local Neo4j for %s (pid %d)", self.home, process.pid)
            process.terminate()
            try:
                status = process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "Neo4j (pid %d) ignored SIGTERM for %.0f s: killed", process.pid, timeout
                )
                process.kill()
                status = process.wait()
            if status != 0:
                logger.warning("Neo4j (pid %d) exited with status %d", process.pid, status)
        _close_stdin(process)
        (self.data_dir / "server.json").unlink(missing_ok=True)

    def kill(self) -> None:
        """Kill the server with SIGKILL, as a crash would; its state file is left behind."""
        _attached.discard(self)
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            _close_stdin(process)
            return
        info = _read_state(self.data_dir)
        if info is not None:
            os.kill(info.pid, signal.SIGKILL)
            _wait_gone(info.pid, self.data_dir, 10.0)

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
                    other = _read_state(self.data_dir)
                    pid = f" (pid {other.pid})" if other is not None else ""
                    message = f"a local Neo4j already runs for {self.home}{pid}"
                else:
                    message = (
                        f"the local Neo4j for {self.home} exited with status {status} before it "
                        f"was ready (see also {self.data_dir / 'logs' / 'debug.log'})"
                    )
                raise Neo4jStartError(message, _tail(output))
            if time.monotonic() > deadline:
                raise Neo4jStartError(
                    f"the local Neo4j for {self.home} was not ready in time", _tail(output)
                )
            time.sleep(0.1)

    def _verify_login(self, port: int, password: str, output: str) -> None:
        """Log in over Bolt as the driver will: proves auth is on and the password was set."""
        try:
            with GraphDatabase.driver(f"bolt://127.0.0.1:{port}", auth=(USER, password)) as d:
                d.verify_connectivity()
        except Exception as e:
            raise Neo4jStartError(
                f"the local Neo4j for {self.home} refused the login: {e}", _tail(output)
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


def _data_dir(home: Path) -> Path:
    return Path(home).resolve() / "neo4j"


def _read_state(data_dir: Path) -> ServerInfo | None:
    """The server named by the state file if its process still runs; a stale file is removed."""
    state = data_dir / "server.json"
    try:
        raw = json.loads(state.read_text())
        info = ServerInfo(pid=int(raw["pid"]), port=int(raw["port"]), gds=raw.get("gds") is True)
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        logger.warning("Removing unreadable state file %s", state)
        state.unlink(missing_ok=True)
        return None
    if not _is_launcher(info.pid, data_dir):
        logger.info("Removing stale state file %s (pid %d is gone)", state, info.pid)
        state.unlink(missing_ok=True)
        return None
    return info


def _is_launcher(pid: int, data_dir: Path) -> bool:
    """Whether ``pid`` is a live launcher serving ``data_dir``, not a reused pid or a zombie."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        args = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return LAUNCHER_CLASS.encode() in args and str(data_dir).encode() in args


def _terminate_pid(pid: int, data_dir: Path, timeout: float) -> None:
    """SIGTERM ``pid`` and wait for it to go; SIGKILL it if ``timeout`` passes."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, data_dir, timeout):
        logger.warning("Neo4j (pid %d) ignored SIGTERM for %.0f s: killed", pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, data_dir, 10.0)


def _wait_gone(pid: int, data_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _is_launcher(pid, data_dir):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _java() -> str:
    """The ``java`` executable (``$JAVA_HOME/bin`` first)."""
    java = shutil.which("java", path=_java_path())
    if java is None:
        raise Neo4jStartError("Java 17+ ('java') is not on PATH or in JAVA_HOME")
    return java


def _classpath(launcher: Path, plugins: Path | None) -> str:
    """The server's classpath: Neo4j's jars, the launcher's, and GDS's when loaded."""
    parts = [f"{launcher / 'lib'}/*", str(launcher / LAUNCHER_JAR)]
    if plugins is not None:
        parts.append(f"{plugins}/*")
    return os.pathsep.join(parts)


def _class_archive(cache: Path, java: str, classpath: str, gds: bool) -> Path | None:
    """The class-data-sharing archive of ``classpath`` on this ``java``, dumped on first use.

    A throwaway server on a temporary home starts with ``-XX:ArchiveClassesAtExit`` and stops,
    writing the classes it loaded into ``<cache>/cds/<key>.jsa`` (about 120 MB, some 20 s once);
    every later start maps them instead of reading Neo4j's jars (ready in 5.6 s instead of 8.7 s
    on the 2-core VM; with GDS 8.2 s instead of 13.2 s). The key covers the JVM binary and the
    classpath, so a new JVM or new jars get an archive of their own. Returns ``None``, and the
    server starts without one, when the dump fails (a JVM without the option); the JVM itself
    ignores an archive it cannot use.
    """
    real = Path(java).resolve()
    stat = real.stat()
    key = f"{real}\0{stat.st_size}\0{stat.st_mtime_ns}\0{classpath}"
    archive = cache / "cds" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.jsa"
    if archive.exists():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    with open(archive.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if archive.exists():
            return archive
        partial = archive.with_suffix(f".{os.getpid()}.partial")
        logger.info("Dumping a class-data archive for faster local Neo4j starts (once)")
        with tempfile.TemporaryDirectory(prefix="mmgraph-cds-") as home:
            dumper = LocalNeo4j(Path(home), cache, gds=gds)
            dumper._dump_classes_to = partial
            try:
                dumper.start()
            except Neo4jStartError as error:
                logger.warning("No class-data archive, starting without one: %s", error)
                partial.unlink(missing_ok=True)
                return None
            finally:
                process = dumper._process
                dumper.stop()
        # Only a JVM that exited by itself has written the whole archive.
        if process is None or process.returncode != 0 or not partial.is_file():
            logger.warning("The JVM wrote no class-data archive; starting without one")
            partial.unlink(missing_ok=True)
            return None
        os.replace(partial, archive)
    return archive


def _java_path() -> str:
    """PATH, preceded by ``$JAVA_HOME/bin`` when JAVA_HOME is set."""
    path = os.environ.get("PATH", os.defpath)
    java_home = os.environ.get("JAVA_HOME")
    return f"{Path(java_home) / 'bin'}{os.pathsep}{path}" if java_home else path


def _close_stdin(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()


def _read_from(path: Path, offset: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _tail(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])
