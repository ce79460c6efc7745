"""Node and relationship rows as the CSV files of Neo4j's offline importer, holding the same
values the transactional upsert (:meth:`GraphStore.write_batch`) would store.

Rows are grouped by their property columns (name and type): each group is one data file with a
header file of its own, ``uid:ID(Entity),:LABEL,type,source,<props...>`` for nodes and
``:START_ID(Entity),:END_ID(Entity),:TYPE,weight:double,source,<props...>`` for relationships.
Integers are ``long``, floats ``double`` (written as their shortest round-trip text), text is
always quoted (``""`` stays an empty string), lists are arrays split on U+001F, and vectors are
``byte[]``: their float32 bytes as signed byte values, formatted for a whole group at once.
Rows whose text spans lines go to files of their own, the only ones the importer reads in its
slower multi-line mode.

What CSV cannot carry exactly (an empty list, a list of text holding an empty string or the array
delimiter) is left out of the file and handed back, to be written by the transactional upsert
once the import is done.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from mmgraph.graph.schema import ENTITY_LABEL
from mmgraph.graph.store import NodeRow, RelRow

ARRAY_DELIMITER = "\x1f"
ARRAY_DELIMITER_OPTION = "U+001F"
_SCALAR_TYPES = ((bool, "boolean"), (int, "long"), (float, "double"), (str, "string"))
_NODE_HEADER = ("uid:ID(Entity)", ":LABEL", "type", "source")
_RELATIONSHIP_HEADER = (":START_ID(Entity)", ":END_ID(Entity)", ":TYPE", "weight:double", "source")
# Each signed byte as text with its leading separator: "," before the first value of a vector,
# ARRAY_DELIMITER before the others, and a row end; numpy's fixed-width bytes pad with NULs.
_BYTE_VALUES = [b - 256 if b > 127 else b for b in range(256)]
_BYTE_TEXT = np.array(
    [f",{v}".encode() for v in _BYTE_VALUES]
    + [f"{ARRAY_DELIMITER}{v}".encode() for v in _BYTE_VALUES]
    + [b"\n"],
    dtype="S5",
)


@dataclass(frozen=True)
class ImportGroup:
    """One data file of the import and its header file; ``multiline`` when its text spans
    lines."""

    header: Path
    data: Path
    multiline: bool


@dataclass(frozen=True)
class NodeLines:
    """Node rows of one column group as lines of its file (without their row ends), with each
    line's index among the rows they were made from."""

    columns: tuple[str, ...]
    multiline: bool
    indices: list[int]
    lines: list[bytes]

    def subset(self, picked: Sequence[int]) -> NodeLines:
        """The group's lines at the positions ``picked`` (in this group)."""
        return NodeLines(
            self.columns,
            self.multiline,
            [self.indices[k] for k in picked],
            [self.lines[k] for k in picked],
        )


