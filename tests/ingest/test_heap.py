"""A run's fewer garbage collections end with the last run."""

from __future__ import annotations

import gc

from mmgraph.ingest.heap import RUN_THRESHOLD, fewer_collections


def test_runs_collect_less_often_and_the_last_to_leave_restores_the_threshold() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] >= RUN_THRESHOLD
        with fewer_collections():
            pass
        assert gc.get_threshold()[0] >= RUN_THRESHOLD
    assert gc.get_threshold() == before
