"""Fit time of our closed-form CCA against scikit-learn's iterative one (a benchmark, not a test).

Synthetic paired views with 48 shared latent factors, sized like the encoders' outputs (text
384-d, image 1280-d; 256-d as a second view scikit-learn can still fit in reasonable time).
Ours is timed as fit plus transforming both views (best of ``--repeats``); scikit-learn's
``CCA`` (NIPALS, default ``max_iter``/``tol``) as one fit. Also prints the largest difference
between the two methods' canonical correlations over the leading ``--check`` components, and
how many of scikit-learn's components hit ``max_iter`` unconverged. Prints a table and writes
``bench/results/cca.json``.

    python bench/cca.py [--rows 5000] [--repeats 3] [--check 8] [--no-sklearn]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.cross_decomposition import CCA as SklearnCCA
from sklearn.exceptions import ConvergenceWarning

from mmgraph.gnn.fusion.cca import CCA

RESULTS = Path(__file__).parent / "results" / "cca.json"
LATENT = 48
# (x_dim, y_dim, n_components, run scikit-learn too)
CASES = [(384, 256, 32, True), (384, 256, 64, True), (384, 1280, 32, False), (384, 1280, 64, False)]


def views(rows: int, x_dim: int, y_dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 views sharing ``LATENT`` factors of decreasing strength, plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(rows, LATENT)) * np.linspace(2.0, 0.2, LATENT)
    x = z @ rng.normal(size=(LATENT, x_dim)) + rng.normal(size=(rows, x_dim)) * 2.0
    y = z @ rng.normal(size=(LATENT, y_dim)) + rng.normal(size=(rows, y_dim)) * 2.0
    return x.astype(np.float32), y.astype(np.float32)


def time_ours(x: np.ndarray, y: np.ndarray, k: int, repeats: int) -> tuple[float, np.ndarray]:
    """Best wall time of fit + both transforms, and the canonical correlations."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model = CCA(k, reg=1e-3).fit(x, y)
        model.transform_x(x), model.transform_y(y)
        best = min(best, time.perf_counter() - start)
    return best, model.canonical_correlations_


def time_sklearn(x: np.ndarray, y: np.ndarray, k: int) -> tuple[float, np.ndarray, int]:
    """Wall time of one scikit-learn fit, the correlations of its score pairs, and how many
    components stopped at ``max_iter`` without converging."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        model = SklearnCCA(n_components=k).fit(x, y)
        seconds = time.perf_counter() - start
    xs, ys = model.transform(x, y)
    corr = np.array([np.corrcoef(xs[:, i], ys[:, i])[0, 1] for i in range(k)])
    return seconds, corr, sum(issubclass(w.category, ConvergenceWarning) for w in caught)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check", type=int, default=8, help="leading components compared")
    parser.add_argument("--no-sklearn", action="store_true", help="time ours only")
    args = parser.parse_args()

    print(HEADER)
    results = []
    for x_dim, y_dim, k, with_sklearn in CASES:
        x, y = views(args.rows, x_dim, y_dim)
        ours_s, ours_corr = time_ours(x, y, k, args.repeats)
        row = {
            "rows": args.rows,
            "x_dim": x_dim,
            "y_dim": y_dim,
            "n_components": k,
            "ours_s": round(ours_s, 4),
            "ours_top_corr": round(float(ours_corr[0]), 4),
            "sklearn_s": None,
            "speedup": None,
            "max_corr_diff": None,
            "sklearn_not_converged": None,
        }
        if with_sklearn and not args.no_sklearn:
            sk_s, sk_corr, not_converged = time_sklearn(x, y, k)
            m = min(args.check, k)
            row.update(
                sklearn_s=round(sk_s, 3),
                speedup=round(sk_s / ours_s, 1),
                max_corr_diff=float(f"{np.abs(ours_corr[:m] - sk_corr[:m]).max():.2e}"),
                sklearn_not_converged=not_converged,
            )
        results.append(row)
        print(_line(row), flush=True)

    meta = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "check_components": args.check,
        "latent_factors": LATENT,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


HEADER = (
    f"{'rows':>6} {'x_dim':>5} {'y_dim':>5} {'k':>3} {'ours s':>8} "
    f"{'sklearn s':>10} {'speedup':>8} {'max|dcorr|':>11} {'sk unconv':>9}"
)


def _line(row: dict) -> str:
    """One table row under :data:`HEADER`; ``-`` where scikit-learn was not run."""
    return (
        f"{row['rows']:>6} {row['x_dim']:>5} {row['y_dim']:>5} {row['n_components']:>3} "
        f"{row['ours_s']:>8.3f} {_cell(row['sklearn_s'], 10)} {_cell(row['speedup'], 8)} "
        f"{_cell(row['max_corr_diff'], 11)} {_cell(row['sklearn_not_converged'], 9)}"
    )


def _cell(value: float | None, width: int) -> str:
    """``value`` right-aligned in ``width``, or ``-`` when missing."""
    return f"{'-' if value is None else value:>{width}}"


if __name__ == "__main__":
    main()
