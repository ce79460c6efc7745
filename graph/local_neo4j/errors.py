"""The local Neo4j's errors: a server that cannot be built or started is unavailable."""

from __future__ import annotations

from mmgraph.core.errors import UnavailableError

TAIL_LINES = 40


class LocalNeo4jError(UnavailableError):
    """Base of the local Neo4j's errors; ``output`` holds the tail of the failing tool's output."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(f"{message}\n{output}" if output else message)
        self.output = output


class LauncherBuildError(LocalNeo4jError):
    """Maven could not build the launcher or fetch Neo4j's (or GDS's) jars."""


class Neo4jStartError(LocalNeo4jError):
    """The local Neo4j did not come up (or one already runs on the same home)."""


def tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a tool's output, for an error message."""
    return "\n".join(text.splitlines()[-lines:])
