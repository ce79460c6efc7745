"""The gRPC server: the Analytics service, standard health checking and reflection, optional TLS
and bearer token, message size limits, and a graceful stop that finishes calls in flight."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mmgraph.core.config import Settings
from mmgraph.core.errors import FailedPreconditionError
from mmgraph.graph.connection import open_store
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.encoders.base import resolve_device
from mmgraph.service.rpc.interceptors import ErrorInterceptor, TokenInterceptor
from mmgraph.service.rpc.listen import ListenError
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2_grpc as pb_grpc
from mmgraph.service.rpc.reflection import enable_reflection
from mmgraph.service.rpc.servicer import SERVICE_NAME, AnalyticsServicer
from mmgraph.service.serving.encoder_thread import ForwardPlan, forward_plan, set_torch_threads
from mmgraph.service.serving.registry import Registry

log = logging.getLogger(__name__)


class TlsFilesError(FailedPreconditionError):
    """``MMGRAPH_TLS_CERT`` or ``MMGRAPH_TLS_KEY`` names a file that cannot be read."""


# Threads for calls in progress. A text or image query holds its thread while it waits for its
# batch's forward pass, so 16 of them (the former size) would leave no thread to other calls.
MAX_WORKERS = 64
STOP_GRACE_SECONDS = 10.0


@dataclass
class Server:
    """A started server: the grpc server, its health servicer, the Analytics servicer and the
    port it listens on."""

    grpc_server: grpc.Server
    health: health.HealthServicer
    analytics: AnalyticsServicer
    port: int

    def stop(self, grace: float | None = STOP_GRACE_SECONDS) -> None:
        """Report NOT_SERVING, refuse new calls, let calls in flight finish within ``grace``
        seconds, and return when the server has stopped."""
        self.health.enter_graceful_shutdown()
        self.grpc_server.stop(grace).wait()
        self.analytics.close()

    def wait(self) -> None:
        self.grpc_server.wait_for_termination()


def create_server(
    settings: Settings,
    registry: Registry,
    address: str = "127.0.0.1:0",
    shared_port: bool = False,
    plan: ForwardPlan | None = None,
) -> tuple[Server, int]:
    """Build and start a server on ``address`` (port 0: any free port); return it and its port.

    TLS is on when ``settings.tls_cert`` and ``settings.tls_key`` are set; every call but health
    and reflection must carry ``settings.token`` when it is set. A port already taken is an
    error, unless ``shared_port``: then the kernel shares the port's connections out between
    the processes listening on it (``SO_REUSEPORT``). ``plan``: how the encoders' forward
    passes run (default: one lane, the encoders' default threads).
    """
    # The error interceptor first: it sees the token check's refusals too.
    interceptors: list[grpc.ServerInterceptor] = [ErrorInterceptor(SERVICE_NAME)]
    if settings.token:
        interceptors.append(TokenInterceptor(settings.token))
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", int(shared_port)),
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=MAX_WORKERS, thread_name_prefix="mmgraph-grpc"),
        interceptors=interceptors,
        options=options,
    )
    analytics = AnalyticsServicer(settings, registry, plan=plan)
    pb_grpc.add_AnalyticsServicer_to_server(analytics, server)
    health_servicer = add_health(server)
    enable_reflection(
        server, (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
    )
    try:
        if settings.tls_cert and settings.tls_key:
            credentials = grpc.ssl_server_credentials(
                [(settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())]
            )
            port = server.add_secure_port(address, credentials)
        else:
            port = server.add_insecure_port(address)
    except RuntimeError as e:  # grpc's way of saying it could not bind
        raise ListenError(f"cannot listen on {address}: {e}") from e
    except OSError as e:  # the TLS files
        raise TlsFilesError(f"cannot read the TLS certificate or key: {e}") from e
    if port == 0:
        raise ListenError(f"cannot listen on {address} (is the port taken?)")
    server.start()
    log.info("serving %s on port %d (tls %s)", SERVICE_NAME, port, bool(settings.tls_cert))
    return Server(server, health_servicer, analytics, port), port


def add_health(server: grpc.Server) -> health.HealthServicer:
    """Register the standard health service, SERVING for the server ("") and Analytics."""
    servicer = health.HealthServicer(experimental_non_blocking=True)
    for name in ("", SERVICE_NAME):
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


def serve(settings: Settings, port: int | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully: open the graph (schema set up once,
    here), load the promoted model if there is one, listen on ``grpc_host:port`` (several
    processes on one port: :mod:`.workers`)."""
    with open_store(settings) as store:
        store.setup_schema()
        serve_until_stopped(settings, store, port)


def serve_until_stopped(
    settings: Settings, store: GraphStore, port: int | None = None, workers: int = 1
) -> None:
    """Serve the promoted model from ``store`` on ``grpc_host:port`` until SIGTERM or SIGINT,
    then stop gracefully; this process is one of ``workers`` sharing the port and the cores
    (each follows the promoted run: :class:`~mmgraph.service.serving.registry.Registry`)."""
    shared_port = workers > 1
    plan = forward_plan(workers, resolve_device(settings.device))
    set_torch_threads(plan.threads)
    log.info("forward passes: %d lane(s) of %d thread(s)", plan.lanes, plan.threads)
    registry = Registry(settings.home, store, follow_promoted=shared_port)
    model = registry.use_promoted()
    if model is None:
        log.warning("no promoted model: similarity, clustering and link calls will fail")
    address = f"{settings.grpc_host}:{settings.grpc_port if port is None else port}"
    server, bound = create_server(settings, registry, address, shared_port, plan)
    stopping = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stopping.set())
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        log.warning("mmgraph serves on %s:%d", settings.grpc_host, bound)
        stopping.wait()
        log.warning("stopping: finishing calls in flight")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
