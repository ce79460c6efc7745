"""How the CLI prints: JSON for programs, tables for people that stay readable when stdout is not
a terminal (a log, a pipe), and one-line messages on stderr."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

# Width of tables written to a pipe or file when COLUMNS does not say: wide enough that no
# number or uid is cut to "0.6…", as rich's default of 80 columns did in make run's log.
PIPE_WIDTH = 240


def _width(stream: Any) -> int | None:
    if stream.isatty() or os.environ.get("COLUMNS"):
        return None
    return PIPE_WIDTH


def out() -> Console:
    """The console of results (stdout)."""
    return Console(width=_width(sys.stdout))


def errors() -> Console:
    """The console of messages, warnings and progress (stderr)."""
    return Console(stderr=True, width=_width(sys.stderr))


def emit_json(payload: Any) -> None:
    """``payload`` as indented JSON on stdout (numpy scalars as numbers, other non-JSON values
    as strings)."""
    print(json.dumps(payload, indent=2, default=_plain, ensure_ascii=False))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)


def cell(value: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` decimals, ``None`` as an em dash."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3
) -> None:
    """A table on stdout: numbers right-aligned and never cut, text folded rather than
    ellipsised when the line is too narrow."""
    table = Table(title=title)
    numeric = [
        bool(rows) and all(isinstance(row[i], int | float) or row[i] is None for row in rows)
        for i in range(len(columns))
    ]
    for column, is_number in zip(columns, numeric, strict=True):
        if is_number:
            table.add_column(column, justify="right", no_wrap=True)
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(cell(v, digits) for v in row))
    out().print(table)
