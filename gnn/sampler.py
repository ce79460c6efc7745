"""Uniform k-hop neighbour sampling for mini-batches, in plain torch behind PyG's ``BaseSampler``.

PyG's own :class:`~torch_geometric.sampler.NeighborSampler` needs ``pyg-lib`` or ``torch-sparse``
to sample at all, and neither installs here (docs/design.md §5). :class:`TorchNeighborSampler`
does the same job with torch tensor ops on a CSC view of each edge type, and returns exactly what
PyG's sampler returns, so PyG's :class:`~torch_geometric.loader.NodeLoader` and
:class:`~torch_geometric.loader.LinkLoader` do the batching, negative sampling and feature
filtering. :func:`make_neighbor_sampler` picks PyG's native sampler whenever it can run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch_geometric.typing
from torch import Tensor
from torch_geometric.data import Data, HeteroData
from torch_geometric.sampler import (
    BaseSampler,
    EdgeSamplerInput,
    HeteroSamplerOutput,
    NegativeSampling,
    NeighborSampler,
    NodeSamplerInput,
    SamplerOutput,
)
from torch_geometric.sampler.base import NumNeighbors
from torch_geometric.sampler.neighbor_sampler import edge_sample, node_sample
from torch_geometric.typing import EDGE_TYPE_STR_SPLIT, EdgeType, NodeType

from mmgraph.core.errors import InvalidArgumentError

__all__ = [
    "CSC",
    "SamplerArgumentError",
    "TorchNeighborSampler",
    "make_neighbor_sampler",
    "native_sampler_available",
]

NumNeighborsLike = Sequence[int] | Mapping[EdgeType | str, Sequence[int]] | NumNeighbors

# A homogeneous ``Data`` is sampled as a graph with one node type and one edge type.
_NODE: NodeType = "_node"
_EDGE: EdgeType = (_NODE, "_to", _NODE)


class SamplerArgumentError(InvalidArgumentError):
    """A sampler setting or sampler input that cannot be honoured (bad ``num_neighbors``,
    temporal seeds)."""


def native_sampler_available() -> bool:
    """Whether PyG's own ``NeighborSampler`` can sample here (``pyg-lib`` or ``torch-sparse``)."""
    return bool(torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE)


def make_neighbor_sampler(
    data: Data | HeteroData,
    num_neighbors: NumNeighborsLike,
    *,
    seed: int | None = None,
) -> BaseSampler:
    r"""Returns PyG's native :class:`~torch_geometric.sampler.NeighborSampler` when ``pyg-lib``
    or ``torch-sparse`` imports, else a :class:`TorchNeighborSampler`; both sample the same
    thing (see :class:`TorchNeighborSampler`) and plug into ``NodeLoader`` / ``LinkLoader``.

    Args:
        data (Data or HeteroData): The message-passing graph.
        num_neighbors (List[int] or Dict[Tuple[str, str, str], List[int]] or NumNeighbors):
            Incoming neighbours to sample per node, per hop (and per edge type); ``-1`` = all.
        seed (int, optional): Seeds :class:`TorchNeighborSampler`'s own generator. PyG's native
            sampler draws from torch's global generator instead (``torch.manual_seed``), so
            there ``seed`` has no effect. (default: :obj:`None`)

    Raises:
        SamplerArgumentError: ``num_neighbors`` is malformed for ``data`` (checked the same way
            for both samplers).
    """
    resolve_num_neighbors(data, num_neighbors)
    if native_sampler_available():
        return NeighborSampler(data, num_neighbors)
    return TorchNeighborSampler(data, num_neighbors, seed=seed)


