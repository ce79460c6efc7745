"""The project's error classes: one base, and one subclass per kind of failure a caller can act on.

Every error mmgraph raises on purpose derives from one of the kinds below; the service maps each
kind to one gRPC status code and the CLI to one exit code, in one place each
(:mod:`mmgraph.service.errors`). Anything else that escapes is a bug: ``INTERNAL``, logged with
its traceback, never dressed as a user error.
"""

from __future__ import annotations


class MmgraphError(Exception):
    """Base of every error mmgraph raises on purpose."""


class InvalidArgumentError(MmgraphError, ValueError):
    """The request or input itself is wrong (a bad k, type, modality, record or file)."""


class NotFoundError(MmgraphError, LookupError):
    """Something named by the caller (a uid, a model run, a dataset) does not exist."""


class FailedPreconditionError(MmgraphError):
    """The system is not in a state to do this yet (no model trained, inconsistent graph)."""


class UnavailableError(MmgraphError):
    """A dependency is down or unreachable (the database); retrying later may succeed."""


class UnauthenticatedError(MmgraphError):
    """The caller did not prove who it is (missing or wrong token)."""


class ResourceExhaustedError(MmgraphError):
    """The request asks for more than a configured limit allows (a decompression bomb, a
    message too large)."""


class ConflictError(MmgraphError):
    """Another process holds what this one needs (a lock on a drop folder)."""
