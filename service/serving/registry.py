"""The model that answers, with its in-memory indexes; switched atomically.

:meth:`Registry.use` loads a run and builds all of its indexes off to the side, then replaces one
reference. A call reads that reference once (:meth:`Registry.require`) and works on what it got to
the end, so calls in flight during a switch finish on the old model and none fails.

Nodes embedded after training (``mmgraph refresh``, :mod:`mmgraph.service.workflows.freshness`) are
appended
to the run's overlay file; :meth:`Registry.refresh` adds them to the indexes the same way (copies
of the changed indexes with the new rows appended, then one reference replaced). A server picks
them up without a restart or a call of its own: :meth:`Registry.require` compares the overlay's
version (a file header) with the served one at most every ``fresh_poll_seconds`` and refreshes
when it moved, so a refresh made by another process answers within that delay.

Several server processes on one port (``mmgraph serve --workers N``) each have a registry that
follows the promoted run (``follow_promoted``): the same poll notices a new promoted run and loads
it in the background, so a ``UseModel`` that promotes, answered by one process, switches them
all; one that does not promote is refused there (it would switch one process of N).
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmgraph.core.errors import FailedPreconditionError, InvalidArgumentError
from mmgraph.gnn.runs import (
    ModelRun,
    NoModelError,
    active_run_id,
    fresh_version,
    list_runs,
    load_run,
    set_active_run,
)
from mmgraph.graph.lookups import display_texts
from mmgraph.graph.store import GraphStore, UnknownNodeError
from mmgraph.service.serving.index import VectorIndex

log = logging.getLogger(__name__)

DISPLAY_LENGTH = 80
SPANNING_MOST = 100_000  # vectors: an exact search over as many takes ~2.4 ms (DESIGN §7)
DEFAULT_SPACE = "fused"
FRESH_POLL_SECONDS = 1.0


class UnknownSpaceError(InvalidArgumentError):
    """An embedding space the active model does not have."""


class UnknownTypeError(InvalidArgumentError):
    """A node type the active model does not embed (in the space asked for)."""


class SwitchNotPromotedError(FailedPreconditionError):
    """A switch that does not promote, asked of one of several server processes."""


@dataclass(frozen=True)
class TypeIndex:
    """One node type's vectors in one space and their index.

    ``rows[i]`` is the node row (into ``ModelRun.uids[type]``) of index row ``i``; ``positions`` is
    the inverse, -1 for nodes absent from this space (a node without an image in space "image").
    """

    index: VectorIndex
    vectors: np.ndarray
    rows: np.ndarray
    positions: np.ndarray


@dataclass(frozen=True)
class SpaceIndex:
    """Every node type's vectors of one space in one exact index, so that a search over all
    types is one search instead of one per type (each costs a call's worth of overhead: a uid
    query over the four types of the emoji graph spent more on them than on the scan).

    Type ``types[i]``'s index rows come at ``starts[i]`` onwards, in their :class:`TypeIndex`
    order; ``starts`` ends with the total.
    """

    index: VectorIndex
    types: tuple[str, ...]
    starts: tuple[int, ...]

    @classmethod
    def build(cls, entries: dict[str, TypeIndex]) -> SpaceIndex:
        """One exact index over ``entries``' vectors, in their order."""
        vectors = np.concatenate([entry.vectors for entry in entries.values()])
        starts = np.cumsum([0, *(len(entry.rows) for entry in entries.values())])
        return cls(
            VectorIndex.build(vectors, exact_below=len(vectors) + 1),
            tuple(entries),
            tuple(starts.tolist()),
        )

    def locate(self, position: int) -> tuple[int, int]:
        """The type (its number in ``types``) and the position in that type's index of index
        row ``position``."""
        i = bisect_right(self.starts, position) - 1
        return i, position - self.starts[i]


def spanning_indexes(
    indexes: dict[tuple[str, str], TypeIndex], most: int = SPANNING_MOST
) -> dict[str, SpaceIndex]:
    """A :class:`SpaceIndex` for each space of several types whose indexes are all exact and
    hold ``most`` vectors or fewer in all; the answers are the same as the types' own searches
    merged (the scores are the same sums), so larger, approximate spaces keep those."""
    spaces: dict[str, dict[str, TypeIndex]] = {}
    for (space, node_type), entry in indexes.items():
        spaces.setdefault(space, {})[node_type] = entry
    return {
        space: SpaceIndex.build(entries)
        for space, entries in spaces.items()
        if len(entries) > 1
        and all(e.index.exact for e in entries.values())
        and sum(len(e.rows) for e in entries.values()) <= most
    }


