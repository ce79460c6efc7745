"""Where a server listens: the error when it cannot, and a port held for several processes to
share. Imports nothing heavy, so that the parent of several server processes stays small."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from mmgraph.core.errors import UnavailableError


class ListenError(UnavailableError):
    """The server cannot listen on its address (the port is taken, say)."""


@contextmanager
def reserved_port(host: str, port: int) -> Iterator[int]:
    """Hold ``host:port`` (0: a free port) with ``SO_REUSEPORT`` while processes share it; yield
    the port. The socket never listens, so it takes no connection."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM
        )[0]
    except OSError as e:
        raise ListenError(f"cannot listen on {host}:{port}: {e}") from e
    with socket.socket(family, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind(address)
        except OSError as e:
            raise ListenError(f"cannot listen on {host}:{port}: {e}") from e
        yield sock.getsockname()[1]