class TorchNeighborSampler(BaseSampler):
    r"""Uniform k-hop neighbour sampler in plain torch, a drop-in for PyG's
    :class:`~torch_geometric.sampler.NeighborSampler` (``subgraph_type='directional'``,
    ``replace=False``, ``disjoint=False``).

    Guarantee: starting from the seeds, hop :math:`h` takes every node first reached in hop
    :math:`h-1` (the seeds for :math:`h=1`) and, for each edge type ``(S, R, D)`` whose
    destination type is the node's type, samples ``num_neighbors[(S, R, D)][h-1]`` of its
    incoming edges uniformly **without replacement** (all of them when the node has no more than
    that many, or when the value is ``-1``; none when it is ``0``). Messages flow
    ``src -> dst``, so a seed only ever receives edges pointing *into* it: with ``-1`` at every
    hop the sampled nodes are exactly the seeds' k-hop incoming neighbourhood. Every sampled edge
    is a real edge of ``data`` and ``edge`` holds its id in ``data[edge_type].edge_index``.
    It cannot sample: outgoing edges (add reverse edge types, e.g. ``T.ToUndirected``), edges
    between two already-reached nodes other than the ones sampled into a frontier node (no
    induced subgraph), the same edge twice, weighted or temporal neighbourhoods, or one disjoint
    tree per seed.

    Output is PyG's: ``node[T]`` starts with the seeds of type ``T`` in input order, then the
    nodes of hop 1, 2, ... in first-reached order; ``row``/``col`` index into ``node`` of the
    source/destination type; ``num_sampled_nodes[T]`` has ``num_hops + 1`` counts and
    ``num_sampled_edges[E]`` ``num_hops`` counts, so ``trim_to_layer`` works; every node and
    edge type of ``data`` is present, possibly empty. The per-hop work is vectorised over the
    frontier (Floyd's subset sampling: a Python loop over the fanout, never over nodes).

    Args:
        data (Data or HeteroData): The message-passing graph; its CSC (edges sorted by
            destination) is built once here, on the CPU.
        num_neighbors (List[int] or Dict[Tuple[str, str, str], List[int]] or NumNeighbors):
            Incoming neighbours to sample per node and hop; a list applies to every edge type,
            a dict must name every edge type of ``data`` (or give a ``NumNeighbors`` default).
        seed (int, optional): Seeds a private ``torch.Generator`` so that the same seed gives
            the same samples (and negatives) in the same order. In ``DataLoader`` worker
            processes the generator is seeded from the worker's ``torch.initial_seed()``
            instead, which PyTorch makes distinct per worker and epoch. If :obj:`None`, draws
            from torch's global generator. (default: :obj:`None`)

    Raises:
        SamplerArgumentError: ``num_neighbors`` has a value below ``-1``, hop lists of different
            lengths, names an edge type ``data`` does not have, or misses one of its edge types.
    """

    def __init__(
        self, data: Data | HeteroData, num_neighbors: NumNeighborsLike, *, seed: int | None = None
    ) -> None:
        self.is_hetero = isinstance(data, HeteroData)
        self.num_neighbors = resolve_num_neighbors(data, num_neighbors)
        self.num_hops = len(next(iter(self.num_neighbors.values()), []))
        if self.is_hetero:
            self.node_types, self.edge_types = (list(m) for m in data.metadata())
            self.num_nodes: int | dict[NodeType, int] = {
                t: int(data[t].num_nodes or 0) for t in self.node_types
            }
            node_counts = self.num_nodes
            edge_indices = {e: data[e].edge_index for e in self.edge_types}
        else:
            self.node_types, self.edge_types = [_NODE], [_EDGE]
            self.num_nodes = int(data.num_nodes or 0)
            node_counts = {_NODE: self.num_nodes}
            edge_indices = {_EDGE: data.edge_index}
        self._csc = {e: CSC.build(edge_indices[e], node_counts[e[2]]) for e in self.edge_types}
        self._node_counts = node_counts
        self._seed = seed
        self._generator: torch.Generator | None = None
        self._generator_owner: object = None

    # BaseSampler interface ##################################################################

    def sample_from_nodes(
        self, inputs: NodeSamplerInput, **kwargs
    ) -> SamplerOutput | HeteroSamplerOutput:
        """Samples the k-hop incoming neighbourhood of ``inputs.node``; ``metadata`` is
        ``(input_id, None)`` as with PyG's sampler."""
        if inputs.time is not None:
            raise SamplerArgumentError("inputs.time: temporal sampling is not supported")
        return node_sample(inputs, self._sample)

    def sample_from_edges(
        self, inputs: EdgeSamplerInput, neg_sampling: NegativeSampling | None = None
    ) -> SamplerOutput | HeteroSamplerOutput:
        """Samples around both endpoints of ``inputs`` (plus negatives drawn as PyG draws them,
        from this sampler's generator); ``metadata`` carries the label index and labels exactly
        as PyG's sampler does."""
        if inputs.time is not None:
            raise SamplerArgumentError("inputs.time: temporal sampling is not supported")
        generator = self._rng()
        if neg_sampling is not None and generator is not None:
            neg_sampling = _GeneratorNegativeSampling.wrap(neg_sampling, generator)
        return edge_sample(
            inputs,
            self._sample,
            self.num_nodes,
            disjoint=False,
            node_time=None,
            neg_sampling=neg_sampling,
        )

    @property
    def edge_permutation(self) -> None:
        """``None``: ``edge`` already holds ids into the original ``edge_index``."""
        return None

    # Sampling ##############################################################################

    def _rng(self) -> torch.Generator | None:
        """The generator for this process: seeded once per process, ``None`` when unseeded."""
        if self._seed is None:
            return None
        info = torch.utils.data.get_worker_info()
        owner = None if info is None else (info.id, info.seed)
        if self._generator is None or owner != self._generator_owner:
            seed = self._seed if info is None else info.seed
            self._generator = torch.Generator().manual_seed(seed)
            self._generator_owner = owner
        return self._generator

    def _sample(
        self,
        seed: Tensor | dict[NodeType, Tensor],
        seed_time: Tensor | dict[NodeType, Tensor] | None = None,
    ) -> SamplerOutput | HeteroSamplerOutput:
        if seed_time is not None:
            raise SamplerArgumentError("seed_time: temporal sampling is not supported")
        if not self.is_hetero:
            out = self._sample_hetero({_NODE: seed})
            return SamplerOutput(
                node=out.node[_NODE],
                row=out.row[_EDGE],
                col=out.col[_EDGE],
                edge=out.edge[_EDGE],
                num_sampled_nodes=out.num_sampled_nodes[_NODE],
                num_sampled_edges=out.num_sampled_edges[_EDGE],
            )
        unknown = set(seed) - set(self.node_types)
        if unknown:
            raise SamplerArgumentError(f"seed: unknown node types {sorted(unknown)}")
        return self._sample_hetero(seed)

    def _sample_hetero(self, seed: dict[NodeType, Tensor]) -> HeteroSamplerOutput:
        generator = self._rng()
        state = _BatchState(self._node_counts, self.num_hops)
        frontier = {t: state.add_seeds(t, s.to(torch.long).cpu()) for t, s in seed.items()}
        rows: dict[EdgeType, list[Tensor]] = {e: [] for e in self.edge_types}
        cols: dict[EdgeType, list[Tensor]] = {e: [] for e in self.edge_types}
        edges: dict[EdgeType, list[Tensor]] = {e: [] for e in self.edge_types}
        num_sampled_edges = {e: [0] * self.num_hops for e in self.edge_types}

        for hop in range(self.num_hops):
            reached: dict[NodeType, list[tuple[Tensor, Tensor]]] = {}
            for edge_type in self.edge_types:
                src_type, _, dst_type = edge_type
                fanout = self.num_neighbors[edge_type][hop]
                if dst_type not in frontier or fanout == 0:
                    continue
                dst_global, dst_local = frontier[dst_type]
                csc = self._csc[edge_type]
                pos, dst_index = csc.pick(dst_global, fanout, generator)
                if pos.numel() == 0:
                    continue
                row, new = state.localise(src_type, _take(csc.row, pos), hop)
                if new is not None:
                    reached.setdefault(src_type, []).append(new)
                rows[edge_type].append(row)
                cols[edge_type].append(_take(dst_local, dst_index))
                edges[edge_type].append(_take(csc.perm, pos))
                num_sampled_edges[edge_type][hop] = pos.numel()
            frontier = {
                t: (torch.cat([g for g, _ in new]), torch.cat([loc for _, loc in new]))
                for t, new in reached.items()
            }
            if not frontier:
                break

        return HeteroSamplerOutput(
            node=state.nodes(),
            row={e: _cat(rows[e]) for e in self.edge_types},
            col={e: _cat(cols[e]) for e in self.edge_types},
            edge={e: _cat(edges[e]) for e in self.edge_types},
            batch=None,
            num_sampled_nodes=state.num_sampled_nodes,
            num_sampled_edges=num_sampled_edges,
        )


