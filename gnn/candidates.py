"""Candidate negatives of held-out edges, drawn for every edge at once with numpy.

A candidate of a held-out edge ``(s, d)`` is a node of ``d``'s type that is not a true link of
``s`` (filtered ranking), and no row repeats a node. Hard candidates are two hops from ``d`` in
an undirected graph (they share a neighbour with ``d``): drawn uniformly from that two-hop set
where it is small enough to list, else by random two-step walks (which favour nodes sharing
several neighbours with ``d``). Random candidates are uniform. Memory stays bounded by working
on chunks of rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

# Most entries a two-hop listing may produce in all (beyond: random walks) and per pass.
LIST_BUDGET = 1 << 25
LIST_PASS = 1 << 22
# Rows handled at once when drawing candidates.
ROW_CHUNK = 1 << 16


def unique(x: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``x`` (by sorting: numpy 2's hash-based ``np.unique`` is
    two orders of magnitude slower on tens of millions of integers)."""
    x = np.sort(x, axis=None)
    return x[np.concatenate([[True], x[1:] != x[:-1]])] if x.size else x


def first_occurrence(x: np.ndarray) -> np.ndarray:
    """The index of the first occurrence of each distinct value of ``x``, in value order."""
    order = np.argsort(x, kind="stable")
    ordered = x[order]
    return order[np.concatenate([[True], ordered[1:] != ordered[:-1]])] if x.size else order


