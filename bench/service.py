"""``mmgraph serve`` under concurrent callers: ``Similar`` by uid, text and image from 1, 8 and 32
callers, beside the ceilings measured in the same run (a benchmark, not a test).

An emoji-shaped synthetic graph (Emoji 3,800, Tag 400, Subcategory 100 and Category 10 nodes with
short texts, 4,310 in all) is written to Neo4j and saved as a promoted run (a CCA from 384-d text
and 1280-d image vectors to a 128-d fused space), then served by ``mmgraph serve --workers N`` on
loopback, started as a user starts it. Callers are asyncio tasks in up to 4 client processes, one
connection each, sending pre-serialised requests for ``--seconds`` per row: QPS, p50, p99 and
failed calls. The ceilings, in the same run: the server's own health check under the same callers
(what the framework does for a trivial call), the bare index (faiss over the run's fused vectors:
the searches one uid query makes, one thread) and each encoder's best rate over batch sizes 1 to
64 (and 1 or 2 torch threads for the text encoder), in this process while the server idles.
Prints the table (the medians of ``--repeat`` sweeps) and the ratios the issue sets targets for,
and writes ``bench/results/service.json``. Uses the Neo4j named by ``NEO4J_URI``, else starts the
local one under a temporary ``MMGRAPH_HOME``.

    python bench/service.py [--workers 1,2] [--seconds 5] [--repeat 1] [--text-encoder fp32]
                            [--kinds health,uid,text,image] [--callers 1,8,32]

The client processes import only grpc and numpy, so that they start fast and stay small.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import numpy as np

RESULTS = Path(__file__).parent / "results" / "service.json"
TYPES = {"Emoji": 3800, "Tag": 400, "Subcategory": 100, "Category": 10}
TEXT_DIM, IMAGE_DIM, DIM, K = 384, 1280, 128, 10
CALLERS = (1, 8, 32)
KINDS = ("health", "uid", "text", "image")
CLIENT_PROCESSES = 4
BATCH = 64
HEALTH_METHOD = "/grpc.health.v1.Health/Check"
SIMILAR_METHOD = "/mmgraph.v1.Analytics/Similar"
WORDS = (
    "smiling grinning crying laughing sleepy angry happy red blue green yellow cat dog fox "
    "face heart hand star moon sun flag food fruit animal plant tree flower car house music ball"
)  # the words of the query texts


# -- the graph and the run ---------------------------------------------------------------------


def uids() -> dict[str, list[str]]:
    return {t: [f"{t.lower()}:{i}" for i in range(n)] for t, n in TYPES.items()}


def write_graph(store: Any) -> None:
    """The nodes, each with a short text (what a hit's display field shows)."""
    from mmgraph.graph.store import NodeRow

    rows = [NodeRow(u, t, {"text": f"synthetic {u}"}) for t, us in uids().items() for u in us]
    for start in range(0, len(rows), 2000):
        store.write_batch(rows[start : start + 2000], [], "bench-service")


def save_model(home: Path) -> str:
    """A promoted CCA run over the graph: a fused space of every type, a text space of every
    type, an image space of the emoji."""
    from mmgraph.gnn.fusion.cca import CCA
    from mmgraph.gnn.models.base import GraphMeta
    from mmgraph.gnn.runs import RunRecord, new_run_id, save_run, set_active_run

    rng = np.random.default_rng(0)
    cca = CCA(n_components=DIM).fit(
        rng.standard_normal((4000, TEXT_DIM)), rng.standard_normal((4000, IMAGE_DIM))
    )
    modalities = {t: {"text": TEXT_DIM} for t in TYPES} | {
        "Emoji": {"text": TEXT_DIM, "image": IMAGE_DIM}
    }
    spaces: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for space in ("fused", "text", "image"):
        spaces[space] = {}
        for node_type, n in TYPES.items():
            if space == "fused" or space in modalities[node_type]:
                x = rng.standard_normal((n, DIM)).astype(np.float32)
                spaces[space][node_type] = (
                    x / np.linalg.norm(x, axis=1, keepdims=True),
                    np.arange(n),
                )
    run_id = new_run_id("cca")
    relation = ("Emoji", "HAS_TAG", "Tag")
    save_run(
        home,
        RunRecord(
            run_id=run_id,
            model="cca",
            config={"bench": "service"},
            metrics={},
            uids=uids(),
            meta=GraphMeta(tuple(TYPES), (relation, ("Tag", "rev_HAS_TAG", "Emoji")), modalities),
            target_edge_types=[relation],
            raw={t: v for t, (v, _) in spaces["fused"].items()},
            spaces=spaces,
            weights=cca.state_dict(),
        ),
    )
    set_active_run(home, run_id)
    return run_id


# -- the queries --------------------------------------------------------------------------------


def query_texts(n: int = 500) -> list[str]:
    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(WORDS.split(), size=rng.integers(1, 5))) for _ in range(n)]


