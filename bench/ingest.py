"""Ingest benchmarks: the streaming pipeline against a bare driver loop and the bulk first load,
by input size, with peak memory; peak memory of a folder of poster-sized pictures; and the graph
store's raw write and export throughput.

Three modes (any together):

- ``--items 10000,100000,1000000`` (scaling): for each size, a JSONL file of that many items in
  the record format, each with a **precomputed 384-d vector** (``vectors.emb``), three numbers and
  ``--links`` relations (default 2: one to one of 300 ``Tag`` items, the others to other items);
  no text, so the text encoder never runs (MiniLM on 2 CPU cores would take over an hour for 1M
  texts). The file is loaded by each of ``--modes`` (default ``bare,transactional,bulk``), back to
  back, each in a fresh child process into an empty database of its own (a fresh local Neo4j
  home): ``bare`` is the driver loop of :mod:`bare_ingest` (the ceiling: no validation, no
  quarantine, no audit); ``transactional`` is ``ingest_files``, the call behind
  ``mmgraph ingest FILE`` on a server that holds data; ``bulk`` is ``bulk_ingest_files``, the call
  behind ``mmgraph ingest --bulk FILE``, from no running server to a loaded, restarted and stopped
  one (its import, restart and the writes after it are in its time). Each row: wall seconds,
  CPU seconds on every core (the run's process and those it waited for: in a bulk load the node
  files' worker, the importer and the server it restarts and stops; not the server a
  transactional run writes to, so the column compares bulk runs with each other only; a run's
  seconds cannot fall below it over the cores), nodes/s and relationships/s over the whole run,
  the ratio ``x bare`` (the bare loop's seconds over the row's: 1.0 is the ceiling), the child's
  peak RSS (``ru_maxrss``) and its growth during the run (``VmHWM``, reset just before it), and
  the run's seconds by stage. The memory claim
  being checked: flat peak memory from 10k to 1M items.
- ``--posters [N]`` (pictures, N default 20): N/2 JPEG photos (6000x4000, 24 MP: decoded at
  1/8 scale) and N/2 PNGs of 7000x7000 (49 MP, above the 40 MP ``max_image_pixels``:
  refused from the header, their items written without them), plus ``--clipart`` flat-colour
  PNG drawings of 12000x9000 (108 MP, small files), made in one child process, then ingested with
  the EfficientNet image encoder in another (model loaded before the measured part; its load is
  reported apart): peak RSS, growth, seconds, counts ingested, quarantined and written without
  their picture (warnings), with the reasons.
- ``--store`` (or ``--nodes``/``--rels``, or no mode at all): ``GraphStore.write_batch`` of N
  nodes (a D-dimensional float32 vector each) and M relationships, export to ``HeteroData``
  twice (the faster counts; the first is reported too), and a per-row ``MERGE`` baseline.

Only the Python processes' memory is measured; Neo4j's is its JVM's (``MMGRAPH_NEO4J_HEAP``,
``MMGRAPH_NEO4J_PAGECACHE``). The store mode uses the Neo4j of ``NEO4J_URI`` when set; the other
modes empty the database, so they refuse ``NEO4J_URI`` and always start local ones under a
temporary folder (``--workdir``: the inputs, and the bulk load's CSV, about 6 GB per million
384-d items, go there). Prints tables and merges ``scaling``, ``posters`` and ``store`` into
``bench/results/ingest.json``.

    python bench/ingest.py --items 100000,1000000 --modes bare,transactional
    python bench/ingest.py --items 1000000 --links 5 --modes bulk
    python bench/ingest.py --posters 20
    python bench/ingest.py --store [--nodes 100000] [--rels 500000] [--dim 384] [--batch 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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
    """(Child.) Ingest one file as ``mmgraph ingest FILE`` does (``mode``: ``transactional``,
    ``bulk``, or ``bare``, the driver loop of :mod:`bare_ingest`), measuring time and memory."""
    from mmgraph.core.config import Settings
    from mmgraph.graph.connection import open_store
    from mmgraph.ingest.bulk import bulk_ingest_files
    from mmgraph.ingest.encoding import Encoders
    from mmgraph.ingest.options import IngestOptions
    from mmgraph.ingest.pipeline import ingest_files

    mode = payload.get("mode", "transactional")
    if mode == "bare":
        return run_bare(payload)
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
    file = Path(payload["file"])
    with ExitStack() as stack:
        store = None if mode == "bulk" else stack.enter_context(open_store(settings))
        rss_before = rss_bytes()
        maxrss_before = maxrss_bytes()
        reset = reset_peak()
        t0, cpu0 = time.perf_counter(), os.times()
        if store is None:
            result = bulk_ingest_files(settings, [file], options, encoders)
        else:
            result = ingest_files(store, [file], options, encoders)
        wall, cpu = time.perf_counter() - t0, os.times()
    reasons: Counter[str] = Counter()
    if result.quarantine_file is not None:
        for line in result.quarantine_file.read_text().splitlines():
            entry = json.loads(line)
            # The reason without the picture's own size, so like refusals count together.
            reasons[f"{entry['kind']} {entry['field']}: {entry['message'].split(':')[0]}"] += 1
    return {
        "status": result.status,
        "nodes_written": result.nodes_written,
        "relationships_written": result.relationships_written,
        "quarantined": result.quarantined,
        "warnings": result.warnings,
        "quarantine_reasons": dict(reasons),
        "seconds": wall,
        # Every core's time: this process's, and that of the processes it started and waited
        # for (a bulk load's worker, importer and restarted server); not a server started before.
        "cpu_s": cpu.user - cpu0.user + cpu.system - cpu0.system,
        "children_cpu_s": (
            cpu.children_user - cpu0.children_user + cpu.children_system - cpu0.children_system
        ),
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


def run_bare(payload: dict[str, Any]) -> dict[str, Any]:
    """(Child.) The bare driver loop over one file, measured as :func:`run_ingest` is."""
    import neo4j
    from bare_ingest import bare_ingest

    from mmgraph.core.config import Settings

    settings = Settings.from_env()
    auth = (settings.neo4j_user, settings.neo4j_password or "")
    with neo4j.GraphDatabase.driver(settings.neo4j_uri or "", auth=auth) as driver:
        driver.verify_connectivity()
        rss_before = rss_bytes()
        reset = reset_peak()
        t0 = time.perf_counter()
        done = bare_ingest(driver, Path(payload["file"]), payload["batch_size"])
        wall = time.perf_counter() - t0
    return {
        "status": "ok",
        "nodes_written": done["nodes_written"],
        "relationships_written": done["relationships_written"],
        "quarantined": 0,
        "seconds": wall,
        "nodes_per_s": done["nodes_written"] / wall,
        "relationships_per_s": done["relationships_written"] / wall,
        "timings": done["timings"],
        "rss_before_mb": rss_before / MB,
        "peak_rss_mb": maxrss_bytes() / MB,
        "growth_mb": (hwm_bytes() - rss_before) / MB if reset else None,
    }


# -- scaling: items with precomputed vectors -----------------------------------------------------


def write_items_file(path: Path, n: int, links: int = 2, chunk: int = 5000) -> int:
    """Write ``TAGS`` tags, then ``n`` items each followed by its ``links`` relations (one to a
    tag, the others to other items); return bytes."""
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
                lines += [json.dumps(item), json.dumps(tag)]
                for k in range(1, links):
                    other = (i * 7919 + k) % n
                    related = {"src": f"item:{i}", "dst": f"item:{other}", "type": "RELATED_TO"}
                    lines.append(json.dumps({**related, "weight": 0.5}))
            out.write("\n".join(lines) + "\n")
    return path.stat().st_size


def scaling_benchmark(
    settings: Any, sizes: list[int], modes: list[str], links: int, work: Path, batch: int
) -> list[dict[str, Any]]:
    """For each size, one input file, and each mode run on a database of its own (a fresh
    local Neo4j home): back to back, so the ratios compare runs under the same load."""
    rows = []
    for n in sizes:
        path = work / f"items-{n}.jsonl"
        t0 = time.perf_counter()
        size = write_items_file(path, n, links)
        made_s = time.perf_counter() - t0
        print(
            f"... {n:,} items: {size / MB:,.0f} MB of JSONL written in {made_s:.0f} s", flush=True
        )
        for mode in modes:
            row = {"items": n, "links": links, "mode": mode, "file_mb": size / MB}
            row.update(_run_on_fresh_database(settings, mode, path, work, batch))
            rows.append(row)
            _print_ingest_row(row)
        path.unlink()
    return rows


def _run_on_fresh_database(
    settings: Any, mode: str, path: Path, work: Path, batch: int
) -> dict[str, Any]:
    """Ingest ``path`` in a child process into an empty local Neo4j; then count what it holds.
    The bulk load starts from no server (it stops and starts one itself, timed); the others
    write to a server started beforehand (not timed)."""
    import neo4j

    from mmgraph.graph.local_neo4j import LocalNeo4j
    from mmgraph.graph.store import GraphStore

    home = work / f"home-{mode}"
    local = LocalNeo4j.from_settings(settings.model_copy(update={"home": home}))
    env = {"MMGRAPH_HOME": str(home), "NEO4J_DATABASE": settings.neo4j_database}
    payload = {
        "file": str(path),
        "batch_size": batch,
        "quarantine_dir": str(work / "quarantine"),
        "load_image_model": False,
        "mode": mode,
    }
    load = os.getloadavg()
    try:
        if mode != "bulk":
            local.start()
            env |= {"NEO4J_URI": local.uri, "NEO4J_USER": local.user}
            env["NEO4J_PASSWORD"] = local.password
        row = _subprocess("--_ingest", payload, env)
        if "error" not in row:
            if mode == "bulk":
                local.start()
            with neo4j.GraphDatabase.driver(local.uri, auth=(local.user, local.password)) as d:
                counts = GraphStore(d, settings.neo4j_database).counts()
            row["graph_nodes"], row["graph_relationships"] = counts.nodes, counts.relationships
    finally:
        local.stop()
        shutil.rmtree(home, ignore_errors=True)
    return {**row, "loadavg_before": load, "loadavg_after": os.getloadavg()}


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
    label = f"{row['items']:,} items {row['mode']}" if "items" in row else "posters"
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
        scaling = figures["scaling"]
        print(
            f"\nscaling: items with a precomputed {DIM}-d vector, 3 numbers and "
            f"{scaling['links']} relations each (no text: the text encoder does not run);"
        )
        print("each mode in its own child process on an empty database, back to back")
        header = (
            "items",
            "mode",
            "seconds",
            "cpu s",
            "nodes/s",
            "rels/s",
            "x bare",
            "peak MB",
            "growth MB",
        )
        print("".join(f"{h:>14}" for h in header))
        bare = {r["items"]: r["seconds"] for r in scaling["runs"] if r.get("mode") == "bare"}
        for row in scaling["runs"]:
            if "error" in row:
                print(f"{row['items']:>14,}{row['mode']:>14}  FAILED: {row['error']}")
                continue
            ratio = bare[row["items"]] / row["seconds"] if row["items"] in bare else None
            print(
                f"{row['items']:>14,}{row['mode']:>14}{row['seconds']:>14.1f}"
                f"{_cpu(row):>14}{row['nodes_per_s']:>14,.0f}{row['relationships_per_s']:>14,.0f}"
                f"{'' if ratio is None else f'{ratio:.2f}':>14}{row['peak_rss_mb']:>14,.0f}"
                f"{_mb(row['growth_mb']):>14}"
            )
        print(
            "stages (s): "
            + "; ".join(
                f"{row['items']:,} {row['mode']}: "
                + ", ".join(f"{k} {v:.1f}" for k, v in row.get("timings", {}).items())
                for row in scaling["runs"]
                if "error" not in row
            )
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
            ("written without their picture", row["warnings"]),
            ("RSS at start MB", f"{row['rss_start_mb']:,.0f}"),
            ("RSS before ingest MB (model loaded)", f"{row['rss_before_mb']:,.0f}"),
            ("peak RSS MB (ru_maxrss)", f"{row['peak_rss_mb']:,.0f}"),
            ("growth during ingest MB", _mb(row["growth_mb"])),
        ):
            print(f"{key:<40}{value:>14}")
        for reason, count in row["quarantine_reasons"].items():
            print(f"  {count} x {reason}")


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def _cpu(row: dict[str, Any]) -> str:
    """The run's CPU seconds on every core (``n/a`` for the bare loop and older figures)."""
    if "cpu_s" not in row:
        return "n/a"
    return f"{row['cpu_s'] + row['children_cpu_s']:,.1f}"


