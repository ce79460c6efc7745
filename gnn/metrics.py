"""The evaluation's arithmetic: link-prediction ranks, ROC-AUC, clustering and retrieval scores.

Every function takes numpy arrays or torch tensors (any device) and returns plain Python floats,
so one table can compare every model on the same splits. scikit-learn computes what it has
(ROC-AUC, k-means, NMI, ARI); the ranking is ours because it must count ties fairly. Training
validates with the ranking alone, so scikit-learn is imported where it is used: loaded with the
module, it (about 70-90 MB with what it loads) sat under every training step's peak, which the
memory budget counts; now only models trained after an evaluation in the same process carry it.

Ties use the *realistic* rank, as PyKEEN does: the mean of the optimistic rank (the true item
ahead of every equal score) and the pessimistic rank (behind every equal score). A scorer that
gives everything the same score therefore ranks in the middle, not first.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from mmgraph.core.errors import InvalidArgumentError

ArrayLike = torch.Tensor | np.ndarray

#: Rows of the query-by-candidate similarity matrix computed at once by :func:`retrieval_recall`.
_RETRIEVAL_BLOCK = 1024


class MetricInputError(InvalidArgumentError):
    """A metric was given inputs of the wrong shape, size or content."""


def ranking_metrics(
    pos: ArrayLike, neg: ArrayLike, ks: Sequence[int] = (1, 3, 10)
) -> dict[str, float]:
    """MRR and Hits@k of each positive score ranked against its own row of negative scores.

    Higher scores are better. The rank of ``pos[i]`` among ``neg[i]`` is the realistic rank
    (PyKEEN's): the mean of ``1 + #(neg[i] > pos[i])`` and ``1 + #(neg[i] >= pos[i])``, so ties
    cost half of what they could.

    Args:
        pos (Tensor or ndarray): positive scores, shape ``(n,)``.
        neg (Tensor or ndarray): negative scores, shape ``(n, k)``; row ``i`` belongs to
            ``pos[i]``.
        ks (Sequence[int], optional): the cut-offs for Hits@k. (default: ``(1, 3, 10)``)

    Returns:
        ``{"mrr": ..., "hits@1": ..., ...}``, one ``hits@k`` per entry of ``ks``.
    """
    ks = _check_ks(ks)
    p = _array(pos, "pos", ndim=1)
    n = _array(neg, "neg", ndim=2)
    if n.shape[0] != p.shape[0]:
        raise MetricInputError(
            f"neg must have one row per positive: pos has {p.shape[0]}, neg {n.shape[0]} rows"
        )
    if n.shape[1] == 0:
        raise MetricInputError("neg must have at least one column (negative per positive)")
    ranks = _realistic_ranks(p, n)
    return {"mrr": float(np.mean(1.0 / ranks)), **_within(ranks, ks, prefix="hits")}


def roc_auc(pos: ArrayLike, neg: ArrayLike) -> float:
    """ROC-AUC of all positive scores against all negative scores (scikit-learn's
    ``roc_auc_score``; ties count one half, as in the Mann-Whitney statistic).

    Args:
        pos (Tensor or ndarray): positive scores, any shape (flattened).
        neg (Tensor or ndarray): negative scores, any shape (flattened).
    """
    from sklearn.metrics import roc_auc_score

    p = _array(pos, "pos").ravel()
    n = _array(neg, "neg").ravel()
    labels = np.concatenate([np.ones(p.size), np.zeros(n.size)])
    return float(roc_auc_score(labels, np.concatenate([p, n])))


def clustering_metrics(
    embeddings: ArrayLike,
    labels: ArrayLike | Sequence,
    n_clusters: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """NMI and ARI between k-means clusters of the L2-normalised embeddings and known labels.

    Normalising first makes k-means cluster by direction (cosine), the geometry the embeddings
    are compared in elsewhere. ``KMeans`` runs with a fixed ``n_init=10`` and ``random_state=seed``,
    so a result is reproducible.

    Args:
        embeddings (Tensor or ndarray): shape ``(n, d)``.
        labels (Tensor, ndarray or sequence): the known category of each row, shape ``(n,)``;
            any hashable values.
        n_clusters (int, optional): ``k`` for k-means; the number of distinct labels when
            :obj:`None`. (default: :obj:`None`)
        seed (int, optional): k-means' random state. (default: ``0``)

    Returns:
        ``{"nmi": ..., "ari": ...}``.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    x = _array(embeddings, "embeddings", ndim=2)
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise MetricInputError(
            f"labels must have shape ({x.shape[0]},), one per embedding; got {y.shape}"
        )
    k = len(np.unique(y)) if n_clusters is None else n_clusters
    if not 1 <= k <= x.shape[0]:
        raise MetricInputError(f"n_clusters must be between 1 and {x.shape[0]} rows; got {k}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.maximum(norms, np.finfo(np.float64).tiny)
    predicted = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    return {
        "nmi": float(normalized_mutual_info_score(y, predicted)),
        "ari": float(adjusted_rand_score(y, predicted)),
    }


def retrieval_recall(
    queries: ArrayLike, candidates: ArrayLike, ks: Sequence[int] = (1, 10)
) -> dict[str, float]:
    """Recall@k and median rank of cross-modal retrieval by cosine similarity.

    Query ``i``'s one true match is candidate ``i``; it is ranked against all ``n`` candidates
    (realistic rank for ties, as in :func:`ranking_metrics`). The similarity matrix is computed
    in blocks of rows, so memory stays linear in ``n``.

    Args:
        queries (Tensor or ndarray): shape ``(n, d)``.
        candidates (Tensor or ndarray): shape ``(n, d)``, row ``i`` matching query ``i``.
        ks (Sequence[int], optional): the cut-offs for Recall@k. (default: ``(1, 10)``)

    Returns:
        ``{"recall@1": ..., "recall@10": ..., "median_rank": ...}``.
    """
    ks = _check_ks(ks)
    q = _array(queries, "queries", ndim=2)
    c = _array(candidates, "candidates", ndim=2)
    if q.shape != c.shape:
        raise MetricInputError(
            f"queries and candidates must have the same shape (row i matches row i); "
            f"got {q.shape} and {c.shape}"
        )
    q = _unit_rows(q)
    c = _unit_rows(c)
    ranks = np.empty(q.shape[0])
    for start in range(0, q.shape[0], _RETRIEVAL_BLOCK):
        stop = min(start + _RETRIEVAL_BLOCK, q.shape[0])
        sims = q[start:stop] @ c.T
        rows = np.arange(stop - start)
        true = sims[rows, start + rows]
        ranks[start:stop] = (
            1.0
            + ((sims > true[:, None]).sum(axis=1) + (sims >= true[:, None]).sum(axis=1) - 1) / 2.0
        )
    return {**_within(ranks, ks, prefix="recall"), "median_rank": float(np.median(ranks))}


def reliability(
    probabilities: ArrayLike, labels: ArrayLike, bins: int = 10
) -> list[tuple[float, float, int]]:
    """The reliability diagram of predicted probabilities against outcomes: for each of ``bins``
    equal-width bins of ``[0, 1]`` that holds a prediction, ``(mean predicted probability,
    observed rate of positives, count)``.

    Args:
        probabilities (Tensor or ndarray): predicted probabilities in ``[0, 1]``, any shape.
        labels (Tensor or ndarray): 1 for a true link, 0 for a negative, same size.
        bins (int, optional): how many bins. (default: ``10``)
    """
    p = _array(probabilities, "probabilities").ravel()
    y = _array(labels, "labels").ravel()
    if p.shape != y.shape:
        raise MetricInputError(f"probabilities and labels differ in size: {p.size}, {y.size}")
    if bins < 1:
        raise MetricInputError(f"bins must be at least 1, got {bins}")
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        raise MetricInputError("probabilities must lie in [0, 1]")
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    out = []
    for b in range(bins):
        members = which == b
        if members.any():
            out.append((float(p[members].mean()), float(y[members].mean()), int(members.sum())))
    return out


def expected_calibration_error(
    probabilities: ArrayLike, labels: ArrayLike, bins: int = 10
) -> float:
    """The expected calibration error: the count-weighted mean gap between each bin's mean
    predicted probability and its observed rate of positives (:func:`reliability`)."""
    rows = reliability(probabilities, labels, bins)
    total = sum(count for _, _, count in rows)
    if not total:
        raise MetricInputError("no predictions to calibrate")
    return float(sum(count * abs(mean - rate) for mean, rate, count in rows) / total)


def _realistic_ranks(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mean of the optimistic and pessimistic 1-based rank of each positive in its row."""
    higher = (neg > pos[:, None]).sum(axis=1)
    ties = (neg == pos[:, None]).sum(axis=1)
    return 1.0 + higher + ties / 2.0


def _within(ranks: np.ndarray, ks: tuple[int, ...], prefix: str) -> dict[str, float]:
    """The share of ranks at most ``k``, for each cut-off, keyed ``"{prefix}@{k}"``."""
    return {f"{prefix}@{k}": float(np.mean(ranks <= k)) for k in ks}


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; an all-zero row stays zero (cosine 0 with everything)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.finfo(np.float64).tiny)


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    """``ks`` as a tuple of positive ints, or a :class:`MetricInputError` naming it."""
    out = tuple(ks)
    if not out or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in out):
        raise MetricInputError(f"ks must be a non-empty sequence of positive ints; got {ks!r}")
    return out


def _array(x: ArrayLike, name: str, ndim: int | None = None) -> np.ndarray:
    """``x`` as a non-empty, finite float64 ndarray (of ``ndim`` dimensions if given)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise MetricInputError(f"{name} must be numeric; got {type(x).__name__}") from e
    if ndim is not None and a.ndim != ndim:
        raise MetricInputError(f"{name} must have {ndim} dimension(s); got shape {a.shape}")
    if a.size == 0:
        raise MetricInputError(f"{name} must not be empty; got shape {a.shape}")
    if not np.isfinite(a).all():
        raise MetricInputError(f"{name} must be finite; it holds NaN or infinity")
    return a