@dataclass
class ImportFiles:
    """The importer's CSV files being written into ``folder`` (see the module's docstring).

    :meth:`add_nodes` and :meth:`add_relationships` write rows and return what the files
    cannot carry; :meth:`close` ends the files and gives the groups to import.
    """

    folder: Path
    run_id: str
    nodes: int = 0
    relationships: int = 0
    _groups: dict[tuple[str, tuple[str, ...], bool], tuple[ImportGroup, IO[bytes]]] = field(
        default_factory=dict
    )

    def add_nodes(self, rows: Sequence[NodeRow]) -> list[NodeRow]:
        """Write node rows (each uid once in the whole import); return, per row with values the
        files cannot carry, a row of just those values."""
        groups, later = self.node_lines(rows)
        for group in groups:
            self.add_node_lines(group)
        return later

    def node_lines(self, rows: Sequence[NodeRow]) -> tuple[list[NodeLines], list[NodeRow]]:
        """Node rows as the lines of their files, by column group, not written yet (see
        :meth:`add_node_lines`); and, per row with values the files cannot carry, a row of just
        those values."""
        later: list[NodeRow] = []
        by_columns: dict[tuple[tuple[str, ...], bool], list[tuple[int, NodeRow, dict]]] = {}
        for i, row in enumerate(rows):
            props, rest = _split(row.properties())
            if rest:
                later.append(NodeRow(row.uid, row.type, rest))
            key = (_columns(props), _multiline(props))
            by_columns.setdefault(key, []).append((i, row, props))
        groups = []
        for (columns, multiline), group in by_columns.items():
            prefixes = [
                ",".join(
                    (
                        _text(row.uid),
                        f"{ENTITY_LABEL}{ARRAY_DELIMITER}{row.type}",
                        _text(row.type),
                        _text(self.run_id),
                    )
                )
                for _, row, _ in group
            ]
            lines = _lines(columns, prefixes, [props for _, _, props in group])
            groups.append(NodeLines(columns, multiline, [i for i, _, _ in group], lines))
        return groups, later

    def add_node_lines(
        self, group: NodeLines, extra: Mapping[str, list[Any]] | None = None
    ) -> None:
        """Write the lines of a node group (from :meth:`node_lines`), each given the values of
        ``extra``'s columns (name: one value a line), after its own."""
        columns, lines = group.columns, group.lines
        if extra:
            names = tuple(f"{name}:{_type(values[0])}" for name, values in extra.items())
            cells = [
                _cells(name, values) for name, values in zip(names, extra.values(), strict=True)
            ]
            lines = [b"".join(parts) for parts in zip(lines, *cells, strict=True)]
            columns = (*columns, *names)
        out = self._file("nodes", _NODE_HEADER, columns, group.multiline)
        out.write(b"".join(line + b"\n" for line in lines))
        self.nodes += len(lines)

    def add_relationships(self, rows: Sequence[RelRow]) -> list[RelRow]:
        """Write relationship rows (each (src, type, dst) once in the whole import); return, per
        row with properties the files cannot carry, a row of just those (and its weight)."""
        later: list[RelRow] = []
        by_columns: dict[tuple[tuple[str, ...], bool], list[tuple[RelRow, dict[str, Any]]]] = {}
        for row in rows:
            props, rest = _split(row.props)
            if rest:
                later.append(RelRow(row.src, row.dst, row.type, row.weight, rest))
            key = (_columns(props), _multiline(props))
            by_columns.setdefault(key, []).append((row, props))
        for (columns, multiline), group in by_columns.items():
            prefixes = [
                ",".join(
                    (_text(row.src), _text(row.dst), row.type, repr(row.weight), _text(self.run_id))
                )
                for row, _ in group
            ]
            self._write(
                "relationships",
                _RELATIONSHIP_HEADER,
                columns,
                multiline,
                prefixes,
                [p for _, p in group],
            )
        self.relationships += len(rows)
        return later

    def add_plain_relationships(self, rows: Sequence[tuple[str, str, str, float]]) -> None:
        """Write relationship rows without properties, given as (src, dst, type, weight) (each
        (src, type, dst) once in the whole import): one string format a row, no row objects."""
        out = self._file("relationships", _RELATIONSHIP_HEADER, (), False)
        source = _text(self.run_id)
        text = "".join(
            f"{_text(src)},{_text(dst)},{kind},{weight!r},{source}\n"
            for src, dst, kind, weight in rows
        )
        out.write(text.encode())
        self.relationships += len(rows)

    def close(self) -> tuple[list[ImportGroup], list[ImportGroup]]:
        """Close every file; the node groups and the relationship groups to import."""
        nodes, relationships = [], []
        for (kind, _, _), (group, out) in self._groups.items():
            out.close()
            (nodes if kind == "nodes" else relationships).append(group)
        self._groups.clear()
        return nodes, relationships

    def _write(
        self,
        kind: str,
        fixed: tuple[str, ...],
        columns: tuple[str, ...],
        multiline: bool,
        prefixes: list[str],
        props: list[dict[str, Any]],
    ) -> None:
        out = self._file(kind, fixed, columns, multiline)
        out.write(b"".join(line + b"\n" for line in _lines(columns, prefixes, props)))

    def _file(
        self, kind: str, fixed: tuple[str, ...], columns: tuple[str, ...], multiline: bool
    ) -> IO[bytes]:
        key = (kind, columns, multiline)
        if key not in self._groups:
            number = len(self._groups)
            header = self.folder / f"{kind}-{number}.header.csv"
            header.write_text(",".join((*fixed, *columns)) + "\n", encoding="utf-8")
            data = self.folder / f"{kind}-{number}.csv"
            self._groups[key] = (ImportGroup(header, data, multiline), data.open("wb"))
        return self._groups[key][1]


