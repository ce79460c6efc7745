"""Throughput of the modality encoders at batch 64 (a benchmark, not a test).

Text: sentences/s of all-MiniLM-L6-v2 on short synthetic sentences. Images: images/s of
EfficientNet-Lite0 through onnxruntime (the encoder's path) and eager torch (the exporter), on
64 px PNGs drawn here or read from ``--images DIR``; the ONNX export is timed into a temporary
cache, as on a first run. Numbers: rows/s of fit + encode. Runs on the CPU, and on CUDA when torch
sees a GPU. Text, fp32 against int8 (:class:`Int8TextEncoder`) on the CPU: texts/s on short
labels (emoji CLDR labels from the dataset cache, fetched if missing) and on ~60-word descriptions
(generated sentences joined), both variants timed in turns in one run so their ratio is fair on a
shared machine, and the cosines of the int8 vectors to the fp32 ones (mean, 1st percentile, min).
With ``--emoji``, also the full emoji ingest (both encoders on) into a local Neo4j
under a temporary home, split into fetch (into an empty cache folder; npm's own cache may be
warm), model load, validate, prepare (read + decode images), encode and write. Prints a table
and writes ``bench/results/encoders.json`` (with ``--text-variants-only``, only the fp32/int8
comparison, into ``bench/results/text_variants.json``).

    python bench/encoders.py [--sentences 2048] [--images-count 512] [--images DIR] [--emoji]
                             [--labels 2000] [--descriptions 500] [--text-variants-only]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import neo4j
import numpy as np
import torch
from PIL import Image, ImageDraw

from mmgraph.core.config import Settings
from mmgraph.graph.local_neo4j import LocalNeo4j
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.datasets import EMOJI
from mmgraph.ingest.encoders import ImageEncoder, Int8TextEncoder, NumericEncoder, TextEncoder
from mmgraph.ingest.encoding import Encoders
from mmgraph.ingest.options import IngestOptions
from mmgraph.ingest.pipeline import ingest

RESULTS = Path(__file__).parent / "results" / "encoders.json"
TEXT_VARIANTS_RESULTS = RESULTS.with_name("text_variants.json")
BATCH = 64

SUBJECTS = ["A man", "The old dog", "Two children", "A chef", "My neighbour", "The orchestra"]
VERBS = ["is playing", "cooks", "paints", "repairs", "watches", "sells"]
OBJECTS = ["a guitar", "fresh pasta", "the red fence", "an old bicycle", "the sunset", "vegetables"]
PLACES = ["in the park", "at the market", "on the beach", "in a small kitchen", "after work", ""]


def sentences(n: int) -> list[str]:
    """Short, varied synthetic sentences (5-10 words)."""
    rng = np.random.default_rng(0)
    parts = (SUBJECTS, VERBS, OBJECTS, PLACES)
    return [" ".join(p[rng.integers(len(p))] for p in parts).strip() + "." for _ in range(n)]


def descriptions(n: int, words: int = 60) -> list[str]:
    """``n`` distinct descriptions of about ``words`` words: generated sentences joined."""
    pool = sentences(n * words // 5)
    rng = np.random.default_rng(1)
    out = []
    for _ in range(n):
        picked: list[str] = []
        while sum(len(s.split()) for s in picked) < words:
            picked.append(pool[rng.integers(len(pool))])
        out.append(" ".join(picked))
    return out


def emoji_labels(n: int) -> list[str]:
    """``n`` distinct emoji labels ("waving hand: light skin tone"), spread over the dataset."""
    root = EMOJI.fetch(Settings.from_env().cache)
    labels = list(
        dict.fromkeys(raw["text"] for _, raw in EMOJI.records(root) if raw.get("type") == "Emoji")
    )
    return labels[:: max(1, len(labels) // n)][:n]


def bench_text_variants(sets: dict[str, list[str]], repeats: int) -> dict:
    """Texts/s of the fp32 and int8 text encoders on each set of texts, timed in turns (the best
    of ``repeats`` each), their ratio, and the cosines of the int8 vectors to the fp32 ones."""
    fp32, int8 = TextEncoder(device="cpu"), Int8TextEncoder(device="cpu")
    figures: dict = {"load_s": {}}
    for name, encoder in (("fp32", fp32), ("int8", int8)):
        encoder.load()
        figures["load_s"][name] = encoder.load_seconds
    for set_name, texts in sets.items():
        words = np.mean([len(text.split()) for text in texts])
        best = {"fp32": float("inf"), "int8": float("inf")}
        vectors = {}
        for encoder in (fp32, int8):
            encoder.encode(texts[:BATCH], batch_size=BATCH)
        for _ in range(repeats):
            for name, encoder in (("fp32", fp32), ("int8", int8)):
                started = time.perf_counter()
                vectors[name] = encoder.encode(texts, batch_size=BATCH)
                best[name] = min(best[name], time.perf_counter() - started)
        cosines = np.sum(vectors["fp32"] * vectors["int8"], axis=1)
        figures[set_name] = {
            "texts": len(texts),
            "mean_words": float(words),
            "fp32_texts_per_s": len(texts) / best["fp32"],
            "int8_texts_per_s": len(texts) / best["int8"],
            "speedup": best["fp32"] / best["int8"],
            "cosine_mean": float(cosines.mean()),
            "cosine_p1": float(np.percentile(cosines, 1)),
            "cosine_min": float(cosines.min()),
        }
    return figures


def print_text_variants(figures: dict) -> None:
    columns = ["fp32_texts_per_s", "int8_texts_per_s", "speedup"]
    columns += ["cosine_mean", "cosine_p1", "cosine_min"]
    print(f"{'text set':<14}{'n':>6}{'words':>7}" + "".join(f"{c[:16]:>18}" for c in columns))
    for name, row in figures.items():
        if name == "load_s":
            continue
        digits = {"speedup": 2, "cosine_mean": 4, "cosine_p1": 4, "cosine_min": 4}
        cells = "".join(f"{row[c]:>18,.{digits.get(c, 1)}f}" for c in columns)
        print(f"{name:<14}{row['texts']:>6}{row['mean_words']:>7.1f}{cells}")


def drawn_pngs(n: int, size: int = 64) -> list[bytes]:
    """``n`` small RGBA PNGs of random shapes on a transparent background, emoji-like."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        draw = ImageDraw.Draw(img)
        for _ in range(3):
            (x0, x1), (y0, y1) = np.sort(rng.integers(0, size, (2, 2)), axis=1).tolist()
            draw.ellipse((x0, y0, x1, y1), fill=tuple(rng.integers(0, 256, 4).tolist()))
        data = io.BytesIO()
        img.save(data, format="PNG")
        out.append(data.getvalue())
    return out


