"""The tiny graph's data, :func:`save_run` (hand-made but real CCA runs with a known geometry)
and :func:`train_run` (a genuinely trained run of that graph)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmgraph.gnn.data import export_heterodata
from mmgraph.gnn.experiment import run_experiment
from mmgraph.gnn.models import GraphMeta
from mmgraph.gnn.runs import RunRecord, set_active_run
from mmgraph.gnn.runs import save_run as save_record
from mmgraph.gnn.split import SplitConfig, split_graph
from mmgraph.gnn.train import TrainConfig
from mmgraph.graph.store import GraphStore, NodeRow
from mmgraph.ingest.encoders import ImageEncoder
from mmgraph.ingest.encoders.text import make_text_encoder

DIM = 8
TEXT_DIM = 384
IMAGE_DIM = ImageEncoder.dim
EMOJI = ["e:grin", "e:smile", "e:joy", "e:cat", "e:dog", "e:fox"]
TEXTS = {
    "e:grin": "grinning face",
    "e:smile": "smiling face",
    "e:joy": "face with tears of joy",
    "e:cat": "cat face",
    "e:dog": "dog face",
    "e:fox": "fox",
    "t:face": "face",
    "t:animal": "animal",
}
TAGS = ["t:face", "t:animal"]
EDGES = [("e:grin", "t:face"), ("e:smile", "t:face"), ("e:cat", "t:animal"), ("e:dog", "t:animal")]
RELATION = ("Emoji", "HAS_TAG", "Tag")
META = GraphMeta(
    node_types=("Emoji", "Tag"),
    edge_types=(RELATION, ("Tag", "rev_HAS_TAG", "Emoji")),
    modalities={"Emoji": {"image": IMAGE_DIM, "text": TEXT_DIM}, "Tag": {"text": TEXT_DIM}},
)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _cca_state(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A CCA state mapping 384-d text and 1280-d image encoder vectors to ``DIM`` dimensions."""
    return {
        "n_components": np.array(DIM, dtype=np.int64),
        "reg": np.array(0.0),
        "x_mean": np.zeros(TEXT_DIM),
        "y_mean": np.zeros(IMAGE_DIM),
        "x_weights": rng.normal(size=(TEXT_DIM, DIM)),
        "y_weights": rng.normal(size=(IMAGE_DIM, DIM)),
        "canonical_correlations": np.linspace(0.9, 0.2, DIM),
    }


def save_run(home: Path, run_id: str, seed: int, created: str, aligned: bool = True) -> str:
    """Save a real (model "cca") run whose fused space puts faces near each other and animals
    near each other (the seed moves each node a little), with a text space and an image space
    (no image for e:fox, none for tags); links score ``sigmoid(4 * cosine)``."""
    rng = np.random.default_rng(seed)
    face, animal = np.eye(DIM)[0], np.eye(DIM)[1]
    centres = {"e:grin": face, "e:smile": face, "e:joy": face, "e:cat": animal}
    centres |= {"e:dog": animal, "e:fox": animal, "t:face": face, "t:animal": animal}
    uids = {"Emoji": EMOJI, "Tag": TAGS}
    spaces: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for space in ("fused", "text", "image"):
        spaces[space] = {}
        for node_type, names in uids.items():
            if space != "fused" and space not in META.modalities[node_type]:
                continue
            rows = np.arange(len(names))
            if space == "image":
                rows = np.array([i for i, u in enumerate(names) if u != "e:fox"], dtype=np.int64)
            vectors = np.stack([centres[names[i]] + 0.3 * rng.normal(size=DIM) for i in rows])
            spaces[space][node_type] = (_unit(vectors), rows)
    record = RunRecord(
        run_id=run_id,
        model="cca",
        config={
            "calibration": [4.0, 0.0],
            "seed": seed,
            "model_options": {"n_components": DIM},
            "alignment": {"kind": "own"} if aligned else None,
        },
        metrics={"mrr": 0.5},
        uids=uids,
        meta=META,
        target_edge_types=[RELATION],
        raw={t: emb for t, (emb, _) in spaces["fused"].items()},
        spaces=spaces,
        weights=_cca_state(rng),
        created=created,
    )
    save_record(home, record)
    return run_id


def train_run(store: GraphStore, home: Path, model: str = "hgt") -> str:
    """Give the tiny graph's nodes real (int8) text vectors, export it, split it, train
    ``model`` for 3 epochs on the CPU, save the run under ``home`` and promote it."""
    encoder = make_text_encoder("int8", device="cpu")
    names = EMOJI + TAGS
    vectors = encoder.encode([TEXTS[u] for u in names])
    store.write_batch(
        [
            NodeRow(u, "Tag" if u in TAGS else "Emoji", {}, {"text": (v, encoder.tag)})
            for u, v in zip(names, vectors, strict=True)
        ],
        [],
        "test-vectors",
    )
    export = export_heterodata(store)
    # 4 HAS_TAG links: one for validation, one for test, two to train on.
    config = SplitConfig(
        label_relation=None,
        label_via=None,
        val_ratio=0.25,
        test_ratio=0.25,
        num_negatives=1,
        num_hard_negatives=0,
        retrieval_ratio=0.0,
    )
    result = run_experiment(
        model=model,
        split=split_graph(export.data, config),
        uids=export.uids,
        train_config=TrainConfig(epochs=3, device="cpu"),
        model_options={"hidden_channels": 16, "out_channels": 16},
        home=home,
    )
    set_active_run(home, result.run_id)
    return result.run_id