class ActiveModel:
    """A loaded run: its indexes per (space, node type) and across the types of small spaces
    (:attr:`spanning`), uid lookup and display texts."""

    def __init__(
        self,
        run: ModelRun,
        indexes: dict[tuple[str, str], TypeIndex],
        display: dict[str, list[str]],
        store: GraphStore,
    ) -> None:
        self.run = run
        self.indexes = indexes
        self.spanning = spanning_indexes(indexes)
        self.display = display
        self.store = store
        self.nodes: dict[str, tuple[str, int]] = {
            uid: (node_type, row)
            for node_type, uids in run.uids.items()
            for row, uid in enumerate(uids)
        }

    @classmethod
    def load(cls, run: ModelRun, store: GraphStore, exact_below: int = 100_000) -> ActiveModel:
        """Build every index of ``run`` and read its nodes' display texts from the graph."""
        started = time.perf_counter()
        indexes = {}
        for space in run.spaces:
            embeddings = run.embeddings(space)
            present = run.space_rows(space)
            for node_type, vectors in embeddings.items():
                n = len(run.uids[node_type])
                rows = np.asarray(present.get(node_type, np.arange(len(vectors))), dtype=np.int64)
                positions = np.full(n, -1, dtype=np.int64)
                positions[rows] = np.arange(len(rows))
                vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                index = VectorIndex.build(vectors, exact_below=exact_below)
                indexes[(space, node_type)] = TypeIndex(index, vectors, rows, positions)
        display = {}
        for node_type, uids in run.uids.items():
            texts = display_texts(store, node_type, DISPLAY_LENGTH)
            display[node_type] = [texts.get(uid, "") for uid in uids]
        log.info(
            "loaded model %s: %d indexes in %.1f s",
            run.run_id,
            len(indexes),
            time.perf_counter() - started,
        )
        return cls(run, indexes, display, store)

    def with_fresh(self, store: GraphStore, exact_below: int = 100_000) -> ActiveModel:
        """This model with the nodes appended to its run's overlay since it was loaded (a new
        object: indexes that gain rows are copies, the rest shared); ``self`` when none were."""
        run = self.run.refreshed()
        if run is self.run:
            return self
        indexes = dict(self.indexes)
        for space in run.spaces:
            present = run.space_rows(space)
            for node_type, vectors in run.embeddings(space).items():
                old = indexes.get((space, node_type))
                done = 0 if old is None else len(old.rows)
                if done == len(vectors):
                    continue
                vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                rows = np.asarray(present[node_type], dtype=np.int64)
                positions = np.full(len(run.uids[node_type]), -1, dtype=np.int64)
                positions[rows] = np.arange(len(rows))
                index = (
                    VectorIndex.build(vectors, exact_below=exact_below)
                    if old is None
                    else old.index.extended(vectors[done:])
                )
                indexes[(space, node_type)] = TypeIndex(index, vectors, rows, positions)
        display = dict(self.display)
        for node_type, uids in run.uids.items():
            shown = self.display.get(node_type, [])
            if len(shown) < len(uids):
                texts = display_texts(store, node_type, DISPLAY_LENGTH)
                display[node_type] = shown + [texts.get(uid, "") for uid in uids[len(shown) :]]
        return ActiveModel(run, indexes, display, store)

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def space(self, space: str) -> str:
        """``space`` ("" means fused) if the model has it, else raise."""
        space = space or DEFAULT_SPACE
        if space not in self.run.spaces:
            raise UnknownSpaceError(
                f"space {space!r} is not one of model {self.run_id}'s spaces "
                f"{list(self.run.spaces)}"
            )
        return space

    def types(self, space: str, types: list[str] | tuple[str, ...] = ()) -> list[str]:
        """The node types to search in ``space``: ``types`` if all are embedded there, or every
        type embedded there when ``types`` is empty."""
        known = [t for (s, t) in self.indexes if s == space]
        if not types:
            return known
        unknown = sorted(set(types) - set(known))
        if unknown:
            raise UnknownTypeError(
                f"node type(s) {unknown} have no vectors in space {space!r} of model "
                f"{self.run_id}; known: {sorted(known)}"
            )
        return list(dict.fromkeys(types))

    def node(self, uid: str) -> tuple[str, int]:
        """The (type, row) of a node of this model, else raise :class:`UnknownNodeError` saying
        why: the graph has no such node, or it came after the model (the graph is asked)."""
        try:
            return self.nodes[uid]
        except KeyError:
            pass
        if uid in self.store.existing_types([uid]):
            raise UnknownNodeError(
                f"node {uid!r} was ingested after model {self.run_id} was trained: it has no "
                "embedding until `mmgraph refresh` embeds it (or the next training)"
            )
        raise UnknownNodeError(f"no node {uid!r} in the graph")

    def vector(self, space: str, uid: str) -> np.ndarray:
        """A node's ``(1, d)`` vector in ``space``."""
        node_type, row = self.node(uid)
        entry = self.indexes.get((space, node_type))
        position = -1 if entry is None else int(entry.positions[row])
        if position < 0:
            raise InvalidArgumentError(
                f"node {uid!r} has no vector in space {space!r} (it lacks that modality); "
                f"search in space {DEFAULT_SPACE!r}"
            )
        return entry.vectors[position : position + 1]