def image_files(directory: Path, n: int) -> list[bytes]:
    paths = sorted(p for p in directory.rglob("*") if p.suffix.lower() in {".png", ".jpg"})
    if not paths:
        raise SystemExit(f"no .png or .jpg files under {directory}")
    return [path.read_bytes() for path in (paths * (n // len(paths) + 1))[:n]]


def rate(
    encode: Callable[..., np.ndarray], inputs: list, repeats: int, warmup: int = BATCH
) -> float:
    """Items per second of ``encode`` over ``inputs`` at batch 64: the best of ``repeats`` runs
    after a warm-up batch (the best, as other work on the machine only slows a run down)."""
    encode(inputs[:warmup], batch_size=BATCH)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        encode(inputs, batch_size=BATCH)
        best = min(best, time.perf_counter() - started)
    return len(inputs) / best


def bench_device(
    device: str, texts: list[str], images: list[bytes], eager_n: int, repeats: int
) -> dict:
    figures: dict[str, float] = {}
    text = TextEncoder(device=device)
    text.load()
    figures["text_load_s"] = text.load_seconds
    figures["text_sentences_per_s"] = rate(text.encode, texts, repeats)

    with tempfile.TemporaryDirectory() as cache:
        image = ImageEncoder(device=device, backend="onnx", cache_dir=Path(cache))
        image.load()
        figures["image_onnx_export_s"] = image.export_seconds
        figures["image_onnx_load_s"] = image.load_seconds - image.export_seconds
        figures["image_onnx_per_s"] = rate(image.encode, images, repeats)

    eager = ImageEncoder(device=device, backend="torch")
    eager.load()
    figures["image_eager_load_s"] = eager.load_seconds
    figures["image_eager_per_s"] = rate(eager.encode, images[:eager_n], 1, warmup=8)

    started = time.perf_counter()
    for data in images:
        image.decode(data)
    figures["image_decode_per_s"] = len(images) / (time.perf_counter() - started)
    return figures


def bench_numeric(n: int) -> float:
    rng = np.random.default_rng(0)
    names = [f"x{i}" for i in range(8)]
    rows = [
        {k: float(v) for k, v in zip(names, r, strict=True) if v > -1.5}
        for r in rng.standard_normal((n, len(names)))
    ]
    started = time.perf_counter()
    NumericEncoder().fit(rows).encode(rows)
    return n / (time.perf_counter() - started)


def bench_emoji_ingest() -> dict[str, float]:
    """Seconds of each step of ingesting the emoji graph from nothing into a fresh Neo4j."""
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        root = EMOJI.fetch(Path(tmp) / "cache")
        steps = {"fetch": time.perf_counter() - t0}
        encoders = Encoders()
        t0 = time.perf_counter()
        encoders.text_encoder().load()
        encoders.image_encoder().load()
        steps["load_models"] = time.perf_counter() - t0
        home = settings.model_copy(update={"home": Path(tmp) / "home"})
        with (
            LocalNeo4j.from_settings(home) as server,
            neo4j.GraphDatabase.driver(server.uri, auth=(server.user, server.password)) as driver,
        ):
            options = IngestOptions(quarantine_dir=Path(tmp) / "quarantine")
            records = EMOJI.records(root)
            result = ingest(GraphStore(driver), records, "dataset:emoji", options, encoders)
        steps.update(result.timings)
        steps["ingest_total"] = result.seconds
        steps["nodes"] = result.nodes_written
        steps["relationships"] = result.relationships_written
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=2048)
    parser.add_argument("--images-count", type=int, default=512)
    parser.add_argument("--eager-count", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=Path, help="a folder of PNG/JPEG files to encode")
    parser.add_argument("--emoji", action="store_true", help="also time the full emoji ingest")
    parser.add_argument("--labels", type=int, default=2000)
    parser.add_argument("--descriptions", type=int, default=500)
    parser.add_argument(
        "--text-variants-only", action="store_true", help="only compare fp32 and int8 text"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    load_before = os.getloadavg()[0]
    text_sets = {
        "labels": emoji_labels(args.labels),
        "descriptions": descriptions(args.descriptions),
    }
    text_variants = bench_text_variants(text_sets, args.repeats)
    print_text_variants(text_variants)
    text_variants["load_average_1m"] = {"before": load_before, "after": os.getloadavg()[0]}
    # torch's OpenMP threads spin while they wait unless this says PASSIVE: on a busy CPU that
    # alone made fp32 3-5x slower here (onnxruntime's own threads are told not to spin).
    text_variants["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    text_variants["torch_threads"] = torch.get_num_threads()
    print(f"load average before/after: {load_before:.2f} {os.getloadavg()[0]:.2f}\n")
    if args.text_variants_only:
        TEXT_VARIANTS_RESULTS.parent.mkdir(exist_ok=True)
        TEXT_VARIANTS_RESULTS.write_text(json.dumps(text_variants, indent=2))
        return

    texts = sentences(args.sentences)
    images = (
        image_files(args.images, args.images_count)
        if args.images
        else drawn_pngs(args.images_count)
    )
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    load_before = os.getloadavg()[0]
    by_device = {
        device: bench_device(device, texts, images, args.eager_count, args.repeats)
        for device in devices
    }
    figures = {
        "batch": BATCH,
        "sentences": len(texts),
        "images": len(images),
        "image_source": str(args.images) if args.images else "drawn 64 px RGBA PNGs",
        "numeric_rows_per_s": bench_numeric(100_000),
        "text_variants_cpu": text_variants,
        "devices": by_device,
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
        "machine": f"{platform.node()} {platform.machine()}",
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }

    print(f"{'measure':<26}" + "".join(f"{d:>12}" for d in devices))
    for key in by_device["cpu"]:
        print(f"{key:<26}" + "".join(f"{by_device[d][key]:>12,.1f}" for d in devices))
    print(f"{'numeric_rows_per_s':<26}{figures['numeric_rows_per_s']:>12,.0f}")
    print(f"{'load average before/after':<26}{load_before:>12.2f}{os.getloadavg()[0]:>12.2f}")
    if args.emoji:
        figures["emoji_ingest_seconds"] = bench_emoji_ingest()
        print(f"\n{'emoji ingest step':<26}{'seconds':>12}")
        for step, seconds in figures["emoji_ingest_seconds"].items():
            print(f"{step:<26}{seconds:>12,.1f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