def pictures(n: int = 64) -> list[bytes]:
    """Emoji-sized (72 px) PNGs: a coloured disc on white, a different one each."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(2)
    out = []
    for _ in range(n):
        img = Image.new("RGB", (72, 72), (255, 255, 255))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        lo, hi = sorted(rng.integers(4, 68, 2))
        ImageDraw.Draw(img).ellipse((lo, lo, hi + 4, hi + 4), fill=colour)
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def requests(kind: str) -> tuple[str, list[bytes]]:
    """The method and the serialised requests of a row of ``kind``."""
    from grpc_health.v1 import health_pb2

    from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2 as pb

    if kind == "health":
        return HEALTH_METHOD, [health_pb2.HealthCheckRequest(service="").SerializeToString()]
    if kind == "uid":
        every = [u for us in uids().values() for u in us]
        picked = np.random.default_rng(3).permutation(every)[:3000]
        made = [pb.SimilarRequest(uid=str(u), k=K) for u in picked]
    elif kind == "text":
        made = [pb.SimilarRequest(text=t, k=K) for t in query_texts()]
    else:
        made = [pb.SimilarRequest(image=p, k=K) for p in pictures()]
    return SIMILAR_METHOD, [m.SerializeToString() for m in made]


# -- callers, in client processes ---------------------------------------------------------------


def call_for(
    target: str,
    method: str,
    payloads: list[bytes],
    callers: int,
    offset: int,
    start_at: float,
    seconds: float,
) -> dict[str, Any]:
    """``callers`` callers of ``method``, each on its own connection, from ``start_at`` (wall
    clock) for ``seconds``: their latencies, failures by status and when they finished."""
    return asyncio.run(_call_for(target, method, payloads, callers, offset, start_at, seconds))


async def _call_for(
    target: str,
    method: str,
    payloads: list[bytes],
    callers: int,
    offset: int,
    start_at: float,
    seconds: float,
) -> dict[str, Any]:
    options = [("grpc.use_local_subchannel_pool", 1)]  # a connection per caller
    channels = [grpc.aio.insecure_channel(target, options=options) for _ in range(callers)]
    stubs = [channel.unary_unary(method) for channel in channels]  # bytes in, bytes out
    failures: Counter[str] = Counter()

    async def caller(i: int) -> tuple[list[float], float, float]:
        n, latencies = offset + i, []
        await stubs[i](payloads[n % len(payloads)], timeout=60)  # connect, warm up
        await asyncio.sleep(max(0.0, start_at - time.time()))
        started = time.time()
        end = started + seconds
        while time.time() < end:
            n += callers
            began = time.perf_counter()
            try:
                await stubs[i](payloads[n % len(payloads)], timeout=60)
            except grpc.aio.AioRpcError as e:
                failures[e.code().name] += 1
                continue
            latencies.append(time.perf_counter() - began)
        return latencies, started, time.time()

    try:
        done = await asyncio.gather(*(caller(i) for i in range(callers)))
    finally:
        for channel in channels:
            await channel.close()
    return {
        "latencies": [x for lat, _, _ in done for x in lat],
        "started": min(s for _, s, _ in done),
        "finished": max(f for _, _, f in done),
        "failures": dict(failures),
    }


def run_row(pool: Any, target: str, kind: str, callers: int, seconds: float) -> dict[str, Any]:
    """One row: ``callers`` callers of ``kind`` shared out over the client processes."""
    method, payloads = requests(kind)
    processes = min(callers, CLIENT_PROCESSES)
    shares = [callers // processes + (i < callers % processes) for i in range(processes)]
    start_at = time.time() + 2.0  # time to connect and warm up
    offsets = np.cumsum([0, *shares[:-1]]).tolist()
    parts = pool.starmap(
        call_for,
        [
            (target, method, payloads, n, o, start_at, seconds)
            for n, o in zip(shares, offsets, strict=True)
        ],
    )
    latencies = np.asarray([x for p in parts for x in p["latencies"]]) * 1e3
    failures: Counter[str] = Counter()
    for p in parts:
        failures.update(p["failures"])
    wall = max(p["finished"] for p in parts) - min(p["started"] for p in parts)
    p50, p99 = np.percentile(latencies, [50, 99]) if len(latencies) else (float("nan"),) * 2
    return {
        "kind": kind,
        "callers": callers,
        "calls": len(latencies),
        "qps": len(latencies) / wall,
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "failures": dict(failures),
    }


# -- the server ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], workers: int, log: Path, timeout: float) -> tuple[Any, int]:
    """``mmgraph serve --workers N`` on a free loopback port; return once every process
    serves."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("mmgraph")), "serve", "--port", str(port)]
    with log.open("w") as out:
        server = subprocess.Popen(
            [*command, "--workers", str(workers)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    ready = f"serves on 127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while sum(line.endswith(ready) for line in log.read_text().splitlines()) < workers:
        if server.poll() is not None:
            raise RuntimeError(f"mmgraph serve exited with {server.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            stop_server(server)
            raise TimeoutError(f"mmgraph serve did not start within {timeout:.0f} s")
        time.sleep(0.5)
    return server, port


def stop_server(server: Any) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# -- the ceilings -------------------------------------------------------------------------------


def _rate(work: Any, items: int, seconds: float = 2.0) -> float:
    """Items per second of ``work()`` (``items`` each call), run for about ``seconds``."""
    work()
    done, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        work()
        done += items
    return done / (time.perf_counter() - began)


def index_rate(home: Path, run_id: str) -> float:
    """Uid queries per second of the bare index, one thread: each query's searches (k + 1 in
    its own type, k in the others) over the run's fused vectors, as the registry builds them."""
    from mmgraph.gnn.runs import load_run
    from mmgraph.service.serving.index import VectorIndex

    embeddings = load_run(home, run_id).embeddings("fused")
    indexes = {t: VectorIndex.build(v) for t, v in embeddings.items()}
    every = [(t, row) for t, n in TYPES.items() for row in range(n)]
    picked = np.random.default_rng(4).permutation(len(every))[:500]
    queries = [(every[i][0], embeddings[every[i][0]][every[i][1]][None]) for i in picked]

    def search_all() -> None:
        for own, query in queries:
            for node_type, index in indexes.items():
                index.search(query, K + (node_type == own))

    return _rate(search_all, len(queries))


def encoder_rates(text_kind: str) -> dict[str, float]:
    """Texts and pictures per second through the encoders in this process, by batch size (and
    for the text encoder, with 1 torch thread and one per core), the pictures' decoding included
    as the server does it. An encoder's ceiling is its best rate: the server's settings cannot
    lower the bar they are measured against."""
    import torch

    from mmgraph.ingest.encoders import ImageEncoder
    from mmgraph.ingest.encoders.text import make_text_encoder

    text, image = make_text_encoder(text_kind, "cpu"), ImageEncoder(device="cpu")
    texts, images = query_texts()[:BATCH], pictures(BATCH)
    rates = {}
    for threads in sorted({1, len(os.sched_getaffinity(0))}):
        torch.set_num_threads(threads)
        for size in (1, 8, BATCH):
            rates[f"text x{size} {threads}t"] = _rate(lambda n=size: text.encode(texts[:n]), size)
    for size in (1, 4, BATCH):
        rates[f"image x{size}"] = _rate(lambda n=size: image.encode(images[:n]), size)
    return {
        **rates,
        "text": max(v for k, v in rates.items() if k.startswith("text")),
        "image": max(v for k, v in rates.items() if k.startswith("image")),
    }


# -- one server configuration ---------------------------------------------------------------------


def bench_workers(
    args: argparse.Namespace, env: dict[str, str], workers: int, pool: Any, log: Path
) -> list[dict[str, Any]]:
    print(f"... starting mmgraph serve --workers {workers}", flush=True)
    server, port = start_server(env, workers, log, args.start_timeout)
    rows = []
    try:
        for repeat in range(args.repeat):
            for callers in args.callers:
                for kind in args.kinds:
                    print(f"... workers {workers}: {kind} x{callers} ({repeat + 1})", flush=True)
                    row = run_row(pool, f"127.0.0.1:{port}", kind, callers, args.seconds)
                    rows.append({**row, "workers": workers, "repeat": repeat})
    finally:
        stop_server(server)
    return rows


def median_rows(rows: list[dict[str, Any]]) -> dict[tuple[int, str, int], dict[str, Any]]:
    """(workers, kind, callers) -> the median of each figure over the sweeps; for uid rows also
    each sweep's ratio to the health check measured just before it (the load on a shared machine
    moves between sweeps more than between neighbouring rows) and their median."""
    by_key = {(r["workers"], r["kind"], r["callers"], r["repeat"]): r for r in rows}
    out: dict[tuple[int, str, int], dict[str, Any]] = {}
    for workers, kind, callers in {(r["workers"], r["kind"], r["callers"]) for r in rows}:
        same = [
            r for r in rows if (r["workers"], r["kind"], r["callers"]) == (workers, kind, callers)
        ]
        figures: dict[str, Any] = {
            f: statistics.median(r[f] for r in same) for f in ("qps", "p50_ms", "p99_ms", "calls")
        }
        figures["failed"] = sum(sum(r["failures"].values()) for r in same)
        health = [by_key.get((workers, "health", callers, r["repeat"])) for r in same]
        if kind == "uid" and all(health):
            figures["vs_health"] = [r["qps"] / h["qps"] for r, h in zip(same, health, strict=True)]
        out[(workers, kind, callers)] = figures
    return out


def print_table(rows: list[dict[str, Any]], ceilings: dict[str, float]) -> list[str]:
    """The table and the targets; returns the target lines."""
    table = median_rows(rows)
    print(f"ceilings: bare index {ceilings['index']:,.0f} uid queries/s (one thread)")
    for kind in ("text", "image"):
        rates = [
            f"{k[len(kind) + 1 :]} {v:,.0f}"
            for k, v in ceilings.items()
            if k.startswith(f"{kind} ")
        ]
        if rates:
            print(f"ceilings: {kind} encoder {ceilings[kind]:,.0f}/s at best ({', '.join(rates)})")
    ceiling_of = {kind: ceilings[kind] for kind in ("text", "image") if kind in ceilings}
    print(
        f"{'workers':>7} {'query':<7}{'callers':>8}{'QPS':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'failed':>8}  vs ceiling"
    )
    for workers, kind, callers in sorted(table, key=lambda k: (k[0], k[2], KINDS.index(k[1]))):
        r = table[(workers, kind, callers)]
        if "vs_health" in r:
            sweeps = ", ".join(f"{x:.2f}" for x in r["vs_health"])
            versus = (
                f"{statistics.median(r['vs_health']):.2f}x health ({sweeps}), "
                f"{r['qps'] / ceilings['index']:.2f}x index"
            )
        elif kind in ceiling_of:
            versus = f"{r['qps'] / ceiling_of[kind]:.2f}x {kind} encoder's best"
        else:
            versus = ""
        print(
            f"{workers:>7} {kind:<7}{callers:>8}{r['qps']:>9,.0f}{r['p50_ms']:>9.1f}"
            f"{r['p99_ms']:>9.1f}{r['failed']:>8}  {versus}"
        )
    lines = []
    for workers in sorted({k[0] for k in table}):
        if "vs_health" in table.get((workers, "uid", 32), {}):
            ratio = statistics.median(table[(workers, "uid", 32)]["vs_health"])
            lines.append(f"workers {workers}: uid x32 {ratio:.2f}x health x32 (target >= 0.6)")
        for kind in ("text", "image"):
            if (workers, kind, 8) not in table:
                continue
            r = table[(workers, kind, 8)]
            lines.append(
                f"workers {workers}: {kind} x8 {r['qps'] / ceiling_of[kind]:.2f}x the {kind} "
                f"encoder's best rate (target >= 0.5), p99 {r['p99_ms']:.1f} ms (target <= 50)"
            )
    print("\n".join(lines))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1])
    parser.add_argument("--seconds", type=float, default=5.0, help="per row")
    parser.add_argument("--repeat", type=int, default=1, help="sweeps; the table shows medians")
    parser.add_argument("--text-encoder", choices=("fp32", "int8"), default="fp32")
    parser.add_argument("--kinds", type=lambda s: s.split(","), default=list(KINDS))
    parser.add_argument("--callers", type=lambda s: [int(x) for x in s.split(",")], default=CALLERS)
    parser.add_argument("--start-timeout", type=float, default=300.0)
    args = parser.parse_args()

    import neo4j

    from mmgraph.core.config import Settings
    from mmgraph.graph.local_neo4j import LocalNeo4j
    from mmgraph.graph.store import GraphStore

    settings = Settings.from_env()
    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        if settings.neo4j_uri:
            uri, user, password = settings.neo4j_uri, settings.neo4j_user, settings.neo4j_password
        else:
            local = settings.model_copy(update={"home": home})
            server = stack.enter_context(LocalNeo4j.from_settings(local))
            uri, user, password = server.uri, server.user, server.password
        driver = stack.enter_context(neo4j.GraphDatabase.driver(uri, auth=(user, password)))
        store = GraphStore(driver, settings.neo4j_database)
        store.setup_schema()
        print("... writing the graph and the run", flush=True)
        write_graph(store)
        run_id = save_model(home)
        env = {
            **os.environ,
            "MMGRAPH_HOME": str(home),
            "NEO4J_URI": uri,
            "NEO4J_USER": user,
            "NEO4J_PASSWORD": password or "",
            "MMGRAPH_TEXT_ENCODER": args.text_encoder,
            "MMGRAPH_GRPC_HOST": "127.0.0.1",
        }
        print("... the ceilings: the bare index, the encoders", flush=True)
        ceilings = {"index": index_rate(home, run_id)}
        if {"text", "image"} & set(args.kinds):
            ceilings |= encoder_rates(args.text_encoder)
        pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(CLIENT_PROCESSES))
        rows = []
        for workers in args.workers:
            rows += bench_workers(args, env, workers, pool, home / f"serve-{workers}.log")

    print()
    targets = print_table(rows, ceilings)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "rows": rows,
                "ceilings": ceilings,
                "targets": targets,
                "args": vars(args),
                "machine": f"{platform.node()} {platform.machine()} ({os.cpu_count()} cpus)",
                "load_average_after": os.getloadavg(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
