"""A call's deadline, checked before every expensive step of an answer."""

from __future__ import annotations

from collections.abc import Callable

from mmgraph.core.errors import DeadlineExceededError


class Deadline:
    """Raises :class:`DeadlineExceededError` once no time is left.

    Args:
        remaining: returns the seconds left, or ``None`` when there is no deadline (such as
            ``grpc.ServicerContext.time_remaining``).
    """

    def __init__(self, remaining: Callable[[], float | None] = lambda: None) -> None:
        self.remaining = remaining

    def check(self, step: str) -> None:
        left = self.remaining()
        if left is not None and left <= 0:
            raise DeadlineExceededError(f"the call's deadline passed before {step}")


NO_DEADLINE = Deadline()
