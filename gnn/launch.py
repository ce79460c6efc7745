"""Training on several processes, started by PyTorch's elastic launcher (what ``torchrun`` runs).

- :func:`run_experiment_distributed`: ``nproc`` worker processes on this machine, from Python
  (what ``mmgraph train --nproc N`` calls); rank 0's :class:`ExperimentResult` comes back.
- ``torchrun ... -m mmgraph.gnn.launch``: one node's ranks of a job over several machines
  (:func:`main`), e.g. two machines with one rank per GPU, started on each machine::

      torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d \\
          --rdzv-endpoint HOST_OF_NODE_0:29400 --rdzv-id JOB_NAME \\
          -m mmgraph.gnn.launch --model hgt --seed 0

  Every rank reads the graph from the Neo4j the settings name (``NEO4J_URI``, or a local
  server already started with ``mmgraph neo4j start``), so all machines need the same one;
  rank 0 saves the run under its ``MMGRAPH_HOME`` and prints the metrics as JSON.

Every worker runs :func:`mmgraph.gnn.experiment.run_experiment` with the same arguments inside a
process group (gloo on the CPU, NCCL on GPUs): training is distributed
(:mod:`mmgraph.gnn.distributed`), each rank then evaluates rank 0's weights, and only rank 0
saves the run. The launcher sets the rendezvous environment; nothing here talks to another
process itself.

A worker imports what its function needs: launching imports no model code (a worker starts by
importing torch and this module, then unpickles its function).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError, MmgraphError
from mmgraph.gnn import distributed
from mmgraph.gnn.names import MODEL_NAMES

if TYPE_CHECKING:
    from mmgraph.gnn.experiment import ExperimentResult


class LaunchError(InvalidArgumentError):
    """A distributed run that cannot be started as asked."""


def launch(fn: Callable[..., Any], nproc: int, *args: Any, device: str | None = None) -> Any:
    """``fn(*args)`` in ``nproc`` worker processes on this machine, each one rank of a process
    group on ``device`` (default: the settings'); returns rank 0's result. ``fn`` and ``args``
    must be picklable (module-level functions; no lambdas). A project error raised in a worker
    is raised here, the same kind with the same message, as it would be in one process."""
    if nproc < 1:
        raise LaunchError(f"nproc must be at least 1, got {nproc}")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        max_restarts=0,
        start_method="spawn",
    )
    with tempfile.TemporaryDirectory(prefix="mmgraph-ranks-") as errors:
        try:
            return elastic_launch(config, entrypoint=_worker)(errors, device, fn, *args)[0]
        except ChildFailedError:
            reported = sorted(Path(errors).glob("rank-*.json"))
            if not reported:
                raise
            raise _error_from(json.loads(reported[0].read_text())) from None


def _worker(errors: str, device: str | None, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        with process_group(distributed.resolve_device(device or Settings.from_env().device)):
            return fn(*args)
    except MmgraphError as e:
        # The launcher reports only that a worker failed: the error's kind and message go
        # back through a file, and the worker still fails so the launcher stops the others.
        kind = type(e)
        report = {"module": kind.__module__, "kind": kind.__qualname__, "message": str(e)}
        rank = os.environ.get("RANK", "0")
        (Path(errors) / f"rank-{int(rank):05d}.json").write_text(json.dumps(report))
        raise


def _error_from(report: dict[str, str]) -> MmgraphError:
    """The project error a worker reported: its own kind where that can be made from a
    message, else the nearest project kind."""
    kind = getattr(importlib.import_module(report["module"]), report["kind"], None)
    if isinstance(kind, type) and issubclass(kind, MmgraphError):
        try:
            return kind(report["message"])
        except TypeError:
            pass
    return MmgraphError(report["message"])


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join the process group the launcher's environment describes (this rank's GPU, or this
    machine's cores shared between its ranks), and leave it afterwards."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    else:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    dist.init_process_group(distributed.backend_for(device))
    try:
        yield
    finally:
        dist.destroy_process_group()


def run_experiment_distributed(
    *, nproc: int, home: Path | None = None, **kwargs: Any
) -> ExperimentResult:
    """:func:`~mmgraph.gnn.experiment.run_experiment` (same keyword arguments, but no
    ``progress`` callback: it cannot cross processes) trained by ``nproc`` ranks on this
    machine; rank 0 saves the run under ``home`` and its result is returned."""
    from mmgraph.gnn.train import TrainConfig

    if kwargs.get("progress") is not None:
        raise LaunchError("progress cannot be reported from worker processes; pass None")
    kwargs.pop("progress", None)
    config = kwargs.get("train_config")
    device = config.device if isinstance(config, TrainConfig) else None
    return launch(_experiment_rank, nproc, home, kwargs, device=device)


def _experiment_rank(home: Path | None, kwargs: dict[str, Any]) -> ExperimentResult | None:
    from mmgraph.gnn.experiment import run_experiment

    result = run_experiment(home=home if distributed.rank() == 0 else None, **kwargs)
    return result if distributed.rank() == 0 else None


def main(argv: Sequence[str] | None = None) -> None:
    """One rank of a ``torchrun`` job: read the graph, split it, train and evaluate (see the
    module)."""
    from mmgraph.gnn.data import export_heterodata
    from mmgraph.gnn.split import SplitConfig, split_graph
    from mmgraph.gnn.train import TrainConfig
    from mmgraph.graph.connection import open_store
    from mmgraph.graph.local_neo4j import running_server

    parser = argparse.ArgumentParser(prog="python -m mmgraph.gnn.launch")
    parser.add_argument("--model", choices=MODEL_NAMES, default="hgt")
    parser.add_argument("--target-relation", action="append", dest="targets")
    parser.add_argument("--label-relation", default="IN_SUBCATEGORY")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    if not settings.neo4j_uri and running_server(settings.home) is None:
        raise LaunchError(
            "every rank reads the graph: set NEO4J_URI, or run `mmgraph neo4j start` first"
        )
    device = distributed.resolve_device(settings.device)
    with process_group(device), open_store(settings) as store:
        export = export_heterodata(store, cache_dir=settings.home / "cache" / "export")
        split_config = SplitConfig(
            target_relations=tuple(args.targets or ("HAS_TAG",)),
            label_relation=args.label_relation or None,
            seed=args.seed,
        )
        result = _experiment_rank(
            settings.home,
            {
                "model": args.model,
                "split": split_graph(export.data, split_config),
                "uids": export.uids,
                "train_config": TrainConfig(
                    epochs=args.epochs,
                    seed=args.seed,
                    batch_size=args.batch_size,
                    device=settings.device,
                ),
            },
        )
    if result is not None:
        print(json.dumps({"run_id": result.run_id, "metrics": result.metrics}, indent=2))


if __name__ == "__main__":
    main()
