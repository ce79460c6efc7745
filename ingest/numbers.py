"""The ``num`` modality of a run: each node type's numbers standardised by the fit kept with the
graph, or, on the first run that brings numbers of a type, by one fitted on all of them."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mmgraph.graph.encoder_state import get_state, put_state_once
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.encoders import NumericEncoder
from mmgraph.ingest.readers import batched
from mmgraph.ingest.records import Item
from mmgraph.ingest.scratch import Scratch
from mmgraph.ingest.timings import add_time

log = logging.getLogger(__name__)


class RunningFit:
    """Column means and population standard deviations of rows of numbers seen one at a time
    (Welford's method): the state :meth:`NumericEncoder.fit` would give on all rows at once."""

    def __init__(self) -> None:
        self.columns: dict[str, list[float]] = {}  # name -> [count, mean, sum of squares]

    def add(self, numbers: Mapping[str, float]) -> None:
        for name, value in numbers.items():
            stats = self.columns.setdefault(name, [0, 0.0, 0.0])
            stats[0] += 1
            delta = value - stats[1]
            stats[1] += delta / stats[0]
            stats[2] += delta * (value - stats[1])

    def state(self) -> dict[str, Any]:
        names = sorted(self.columns)
        std = [math.sqrt(self.columns[n][2] / self.columns[n][0]) for n in names]
        return {
            "columns": names,
            "mean": [self.columns[n][1] for n in names],
            "std": [s if s > 0 else 1.0 for s in std],
        }


class FitStore(Protocol):
    """Where the first fit of each node type's numbers is kept (the graph's ``:EncoderState``)."""

    def kept(self, key: str) -> str | None:
        """The value kept under ``key``, or ``None``."""

    def keep(self, key: str, value: str) -> str:
        """Keep ``value`` under ``key`` unless a value is kept there already; the value kept."""


class GraphFits:
    """The fits kept in the graph itself (:mod:`mmgraph.graph.encoder_state`)."""

    def __init__(self, store: GraphStore) -> None:
        self.store = store

    def kept(self, key: str) -> str | None:
        return get_state(self.store, key)

    def keep(self, key: str, value: str) -> str:
        return put_state_once(self.store, key, value)


@dataclass(frozen=True)
class HeldVectors:
    """``num`` vectors of items written before their type's first fit was known."""

    type: str
    tag: str
    rows: list[tuple[str, np.ndarray]]


class NumberEncoders:
    """A run's ``num`` encoders, one per node type: the standardisation kept with the graph, or,
    on the first run that brings numbers of a type, one fitted on all of this run's numbers of it.

    Keeping the first fit makes every later run's ``num`` vectors share its tag, so one type's
    numbers are never split between encoders; names it was not fitted on are ignored (logged).
    Items of a type without a kept fit are written without ``num_vec`` and get it at the end of
    the run (:meth:`held_vectors`), once the fit (on all of them) is kept; their numbers wait in
    the scratch file, unless ``hold`` is false: a sink that keeps them beside the items it holds
    encodes them with :func:`num_vectors` and :meth:`first_fits` then.
    """

    def __init__(self, fits: FitStore, scratch: Scratch, hold: bool = True) -> None:
        self.fits = fits
        self.scratch = scratch
        self.hold = hold
        self.kept: dict[str, NumericEncoder | None] = {}
        self.running: dict[str, RunningFit] = {}
        self.unknown: dict[str, set[str]] = {}

    def encoder(self, type_name: str) -> NumericEncoder | None:
        """The type's kept standardisation, or ``None`` when this run is the first to fit one."""
        if type_name not in self.kept:
            stored = self.fits.kept(f"num:{type_name}")
            self.kept[type_name] = (
                None if stored is None else NumericEncoder.from_dict(json.loads(stored))
            )
        return self.kept[type_name]

    def rows(self, items: Sequence[Item]) -> dict[str, dict[int, dict[str, float]]]:
        """The rows to encode now, by type; numbers of types without a kept fit are held."""
        by_type: dict[str, dict[int, dict[str, float]]] = {}
        for i, item in enumerate(items):
            if not item.numbers:
                continue
            encoder = self.encoder(item.type)
            if encoder is None:
                self.running.setdefault(item.type, RunningFit()).add(item.numbers)
                if self.hold:
                    self.scratch.hold_numbers(item)
                continue
            known = set(encoder.columns)
            self.unknown.setdefault(item.type, set()).update(set(item.numbers) - known)
            if known.intersection(item.numbers):
                by_type.setdefault(item.type, {})[i] = item.numbers
        return by_type

    def held_vectors(self, batch_size: int, timings: dict[str, float]) -> Iterator[HeldVectors]:
        """Keep each first fit, then the ``num`` vectors of the items that waited for it, in
        batches of at most ``batch_size``."""
        for type_name, fit in self.running.items():
            kept = self.fits.keep(f"num:{type_name}", json.dumps(fit.state()))
            encoder = NumericEncoder.from_dict(json.loads(kept))
            self.kept[type_name] = encoder
            known = set(encoder.columns)
            rows = (
                (uid, numbers)
                for uid, numbers in self.scratch.numbers(type_name)
                if known.intersection(numbers)
            )
            for batch in batched(rows, batch_size):
                t0 = time.perf_counter()
                vectors = encoder.encode([numbers for _, numbers in batch])
                add_time(timings, "encode_num", t0)
                uids = [uid for uid, _ in batch]
                yield HeldVectors(type_name, encoder.tag, list(zip(uids, vectors, strict=True)))
        for type_name, names in self.unknown.items():
            encoder = self.kept[type_name]
            if names and encoder is not None:
                log.warning(
                    "%s numbers %s are not in its stored standardisation %s: ignored",
                    type_name,
                    sorted(names),
                    encoder.tag,
                )

    def first_fits(self) -> dict[str, NumericEncoder]:
        """The fits this run was the first to keep, by type (once :meth:`held_vectors` is done)."""
        fits = {type_name: self.kept[type_name] for type_name in self.running}
        return {type_name: fit for type_name, fit in fits.items() if fit is not None}


def num_vectors(
    encoder: NumericEncoder, rows: Sequence[Mapping[str, float]]
) -> list[np.ndarray | None]:
    """The ``num`` vectors of rows of numbers; ``None`` for a row with none of the fit's names
    (it gets no vector, as :meth:`NumberEncoders.rows` gives none)."""
    known = set(encoder.columns)
    encoded = [i for i, numbers in enumerate(rows) if known.intersection(numbers)]
    vectors: list[np.ndarray | None] = [None] * len(rows)
    for i, vector in zip(encoded, encoder.encode([rows[i] for i in encoded]), strict=True):
        vectors[i] = vector
    return vectors
