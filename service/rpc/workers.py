"""Several server processes on one port (``mmgraph serve --workers N``): each has an interpreter
of its own, so the Python work of N calls runs on N cores instead of taking turns for one GIL.

As gRPC's multiprocessing example does, the parent reserves the port with a socket bound with
``SO_REUSEPORT`` (port 0 then names one free port for all of them) and starts the processes
(spawned, so none inherits gRPC's state); each listens on that port with ``grpc.so_reuseport``,
loads the promoted run and follows it (:class:`~mmgraph.service.serving.registry.Registry`). The
kernel hands each new connection to one of them, and a connection stays there: a client reaches
several processes through several connections. The parent opens the graph once (the schema, and
the local Neo4j when it starts one) and gives its address to the processes; it imports neither
the server nor the models (only the processes do). SIGTERM or Ctrl-C stops them all gracefully;
when one of them dies, the parent stops the others and fails.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import wait

from mmgraph.core.config import Settings
from mmgraph.core.errors import UnavailableError
from mmgraph.graph.connection import open_store
from mmgraph.graph.local_neo4j import LocalNeo4j
from mmgraph.service.rpc.listen import reserved_port

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"
# How long a stopping process may take: its server's grace for calls in flight (10 s) and exit.
STOP_SECONDS = 15.0


class WorkerExitedError(UnavailableError):
    """A server process ended on its own (it could not start, or it crashed)."""


def serve_processes(settings: Settings, port: int | None, workers: int) -> None:
    """Serve with ``workers`` processes on ``grpc_host:port`` until SIGTERM or SIGINT."""
    with open_store(settings) as store:
        store.setup_schema()
        shared = _with_graph_address(settings)
        wanted = settings.grpc_port if port is None else port
        with reserved_port(settings.grpc_host, wanted) as bound:
            context = multiprocessing.get_context("spawn")
            processes = [
                context.Process(
                    target=_serve_one,
                    args=(shared, bound, workers, logging.getLogger().level),
                    name=f"mmgraph-serve-{i + 1}",
                )
                for i in range(workers)
            ]
            _supervise(processes, f"{settings.grpc_host}:{bound}")


def _supervise(processes: list[multiprocessing.process.BaseProcess], address: str) -> None:
    """Start ``processes``, wait for SIGTERM, SIGINT or one of them ending, then stop them all;
    raise :class:`WorkerExitedError` if one ended on its own."""
    stopping = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stopping.set())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        for process in processes:
            process.start()
        log.warning("starting %d server processes on %s", len(processes), address)
        ended: list[object] = []
        while not stopping.is_set() and not ended:
            ended = wait([p.sentinel for p in processes], timeout=0.5)
        if not ended:
            log.warning("stopping: the processes finish their calls in flight")
    finally:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if ended:
        died = next(p for p in processes if p.sentinel in ended)
        raise WorkerExitedError(
            f"server process {died.name} exited with code {died.exitcode}; the others were "
            "stopped (its log says why)"
        )


def _serve_one(settings: Settings, port: int, workers: int, log_level: int) -> None:
    """One server process: the graph, the promoted run, the shared port."""
    logging.basicConfig(level=log_level, format=LOG_FORMAT)
    from mmgraph.service.rpc.server import serve_until_stopped

    with open_store(settings) as store:
        serve_until_stopped(settings, store, port, workers)


def _with_graph_address(settings: Settings) -> Settings:
    """``settings`` naming the Neo4j the parent opened: the processes connect to it rather than
    start their own (the local one, started for the parent's duration, is not shared)."""
    if settings.neo4j_uri:
        return settings
    local = LocalNeo4j.from_settings(settings)
    return settings.model_copy(
        update={"neo4j_uri": local.uri, "neo4j_user": local.user, "neo4j_password": local.password}
    )
