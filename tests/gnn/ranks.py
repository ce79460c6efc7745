"""Functions the launch tests run in worker processes, in a module that imports no model code: a
worker imports its function's module, so a worker running one of these imports little beyond
torch."""

from __future__ import annotations

from mmgraph.core.errors import NotFoundError


def refuse(message: str) -> None:
    """Fail as a project error would in one process."""
    raise NotFoundError(message)
