"""mmgraph's error kinds as gRPC status codes, both ways: what a server sends for an error (the
table is :data:`mmgraph.core.errors.ERROR_KINDS`), and what a client raises for a status."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc

from mmgraph.core.errors import (
    INTERNAL,
    INTERNAL_MESSAGE,
    ErrorKind,
    MmgraphError,
    kind_for_status,
    kind_of,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Status:
    """A status code and the message a caller sees."""

    code: grpc.StatusCode
    message: str


def status_for(error: BaseException) -> Status:
    """The status a caller gets for ``error``: its kind's code and its message; a bug is
    ``INTERNAL`` with a fixed message, logged here with its traceback."""
    kind = kind_of(error)
    if kind is INTERNAL:
        log.error("internal error", exc_info=error)
        return Status(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    return Status(grpc.StatusCode[kind.status], str(error) or type(error).__name__)


class RemoteError(MmgraphError):
    """A call a server answered with an error status: an error of that status's kind (an
    ``INTERNAL`` answer is the server's bug, not the caller's)."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def remote_error(error: grpc.RpcError) -> RemoteError:
    """A failed call as a :class:`RemoteError` of its status's kind, with the server's
    message."""
    code: grpc.StatusCode = error.code()
    return RemoteError(kind_for_status(code.name), f"{code.name}: {error.details()}")
