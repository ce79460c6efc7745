"""The running local Neo4j as other processes see it: its state file (pid, port, GDS) in
``<home>/neo4j/server.json``, checked against the live process, and stopping it by pid."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

LAUNCHER_CLASS = "io.mmgraph.launcher.Neo4jLauncher"


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


def running_server(home: Path) -> ServerInfo | None:
    """The local Neo4j serving ``home`` if one runs and answers on its port, else ``None``.

    A state file left by a server that no longer runs (a crash, a killed machine) is removed.
    """
    info = read_state(neo4j_dir(home))
    return info if info is not None and _port_answers(info.port) else None


def stop_running_server(home: Path, timeout: float = 60.0) -> bool:
    """Stop the local Neo4j serving ``home``, whoever started it; ``False`` if none ran."""
    data_dir = neo4j_dir(home)
    info = read_state(data_dir)
    if info is None:
        return False
    logger.info("Stopping the local Neo4j for %s (pid %d)", home, info.pid)
    terminate_pid(info.pid, data_dir, timeout)
    (data_dir / "server.json").unlink(missing_ok=True)
    return True


def neo4j_dir(home: Path) -> Path:
    return Path(home).resolve() / "neo4j"


def read_state(data_dir: Path) -> ServerInfo | None:
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


def terminate_pid(pid: int, data_dir: Path, timeout: float) -> None:
    """SIGTERM ``pid`` and wait for it to go; SIGKILL it if ``timeout`` passes."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not wait_gone(pid, data_dir, timeout):
        logger.warning("Neo4j (pid %d) ignored SIGTERM for %.0f s: killed", pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_gone(pid, data_dir, 10.0)


def wait_gone(pid: int, data_dir: Path, timeout: float) -> bool:
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