class PairSet:
    """A set of integer pairs ``(a, b)`` with ``0 <= b < width``, as sorted keys
    ``a * width + b``, asked about whole arrays of pairs at once. A one-hash Bloom filter (about
    64 bits per key) answers most absent pairs before any search: random searches in tens of
    millions of keys cost a cache miss per step."""

    def __init__(self, a: np.ndarray, b: np.ndarray, width: int) -> None:
        self.width = max(int(width), 1)
        self.keys = unique(np.asarray(a, dtype=np.int64) * self.width + b)
        self._bits = int(np.clip(np.ceil(np.log2(max(self.keys.size, 1) * 64)), 10, 28))
        self._filter = np.zeros(1 << (self._bits - 3), dtype=np.uint8)
        slot = self._hash(self.keys)
        np.bitwise_or.at(self._filter, slot >> 3, (1 << (slot & 7)).astype(np.uint8))

    @classmethod
    def of(cls, edge_index: torch.Tensor, width: int) -> PairSet:
        """The distinct edges of ``edge_index`` (row 1 below ``width``)."""
        index = edge_index.numpy()
        return cls(index[0], index[1], width)

    def _hash(self, keys: np.ndarray) -> np.ndarray:
        mixed = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
        return (mixed >> np.uint64(64 - self._bits)).astype(np.int64)

    def contains(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether each ``(a[i], b[i])`` is in the set (``False`` where ``b < 0``)."""
        keys = (np.asarray(a, dtype=np.int64) * self.width + b).ravel()
        slot = self._hash(keys)
        maybe = np.flatnonzero((self._filter[slot >> 3] >> (slot & 7).astype(np.uint8)) & 1)
        hit = np.zeros(keys.size, dtype=bool)
        if maybe.size:
            pos = np.minimum(np.searchsorted(self.keys, keys[maybe]), self.keys.size - 1)
            hit[maybe] = self.keys[pos] == keys[maybe]
        return hit.reshape(np.shape(b)) & (np.asarray(b) >= 0)

    def count_per_first(self, n: int) -> np.ndarray:
        """How many pairs each ``a`` in ``range(n)`` has."""
        return np.bincount(self.keys // self.width, minlength=n)[:n]


@dataclass(frozen=True)
class _CSR:
    ptr: np.ndarray
    nbr: np.ndarray

    @classmethod
    def build(cls, a: np.ndarray, b: np.ndarray, n: int) -> _CSR:
        """Distinct ``b`` per ``a``, sorted."""
        keys = unique(a.astype(np.int64) * max(n, 1) + b)
        first, nbr = np.divmod(keys, max(n, 1))
        ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(first, minlength=n), out=ptr[1:])
        return cls(ptr, nbr)

    def degree(self, nodes: np.ndarray) -> np.ndarray:
        return self.ptr[nodes + 1] - self.ptr[nodes]

    def expand(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every neighbour of ``nodes`` and the position in ``nodes`` it belongs to."""
        degree = self.degree(nodes)
        owner = np.repeat(np.arange(nodes.size), degree)
        start = np.repeat(self.ptr[nodes] - np.cumsum(degree) + degree, degree)
        return self.nbr[start + np.arange(owner.size)], owner


class TwoHop:
    """An undirected graph over every node type, for drawing nodes of ``node_type`` two hops
    from a node of that type: ``d -> any neighbour -> a neighbour of node_type other than d``.

    Args:
        edges: edge indices per edge type ``(S, R, D)``, taken in both directions.
        num_nodes: nodes per type.
        node_type: the type of both ends.
    """

    def __init__(
        self,
        edges: Mapping[tuple[str, str, str], torch.Tensor],
        num_nodes: Mapping[str, int],
        node_type: str,
    ) -> None:
        offsets, total = {}, 0
        for t, n in num_nodes.items():
            offsets[t] = total
            total += int(n)
        ends = [
            (index[0].numpy() + offsets[s], index[1].numpy() + offsets[d])
            for (s, _, d), index in edges.items()
        ]
        a = np.concatenate([x for pair in ends for x in pair] or [np.empty(0, np.int64)])
        b = np.concatenate([x for s, d in ends for x in (d, s)] or [np.empty(0, np.int64)])
        self.offset, self.size = offsets[node_type], int(num_nodes[node_type])
        self.neighbours = _CSR.build(a, b, total)
        typed = (b >= self.offset) & (b < self.offset + self.size)
        self.typed = _CSR.build(a[typed], b[typed] - self.offset, total)

    def listed(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The two-hop sets of distinct ``nodes`` (local ids), listed for as many as
        :data:`LIST_BUDGET` allows, the cheapest first: ``(ptr, ends, listed)``, where node
        ``i``'s set is ``ends[ptr[i]:ptr[i + 1]]`` (sorted) and ``listed[i]`` says whether it
        was listed (else its set is empty here and walks must find it)."""
        g = nodes.astype(np.int64) + self.offset
        mids, owner = self.neighbours.expand(g)
        cost = np.bincount(owner, weights=self.typed.degree(mids), minlength=nodes.size)
        order = np.argsort(cost, kind="stable")
        affordable = np.sort(order[np.cumsum(cost[order]) <= LIST_BUDGET])
        listed = np.zeros(nodes.size, dtype=bool)
        listed[affordable] = True
        parts_which, parts_ends = [], []
        passes = np.cumsum(cost[affordable]) // LIST_PASS
        for p in unique(passes):
            batch = affordable[passes == p]
            mids, owner = self.neighbours.expand(g[batch])
            ends, which = self.typed.expand(mids)
            which = batch[owner[which]]
            keep = ends != nodes[which]
            keys = unique(which[keep] * self.size + ends[keep])
            parts_which.append(keys // self.size)
            parts_ends.append(keys % self.size)
        which = np.concatenate(parts_which or [np.empty(0, np.int64)])
        ends = np.concatenate(parts_ends or [np.empty(0, np.int64)])
        ptr = np.zeros(nodes.size + 1, dtype=np.int64)
        np.cumsum(np.bincount(which, minlength=nodes.size), out=ptr[1:])
        return ptr, ends, listed

    def walk(self, nodes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One random two-step walk from each of ``nodes`` (local ids): its end, or -1 where
        the walk finds no other node of the type."""
        if self.typed.nbr.size == 0:
            return np.full(nodes.size, -1, dtype=np.int64)
        g = nodes.astype(np.int64) + self.offset
        degree = self.neighbours.degree(g)
        pick = self.neighbours.ptr[g] + (rng.random(g.size) * degree).astype(np.int64)
        mid = self.neighbours.nbr[np.minimum(pick, self.neighbours.nbr.size - 1)]
        typed = self.typed.degree(mid)
        end_pick = self.typed.ptr[mid] + (rng.random(g.size) * typed).astype(np.int64)
        end = self.typed.nbr[np.minimum(end_pick, self.typed.nbr.size - 1)]
        found = (degree > 0) & (typed > 0) & (end != nodes)
        return np.where(found, end, -1)


def hard_candidates(
    s: np.ndarray,
    d: np.ndarray,
    count: int,
    true_links: PairSet,
    graph: TwoHop,
    rng: np.random.Generator,
) -> np.ndarray:
    """Up to ``count`` distinct nodes two hops from each ``d`` that are not true links of its
    ``s``: ``(len(s), count)``, each row's finds first, ``-1`` after them. Uniform over the
    two-hop set where it is listed (all of it when it has no more than ``count`` valid nodes),
    else from random walks."""
    out = np.full((s.size, count), -1, dtype=np.int64)
    if count == 0 or s.size == 0:
        return out
    draws = 3 * count + 8
    distinct = unique(d)
    ptr, pool, listed = graph.listed(distinct)
    for lo in range(0, s.size, ROW_CHUNK):
        rows = np.arange(lo, min(lo + ROW_CHUNK, s.size))
        at = np.searchsorted(distinct, d[rows])
        drawn = np.full((rows.size, draws), -1, dtype=np.int64)
        start, size = ptr[at], ptr[at + 1] - ptr[at]
        few = np.flatnonzero(listed[at] & (size <= draws))
        # A short two-hop set whole, in random order.
        owner = np.repeat(few, size[few])
        order = np.lexsort((rng.random(owner.size), owner))
        first = np.repeat(np.cumsum(size[few]) - size[few], size[few])
        column = np.arange(owner.size) - first
        item = np.repeat(start[few], size[few]) + column
        drawn[owner, column] = pool[item[order]]
        # A long one sampled with replacement (repeats are dropped below).
        many = np.flatnonzero(listed[at] & (size > draws))
        pick = start[many, None] + (rng.random((many.size, draws)) * size[many, None]).astype(
            np.int64
        )
        drawn[many] = pool[pick]
        walkers = np.flatnonzero(~listed[at])
        drawn[walkers] = graph.walk(np.repeat(d[rows[walkers]], draws), rng).reshape(-1, draws)
        valid = drawn >= 0
        valid &= ~true_links.contains(np.repeat(s[rows], draws), drawn.ravel()).reshape(drawn.shape)
        out[rows] = _first_distinct(drawn, valid, np.full(rows.size, count), count)
    return out


def random_candidates(
    s: np.ndarray,
    taken: np.ndarray,
    need: np.ndarray,
    n_dst: int,
    true_links: PairSet,
    rng: np.random.Generator,
) -> np.ndarray:
    """``need[i]`` distinct uniform nodes of ``range(n_dst)`` per row, none a true link of
    ``s[i]`` nor in row ``i`` of ``taken`` (``-1`` = empty): ``(len(s), need.max())``, ``-1``
    after each row's ``need``. Every row must have that many valid nodes."""
    width = int(need.max(initial=0))
    out = np.full((s.size, width), -1, dtype=np.int64)
    small = n_dst <= 4 * int((need + (taken >= 0).sum(axis=1)).max(initial=0))
    chunk = max(1, LIST_PASS // n_dst) if small else ROW_CHUNK
    for lo in range(0, s.size, chunk):
        rows = np.arange(lo, min(lo + chunk, s.size))
        got = np.full((rows.size, 0), -1, dtype=np.int64)
        short = np.arange(rows.size)
        draws = n_dst if small else width + max(16, width // 2)
        while short.size:
            r = rows[short]
            if small or draws >= n_dst:
                fresh = np.argsort(rng.random((r.size, n_dst)), axis=1)
            else:
                fresh = rng.integers(0, n_dst, (r.size, draws))
            prior = np.concatenate([taken[r], _pad(got[short], got.shape[1])], axis=1)
            both = np.concatenate([prior, fresh], axis=1)
            valid = (both >= 0) & ~true_links.contains(
                np.repeat(s[r], both.shape[1]), both.ravel()
            ).reshape(both.shape)
            valid[:, : taken.shape[1]] = False  # taken ones block repeats but are not chosen
            blocked = np.zeros_like(valid)
            blocked[:, : taken.shape[1]] = both[:, : taken.shape[1]] >= 0
            chosen = _first_distinct(both, valid, need[r], width, blocked)
            got = _pad(got, width)
            got[short] = chosen
            found = (chosen >= 0).sum(axis=1)
            short = short[found < need[r]]
            draws *= 2
        out[rows] = got
    return out


def _pad(x: np.ndarray, width: int) -> np.ndarray:
    if x.shape[1] >= width:
        return x
    return np.concatenate([x, np.full((x.shape[0], width - x.shape[1]), -1, np.int64)], axis=1)


def _first_distinct(
    values: np.ndarray,
    valid: np.ndarray,
    need: np.ndarray,
    width: int,
    blocked: np.ndarray | None = None,
) -> np.ndarray:
    """Per row, the first ``need`` valid values not seen earlier in the row (a ``blocked``
    value counts as seen), in order: ``(rows, width)``, ``-1`` after them."""
    rows, cols = values.shape
    seen = valid if blocked is None else valid | blocked
    # Within each row, sort the seen values (-1 elsewhere) stably: a repeat follows its first.
    order = np.argsort(np.where(seen, values, -1), axis=1, kind="stable")
    ordered = np.take_along_axis(np.where(seen, values, -1), order, axis=1)
    repeat = np.zeros_like(seen)
    repeat[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
    keep = np.zeros_like(seen)
    np.put_along_axis(keep, order, ~repeat, axis=1)
    keep &= valid
    keep &= np.cumsum(keep, axis=1) <= need[:, None]
    out = np.full((rows, width), -1, dtype=np.int64)
    counts = keep.sum(axis=1)
    slots = np.arange(width) < counts[:, None]
    out[slots] = values[keep]
    return out