def degree_capped(data: HeteroData, num_neighbors: Sequence[int]) -> dict[EdgeType, list[int]]:
    """``num_neighbors`` (per hop) for every edge type of ``data``, each hop's value capped at
    the type's typical in-degree: the median number of incoming edges of the destination nodes
    that have any (``-1``, all, is kept). On hub-heavy graphs a hub then samples as many
    neighbours of a type as a typical node has, so the sampled neighbourhood grows with the
    typical degree, not with the hubs'."""
    out = {}
    for edge_type in data.edge_types:
        dst = data[edge_type].edge_index[1]
        degree = torch.bincount(dst, minlength=int(data[edge_type[2]].num_nodes or 0))
        present = degree[degree > 0]
        typical = int(present.float().median().ceil()) if present.numel() else 1
        out[edge_type] = [n if n < 0 else min(n, max(typical, 1)) for n in num_neighbors]
    return out


def resolve_num_neighbors(
    data: Data | HeteroData, num_neighbors: NumNeighborsLike
) -> dict[EdgeType, list[int]]:
    """Checks ``num_neighbors`` against ``data`` and returns one hop list per edge type
    (a homogeneous graph's single edge type is ``('_node', '_to', '_node')``).

    Raises:
        SamplerArgumentError: a value is not an int ``>= -1``, hop lists differ in length, a key
            is not an edge type of ``data``, an edge type has no value, or a dict is given for a
            homogeneous graph.
    """
    hetero = isinstance(data, HeteroData)
    edge_types: list[EdgeType] = list(data.edge_types) if hetero else [_EDGE]
    default: Sequence[int] | None = None
    values: object = num_neighbors
    if isinstance(num_neighbors, NumNeighbors):
        values, default = num_neighbors.values, num_neighbors.default

    if isinstance(values, Mapping):
        if not hetero:
            raise SamplerArgumentError(
                "num_neighbors: a homogeneous graph takes a list of ints, got a dict"
            )
        resolved: dict[EdgeType, Sequence[int]] = {}
        for key, hops in values.items():
            edge_type = _edge_type_key(key)
            if edge_type not in edge_types:
                raise SamplerArgumentError(
                    f"num_neighbors: unknown edge type {key!r}; the graph has {edge_types}"
                )
            resolved[edge_type] = hops
        for edge_type in edge_types:
            if edge_type not in resolved:
                if default is None:
                    raise SamplerArgumentError(
                        f"num_neighbors: no value for edge type {edge_type!r}"
                    )
                resolved[edge_type] = default
    elif isinstance(values, Sequence) and not isinstance(values, str):
        resolved = dict.fromkeys(edge_types, values)
    else:
        raise SamplerArgumentError(
            f"num_neighbors: expected a list of ints or a dict of edge type -> list of ints, "
            f"got {type(num_neighbors).__name__}"
        )

    out = {e: _check_hops(e, hops) for e, hops in resolved.items()}
    lengths = {e: len(hops) for e, hops in out.items()}
    if len(set(lengths.values())) > 1:
        raise SamplerArgumentError(
            f"num_neighbors: every edge type needs the same number of hops, got {lengths}"
        )
    return out


