"""Ingest runs as every door starts them: batch files, a dataset by name, a stream of records
(the gRPC ``Ingest``), or a drop folder (scheduled runs), each with its options and encoders
built from the settings the same way. Files and datasets go through the offline importer when
asked (``bulk``) or, unasked, when the local database is known empty; streams and drop folders
are always transactional (they add to a graph that serves)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from mmgraph.core.config import Settings
from mmgraph.core.errors import MmgraphError, UnavailableError
from mmgraph.graph.bulk_load import bulk_load_possible
from mmgraph.graph.connection import open_store
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.bulk import bulk_ingest, bulk_ingest_files
from mmgraph.ingest.datasets import get_dataset
from mmgraph.ingest.encoding import Encoders
from mmgraph.ingest.options import IngestOptions, IngestResult
from mmgraph.ingest.pipeline import ingest, ingest_files
from mmgraph.ingest.progress import ProgressListener
from mmgraph.ingest.quarantine import Refusal
from mmgraph.ingest.readers import RawRecord
from mmgraph.ingest.scheduled import FolderLockedError, FolderResult, folder_lock, ingest_locked


def ingest_paths(
    settings: Settings,
    paths: Sequence[Path],
    encoders: Encoders | None = None,
    bulk: bool | None = None,
    progress: ProgressListener | None = None,
    **options: Any,
) -> IngestResult:
    """Ingest batch files as one run on the configured Neo4j; ``options`` are
    :class:`~mmgraph.ingest.options.IngestOptions` fields (``batch_size``, ``encode_text``,
    ``encode_images``). ``bulk``: load through the offline importer (refused unless the local
    database is empty), or not; ``None`` chooses it when the local database is known empty
    (:func:`~mmgraph.graph.bulk_load.bulk_load_possible`)."""
    ingest_options = IngestOptions.from_settings(settings, **options)
    encoders = encoders or Encoders.from_settings(settings)
    if _bulk(settings, bulk):
        return bulk_ingest_files(settings, paths, ingest_options, encoders, progress)
    with open_store(settings) as store:
        return ingest_files(store, paths, ingest_options, encoders, progress=progress)


def ingest_dataset(
    settings: Settings,
    name: str,
    encoders: Encoders | None = None,
    bulk: bool | None = None,
    progress: ProgressListener | None = None,
    **options: Any,
) -> IngestResult:
    """Fetch a dataset by name (once, into the cache) and ingest it as one run (``bulk`` as
    for :func:`ingest_paths`)."""
    spec = get_dataset(name)
    root = spec.fetch(settings.cache)
    source = f"dataset:{name}"
    ingest_options = IngestOptions.from_settings(settings, **options)
    encoders = encoders or Encoders.from_settings(settings)
    if _bulk(settings, bulk):
        return bulk_ingest(settings, spec.records(root), source, ingest_options, encoders, progress)
    with open_store(settings) as store:
        return ingest(
            store, spec.records(root), source, ingest_options, encoders, progress=progress
        )


def _bulk(settings: Settings, bulk: bool | None) -> bool:
    return bulk_load_possible(settings) if bulk is None else bulk


def ingest_stream(
    settings: Settings,
    store: GraphStore,
    records: Iterable[RawRecord],
    source: str,
    encoders: Encoders,
    on_refusal: Callable[[Refusal], None] | None = None,
) -> IngestResult:
    """Ingest a remote caller's stream of records as one run: images as bytes only (a path is
    refused unopened), each refusal handed to ``on_refusal`` as it is made. An item whose
    picture is refused is refused whole: the stream's reply lists refusals and has no place
    for the warning of an item written without its picture."""
    options = IngestOptions.from_settings(
        settings, allow_image_paths=False, keep_items_without_image=False
    )
    return ingest(store, records, source, options, encoders, on_refusal=on_refusal)


def ingest_drop_folder(
    settings: Settings, folder: Path, encoders: Encoders | None = None, **options: Any
) -> FolderResult:
    """One scheduled run over a drop folder on the configured Neo4j (see
    :mod:`mmgraph.ingest.scheduled`). The lock is taken before the database is opened, so a run
    that finds the folder locked starts nothing. What stops the run early (the lock held
    elsewhere, the database unavailable, a missing folder, bad settings) comes back in the
    result with its kind's exit code, for the scheduler; a bug is raised."""
    folder = folder.resolve()
    result = FolderResult(folder)
    try:
        with folder_lock(folder), open_store(settings) as store:
            result = ingest_locked(
                store,
                folder,
                IngestOptions.from_settings(settings, **options),
                encoders or Encoders.from_settings(settings),
            )
    except FolderLockedError as e:
        result.stop("locked", e)
    except UnavailableError as e:
        result.stop("unavailable", e)
    except MmgraphError as e:
        result.stop("error", e)
    return result
