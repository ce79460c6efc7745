"""``mmgraph serve --workers 2`` as a user starts it: two processes on one port, each loading the
promoted run; a UseModel that promotes switches both, one that does not is refused; SIGTERM stops
them all."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from model_runs import save_run

from mmgraph.core.config import Settings
from mmgraph.gnn.runs import set_active_run
from mmgraph.graph.local_neo4j import LocalNeo4j
from mmgraph.graph.store import GraphStore
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2 as pb
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2_grpc as pb_grpc

WORKERS = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int, connections: int) -> list[str]:
    """The run id each of ``connections`` new connections is answered from (the kernel hands
    each to one of the processes)."""
    runs = []
    for _ in range(connections):
        options = [("grpc.use_local_subchannel_pool", 1)]  # a connection of its own
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            stub = pb_grpc.AnalyticsStub(channel)
            runs.append(stub.Similar(pb.SimilarRequest(uid="e:grin", k=3), timeout=30).run_id)
    return runs


def test_workers_share_one_port_and_switch_together(
    home: Settings, graph: GraphStore, neo4j_server: LocalNeo4j, tmp_path: Path
) -> None:
    for run_id, seed in (("r1", 1), ("r2", 2)):
        save_run(home.home, run_id, seed=seed, created=f"2026-12-06T1{seed}:00:00Z")
    set_active_run(home.home, "r1")
    port, log = _free_port(), tmp_path / "serve.log"
    env = {
        **os.environ,
        "MMGRAPH_HOME": str(home.home),
        "NEO4J_URI": neo4j_server.uri,
        "NEO4J_PASSWORD": neo4j_server.password,
        "MMGRAPH_TEXT_ENCODER": "int8",
    }
    command = [str(Path(sys.executable).with_name("mmgraph")), "serve", "--port", str(port)]
    with log.open("w") as out:
        server = subprocess.Popen(
            [*command, "--workers", str(WORKERS)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        serving = f"serves on 127.0.0.1:{port}"
        for _ in range(1200):
            if sum(line.endswith(serving) for line in log.read_text().splitlines()) == WORKERS:
                break
            assert server.poll() is None, log.read_text()
            time.sleep(0.2)
        else:
            pytest.fail(f"the processes did not all serve:\n{log.read_text()}")
        assert set(_answers(port, 8)) == {"r1"}
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            stub = pb_grpc.AnalyticsStub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.UseModel(pb.UseModelRequest(run_id="r2"), timeout=30)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "promote" in refused.value.details()
            stub.UseModel(pb.UseModelRequest(run_id="r2", promote=True), timeout=60)
        for _ in range(300):  # the other process loads r2 on its next poll
            # 32 connections: 8 all went to the promoting process about once in 128 tries,
            # ending the wait while the other still answered from r1.
            if set(_answers(port, 32)) == {"r2"}:
                break
            time.sleep(0.2)
        assert set(_answers(port, 8)) == {"r2"}
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(60)
    assert code == 0, log.read_text()