def _edge_type_key(key: object) -> object:
    """``"S__R__D"`` (PyG's ``EdgeTypeStr``) or a tuple -> ``(S, R, D)``; anything else as is."""
    if isinstance(key, str):
        parts = tuple(key.split(EDGE_TYPE_STR_SPLIT))
        return parts if len(parts) == 3 else key
    return tuple(key) if isinstance(key, tuple) else key


def _check_hops(edge_type: EdgeType, hops: object) -> list[int]:
    if not isinstance(hops, Sequence) or isinstance(hops, str):
        raise SamplerArgumentError(
            f"num_neighbors[{edge_type!r}]: expected a list of ints, got {hops!r}"
        )
    for value in hops:
        if isinstance(value, bool) or not isinstance(value, int) or value < -1:
            raise SamplerArgumentError(
                f"num_neighbors[{edge_type!r}]: each hop must be an int >= -1 "
                f"(-1 = all neighbours), got {value!r}"
            )
    return [int(v) for v in hops]


def _take(values: Tensor, index: Tensor) -> Tensor:
    """``values[index]`` for 1-d tensors, by ``index_select``: an order of magnitude faster on
    the CPU than advanced indexing for the hundreds of thousands of ids of a batch."""
    return values.index_select(0, index)


def _cat(chunks: list[Tensor]) -> Tensor:
    return torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.long)


