"""A registry that follows the promoted run (one of several server processes): it switches when
another process promotes a run, and refuses a switch that does not promote."""

from __future__ import annotations

import time

import pytest
from model_runs import save_run

from mmgraph.core.config import Settings
from mmgraph.gnn.runs import set_active_run
from mmgraph.graph.store import GraphStore
from mmgraph.service.serving.registry import Registry, SwitchNotPromotedError


def test_a_following_registry_serves_what_another_process_promotes(
    home: Settings, graph: GraphStore
) -> None:
    for run_id, seed in (("r1", 1), ("r2", 2)):
        save_run(home.home, run_id, seed=seed, created=f"2026-12-06T1{seed}:00:00Z")
    set_active_run(home.home, "r1")
    registry = Registry(home.home, graph, fresh_poll_seconds=0.0, follow_promoted=True)
    assert registry.use_promoted() is not None and registry.require().run_id == "r1"
    with pytest.raises(SwitchNotPromotedError):
        registry.use("r2")
    set_active_run(home.home, "r2")  # as another process's UseModel(promote=true) does
    for _ in range(600):  # the switch loads r2 in the background; calls meanwhile get r1
        if registry.require().run_id == "r2":
            break
        time.sleep(0.05)
    assert registry.require().run_id == "r2"
    model, previous = registry.use("r1", promote=True)
    assert (model.run_id, previous.run_id) == ("r1", "r2")