class Registry:
    """Which model run answers; :meth:`use` switches atomically.

    Args:
        home: mmgraph's home (runs live under ``home/models``).
        store: the graph, for display texts and the queries that read it.
        exact_below: index sizes below which search is exact (see :class:`VectorIndex`).
        fresh_poll_seconds: how often (at most) a call checks the served run's overlay for nodes
            appended by another process (and, when following, which run is promoted); ``None``:
            never (call :meth:`refresh`).
        follow_promoted: serve whichever run is promoted, switching when another process
            promotes one; a switch that does not promote is refused.
    """

    def __init__(
        self,
        home: Path,
        store: GraphStore,
        exact_below: int = 100_000,
        fresh_poll_seconds: float | None = FRESH_POLL_SECONDS,
        follow_promoted: bool = False,
    ) -> None:
        self.home = Path(home)
        self.store = store
        self.exact_below = exact_below
        self.fresh_poll_seconds = fresh_poll_seconds
        self.follow_promoted = follow_promoted
        self._active: ActiveModel | None = None
        self._switch = threading.Lock()
        self._next_poll = 0.0
        self._following: threading.Thread | None = None

    @property
    def active(self) -> ActiveModel | None:
        """The model answering now, or ``None``."""
        return self._active

    def require(self) -> ActiveModel:
        """The model answering now; raise :class:`~mmgraph.gnn.runs.NoModelError` if there is
        none."""
        model = self._active
        if self.fresh_poll_seconds is not None and time.monotonic() >= self._next_poll:
            model = self._poll(model)
        if model is None:
            raise NoModelError(
                "no model is active: train one (mmgraph train) and promote it, or call UseModel "
                "with a run id from ListModels"
            )
        return model

    def refresh(self) -> int:
        """Serve the nodes appended to the active run's overlay since it was loaded; return how
        many were added (0 when there is no active model or nothing new)."""
        with self._switch:
            return self._refresh_locked()

    def _refresh_locked(self) -> int:
        model = self._active
        if model is None:
            return 0
        fresh = model.with_fresh(self.store, self.exact_below)
        added = sum(len(u) for u in fresh.run.uids.values()) - len(model.nodes)
        if fresh is not model:
            self._active = fresh
            log.info("model %s now serves %d more nodes", fresh.run_id, added)
        return added

    def _poll(self, model: ActiveModel | None) -> ActiveModel | None:
        """The served model, refreshed first if its overlay moved; when following, a newly
        promoted run starts loading in the background. Never blocks a call: when a switch or
        refresh holds the lock, the call goes on with what it has."""
        if not self._switch.acquire(blocking=False):
            return model
        try:
            self._next_poll = time.monotonic() + (self.fresh_poll_seconds or 0.0)
            if self.follow_promoted:
                self._follow()
            current = self._active
            if current is not None and fresh_version(current.run.path) != (
                current.run.fresh_version
            ):
                self._refresh_locked()
        except Exception:
            # A damaged or half-copied overlay must not fail queries: keep serving what we have.
            log.exception("could not serve the fresh nodes of model %s", model and model.run_id)
        finally:
            self._switch.release()
        return self._active or model

    def _follow(self) -> None:
        """Start loading the promoted run in the background if it is not the one served (and
        no such load is under way)."""
        promoted = active_run_id(self.home)
        served = self._active.run_id if self._active is not None else None
        if promoted is None or promoted == served:
            return
        if self._following is not None and self._following.is_alive():
            return
        self._following = threading.Thread(
            target=self._switch_to_promoted, args=(promoted,), name="mmgraph-follow", daemon=True
        )
        self._following.start()

    def _switch_to_promoted(self, run_id: str) -> None:
        try:
            self._load_and_switch(run_id, promote=False)
        except Exception:
            # A run promoted half-copied or deleted: keep serving, the next poll tries again.
            log.exception("could not switch to the promoted model %s", run_id)

    def use(self, run_id: str, promote: bool = False) -> tuple[ActiveModel, ActiveModel | None]:
        """Load ``run_id``, build its indexes, then make it answer; return (new, previous).

        With ``promote`` the run is also recorded as the promoted one (served after a restart,
        and by every process of a server that follows the promoted run). A registry that follows
        the promoted run switches only by promoting.
        """
        if self.follow_promoted and not promote:
            raise SwitchNotPromotedError(
                "this server runs several processes, each serving the promoted model: switch "
                "with promote (UseModel promote=true) so that all of them switch"
            )
        return self._load_and_switch(run_id, promote)

    def _load_and_switch(
        self, run_id: str, promote: bool
    ) -> tuple[ActiveModel, ActiveModel | None]:
        with self._switch:
            model = ActiveModel.load(load_run(self.home, run_id), self.store, self.exact_below)
            if promote:
                set_active_run(self.home, run_id)
            previous, self._active = self._active, model
        log.info("model %s now answers (was %s)", run_id, previous and previous.run_id)
        return model, previous

    def use_promoted(self) -> ActiveModel | None:
        """Serve the promoted run, if there is one (at start-up)."""
        run_id = active_run_id(self.home)
        return None if run_id is None else self._load_and_switch(run_id, promote=False)[0]

    def runs(self) -> list[ModelRun]:
        """Every trained run, newest first."""
        return list_runs(self.home)

    def promoted(self) -> str | None:
        """The promoted run's id, if any."""
        return active_run_id(self.home)
