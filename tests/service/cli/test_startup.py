"""The CLI starts at once: help and gRPC queries import neither torch, PyG nor the encoders;
launching ranks imports no model code and training code no evaluation library; tables stay
whole when stdout is not a terminal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from model_runs import save_run
from typer.testing import CliRunner

from mmgraph.service.cli import app

runner = CliRunner()
HEAVY = ("torch", "torch_geometric", "onnxruntime", "transformers", "sklearn", "neo4j")
# Every command's help, printed in one process; then the modules that process loaded.
_HELP_SCRIPT = """
import json, sys
from mmgraph.service.cli import app
for args in json.loads(sys.argv[1]):
    try:
        app(args + ["--help"], standalone_mode=True)
    except SystemExit as e:
        assert e.code == 0, (args, e.code)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""
# Per module named in the arguments, imported in that order: the top-level modules loaded by then.
_LOADED_SCRIPT = """
import importlib, json, sys
loaded = []
for name in sys.argv[1:]:
    importlib.import_module(name)
    loaded.append(sorted({module.split(".")[0] for module in sys.modules}))
print(json.dumps(loaded))
"""
COMMANDS = [
    [],
    ["ingest"],
    ["stats"],
    ["runs"],
    ["neo4j", "start"],
    ["datasets", "fetch"],
    ["train"],
    ["evaluate"],
    ["models", "list"],
    ["models", "promote"],
    ["refresh"],
    ["retrain-if-stale"],
    ["cypher"],
    ["analysts", "write-clusters"],
    ["analysts", "write-predictions"],
    ["query", "similar"],
    ["query", "cluster"],
    ["query", "predict-links"],
    ["query", "score-links"],
    ["serve"],
    ["protoset"],
    ["demo"],
]


def test_help_of_every_command_imports_no_model_code() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _HELP_SCRIPT, json.dumps(COMMANDS)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))


def test_launch_and_training_code_import_only_what_they_use() -> None:
    # A rank the launcher spawns imports its module first: no model code there. What a training
    # process holds sits under every step's peak, and the memory budget counts it: scikit-learn
    # and matplotlib (about 0.1 GB) are imported where the evaluation uses them.
    modules = ["mmgraph.gnn.launch", "mmgraph.service.workflows.training"]
    done = subprocess.run(
        [sys.executable, "-c", _LOADED_SCRIPT, *modules],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    launch, training = (set(names) for names in json.loads(done.stdout.splitlines()[-1]))
    assert "torch" in launch and "torch_geometric" not in launch, sorted(launch)
    assert "torch_geometric" in training  # the training code itself did load
    assert training.isdisjoint({"sklearn", "matplotlib"}), sorted(training)


@pytest.mark.parametrize("width", [None, "60"])
def test_tables_stay_whole_when_stdout_is_not_a_terminal(
    width: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "models").mkdir()
    run_id = "20261206T101500Z-hybrid-a-run-id-long-enough-to-squeeze-a-table"
    save_run(tmp_path, run_id, seed=1, created="2026-12-06T10:15:00.123456+00:00")
    monkeypatch.setenv("MMGRAPH_HOME", str(tmp_path))
    if width is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", width)
    result = runner.invoke(app, ["models", "list"])  # CliRunner's stdout is not a terminal
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert "0.500" in result.output  # the run's test MRR, whole
    if width is None:  # a pipe or a log: every cell on one line
        assert run_id in result.output and "2026-12-06T10:15:00.123456+00:00" in result.output
