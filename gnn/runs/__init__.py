"""Trained model runs on disk: one directory per run under ``$MMGRAPH_HOME/models``.

A run is written once (:func:`save_run` of a :class:`RunRecord`, :mod:`.record`), read lazily
(:class:`ModelRun`, :mod:`.run`) with the network behind it (:mod:`.network`), grows an overlay of
nodes embedded after training (:mod:`.overlay`), and is found, listed and promoted through the
catalog (:mod:`.catalog`). Loading never unpickles anything.
"""

from mmgraph.gnn.runs.catalog import (
    NoModelError,
    RunNotFoundError,
    active_run_id,
    list_runs,
    load_run,
    set_active_run,
)
from mmgraph.gnn.runs.network import ClosedFormNetwork, TrainedNetwork, UnknownModelKindError
from mmgraph.gnn.runs.overlay import FreshNodes, FreshNodesError, append_nodes, fresh_version
from mmgraph.gnn.runs.record import RunRecord, models_dir, new_run_id, save_run
from mmgraph.gnn.runs.run import ModelRun, QueryEmbeddingError, UnalignedSpaceError

__all__ = [
    "ClosedFormNetwork",
    "FreshNodes",
    "FreshNodesError",
    "ModelRun",
    "NoModelError",
    "QueryEmbeddingError",
    "RunNotFoundError",
    "RunRecord",
    "TrainedNetwork",
    "UnalignedSpaceError",
    "UnknownModelKindError",
    "active_run_id",
    "append_nodes",
    "fresh_version",
    "list_runs",
    "load_run",
    "models_dir",
    "new_run_id",
    "save_run",
    "set_active_run",
]
