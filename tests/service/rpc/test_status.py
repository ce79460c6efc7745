"""The one mapping of error kinds to status codes and exit codes; deadlines."""

from __future__ import annotations

import logging

import grpc
import pytest

from mmgraph.core.errors import (
    DeadlineExceededError,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    kind_of,
)
from mmgraph.graph.store import DatabaseUnavailableError
from mmgraph.service.rpc.status import status_for
from mmgraph.service.serving.deadline import Deadline
from mmgraph.service.serving.options import check_k


class UnknownThingError(NotFoundError):
    pass


def test_kinds_map_to_codes_and_exit_codes() -> None:
    cases = [
        (UnknownThingError("no x"), grpc.StatusCode.NOT_FOUND, 4),
        (InvalidArgumentError("bad k"), grpc.StatusCode.INVALID_ARGUMENT, 2),
        (FailedPreconditionError("no model"), grpc.StatusCode.FAILED_PRECONDITION, 5),
        (DatabaseUnavailableError("down"), grpc.StatusCode.UNAVAILABLE, 75),
        (DeadlineExceededError("late"), grpc.StatusCode.DEADLINE_EXCEEDED, 10),
    ]
    for error, code, exit_code in cases:
        assert status_for(error).code == code
        assert kind_of(error).exit_code == exit_code
    assert status_for(UnknownThingError("no x")).message == "no x"


def test_a_bug_is_internal_logged_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        status = status_for(KeyError("secret detail"))
    assert (status.code, status.message) == (grpc.StatusCode.INTERNAL, "internal error")
    assert "secret detail" not in status.message and "KeyError" in caplog.text
    assert kind_of(KeyError("x")).exit_code == 70


def test_deadline_and_k_checks() -> None:
    Deadline(lambda: None).check("anything")
    Deadline(lambda: 1.0).check("anything")
    with pytest.raises(DeadlineExceededError, match="before the search"):
        Deadline(lambda: 0.0).check("the search")
    assert check_k(0) == 10 and check_k(1000) == 1000
    with pytest.raises(InvalidArgumentError, match="k must be between 1 and 1000"):
        check_k(1001)
