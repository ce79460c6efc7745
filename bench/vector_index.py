"""``Similar`` over loopback gRPC against Neo4j's own vector index (a benchmark, not a test).

For each size, N clustered 128-d unit vectors are saved as a real model run (``save_run``, model
``cca``: a CCA fitted on a few random rows maps text queries; only uid queries are measured) and
served by ``create_server`` with a ``Registry`` in a child process (its own interpreter, so client
threads do not share its GIL). ``Similar`` by uid is called from 1, 8 and 32 client threads (a
channel each): p50/p99 latency and QPS; recall@10 of the served answers against exact search
(faiss ``IndexFlatIP``, the query node left out, as the service does). The same vectors are
written into Neo4j as ``emb`` with the ``entity_emb`` vector index, and the same queries go
through ``db.index.vector.queryNodes`` from one client: p50/p99, recall@10 and the speed ratio.
``--soak S`` then runs 32 clients for S seconds against the largest size and counts failed calls.

The nodes are written to Neo4j with a short ``text`` (what the registry reads for each hit's
display field), then their ``emb``; sizes reuse the nodes of the smaller ones, so the vector index
always holds exactly the served vectors. Uses the Neo4j named by ``NEO4J_URI``, else starts the
local one under a temporary ``MMGRAPH_HOME`` (``--neo4j-heap``/``--neo4j-pagecache``). Prints a
table and writes ``bench/results/vector_index.json``.

    python bench/vector_index.py [--sizes 100000,1000000] [--queries 3000] [--soak 60]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import faiss
import grpc
import neo4j
import numpy as np

from mmgraph.core.config import Settings
from mmgraph.gnn.fusion.cca import CCA
from mmgraph.gnn.models.base import GraphMeta
from mmgraph.gnn.runs import RunRecord, new_run_id, save_run
from mmgraph.graph import writeback
from mmgraph.graph.local_neo4j import LocalNeo4j
from mmgraph.graph.store import GraphStore, NodeRow
from mmgraph.service.rpc.client import AnalyticsClient

RESULTS = Path(__file__).parent / "results" / "vector_index.json"
DIM, TEXT_DIM, K = 128, 384, 10
NODE_TYPE = "Item"
RELATION = (NODE_TYPE, "LIKE", NODE_TYPE)
CLIENTS = (1, 8, 32)
MODALITIES = {"image": DIM, "text": TEXT_DIM}  # the CCA's two views
NEO4J_QUERY = (
    "CALL db.index.vector.queryNodes('entity_emb', $k, $v) YIELD node, score "
    "RETURN node.uid AS uid, score"
)


def clustered_vectors(n: int, seed: int = 0, chunk: int = 100_000) -> np.ndarray:
    """``n`` unit rows around ``max(16, n // 1000)`` random centres (noise 0.5 per dimension);
    any prefix is a sample of the same distribution."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(16, n // 1000), DIM), dtype=np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        labels = rng.integers(0, len(centres), stop - start)
        x = centres[labels] + 0.5 * rng.standard_normal((stop - start, DIM), dtype=np.float32)
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def uid(i: int) -> str:
    return f"v:{i}"


def save_model(home: Path, vectors: np.ndarray) -> str:
    """Save ``vectors`` as a ``cca`` run over ``Item`` nodes; return its run id."""
    rng = np.random.default_rng(1)
    cca = CCA(n_components=DIM).fit(
        rng.standard_normal((4 * DIM, TEXT_DIM)), rng.standard_normal((4 * DIM, DIM))
    )
    run_id = new_run_id("cca")
    save_run(
        home,
        RunRecord(
            run_id=run_id,
            model="cca",
            config={"bench": "service"},
            metrics={},
            uids={NODE_TYPE: [uid(i) for i in range(len(vectors))]},
            meta=GraphMeta((NODE_TYPE,), (RELATION,), {NODE_TYPE: MODALITIES}),
            target_edge_types=[RELATION],
            raw={NODE_TYPE: vectors},
            spaces={"fused": {NODE_TYPE: (vectors, np.arange(len(vectors)))}},
            weights=cca.state_dict(),
        ),
    )
    return run_id


# -- the server, in a child process ----------------------------------------------------------


def serve(
    neo: dict[str, Any], home: str, run_id: str, exact_below: int, ready: Any, stop: Any
) -> None:
    """Load ``run_id`` into a Registry, serve it on a free loopback port, report, wait."""
    from mmgraph.service.rpc.server import create_server
    from mmgraph.service.serving.registry import Registry

    settings = Settings(home=Path(home))
    with neo4j.GraphDatabase.driver(neo["uri"], auth=tuple(neo["auth"])) as driver:
        registry = Registry(Path(home), GraphStore(driver, neo["database"]), exact_below)
        t0 = time.perf_counter()
        model, _ = registry.use(run_id)
        load_s = time.perf_counter() - t0
        server, port = create_server(settings, registry)
        exact = model.indexes[("fused", NODE_TYPE)].index.exact
        ready.put({"port": port, "load_s": load_s, "index": "exact" if exact else "hnsw"})
        stop.wait()
        server.stop(5)


def _wait_ready(child: Any, ready: Any, timeout: float) -> dict[str, Any]:
    """The server's report, or an error as soon as the child dies or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return ready.get(timeout=1.0)
        except queue.Empty:
            if not child.is_alive():
                raise RuntimeError(f"the server process exited with {child.exitcode}") from None
    raise TimeoutError(f"the server did not load the model within {timeout:.0f} s")


# -- clients -----------------------------------------------------------------------------------


def run_clients(
    target: str, uids: list[str], threads: int, seconds: float | None = None
) -> dict[str, Any]:
    """``threads`` clients calling ``Similar`` by uid: through ``uids`` (shared out), or for
    ``seconds`` when given. Returns latencies, wall time, calls and failures by status code."""
    per_thread = [uids[i::threads] for i in range(threads)]
    latencies: list[list[float]] = [[] for _ in range(threads)]
    failures: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(threads + 1, timeout=300)
    answers: dict[str, list[str]] = {}

    def work(i: int) -> None:
        with AnalyticsClient(target) as client:
            for warm in per_thread[i][:5]:
                client.similar(warm, k=K)
            start.wait()
            began, n = time.perf_counter(), 0
            while True:
                if seconds is None:
                    if n == len(per_thread[i]):
                        break
                elif time.perf_counter() - began > seconds:
                    break
                query = per_thread[i][n % len(per_thread[i])]
                n += 1
                t0 = time.perf_counter()
                try:
                    reply = client.similar(query, k=K)
                except grpc.RpcError as e:
                    with lock:
                        failures[str(e.code())] += 1
                    continue
                latencies[i].append(time.perf_counter() - t0)
                if seconds is None and threads == 1:
                    answers[query] = [hit.uid for hit in reply.hits]

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    t0 = time.perf_counter()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    flat = np.concatenate([np.asarray(x) for x in latencies]) if latencies else np.empty(0)
    return {"latencies": flat, "wall": wall, "failures": dict(failures), "answers": answers}


def summary(latencies: np.ndarray, wall: float) -> dict[str, float]:
    p50, p99 = np.percentile(latencies * 1e3, [50, 99])
    return {"p50_ms": float(p50), "p99_ms": float(p99), "qps": len(latencies) / wall}


def exact_neighbours(vectors: np.ndarray, rows: np.ndarray) -> list[set[str]]:
    """The true ``K`` nearest of each row by inner product, the row itself left out."""
    index = faiss.IndexFlatIP(DIM)
    index.add(vectors)
    _, found = index.search(vectors[rows], K + 1)
    return [{uid(j) for j in f if j != r and j >= 0} for r, f in zip(rows, found, strict=True)]


def recall(answers: list[list[str]], truth: list[set[str]]) -> float:
    return float(np.mean([len(set(a[:K]) & t) / K for a, t in zip(answers, truth, strict=True)]))


def neo4j_queries(
    store: GraphStore, vectors: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, list[list[str]]]:
    """The same queries through Neo4j's vector index from one client (k + 1, self dropped)."""
    latencies, answers = [], []
    with store.session() as session:
        for r in rows[:5]:  # warm-up
            session.run(NEO4J_QUERY, k=K + 1, v=vectors[r].tolist()).consume()
        for r in rows:
            v = vectors[r].tolist()
            t0 = time.perf_counter()
            found = [rec["uid"] for rec in session.run(NEO4J_QUERY, k=K + 1, v=v)]
            latencies.append(time.perf_counter() - t0)
            answers.append([u for u in found if u != uid(int(r))][:K])
    return np.asarray(latencies), answers


# -- one size ----------------------------------------------------------------------------------


def write_graph(store: GraphStore, vectors: np.ndarray, start: int, batch: int) -> dict[str, float]:
    """Nodes ``start..n`` with a short text, then their ``emb``; the vector index online."""
    n = len(vectors)
    t0 = time.perf_counter()
    for lo in range(start, n, batch):
        rows = [
            NodeRow(uid(i), NODE_TYPE, {"text": f"synthetic item {i}"})
            for i in range(lo, min(lo + batch, n))
        ]
        store.write_batch(rows, [], "bench-service")
    nodes_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids = [uid(i) for i in range(start, n)]
    writeback.write_embeddings(store, "bench-service", ids, vectors[start:], batch_size=batch)
    emb_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    writeback.ensure_vector_index(store, DIM)
    with store.session() as session:
        session.run("CALL db.awaitIndexes(3600)").consume()
    return {"write_nodes_s": nodes_s, "write_emb_s": emb_s, "index_s": time.perf_counter() - t0}


def bench_size(
    args: argparse.Namespace,
    neo: dict[str, Any],
    store: GraphStore,
    home: Path,
    vectors: np.ndarray,
    written: int,
    soak: float,
) -> dict[str, Any]:
    n = len(vectors)
    print(f"... {n:,} vectors: writing to Neo4j", flush=True)
    figures: dict[str, Any] = {"size": n, **write_graph(store, vectors, written, args.batch)}
    t0 = time.perf_counter()
    run_id = save_model(home, vectors)
    figures["save_run_s"] = time.perf_counter() - t0
    rng = np.random.default_rng(2)
    rows = rng.choice(n, size=min(n, args.queries), replace=False)
    queries = [uid(int(r)) for r in rows]
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Queue(), ctx.Event()
    child = ctx.Process(target=serve, args=(neo, str(home), run_id, args.exact_below, ready, stop))
    child.start()
    try:
        print(f"... {n:,} vectors: loading the model in the server", flush=True)
        info = _wait_ready(child, ready, args.load_timeout)
        figures.update(load_s=info["load_s"], index=info["index"])
        target = f"127.0.0.1:{info['port']}"
        answers = {}
        for threads in CLIENTS:
            print(f"... {n:,} vectors: {threads} client(s)", flush=True)
            result = run_clients(target, queries, threads)
            answers.update(result["answers"])
            figures[f"grpc_{threads}"] = {
                **summary(result["latencies"], result["wall"]),
                "calls": len(result["latencies"]),
                "failures": result["failures"],
            }
        sample = rows[: args.recall_queries]
        truth = exact_neighbours(vectors, sample)
        figures["grpc_recall@10"] = recall([answers.get(uid(int(r)), []) for r in sample], truth)
        print(f"... {n:,} vectors: Neo4j's vector index", flush=True)
        neo_rows = rows[: args.neo4j_queries]
        latencies, neo_answers = neo4j_queries(store, vectors, neo_rows)
        figures["neo4j"] = summary(latencies, float(latencies.sum()))
        figures["neo4j_recall@10"] = recall(neo_answers, truth[: len(neo_rows)])
        grpc_1 = figures["grpc_1"]
        figures["neo4j_over_grpc_p50"] = figures["neo4j"]["p50_ms"] / grpc_1["p50_ms"]
        figures["neo4j_over_grpc_p99"] = figures["neo4j"]["p99_ms"] / grpc_1["p99_ms"]
        if soak:
            print(f"... {n:,} vectors: soak, 32 clients for {soak:g} s", flush=True)
            result = run_clients(target, queries, 32, seconds=soak)
            figures["soak"] = {
                "seconds": soak,
                "clients": 32,
                "calls": len(result["latencies"]) + sum(result["failures"].values()),
                "failed": sum(result["failures"].values()),
                "failures": result["failures"],
                **summary(result["latencies"], result["wall"]),
            }
    finally:
        stop.set()
        child.join(30)
        if child.is_alive():
            child.terminate()
            child.join()
    return figures


def print_table(sizes: list[dict[str, Any]]) -> None:
    print(f"{'vectors':>10} {'path':<16}{'p50 ms':>9}{'p99 ms':>9}{'QPS':>9}{'recall@10':>11}")
    for f in sizes:
        for threads in CLIENTS:
            g = f[f"grpc_{threads}"]
            rec = f"{f['grpc_recall@10']:.3f}" if threads == 1 else ""
            label = f"gRPC {f['index']} x{threads}"
            print(
                f"{f['size']:>10,} {label:<16}{g['p50_ms']:>9.2f}{g['p99_ms']:>9.2f}"
                f"{g['qps']:>9,.0f}{rec:>11}"
            )
        g = f["neo4j"]
        print(
            f"{f['size']:>10,} {'Neo4j index x1':<16}{g['p50_ms']:>9.2f}{g['p99_ms']:>9.2f}"
            f"{g['qps']:>9,.0f}{f['neo4j_recall@10']:>11.3f}"
        )
        print(
            f"{'':>10} Neo4j / gRPC (1 client): p50 {f['neo4j_over_grpc_p50']:.1f}x, "
            f"p99 {f['neo4j_over_grpc_p99']:.1f}x; server load {f['load_s']:.1f} s"
        )
        if "soak" in f:
            s = f["soak"]
            print(
                f"{'':>10} soak: {s['clients']} clients x {s['seconds']:g} s, {s['calls']:,} "
                f"calls, {s['failed']} failed, p99 {s['p99_ms']:.2f} ms, {s['qps']:,.0f} QPS"
            )
    print("targets: p99 <= 2 ms at 1M with one client; recall@10 >= 0.98; Neo4j >= 10x slower")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100_000, 1_000_000]
    )
    parser.add_argument("--queries", type=int, default=3000, help="uids per client count")
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--neo4j-queries", type=int, default=500)
    parser.add_argument("--soak", type=float, default=60.0, help="seconds; 0: no soak")
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument(
        "--exact-below", type=int, default=100_000, help="the Registry's exact/HNSW switch"
    )
    parser.add_argument("--load-timeout", type=float, default=1800.0)
    parser.add_argument("--neo4j-heap", default=os.environ.get("MMGRAPH_NEO4J_HEAP", "2g"))
    parser.add_argument(
        "--neo4j-pagecache", default=os.environ.get("MMGRAPH_NEO4J_PAGECACHE", "1g")
    )
    args = parser.parse_args()
    sizes = sorted(args.sizes)

    settings = Settings.from_env()
    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if settings.neo4j_uri:
            uri, auth = settings.neo4j_uri, (settings.neo4j_user, settings.neo4j_password)
        else:
            local = settings.model_copy(
                update={
                    "home": home,
                    "neo4j_heap": args.neo4j_heap,
                    "neo4j_pagecache": args.neo4j_pagecache,
                }
            )
            server = stack.enter_context(LocalNeo4j.from_settings(local))
            uri, auth = server.uri, (server.user, server.password)
        driver = stack.enter_context(neo4j.GraphDatabase.driver(uri, auth=auth))
        store = GraphStore(driver, settings.neo4j_database)
        store.setup_schema()
        neo = {"uri": uri, "auth": list(auth), "database": settings.neo4j_database}
        vectors = clustered_vectors(sizes[-1])
        results, written = [], 0
        for i, n in enumerate(sizes):
            soak = args.soak if i == len(sizes) - 1 else 0.0
            results.append(bench_size(args, neo, store, home, vectors[:n], written, soak))
            written = n

    print()
    print_table(results)
    figures = {
        "sizes": results,
        "dim": DIM,
        "k": K,
        "args": vars(args),
        "machine": f"{platform.node()} {platform.machine()} ({os.cpu_count()} cpus)",
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
