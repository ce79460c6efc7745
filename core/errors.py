"""The project's error kinds, and the one table that maps each kind to a gRPC status and a CLI
exit code.

Every error mmgraph raises on purpose derives from one of the kinds below, raised where the
problem is found. The gRPC door (one interceptor) and the people's door (one CLI wrapper) both
read :data:`ERROR_KINDS`, so a kind gets the same status from every method and the same exit code
from every command. Anything else that escapes is a bug: :data:`INTERNAL` (status ``INTERNAL``,
exit code 70, ``EX_SOFTWARE``), logged with its traceback, never dressed as a user error.
"""

from __future__ import annotations

from dataclasses import dataclass


class MmgraphError(Exception):
    """Base of every error mmgraph raises on purpose; raise one of its kinds, not this (or set
    ``kind`` on an instance whose kind is only known at run time, such as a server's answer)."""

    kind: ErrorKind | None = None


class InvalidArgumentError(MmgraphError, ValueError):
    """The request or input itself is wrong (a bad k, type, modality, record or file)."""


class NotFoundError(MmgraphError, LookupError):
    """Something named by the caller (a uid, a model run, a dataset, a file) does not exist."""


class FailedPreconditionError(MmgraphError):
    """The system is not in a state to do this yet (no model trained, inconsistent graph)."""


class UnavailableError(MmgraphError):
    """A dependency is down or unreachable (the database, a server); retrying later may
    succeed."""


class UnauthenticatedError(MmgraphError):
    """The caller did not prove who it is (a missing or wrong token or password)."""


class ResourceExhaustedError(MmgraphError):
    """The request asks for more than a configured limit allows (a decompression bomb, a
    message too large)."""


class ConflictError(MmgraphError):
    """Another process holds what this one needs (a lock on a drop folder); retry later."""


class DeadlineExceededError(MmgraphError):
    """The call's deadline passed before its work was done."""


class RunStoppedError(MmgraphError):
    """A long run (an ingest) stopped part-way because of an error of one of the kinds: it is
    reported as that error's kind (its ``__cause__``), and carries what the run had done."""


@dataclass(frozen=True)
class ErrorKind:
    """One row of the table: an error class, its gRPC status code name, its CLI exit code."""

    error: type[MmgraphError]
    status: str
    exit_code: int


# Exit codes besides the kinds': 1 a run that failed as a whole (every record quarantined),
# 2 also typer's code for a bad command line, 3 an ingest run that quarantined some records.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_PARTIAL = 3
# EX_TEMPFAIL: nothing was done, try again later (a lost database, a held lock).
EXIT_RETRY = 75
# Most specific first: the first class an error is an instance of decides its kind. Unavailable
# and conflict share EX_TEMPFAIL (75): both mean "nothing was done, try again later", the code
# cron and systemd timers (docs/scheduling.md) treat as a retry.
ERROR_KINDS: tuple[ErrorKind, ...] = (
    ErrorKind(InvalidArgumentError, "INVALID_ARGUMENT", 2),
    ErrorKind(NotFoundError, "NOT_FOUND", 4),
    ErrorKind(FailedPreconditionError, "FAILED_PRECONDITION", 5),
    ErrorKind(UnauthenticatedError, "UNAUTHENTICATED", 7),
    ErrorKind(ResourceExhaustedError, "RESOURCE_EXHAUSTED", 8),
    ErrorKind(DeadlineExceededError, "DEADLINE_EXCEEDED", 10),
    ErrorKind(UnavailableError, "UNAVAILABLE", EXIT_RETRY),
    ErrorKind(ConflictError, "ABORTED", EXIT_RETRY),
)
INTERNAL = ErrorKind(MmgraphError, "INTERNAL", 70)
INTERNAL_MESSAGE = "internal error"


def kind_of(error: BaseException) -> ErrorKind:
    """The kind of ``error``: its row of :data:`ERROR_KINDS` (a :class:`RunStoppedError` takes
    its cause's, an error with its own ``kind`` that), or :data:`INTERNAL` for anything else, a
    bug."""
    if isinstance(error, RunStoppedError) and error.__cause__ is not None:
        return kind_of(error.__cause__)
    if isinstance(error, MmgraphError) and error.kind is not None:
        return error.kind
    for kind in ERROR_KINDS:
        if isinstance(error, kind.error):
            return kind
    return INTERNAL


def kind_for_status(status: str) -> ErrorKind:
    """The kind whose gRPC status code name is ``status`` (what a server sent back);
    :data:`INTERNAL` for a status no kind has."""
    for kind in ERROR_KINDS:
        if kind.status == status:
            return kind
    return INTERNAL