def _on_one_server(
    stack: ExitStack,
    settings: Any,
    args: argparse.Namespace,
    run_store: bool,
    work: Path,
    common: dict[str, Any],
) -> dict[str, Any]:
    """The store and posters benchmarks, on one Neo4j: ``NEO4J_URI``'s or a local one."""
    import neo4j

    from mmgraph.graph.local_neo4j import LocalNeo4j
    from mmgraph.graph.store import GraphStore

    new: dict[str, Any] = {}
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
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda s: sorted(int(x) for x in s.split(",") if x)  # noqa: E731
    parser.add_argument("--items", type=ints, help="scaling sizes, e.g. 10000,100000,1000000")
    parser.add_argument(
        "--modes",
        type=lambda s: [m for m in s.split(",") if m],
        default=["bare", "transactional", "bulk"],
        help="with --items: which of bare,transactional,bulk to run (default all, in that order)",
    )
    parser.add_argument(
        "--links", type=int, default=2, help="with --items: relations per item (default 2)"
    )
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

    from mmgraph.core.config import Settings

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
        if args.items:
            load = os.getloadavg()
            runs = scaling_benchmark(
                settings, args.items, args.modes, args.links, work, args.ingest_batch
            )
            new["scaling"] = {
                "runs": runs,
                "links": args.links,
                "input": f"items with a precomputed {DIM}-d vector, 3 numbers, {args.links} "
                f"relations; {TAGS} Tag items; no text (the text encoder does not run)",
                "ingest_batch": args.ingest_batch,
                **common,
                "loadavg_before": load,
                "loadavg_after": os.getloadavg(),
            }
        if run_store or args.posters:
            new |= _on_one_server(stack, settings, args, run_store, work, common)
    _print_tables(new)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({**figures, **new}, indent=2, default=str))


if __name__ == "__main__":
    main()