def _lines(
    columns: tuple[str, ...], prefixes: list[str], props: list[dict[str, Any]]
) -> list[bytes]:
    """Rows as lines (without their row end): each its prefix, then its values of ``columns``."""
    cells: list[list[bytes]] = [[prefix.encode()] for prefix in prefixes]
    for column in columns:
        name = column.split(":", 1)[0]
        for row, text in zip(cells, _cells(column, [p[name] for p in props]), strict=True):
            row.append(text)
    return [b"".join(row) for row in cells]


def _cells(column: str, values: list[Any]) -> list[bytes]:
    """The cells (each with its leading comma) of ``values`` in a ``name:type`` column."""
    kind = column.split(":", 1)[1]
    if kind == "byte[]":
        return _bytes_column(values)
    return [f",{_cell(value, kind)}".encode() for value in values]


def _split(props: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``props`` as the values CSV carries and those it does not."""
    kept, rest = {}, {}
    for name, value in props.items():
        if value is None:
            continue
        (rest if _needs_upsert(value) else kept)[name] = value
    return kept, rest


def _needs_upsert(value: Any) -> bool:
    if isinstance(value, bytes):
        return not value  # an empty array reads as no value
    if not isinstance(value, list):
        return False
    if not value:
        return True
    return isinstance(value[0], str) and any(
        not element or ARRAY_DELIMITER in element for element in value
    )


def _columns(props: dict[str, Any]) -> tuple[str, ...]:
    """The header columns of ``props``: ``name:type``, in name order."""
    return tuple(f"{name}:{_type(value)}" for name, value in sorted(props.items()))


def _type(value: Any) -> str:
    if isinstance(value, bytes):
        return "byte[]"
    if isinstance(value, list):
        return f"{_type(value[0])}[]"
    return next(kind for cls, kind in _SCALAR_TYPES if isinstance(value, cls))


def _multiline(props: dict[str, Any]) -> bool:
    return any(
        "\n" in text or "\r" in text
        for value in props.values()
        for text in (value if isinstance(value, list) else [value])
        if isinstance(text, str)
    )


def _text(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _cell(value: Any, kind: str) -> str:
    """One CSV cell (without its leading comma)."""
    if kind == "string":
        return _text(value)
    if kind == "string[]":
        return _text(ARRAY_DELIMITER.join(value))
    if kind.endswith("[]"):
        return ARRAY_DELIMITER.join(_scalar(v) for v in value)
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _bytes_column(values: list[bytes]) -> list[bytes]:
    """The cells (with their leading comma) of a ``byte[]`` column, vectors of one length
    formatted together."""
    cells: list[bytes] = [b""] * len(values)
    by_length: dict[int, list[int]] = {}
    for i, value in enumerate(values):
        by_length.setdefault(len(value), []).append(i)
    for rows in by_length.values():
        matrix = np.frombuffer(b"".join(values[i] for i in rows), np.uint8)
        for i, text in zip(rows, _format_bytes(matrix.reshape(len(rows), -1)), strict=True):
            cells[i] = text
    return cells


def _format_bytes(matrix: np.ndarray) -> Iterator[bytes]:
    """Each row of a ``(rows, n)`` uint8 matrix as ``,b0<US>b1<US>...`` (signed values)."""
    index = np.empty((matrix.shape[0], matrix.shape[1] + 1), np.int16)
    index[:, :-1] = matrix
    index[:, 1:-1] += 256
    index[:, -1] = 512
    text = np.take(_BYTE_TEXT, index).tobytes().translate(None, b"\0")
    return iter(text.split(b"\n")[:-1])
