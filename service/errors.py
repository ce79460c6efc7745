"""The one place mapping mmgraph's error kinds to gRPC status codes and to CLI exit codes.

Every error raised on purpose derives from a kind of :mod:`mmgraph.core.errors`; the driver's
``ServiceUnavailable`` and ``SessionExpired`` mean the database is down. Anything else is a bug:
``INTERNAL`` with the message "internal error", its traceback logged on the server, never shown to
the caller as if the request were wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import typer
from neo4j.exceptions import ServiceUnavailable, SessionExpired
from rich.console import Console

from mmgraph.core.errors import (
    ConflictError,
    FailedPreconditionError,
    InvalidArgumentError,
    MmgraphError,
    NotFoundError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error"


class DeadlineExceededError(MmgraphError):
    """The call's deadline passed before its work was done."""


# Most specific first: the first kind an error is an instance of decides its code.
STATUS_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (UnavailableError, grpc.StatusCode.UNAVAILABLE),
    (ServiceUnavailable, grpc.StatusCode.UNAVAILABLE),
    (SessionExpired, grpc.StatusCode.UNAVAILABLE),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ConflictError, grpc.StatusCode.ABORTED),
    (DeadlineExceededError, grpc.StatusCode.DEADLINE_EXCEEDED),
)

# Exit codes of the CLI, by status code: 0 ok; 1 failed (and any bug); 3 is the ingest command's
# "partial"; 2 is also what typer uses for a bad command line.
EXIT_CODES: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 0,
    grpc.StatusCode.INTERNAL: 1,
    grpc.StatusCode.UNKNOWN: 1,
    grpc.StatusCode.INVALID_ARGUMENT: 2,
    grpc.StatusCode.NOT_FOUND: 4,
    grpc.StatusCode.FAILED_PRECONDITION: 5,
    grpc.StatusCode.UNAVAILABLE: 6,
    grpc.StatusCode.UNAUTHENTICATED: 7,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 8,
    grpc.StatusCode.ABORTED: 9,
    grpc.StatusCode.DEADLINE_EXCEEDED: 10,
}


@dataclass(frozen=True)
class Status:
    """A status code and the message a caller sees."""

    code: grpc.StatusCode
    message: str


def status_for(error: BaseException) -> Status:
    """The status a caller gets for ``error``; bugs are logged here with their traceback."""
    for kind, code in STATUS_CODES:
        if isinstance(error, kind):
            if code == grpc.StatusCode.UNAVAILABLE and not isinstance(error, UnavailableError):
                return Status(code, f"the graph database is unavailable, retry later: {error}")
            return Status(code, str(error) or type(error).__name__)
    log.error("internal error", exc_info=error)
    return Status(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def exit_code_for(error: BaseException | grpc.StatusCode) -> int:
    """The CLI's exit code for an error raised here, or for a status code a server sent."""
    code = error if isinstance(error, grpc.StatusCode) else _code_of(error)
    return EXIT_CODES.get(code, 1)


def _code_of(error: BaseException) -> grpc.StatusCode:
    if isinstance(error, grpc.Call):  # a client-side RpcError carries the server's code
        return error.code()
    for kind, code in STATUS_CODES:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


@contextmanager
def cli_errors() -> Iterator[None]:
    """At the CLI boundary: print an error a person can act on as one line and exit with its
    code (a bug keeps its traceback)."""
    try:
        yield
    except (MmgraphError, ServiceUnavailable, SessionExpired) as e:
        Console(stderr=True).print(f"[red]error:[/red] {status_for(e).message}")
        raise typer.Exit(exit_code_for(e)) from e