@dataclass(frozen=True)
class CSC:
    """Incoming edges of one edge type grouped by destination: the edges into ``v`` are
    positions ``colptr[v]:colptr[v + 1]``, with sources ``row`` and original ids ``perm``."""

    colptr: Tensor
    row: Tensor
    perm: Tensor

    @classmethod
    def build(cls, edge_index: Tensor, num_dst: int) -> CSC:
        edge_index = edge_index.to(device="cpu", dtype=torch.long)
        dst, perm = torch.sort(edge_index[1], stable=True)
        colptr = torch.zeros(num_dst + 1, dtype=torch.long)
        torch.cumsum(torch.bincount(dst, minlength=num_dst), 0, out=colptr[1:])
        return cls(colptr=colptr, row=_take(edge_index[0], perm), perm=perm)

    def pick(
        self, dst: Tensor, fanout: int, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        """Samples up to ``fanout`` (``-1``: all) incoming edges of each node in ``dst``
        uniformly without replacement; returns CSC positions and, for each, its index in
        ``dst``. Edges come grouped by ``dst`` in order."""
        start = _take(self.colptr, dst)
        degree = _take(self.colptr, dst + 1) - start
        take = degree if fanout < 0 else degree.clamp(max=fanout)
        total = int(take.sum())
        dst_index = torch.repeat_interleave(torch.arange(dst.numel()), take, output_size=total)
        first_slot = torch.cumsum(take, 0) - take
        offset = torch.arange(total) - first_slot.repeat_interleave(take, output_size=total)
        if fanout > 0:
            crowded = (degree > fanout).nonzero().view(-1)
            if crowded.numel() > 0:
                chosen = _floyd_subsets(_take(degree, crowded), fanout, generator)
                slots = _take(first_slot, crowded).unsqueeze(1) + torch.arange(fanout)
                offset.index_copy_(0, slots.view(-1), chosen.view(-1))
        return _take(start, dst_index) + offset, dst_index


def _floyd_subsets(n: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """One uniform ``k``-subset of ``range(n[i])`` per row (every ``n[i] >= k``), by Robert
    Floyd's algorithm vectorised over rows: ``k`` steps, ``O(len(n) * k**2)`` work whatever
    the degrees."""
    chosen = torch.empty((n.numel(), k), dtype=torch.long)
    for step in range(k):
        upper = n - k + step  # draw from [0, upper]; take ``upper`` itself if already chosen
        draw = torch.rand(n.numel(), generator=generator, dtype=torch.float64) * (upper + 1)
        draw = torch.minimum(draw.long(), upper)
        if step > 0:
            taken = (chosen[:, :step] == draw.unsqueeze(1)).any(1)
            draw = torch.where(taken, upper, draw)
        chosen[:, step] = draw
    return chosen


class _BatchState:
    """Nodes reached so far in one batch: per node type, their global ids in local order and a
    dense global -> local map (``-1`` = not reached)."""

    def __init__(self, num_nodes: dict[NodeType, int], num_hops: int) -> None:
        self._num_nodes = num_nodes
        self._chunks: dict[NodeType, list[Tensor]] = {t: [] for t in num_nodes}
        self._count = dict.fromkeys(num_nodes, 0)
        self._local: dict[NodeType, Tensor] = {}
        self.num_sampled_nodes = {t: [0] * (num_hops + 1) for t in num_nodes}

    def _map(self, node_type: NodeType) -> Tensor:
        if node_type not in self._local:
            self._local[node_type] = torch.full((self._num_nodes[node_type],), -1, dtype=torch.long)
        return self._local[node_type]

    def add_seeds(self, node_type: NodeType, seed: Tensor) -> tuple[Tensor, Tensor]:
        """Places the seeds first (duplicates kept, as PyG does); returns the distinct seeds'
        global ids and local indices (a repeated seed maps to its first position)."""
        position = torch.arange(seed.numel())
        local = self._map(node_type)
        local.scatter_reduce_(0, seed, position, reduce="amin", include_self=False)
        first = _take(local, seed) == position
        self._chunks[node_type].append(seed)
        self._count[node_type] = seed.numel()
        self.num_sampled_nodes[node_type][0] = seed.numel()
        return seed[first], position[first]

    def localise(
        self, node_type: NodeType, global_ids: Tensor, hop: int
    ) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
        """Local indices of ``global_ids``, adding unseen ones in first-seen order; also returns
        the added nodes' (global ids, local indices), or ``None`` when none were new."""
        local = self._map(node_type)
        index = _take(local, global_ids)
        unseen = global_ids[index < 0]
        if unseen.numel() == 0:
            return index, None
        unique, inverse = torch.unique(unseen, return_inverse=True)
        first_seen = torch.full((unique.numel(),), unseen.numel(), dtype=torch.long)
        first_seen.scatter_reduce_(0, inverse, torch.arange(unseen.numel()), reduce="amin")
        new = _take(unique, torch.argsort(first_seen))
        new_local = self._count[node_type] + torch.arange(new.numel())
        local.index_copy_(0, new, new_local)
        self._chunks[node_type].append(new)
        self._count[node_type] += new.numel()
        self.num_sampled_nodes[node_type][hop + 1] += new.numel()
        return _take(local, global_ids), (new, new_local)

    def nodes(self) -> dict[NodeType, Tensor]:
        return {t: _cat(chunks) for t, chunks in self._chunks.items()}


class _GeneratorNegativeSampling(NegativeSampling):
    """PyG's ``NegativeSampling`` drawing its random nodes from a given generator."""

    generator: torch.Generator

    @classmethod
    def wrap(cls, neg: NegativeSampling, generator: torch.Generator) -> _GeneratorNegativeSampling:
        out = cls(neg.mode, neg.amount, neg.src_weight, neg.dst_weight)
        out.generator = generator
        return out

    def sample(self, num_samples: int, endpoint: str, num_nodes: int | None = None) -> Tensor:
        weight = self.src_weight if endpoint == "src" else self.dst_weight
        if weight is None:
            if num_nodes is None:
                raise SamplerArgumentError("num_nodes: needed to sample negatives uniformly")
            return torch.randint(num_nodes, (num_samples,), generator=self.generator)
        if num_nodes is not None and weight.numel() != num_nodes:
            raise SamplerArgumentError(
                f"neg_sampling.{endpoint}_weight: needs {num_nodes} entries, got {weight.numel()}"
            )
        return torch.multinomial(weight, num_samples, replacement=True, generator=self.generator)
