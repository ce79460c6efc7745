"""The evaluation report: a markdown table of every model's metrics, training curves, and a
2-D map of each model's embeddings coloured by class (PNG files beside the markdown)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from mmgraph.gnn.names import REPORT_METRICS  # noqa: E402

COLUMNS = REPORT_METRICS


def write_report(
    folder: Path,
    table: dict[str, Any],
    histories: dict[str, list[dict[str, float]]],
    maps: dict[str, tuple[np.ndarray, np.ndarray]],
) -> Path:
    """Write ``report.md``, ``report.json``, ``curves.png`` and ``map-<model>.png`` into
    ``folder``; ``maps`` holds per model the labelled nodes' embeddings and classes."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(table, indent=2))
    lines = [
        "# mmgraph evaluation",
        "",
        "Split: `" + json.dumps(table["split"]) + "`",
        "",
        "| model | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, metrics in table["models"].items():
        cells = [_cell(metrics.get(key)) for key in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    reasons = [(name, m["reason"]) for name, m in table["models"].items() if m.get("reason")]
    if reasons:
        lines += ["", *(f"- {name} does not apply: {reason}" for name, reason in reasons)]
    # Deep CCA's curve is a correlation on held-out pairs, not a validation MRR: left out.
    curves = {n: h for n, h in histories.items() if all("val_mrr" in row for row in h)}
    if curves:
        _curves(folder / "curves.png", curves)
        lines += ["", "## Training curves", "", "![curves](curves.png)"]
    for name, (embeddings, labels) in maps.items():
        path = folder / f"map-{name}.png"
        _map(path, name, embeddings, labels)
        lines += [
            "",
            f"## {name}: embeddings of labelled nodes (PCA, coloured by class)",
            "",
            f"![{name}]({path.name})",
        ]
    report = folder / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _cell(value: Any) -> str:
    return "—" if value is None else f"{value:.3f}"


def _curves(path: Path, histories: dict[str, list[dict[str, float]]]) -> None:
    fig, (loss_ax, mrr_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for name, history in histories.items():
        epochs = [row["epoch"] for row in history]
        loss_ax.plot(epochs, [row["loss"] for row in history], label=name)
        mrr_ax.plot(epochs, [row["val_mrr"] for row in history], label=name)
    loss_ax.set(title="training loss", xlabel="epoch")
    mrr_ax.set(title="validation MRR", xlabel="epoch")
    mrr_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _map(path: Path, name: str, embeddings: np.ndarray, labels: np.ndarray) -> None:
    points = PCA(n_components=2, random_state=0).fit_transform(embeddings)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab20", s=4)
    ax.set(title=f"{name}: {len(labels)} nodes, {len(set(labels.tolist()))} classes")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
