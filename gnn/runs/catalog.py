"""The runs under ``$MMGRAPH_HOME/models``: one directory per run, and the promoted one named by
``models/ACTIVE`` (replaced atomically)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mmgraph.core.errors import FailedPreconditionError, NotFoundError
from mmgraph.gnn.runs.record import models_dir
from mmgraph.gnn.runs.run import ModelRun

ACTIVE = "ACTIVE"


class RunNotFoundError(NotFoundError):
    """No trained run with this id."""


class NoModelError(FailedPreconditionError):
    """No run is trained or promoted yet."""


def load_run(home: Path, run_id: str | None = None) -> ModelRun:
    """The run ``run_id`` (default: the promoted one) under ``home``."""
    run_id = run_id or active_run_id(home)
    if run_id is None:
        raise NoModelError(
            f"no model is promoted under {models_dir(home)}: train one (`mmgraph train`) and "
            "promote it (`mmgraph models promote RUN`)"
        )
    path = models_dir(home) / run_id
    if "/" in run_id or run_id.startswith(".") or not (path / "run.json").is_file():
        raise RunNotFoundError(f"no model run {run_id!r} under {models_dir(home)}")
    return ModelRun(path)


def list_runs(home: Path) -> list[ModelRun]:
    """Every complete run under ``home``, newest first."""
    root = models_dir(home)
    # A run being saved lives in a dot-folder until it is complete.
    runs = [
        ModelRun(p)
        for p in (root.iterdir() if root.is_dir() else ())
        if not p.name.startswith(".") and (p / "run.json").is_file()
    ]
    return sorted(runs, key=lambda r: r.created, reverse=True)


def active_run_id(home: Path) -> str | None:
    """The promoted run's id, or ``None``."""
    marker = models_dir(home) / ACTIVE
    return marker.read_text().strip() or None if marker.is_file() else None


def set_active_run(home: Path, run_id: str) -> None:
    """Promote ``run_id`` (atomically: a temporary file renamed over the marker)."""
    load_run(home, run_id)
    marker = models_dir(home) / ACTIVE
    tmp = marker.with_name(f".{ACTIVE}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_text(run_id)
    tmp.replace(marker)
