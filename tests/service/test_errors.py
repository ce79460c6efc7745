"""The one mapping of error kinds to status codes and exit codes; deadlines."""

from __future__ import annotations

import logging

import grpc
import pytest
from neo4j.exceptions import ServiceUnavailable

from mmgraph.core.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from mmgraph.service.errors import DeadlineExceededError, exit_code_for, status_for
from mmgraph.service.queries import Deadline, check_k


class UnknownThingError(NotFoundError):
    pass


def test_kinds_map_to_codes_and_exit_codes() -> None:
    cases = [
        (UnknownThingError("no x"), grpc.StatusCode.NOT_FOUND, 4),
        (InvalidArgumentError("bad k"), grpc.StatusCode.INVALID_ARGUMENT, 2),
        (FailedPreconditionError("no model"), grpc.StatusCode.FAILED_PRECONDITION, 5),
        (ServiceUnavailable("down"), grpc.StatusCode.UNAVAILABLE, 6),
        (DeadlineExceededError("late"), grpc.StatusCode.DEADLINE_EXCEEDED, 10),
    ]
    for error, code, exit_code in cases:
        assert status_for(error).code == code
        assert exit_code_for(error) == exit_code == exit_code_for(code)
    assert status_for(UnknownThingError("no x")).message == "no x"


def test_a_bug_is_internal_logged_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        status = status_for(KeyError("secret detail"))
    assert (status.code, status.message) == (grpc.StatusCode.INTERNAL, "internal error")
    assert "secret detail" not in status.message and "KeyError" in caplog.text
    assert exit_code_for(KeyError("x")) == 1


def test_deadline_and_k_checks() -> None:
    Deadline(lambda: None).check("anything")
    Deadline(lambda: 1.0).check("anything")
    with pytest.raises(DeadlineExceededError, match="before the search"):
        Deadline(lambda: 0.0).check("the search")
    assert check_k(0) == 10 and check_k(1000) == 1000
    with pytest.raises(InvalidArgumentError, match="k must be between 1 and 1000"):
        check_k(1001)
