"""Ingest benchmarks: the streaming pipeline's speed and peak memory by input size, peak memory of
a folder of poster-sized pictures, and the graph store's raw write and export throughput.

Three modes (any together; one local Neo4j for the whole run, stopped at the end):

- ``--items 10000,100000,1000000`` (scaling): for each size, a JSONL file of that many items in
  the record format, each with a **precomputed 384-d vector** (``vectors.emb``), three numbers and
  two relations (one to one of 300 ``Tag`` items, one to another item); no text, so the text
  encoder never runs (MiniLM on 2 CPU cores would take over an hour for 1M texts). The file is
  ingested by ``ingest_files``, the call behind ``mmgraph ingest FILE``, in a fresh child process
  that reports wall seconds, nodes/s and relationships/s (each over the whole run's wall time),
  its RSS just before the ingest, the peak RSS (``ru_maxrss``) and the peak growth during the
  ingest (``VmHWM``, reset just before it). The memory claim being checked: flat peak memory from
  10k to 1M items. The database is emptied before each size.
- ``--posters [N]`` (pictures, N default 20): N/2 JPEG photos (6000x4000, 24 MP: decoded at
  1/8 scale) and N/2 PNGs of 7000x7000 (49 MP, above the 40 MP ``max_image_pixels``:
  quarantined from the header), plus ``--clipart`` flat-colour PNG drawings of 12000x9000
  (108 MP, small files), made in one child process, then ingested with the EfficientNet image
  encoder in another (model loaded before the measured part; its load is reported apart): peak
  RSS, growth, seconds, counts ingested and quarantined with the reasons.
- ``--store`` (or ``--nodes``/``--rels``, or no mode at all): ``GraphStore.write_batch`` of N
  nodes (a D-dimensional float32 vector each) and M relationships, export to ``HeteroData``
  twice (the faster counts; the first is reported too), and a per-row ``MERGE`` baseline.

Only the Python processes' memory is measured; Neo4j's is its JVM's (``MMGRAPH_NEO4J_HEAP``,
``MMGRAPH_NEO4J_PAGECACHE``). The store mode uses the Neo4j of ``NEO4J_URI`` when set; the other
modes empty the database, so they refuse ``NEO4J_URI`` and always start the local one under a
temporary ``MMGRAPH_HOME``. Prints tables and merges ``scaling``, ``posters`` and ``store`` into
``bench/results/ingest.json``.

    python bench/ingest.py --items 10000,100000,1000000 --posters 20
    python bench/ingest.py --store [--nodes 100000] [--rels 500000] [--dim 384] [--batch 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
from memory import hwm_bytes, maxrss_bytes, reset_peak, rss_bytes

RESULTS = Path(__file__).parent / "results" / "ingest.json"
DIM = 384
TAGS = 300
POSTER_JPEG = (6000, 4000)
POSTER_PNG = (7000, 7000)
CLIPART_PNG = (12000, 9000)
CLEAR = "MATCH (n) CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 10000 ROWS"
MB = 1024 * 1024


# -- child processes ----------------------------------------------------------------------------


def _subprocess(flag: str, payload: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """Run this script with a hidden ``flag`` in a fresh interpreter; its last stdout line is
    the JSON answer. A crash (e.g. killed for memory) becomes ``{"error": ...}``."""
    # Through a shell that forks: a child spawned straight from this process (vfork, then exec)
    # starts with this process's peak RSS as its own ru_maxrss; a forked shell's child does not.
    cmd = ["/bin/sh", "-c", '"$@"; exit $?', "sh", sys.executable, __file__, flag]
    cmd.append(json.dumps(payload))
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env})
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: {' | '.join(tail)}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_ingest(payload: dict[str, Any]) -> dict[str, Any]:
    """(Child.) Ingest one file as ``mmgraph ingest FILE`` does, measuring time and memory."""
    from mmgraph.core.config import Settings
    from mmgraph.graph.connection import open_store
    from mmgraph.ingest.encoding import Encoders
    from mmgraph.ingest.options import IngestOptions
    from mmgraph.ingest.pipeline import ingest_files

    settings = Settings.from_env()
    options = IngestOptions(
        quarantine_dir=Path(payload["quarantine_dir"]),
        batch_size=payload["batch_size"],
        max_image_pixels=settings.max_image_pixels,
    )
    encoders = Encoders()
    rss_start = rss_bytes()
    model_s = None
    if payload["load_image_model"]:
        t0 = time.perf_counter()
        encoders.image_encoder().load()
        model_s = time.perf_counter() - t0
    with open_store(settings) as store:
        rss_before = rss_bytes()
        maxrss_before = maxrss_bytes()
        reset = reset_peak()
        t0 = time.perf_counter()
        result = ingest_files(store, [Path(payload["file"])], options, encoders)
        wall = time.perf_counter() - t0
    reasons: Counter[str] = Counter()
    if result.quarantine_file is not None:
        for line in result.quarantine_file.read_text().splitlines():
            entry = json.loads(line)
            # The reason without the picture's own size, so like refusals count together.
            reasons[f"{entry['field']}: {entry['message'].split(':')[0]}"] += 1
    return {
        "status": result.status,
        "nodes_written": result.nodes_written,
        "relationships_written": result.relationships_written,
        "quarantined": result.quarantined,
        "quarantine_reasons": dict(reasons),
        "seconds": wall,
        "nodes_per_s": result.nodes_written / wall,
        "relationships_per_s": result.relationships_written / wall,
        "timings": result.timings,
        "rss_start_mb": rss_start / MB,
        "image_model_load_s": model_s,
        "rss_before_mb": rss_before / MB,
        "maxrss_before_mb": maxrss_before / MB,
        "peak_rss_mb": maxrss_bytes() / MB,
        "growth_mb": (hwm_bytes() - rss_before) / MB if reset else None,
        "peak_reset_before_ingest": reset,
    }


# -- scaling: items with precomputed vectors -----------------------------------------------------


def write_items_file(path: Path, n: int, chunk: int = 5000) -> int:
    """Write ``TAGS`` tags, then ``n`` items each followed by its two relations; return bytes."""
    rng = np.random.default_rng(n)
    with path.open("w", encoding="utf-8") as out:
        for k in range(TAGS):
            out.write(json.dumps({"uid": f"tag:{k}", "type": "Tag", "props": {"name": f"t{k}"}}))
            out.write("\n")
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            vectors = np.round(rng.standard_normal((stop - start, DIM)), 4).tolist()
            numbers = np.round(rng.gamma(2.0, 10.0, (stop - start, 3)), 2).tolist()
            lines = []
            for i, vector, (price, rating, stock) in zip(
                range(start, stop), vectors, numbers, strict=True
            ):
                item = {
                    "uid": f"item:{i}",
                    "type": "Item",
                    "vectors": {"emb": vector},
                    "numbers": {"price": price, "rating": rating, "stock": stock},
                    "props": {"rank": i},
                }
                tag = {"src": f"item:{i}", "dst": f"tag:{i % TAGS}", "type": "HAS_TAG"}
                other = (i * 7919 + 1) % n
                related = {"src": f"item:{i}", "dst": f"item:{other}", "type": "RELATED_TO"}
                lines += [json.dumps(item), json.dumps(tag), json.dumps({**related, "weight": 0.5})]
            out.write("\n".join(lines) + "\n")
    return path.stat().st_size


def scaling_benchmark(
    store: Any, env: dict[str, str], sizes: list[int], work: Path, batch: int
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        path = work / f"items-{n}.jsonl"
        t0 = time.perf_counter()
        size = write_items_file(path, n)
        made_s = time.perf_counter() - t0
        print(
            f"... {n:,} items: {size / MB:,.0f} MB of JSONL written in {made_s:.0f} s", flush=True
        )
        _clear(store)
        payload = {
            "file": str(path),
            "batch_size": batch,
            "quarantine_dir": str(work / "quarantine"),
            "load_image_model": False,
        }
        row = {"items": n, "file_mb": size / MB, **_subprocess("--_ingest", payload, env)}
        path.unlink()
        if "error" not in row:
            counts = store.counts()
            row["graph_nodes"], row["graph_relationships"] = counts.nodes, counts.relationships
        rows.append(row)
        _print_ingest_row(row)
    return rows


# -- pictures: poster-sized JPEGs and PNGs ------------------------------------------------------


def make_posters(payload: dict[str, Any]) -> dict[str, Any]:
    """(Child.) Write the pictures and a JSONL of items naming them; return what was made."""
    from PIL import Image, ImageDraw

    folder = Path(payload["folder"])
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    made = []
    n_jpeg = (payload["n"] + 1) // 2
    for i in range(payload["n"]):
        if i < n_jpeg:
            (w, h), name = POSTER_JPEG, f"photo-{i}.jpg"
            image = Image.fromarray(_photo(w, h, rng))
            image.save(folder / name, quality=90)
        else:
            (w, h), name = POSTER_PNG, f"poster-{i}.png"
            image = Image.fromarray(_photo(w, h, rng, noise=0))
            _shapes(ImageDraw.Draw(image), w, h, rng)
            image.save(folder / name, compress_level=6)
        made.append(name)
    for i in range(payload["clipart"]):
        w, h = CLIPART_PNG
        image = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 256, 3)))
        _shapes(ImageDraw.Draw(image), w, h, rng)
        name = f"clipart-{i}.png"
        image.save(folder / name, optimize=False)
        made.append(name)
    records = [{"uid": f"poster:{name}", "type": "Poster", "image": name} for name in made]
    (folder / "posters.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return {
        "files": {name: (folder / name).stat().st_size for name in made},
        "peak_rss_mb": maxrss_bytes() / MB,
    }


def _photo(w: int, h: int, rng: np.random.Generator, noise: int = 12) -> np.ndarray:
    """A smooth colour gradient with waves and, for photos, grain (a JPEG of a few MB)."""
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    channels = []
    for _ in range(3):
        a, b, f = rng.uniform(40, 200), rng.uniform(-60, 60), rng.uniform(2, 12)
        channels.append(a + b * x + 30 * np.sin(f * (x + y) * np.pi) * np.cos(f * y * 2.1))
    image = np.stack(channels, axis=-1)
    del channels
    if noise:
        image += rng.integers(-noise, noise + 1, image.shape, dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def _shapes(draw: Any, w: int, h: int, rng: np.random.Generator) -> None:
    for _ in range(8):
        x0, y0 = int(rng.integers(0, w * 3 // 4)), int(rng.integers(0, h * 3 // 4))
        box = (
            x0,
            y0,
            x0 + int(rng.integers(w // 10, w // 4)),
            y0 + int(rng.integers(h // 10, h // 4)),
        )
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)


def posters_benchmark(
    store: Any, env: dict[str, str], n: int, clipart: int, work: Path, batch: int
) -> dict[str, Any]:
    folder = work / "posters"
    t0 = time.perf_counter()
    made = _subprocess("--_make_posters", {"folder": str(folder), "n": n, "clipart": clipart}, env)
    if "error" in made:
        return {"error": f"making the pictures: {made['error']}"}
    total = sum(made["files"].values())
    print(
        f"... {len(made['files'])} pictures ({total / MB:,.0f} MB) made in "
        f"{time.perf_counter() - t0:.0f} s (generator peak RSS {made['peak_rss_mb']:,.0f} MB)",
        flush=True,
    )
    _clear(store)
    payload = {
        "file": str(folder / "posters.jsonl"),
        "batch_size": batch,
        "quarantine_dir": str(work / "quarantine"),
        "load_image_model": True,
    }
    row = {
        "pictures": {
            "jpeg": {"count": (n + 1) // 2, "size": POSTER_JPEG},
            "png": {"count": n // 2, "size": POSTER_PNG},
            "clipart_png": {"count": clipart, "size": CLIPART_PNG},
        },
        "files_mb": {name: size / MB for name, size in made["files"].items()},
        "generator_peak_rss_mb": made["peak_rss_mb"],
        **_subprocess("--_ingest", payload, env),
    }
    _print_ingest_row(row)
    return row


def _print_ingest_row(row: dict[str, Any]) -> None:
    label = f"{row['items']:,} items" if "items" in row else "posters"
    if "error" in row:
        print(f"{label}: FAILED {row['error']}", flush=True)
        return
    growth = "n/a" if row["growth_mb"] is None else f"{row['growth_mb']:,.0f} MB"
    print(
        f"{label}: {row['seconds']:.1f} s, {row['nodes_written']:,} nodes "
        f"({row['nodes_per_s']:,.0f}/s), {row['relationships_written']:,} rels "
        f"({row['relationships_per_s']:,.0f}/s), quarantined {row['quarantined']}, "
        f"RSS before {row['rss_before_mb']:,.0f} MB, peak {row['peak_rss_mb']:,.0f} MB, "
        f"growth {growth}",
        flush=True,
    )


# -- store: raw write_batch and export throughput -----------------------------------------------


def _nodes(start: int, stop: int, dim: int, rng: np.random.Generator) -> list[Any]:
    from mmgraph.graph.store import NodeRow

    vectors = rng.standard_normal((stop - start, dim), dtype=np.float32)
    return [
        NodeRow(f"n:{i}", "Item", {"rank": i}, {"feat": (vectors[i - start], "synthetic@1")})
        for i in range(start, stop)
    ]


def _write_nodes(store: Any, n: int, dim: int, batch: int) -> float:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        store.write_batch(_nodes(start, min(start + batch, n), dim, rng), [], "bench")
    return time.perf_counter() - t0


def _write_rels(store: Any, n: int, m: int, batch: int) -> float:
    from mmgraph.graph.store import RelRow

    rng = np.random.default_rng(1)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    t0 = time.perf_counter()
    for start in range(0, m, batch):
        rows = [
            RelRow(f"n:{s}", f"n:{d}", "LINKS", 1.0)
            for s, d in zip(src[start : start + batch], dst[start : start + batch], strict=True)
        ]
        store.write_batch([], rows, "bench")
    return time.perf_counter() - t0


def _per_row_baseline(store: Any, n: int, dim: int) -> float:
    """One ``MERGE`` statement per node, a transaction per 1,000 statements."""
    import neo4j

    rng = np.random.default_rng(2)
    rows = [
        row for start in range(0, n, 1000) for row in _nodes(start, min(start + 1000, n), dim, rng)
    ]
    t0 = time.perf_counter()
    with store.session() as session:
        for start in range(0, n, 1000):

            def work(tx: neo4j.ManagedTransaction, chunk: list[Any]) -> None:
                for row in chunk:
                    tx.run(
                        "MERGE (n:Entity {uid: $uid}) ON CREATE SET n:Baseline "
                        "SET n.type = 'Baseline', n += $props",
                        uid=f"b:{row.uid}",
                        props=row.properties(),
                    ).consume()

            session.execute_write(work, rows[start : start + 1000])
    return time.perf_counter() - t0


def store_benchmark(store: Any, args: argparse.Namespace) -> dict[str, Any]:
    from mmgraph.gnn.data import export_heterodata

    nodes_s = _write_nodes(store, args.nodes, args.dim, args.batch)
    rels_s = _write_rels(store, args.nodes, args.rels, args.batch)
    # Twice: right after the writes, and again (the second run's caches are warm).
    export_runs = []
    for _ in range(2):
        t0 = time.perf_counter()
        exported = export_heterodata(store)
        export_runs.append(time.perf_counter() - t0)
    export_s = min(export_runs)
    assert exported.data["Item"].num_nodes == args.nodes
    exported_edges = exported.data["Item", "LINKS", "Item"].edge_index.shape[1]
    baseline_s = _per_row_baseline(store, args.baseline, args.dim)
    figures = {
        "nodes": args.nodes,
        "relationships": args.rels,
        "relationships_after_merge": exported_edges,
        "dim": args.dim,
        "batch": args.batch,
        "nodes_per_s": args.nodes / nodes_s,
        "relationships_per_s": args.rels / rels_s,
        "export_nodes_per_s": args.nodes / export_s,
        "export_relationships_per_s": exported_edges / export_s,
        "export_seconds": export_runs,
        "export_nodes_per_s_first": args.nodes / export_runs[0],
        "per_row_merge_nodes_per_s": args.baseline / baseline_s,
    }
    print(f"{'measure':<34}{'value':>14}")
    for key in (
        "nodes_per_s",
        "relationships_per_s",
        "export_nodes_per_s",
        "export_nodes_per_s_first",
        "export_relationships_per_s",
        "per_row_merge_nodes_per_s",
    ):
        print(f"{key:<34}{figures[key]:>14,.0f}")
    shape = str((args.nodes, args.rels, args.dim, args.batch))
    print(f"{'(nodes, rels, dim, batch)':<34}{shape:>14}")
    return figures


# -- the run ------------------------------------------------------------------------------------


def _clear(store: Any) -> None:
    """Empty the database (the items, the audit trail and the kept number standardisations)."""
    with store.session() as session:
        session.run(CLEAR).consume()


def _print_tables(figures: dict[str, Any]) -> None:
    if "scaling" in figures:
        print("\nscaling: items with a precomputed 384-d vector, 3 numbers and 2 relations each")
        print("(no text: the text encoder does not run); one child process per size")
        header = ("items", "seconds", "nodes/s", "rels/s", "peak RSS MB", "before MB", "growth MB")
        print("".join(f"{h:>13}" for h in header))
        for row in figures["scaling"]["runs"]:
            if "error" in row:
                print(f"{row['items']:>13,}  FAILED: {row['error']}")
                continue
            growth = row["growth_mb"]
            print(
                f"{row['items']:>13,}{row['seconds']:>13.1f}{row['nodes_per_s']:>13,.0f}"
                f"{row['relationships_per_s']:>13,.0f}{row['peak_rss_mb']:>13,.0f}"
                f"{row['rss_before_mb']:>13,.0f}" + f"{_mb(growth):>13}"
            )
    if "posters" in figures:
        row = figures["posters"]
        print("\nposters: ingest with the EfficientNet image encoder (model loaded beforehand)")
        if "error" in row:
            print(f"FAILED: {row['error']}")
            return
        for key, value in (
            (
                "pictures (files MB)",
                f"{len(row['files_mb'])} ({sum(row['files_mb'].values()):.0f})",
            ),
            ("seconds", f"{row['seconds']:.1f}"),
            ("ingested", row["nodes_written"]),
            ("quarantined", row["quarantined"]),
            ("RSS at start MB", f"{row['rss_start_mb']:,.0f}"),
            ("RSS before ingest MB (model loaded)", f"{row['rss_before_mb']:,.0f}"),
            ("peak RSS MB (ru_maxrss)", f"{row['peak_rss_mb']:,.0f}"),
            ("growth during ingest MB", _mb(row["growth_mb"])),
        ):
            print(f"{key:<40}{value:>14}")
        for reason, count in row["quarantine_reasons"].items():
            print(f"  quarantined {count} x {reason}")


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: sorted(int(x) for x in s.split(",") if x)  # noqa: E731
    parser.add_argument("--items", type=ints, help="scaling sizes, e.g. 10000,100000,1000000")
    parser.add_argument(
        "--posters",
        type=int,
        nargs="?",
        const=20,
        help="pictures (default 20): half JPEG 24 MP, half PNG 49 MP",
    )
    parser.add_argument("--clipart", type=int, default=2, help="108 MP flat PNGs with --posters")
    parser.add_argument("--ingest-batch", type=int, default=2000, help="ingest batch_size")
    parser.add_argument("--workdir", type=Path, help="where inputs are written (default: /tmp)")
    parser.add_argument("--store", action="store_true", help="the write_batch/export benchmark")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--rels", type=int)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--baseline", type=int, default=5000)
    parser.add_argument("--_ingest", help=argparse.SUPPRESS)
    parser.add_argument("--_make_posters", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args._ingest:
        print(json.dumps(run_ingest(json.loads(args._ingest))))
        return
    if args._make_posters:
        print(json.dumps(make_posters(json.loads(args._make_posters))))
        return

    import neo4j

    from mmgraph.core.config import Settings
    from mmgraph.graph.local_neo4j import LocalNeo4j
    from mmgraph.graph.store import GraphStore

    run_store = args.store or args.nodes is not None or args.rels is not None
    run_store = run_store or (args.items is None and args.posters is None)
    args.nodes = 100_000 if args.nodes is None else args.nodes
    args.rels = 500_000 if args.rels is None else args.rels
    settings = Settings.from_env()
    if settings.neo4j_uri and (args.items or args.posters):
        parser.error("--items and --posters empty the database: unset NEO4J_URI")
    common = {
        "machine": f"{platform.node()} {platform.machine()} ({os.cpu_count()} CPUs)",
        "neo4j_heap": settings.neo4j_heap,
        "neo4j_pagecache": settings.neo4j_pagecache,
    }
    figures = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    # Older results kept the store figures at the top level.
    if "nodes_per_s" in figures:
        figures = {"store": figures}
    new: dict[str, Any] = {}
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=args.workdir)))
        env: dict[str, str] = {}
        if settings.neo4j_uri:
            uri, auth = settings.neo4j_uri, (settings.neo4j_user, settings.neo4j_password)
        else:
            home = work / "home"
            server = stack.enter_context(
                LocalNeo4j.from_settings(settings.model_copy(update={"home": home}))
            )
            uri, auth = server.uri, (server.user, server.password)
            env = {
                "MMGRAPH_HOME": str(home),
                "NEO4J_URI": uri,
                "NEO4J_USER": server.user,
                "NEO4J_PASSWORD": server.password,
                "NEO4J_DATABASE": settings.neo4j_database,
            }
        driver = stack.enter_context(neo4j.GraphDatabase.driver(uri, auth=auth))
        store = GraphStore(driver, settings.neo4j_database)
        store.setup_schema()
        if run_store:
            load = os.getloadavg()
            new["store"] = {**store_benchmark(store, args), **common, "loadavg_before": load}
            new["store"]["loadavg_after"] = os.getloadavg()
        if args.posters:
            load = os.getloadavg()
            row = posters_benchmark(store, env, args.posters, args.clipart, work, args.ingest_batch)
            new["posters"] = {**row, **common, "loadavg_before": load}
            new["posters"]["loadavg_after"] = os.getloadavg()
        if args.items:
            load = os.getloadavg()
            runs = scaling_benchmark(store, env, args.items, work, args.ingest_batch)
            new["scaling"] = {
                "runs": runs,
                "input": f"items with a precomputed {DIM}-d vector, 3 numbers, 2 relations; "
                f"{TAGS} Tag items; no text (the text encoder does not run)",
                "ingest_batch": args.ingest_batch,
                **common,
                "loadavg_before": load,
                "loadavg_after": os.getloadavg(),
            }
    _print_tables(new)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({**figures, **new}, indent=2, default=str))


if __name__ == "__main__":
    main()
