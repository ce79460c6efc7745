"""From a file of new items dropped in a folder to all of them answering ``Similar``, without
retraining (a benchmark, not a test).

Base: ``--base`` synthetic items (random 384-d text vectors, and 1280-d image vectors on half of
them, tagged as the configured encoders tag theirs) with three of ``--tags`` tags each; a
``--model`` run is trained on it (``--epochs``), promoted, and served by a gRPC server on
loopback. Then a drop folder gets one JSONL file of ``--items`` new items, each with a short text
from a small vocabulary, a generated PNG (Pillow) and two HAS_TAG links to base tags. Timed from
there: the scheduled ingest of the folder (``ingest_folder``: validation, text and image encoding
(encoder loading included, as in a cron run) and writes), the refresh (export, inductive
inference, write-back to Neo4j, overlay, index update of the running server), and ``Similar`` for
every new item through the client. Target: under 60 s for 1,000 items on this CPU.

Uses the Neo4j named by ``NEO4J_URI``, else starts the local one under a temporary
``MMGRAPH_HOME``. Prints a table and writes ``bench/results/freshness.json``.

    python bench/freshness.py [--items 1000] [--base 3000] [--tags 100] [--model hgt]
        [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import neo4j
import numpy as np
from PIL import Image, ImageDraw

from mmgraph.core.config import Settings
from mmgraph.gnn.data import export_heterodata
from mmgraph.gnn.experiment import run_experiment
from mmgraph.gnn.split import SplitConfig, split_graph
from mmgraph.gnn.train import TrainConfig
from mmgraph.graph.local_neo4j import LocalNeo4j
from mmgraph.graph.store import GraphStore, NodeRow, RelRow
from mmgraph.ingest.encoders import ImageEncoder
from mmgraph.ingest.encoders.text import make_text_encoder
from mmgraph.ingest.encoding import Encoders
from mmgraph.ingest.options import IngestOptions
from mmgraph.ingest.scheduled import ingest_folder
from mmgraph.service.rpc.client import AnalyticsClient
from mmgraph.service.rpc.server import create_server
from mmgraph.service.serving.registry import Registry
from mmgraph.service.workflows.freshness import refresh_embeddings
from mmgraph.service.workflows.promotion import promote_run

RESULTS = Path(__file__).parent / "results" / "freshness.json"
TEXT_DIM = 384
TARGET_SECONDS = 60.0
VOCABULARY = [
    "red",
    "blue",
    "green",
    "yellow",
    "small",
    "large",
    "round",
    "square",
    "bright",
    "dark",
    "happy",
    "sad",
    "cat",
    "dog",
    "bird",
    "fish",
    "tree",
    "flower",
    "sun",
    "moon",
    "star",
    "cloud",
    "house",
    "car",
    "boat",
    "train",
    "apple",
    "cake",
    "cup",
    "hat",
    "shoe",
    "ball",
]
COLOURS = [(220, 40, 40), (40, 90, 220), (40, 170, 70), (240, 200, 40), (30, 30, 30)]


def _base(store: GraphStore, encoders: Encoders, n: int, tags: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    text_tag, image_tag = encoders.text_tag(), encoders.image_tag()
    tag_text = rng.standard_normal((tags, TEXT_DIM), dtype=np.float32)
    nodes = [
        NodeRow(f"t:{t}", "Tag", {"text": f"tag {t}"}, {"text": (tag_text[t], text_tag)})
        for t in range(tags)
    ]
    store.write_batch(nodes, [], "bench-base")
    for start in range(0, n, 2000):
        stop = min(n, start + 2000)
        text = rng.standard_normal((stop - start, TEXT_DIM), dtype=np.float32)
        image = rng.standard_normal((stop - start, ImageEncoder.dim), dtype=np.float32)
        rows, rels = [], []
        for i in range(start, stop):
            vectors = {"text": (text[i - start], text_tag)}
            if i % 2 == 0:
                vectors["image"] = (image[i - start], image_tag)
            rows.append(NodeRow(f"i:{i}", "Item", {"text": f"item {i}"}, vectors))
            rels += [RelRow(f"i:{i}", f"t:{t}", "HAS_TAG") for t in rng.choice(tags, 3, False)]
        store.write_batch(rows, [], "bench-base")
        store.write_batch([], rels, "bench-base")


def _drop(folder: Path, n: int, tags: int, seed: int) -> Path:
    """One JSONL file of ``n`` items with text, a PNG each and two tags, ready in ``folder``."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True)
    staging = folder.parent / "staging.jsonl"
    with staging.open("w") as f:
        for i in range(n):
            picture = Image.new("RGB", (96, 96), (255, 255, 255))
            draw = ImageDraw.Draw(picture)
            for _ in range(3):
                x, y = rng.integers(0, 64, 2)
                colour = COLOURS[int(rng.integers(len(COLOURS)))]
                draw.ellipse([int(x), int(y), int(x) + 32, int(y) + 32], fill=colour)
            picture.save(images / f"{i}.png")
            text = " ".join(rng.choice(VOCABULARY, int(rng.integers(4, 9))))
            item = {"uid": f"new:{i}", "type": "Item", "text": text, "image": f"images/{i}.png"}
            f.write(json.dumps(item) + "\n")
            for t in rng.choice(tags, 2, False):
                f.write(json.dumps({"src": f"new:{i}", "dst": f"t:{t}", "type": "HAS_TAG"}) + "\n")
    target = folder / "new-items.jsonl"
    staging.rename(target)  # complete when it appears, as a scheduled writer should
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--base", type=int, default=3000)
    parser.add_argument("--tags", type=int, default=100)
    parser.add_argument("--model", default="hgt")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = Settings.from_env()
    with ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        settings = env.model_copy(update={"home": home})
        if env.neo4j_uri:
            uri, auth = env.neo4j_uri, (env.neo4j_user, env.neo4j_password)
        else:
            server = stack.enter_context(LocalNeo4j.from_settings(settings))
            uri, auth = server.uri, (server.user, server.password)
        driver = stack.enter_context(neo4j.GraphDatabase.driver(uri, auth=auth))
        store = GraphStore(driver, env.neo4j_database)
        store.setup_schema()
        encoders = Encoders(
            text=make_text_encoder(settings.text_encoder),
            image=ImageEncoder(max_pixels=settings.max_image_pixels),
        )

        t0 = time.perf_counter()
        _base(store, encoders, args.base, args.tags, args.seed)
        export = export_heterodata(store, cache_dir=home / "cache" / "export")
        split = split_graph(export.data, SplitConfig(label_relation=None, label_via=None))
        result = run_experiment(
            model=args.model,
            split=split,
            uids=export.uids,
            train_config=TrainConfig(epochs=args.epochs, seed=args.seed),
            home=home,
        )
        promote_run(settings, store, result.run_id)
        setup_s = time.perf_counter() - t0
        registry = Registry(home, store)
        registry.use_promoted()
        grpc_server, port = create_server(settings, registry)
        stack.callback(grpc_server.stop, None)
        client = stack.enter_context(AnalyticsClient(f"127.0.0.1:{port}", timeout=120))
        folder = home / "drop"
        _drop(folder, args.items, args.tags, args.seed + 1)

        started = time.perf_counter()
        ingested = ingest_folder(
            store, folder, IngestOptions(quarantine_dir=home / "quarantine"), encoders
        )
        ingest_s = time.perf_counter() - started
        refreshed = refresh_embeddings(settings, store, registry)
        t1 = time.perf_counter()
        answered = sum(len(client.similar(f"new:{i}", k=10).hits) == 10 for i in range(args.items))
        query_s = time.perf_counter() - t1
        total_s = time.perf_counter() - started

    timings: dict[str, float] = {}
    for outcome in ingested.files:
        for key, value in (outcome.result.timings if outcome.result else {}).items():
            timings[key] = timings.get(key, 0.0) + value
    loads = {
        "text": encoders.text.load_seconds if encoders.text else None,
        "image": encoders.image.load_seconds if encoders.image else None,
    }
    steps: dict[str, Any] = {
        "ingest": ingest_s,
        "  encode text": timings.get("encode_text", 0.0),
        "  encode image": timings.get("encode_image", 0.0),
        "  encoder load (in encode)": sum(v or 0.0 for v in loads.values()),
        "refresh: export": refreshed.seconds["export"],
        "refresh: inductive inference": refreshed.seconds["infer"],
        "refresh: write-back to Neo4j": refreshed.seconds["write"],
        "refresh: overlay": refreshed.seconds["append"],
        "refresh: index update": refreshed.seconds["index"],
        f"Similar for all {args.items}": query_s,
        "total": total_s,
    }
    figures = {
        "items": args.items,
        "base_items": args.base,
        "tags": args.tags,
        "model": args.model,
        "run_id": result.run_id,
        "setup_seconds": setup_s,
        "ingest_status": [f.outcome for f in ingested.files],
        "ingest_timings": timings,
        "encoder_load_seconds": loads,
        "new_nodes": refreshed.new_nodes,
        "served": refreshed.served,
        "answered": answered,
        "seconds": steps,
        "target_seconds": TARGET_SECONDS,
        "within_target": total_s < TARGET_SECONDS and answered == args.items,
        "text_encoder": settings.text_encoder,
        "machine": f"{platform.node()} {platform.machine()}",
    }
    print(f"{args.items} new items on a base of {args.base} ({args.model}, run {result.run_id})")
    print(f"{'step':<36}{'seconds':>10}")
    for key, value in steps.items():
        print(f"{key:<36}{value:>10.2f}")
    print(f"answered Similar: {answered}/{args.items}; target {TARGET_SECONDS:.0f} s")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
