"""Tests for the plain-torch neighbour sampler on tiny hand-built graphs."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import torch
import torch_geometric.typing
from torch_geometric.data import Data, HeteroData
from torch_geometric.loader import LinkLoader, NodeLoader
from torch_geometric.sampler import NegativeSampling, NeighborSampler, NodeSamplerInput
from torch_geometric.sampler.base import NumNeighbors

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.gnn.sampler import (
    SamplerArgumentError,
    TorchNeighborSampler,
    degree_capped,
    make_neighbor_sampler,
)

WRITES = ("Author", "writes", "Paper")
REV_WRITES = ("Paper", "rev_writes", "Author")
CITES = ("Paper", "cites", "Paper")


def small_graph() -> HeteroData:
    """6 papers, 4 authors; ``writes`` with its reverse, and ``cites`` between papers."""
    data = HeteroData()
    data["Paper"].x = torch.arange(6, dtype=torch.float).view(-1, 1)
    data["Author"].x = torch.arange(4, dtype=torch.float).view(-1, 1) + 100
    writes = torch.tensor([[0, 0, 1, 2, 2, 3, 3], [0, 1, 1, 2, 3, 4, 5]])
    data[WRITES].edge_index = writes
    data[WRITES].edge_weight = torch.arange(writes.size(1), dtype=torch.float)
    data[REV_WRITES].edge_index = writes.flip(0)
    data[CITES].edge_index = torch.tensor([[1, 2, 3, 3, 4, 5, 5], [0, 0, 1, 2, 3, 3, 4]])
    return data


def random_graph(seed: int = 0) -> HeteroData:
    """40 papers, 25 authors, in-degrees up to ~15 so that small fanouts must choose."""
    gen = torch.Generator().manual_seed(seed)
    data = HeteroData()
    data["Paper"].num_nodes = 40
    data["Author"].num_nodes = 25

    def edges(num_src: int, num_dst: int, num: int) -> torch.Tensor:
        src = torch.randint(num_src, (num,), generator=gen)
        dst = torch.randint(num_dst, (num,), generator=gen)
        return torch.unique(torch.stack([src, dst]), dim=1)

    writes = edges(25, 40, 200)
    data[WRITES].edge_index = writes
    data[REV_WRITES].edge_index = writes.flip(0)
    data[CITES].edge_index = edges(40, 40, 300)
    return data


def incoming_neighbourhood(
    data: HeteroData, seed: dict[str, set[int]], hops: int
) -> tuple[dict[str, set[int]], set[tuple[tuple[str, str, str], int]]]:
    """Brute force: nodes with a path of at most ``hops`` edges into a seed, and the edges
    pointing into nodes at most ``hops - 1`` away."""
    reached = {t: set(seed.get(t, set())) for t in data.node_types}
    edges: set[tuple[tuple[str, str, str], int]] = set()
    for _ in range(hops):
        grown = {t: set(nodes) for t, nodes in reached.items()}
        for edge_type in data.edge_types:
            src_type, _, dst_type = edge_type
            for eid, (src, dst) in enumerate(data[edge_type].edge_index.t().tolist()):
                if dst in reached[dst_type]:
                    grown[src_type].add(src)
                    edges.add((edge_type, eid))
        reached = grown
    return reached, edges


def sample(sampler: TorchNeighborSampler, node_type: str, seeds: list[int]):
    seed = torch.tensor(seeds)
    return sampler.sample_from_nodes(
        NodeSamplerInput(input_id=torch.arange(seed.numel()), node=seed, input_type=node_type)
    )


def assert_real_edges(data: HeteroData, out) -> None:
    """Every sampled edge, mapped back through ``node``, is the graph's edge ``edge``."""
    for edge_type in data.edge_types:
        src_type, _, dst_type = edge_type
        src = out.node[src_type][out.row[edge_type]]
        dst = out.node[dst_type][out.col[edge_type]]
        expected = data[edge_type].edge_index[:, out.edge[edge_type]]
        assert torch.equal(torch.stack([src, dst]), expected)
        assert out.edge[edge_type].unique().numel() == out.edge[edge_type].numel()


@pytest.mark.parametrize("hops", [1, 2, 3])
@pytest.mark.parametrize(
    ("node_type", "seeds"), [("Paper", [0]), ("Paper", [4, 1]), ("Author", [3, 0])]
)
def test_all_neighbours_is_exact_k_hop_incoming_neighbourhood(hops, node_type, seeds):
    data = small_graph()
    out = sample(TorchNeighborSampler(data, [-1] * hops), node_type, seeds)

    nodes, edges = incoming_neighbourhood(data, {node_type: set(seeds)}, hops)
    for t in data.node_types:
        assert set(out.node[t].tolist()) == nodes[t]
        assert out.node[t].unique().numel() == out.node[t].numel()
        assert sum(out.num_sampled_nodes[t]) == out.node[t].numel()
    assert torch.equal(out.node[node_type][: len(seeds)], torch.tensor(seeds))
    sampled = {(e, eid) for e in data.edge_types for eid in out.edge[e].tolist()}
    assert sampled == edges
    assert_real_edges(data, out)


def test_hop_blocks_follow_pyg_layout():
    """Edges of hop h point into nodes first reached in hop h - 1 (what ``trim_to_layer``
    relies on), and the counts add up."""
    data = small_graph()
    hops = 3
    out = sample(TorchNeighborSampler(data, [-1] * hops), "Paper", [0])
    hop_of = {}
    for t in data.node_types:
        counts = out.num_sampled_nodes[t]
        assert len(counts) == hops + 1
        hop_of[t] = torch.repeat_interleave(torch.arange(hops + 1), torch.tensor(counts))
    for edge_type in data.edge_types:
        counts = out.num_sampled_edges[edge_type]
        assert len(counts) == hops
        assert sum(counts) == out.col[edge_type].numel()
        edge_hop = torch.repeat_interleave(torch.arange(hops), torch.tensor(counts))
        assert torch.equal(hop_of[edge_type[2]][out.col[edge_type]], edge_hop)
        assert bool((hop_of[edge_type[0]][out.row[edge_type]] <= edge_hop + 1).all())


def test_fanout_bounds_in_neighbours_per_edge_type_and_hop():
    data = random_graph()
    fanout = [3, 2]
    sampler = TorchNeighborSampler(
        data, {WRITES: fanout, REV_WRITES: fanout, CITES: fanout}, seed=1
    )
    out = sample(sampler, "Paper", [0, 5, 7, 11])
    in_degree = {
        e: torch.bincount(data[e].edge_index[1], minlength=data[e[2]].num_nodes)
        for e in data.edge_types
    }
    assert_real_edges(data, out)
    for edge_type in data.edge_types:
        start = 0
        for hop, count in enumerate(out.num_sampled_edges[edge_type]):
            cols = out.col[edge_type][start : start + count]
            start += count
            per_dst = Counter(cols.tolist())
            for local, taken in per_dst.items():
                node = int(out.node[edge_type[2]][local])
                assert taken == min(fanout[hop], int(in_degree[edge_type][node]))
    assert any(max(Counter(out.col[e].tolist()).values()) == 3 for e in data.edge_types)


def test_fanout_sampling_is_uniform_without_replacement():
    """Each of 2,000 papers has the same 5 authors; with fanout 2 the 10 author pairs come up
    about equally often and never repeat an author."""
    data = HeteroData()
    data["Paper"].num_nodes = 2000
    data["Author"].num_nodes = 5
    data[WRITES].edge_index = torch.stack(
        [torch.arange(5).repeat(2000), torch.arange(2000).repeat_interleave(5)]
    )
    out = sample(TorchNeighborSampler(data, [2], seed=3), "Paper", list(range(2000)))
    authors = out.node["Author"][out.row[WRITES]]
    pairs = Counter(tuple(sorted(authors[out.col[WRITES] == p].tolist())) for p in range(0, 2000))
    assert set(pairs) == set(itertools.combinations(range(5), 2))
    assert all(140 <= n <= 260 for n in pairs.values())  # expected 200 each, sd ~13


def test_link_loader_binary_negatives():
    data = small_graph()
    label_index = data[WRITES].edge_index[:, [0, 2, 4, 5, 6]]
    loader = LinkLoader(
        data,
        link_sampler=make_neighbor_sampler(data, [2, 2], seed=0),
        edge_label_index=(WRITES, label_index),
        neg_sampling=NegativeSampling("binary", amount=1),
        batch_size=2,
    )
    seen = []
    for batch in loader:
        store = batch[WRITES]
        num_pos = store.input_id.numel()
        index, label = store.edge_label_index, store.edge_label
        assert index.size(1) == label.numel() == 2 * num_pos
        assert bool((index[0] < batch["Author"].num_nodes).all())
        assert bool((index[1] < batch["Paper"].num_nodes).all())
        assert torch.equal(label, torch.cat([torch.ones(num_pos), torch.zeros(num_pos)]))
        positives = torch.stack(
            [batch["Author"].n_id[index[0, :num_pos]], batch["Paper"].n_id[index[1, :num_pos]]]
        )
        assert torch.equal(positives, label_index[:, store.input_id])
        assert torch.equal(batch["Paper"].x.view(-1), batch["Paper"].n_id.float())
        assert torch.equal(store.edge_weight, store.e_id.float())
        seen += store.input_id.tolist()
    assert sorted(seen) == list(range(label_index.size(1)))


def test_link_loader_negatives_follow_the_seed():
    data = random_graph()

    def global_label_pairs(seed: int) -> list[torch.Tensor]:
        loader = LinkLoader(
            data,
            link_sampler=make_neighbor_sampler(data, [2], seed=seed),
            edge_label_index=WRITES,
            neg_sampling=NegativeSampling("binary", amount=2),
            batch_size=16,
        )
        return [
            torch.stack(
                [
                    b["Author"].n_id[b[WRITES].edge_label_index[0]],
                    b["Paper"].n_id[b[WRITES].edge_label_index[1]],
                ]
            )
            for b in loader
        ]

    first = global_label_pairs(seed=5)
    assert all(torch.equal(a, b) for a, b in zip(first, global_label_pairs(5), strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, global_label_pairs(6), strict=True))


def test_node_loader_seeds_first_and_reproducible():
    data = random_graph()
    seeds = torch.tensor([3, 9, 1, 30, 22])

    def batches(seed: int) -> list[dict]:
        loader = NodeLoader(
            data,
            node_sampler=make_neighbor_sampler(data, [4, 3], seed=seed),
            input_nodes=("Paper", seeds),
            batch_size=2,
        )
        return [
            {
                **{t: b[t].n_id for t in b.node_types},
                **{e: b[e].edge_index for e in b.edge_types},
                "size": b["Paper"].batch_size,
            }
            for b in loader
        ]

    first = batches(seed=7)
    assert torch.equal(torch.cat([b["Paper"][: b["size"]] for b in first]), seeds)
    assert same_batches(first, batches(seed=7))
    assert not same_batches(first, batches(seed=8))


def same_batches(first: list[dict], second: list[dict]) -> bool:
    return len(first) == len(second) and all(
        a.keys() == b.keys()
        and all(torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])) for k in a)
        for a, b in zip(first, second, strict=True)
    )


def test_homogeneous_data():
    edge_index = torch.tensor([[1, 2, 3, 4, 4, 5], [0, 0, 1, 1, 2, 4]])
    data = Data(x=torch.arange(6, dtype=torch.float).view(-1, 1), edge_index=edge_index)
    out = sample(TorchNeighborSampler(data, [-1, -1]), None, [0])
    assert set(out.node.tolist()) == {0, 1, 2, 3, 4}
    assert torch.equal(torch.stack([out.node[out.row], out.node[out.col]]), edge_index[:, out.edge])
    assert out.num_sampled_nodes == [1, 2, 2]
    batch = next(iter(NodeLoader(data, make_neighbor_sampler(data, [-1, -1]), batch_size=1)))
    assert batch.n_id[0] == 0 and batch.num_nodes == 5


@pytest.mark.parametrize(
    ("num_neighbors", "match"),
    [
        ({WRITES: [2, 2], REV_WRITES: [2], CITES: [2, 2]}, "same number of hops"),
        ([2, -2], ">= -1"),
        ([2, True], ">= -1"),
        ({WRITES: [2], REV_WRITES: [2], CITES: [2], ("Paper", "x", "Author"): [1]}, "unknown"),
        ({WRITES: [2], CITES: [2]}, "no value"),
        ("2", "expected a list"),
    ],
)
def test_bad_num_neighbors_refused(num_neighbors, match):
    with pytest.raises(SamplerArgumentError, match=match) as info:
        make_neighbor_sampler(small_graph(), num_neighbors)
    assert isinstance(info.value, InvalidArgumentError)
    assert isinstance(info.value, ValueError)


def test_num_neighbors_forms_agree():
    data = small_graph()
    as_strings = {"Author__writes__Paper": [1], "Paper__cites__Paper": [1]}
    with_default = NumNeighbors(as_strings, default=[-1])
    sampler = TorchNeighborSampler(data, with_default)
    assert sampler.num_neighbors == {WRITES: [1], REV_WRITES: [-1], CITES: [1]}


def test_native_sampler_chosen_when_available(monkeypatch):
    data = small_graph()
    assert isinstance(make_neighbor_sampler(data, [2]), TorchNeighborSampler) != (
        torch_geometric.typing.WITH_PYG_LIB or torch_geometric.typing.WITH_TORCH_SPARSE
    )
    monkeypatch.setattr(torch_geometric.typing, "WITH_PYG_LIB", True)
    assert isinstance(make_neighbor_sampler(data, [2]), NeighborSampler)


def test_fanouts_hold_on_a_hub_node():
    """A paper cited by 300 papers and written by 200 authors, sampled with small fanouts per
    edge type and hop: the hub takes exactly its fanout of each type, and the whole sample stays
    within what the fanouts allow, however many neighbours the hub has."""
    data = HeteroData()
    data["Paper"].num_nodes = 400
    data["Author"].num_nodes = 250
    writes = torch.stack([torch.arange(250), torch.zeros(250, dtype=torch.long)])
    writes = torch.cat([writes, torch.stack([torch.arange(250), torch.arange(250) % 400])], 1)
    data[WRITES].edge_index = writes
    data[REV_WRITES].edge_index = writes.flip(0)
    data[CITES].edge_index = torch.stack([torch.arange(1, 301), torch.zeros(300, dtype=torch.long)])
    fanouts = {WRITES: [4, 2], REV_WRITES: [1, 1], CITES: [3, 2]}
    out = sample(TorchNeighborSampler(data, fanouts, seed=0), "Paper", [0])
    assert_real_edges(data, out)
    for edge_type in (WRITES, CITES):
        hop1 = out.num_sampled_edges[edge_type][0]
        assert hop1 == fanouts[edge_type][0]  # into the hub: its fanout, not its 200-300 edges
    # One paper, then at most 4 authors + 3 papers, then at most 2 per type into each of them.
    assert sum(out.num_sampled_nodes["Paper"]) + sum(out.num_sampled_nodes["Author"]) <= (
        1 + (4 + 3) + (4 * 1 + 3 * (2 + 2))
    )


def test_degree_capped_fanouts_follow_the_typical_degree():
    """Papers cite 2 others each, but paper 0 is cited by 300: ``cites`` is capped at the
    typical in-degree (2), ``writes`` (in-degree 4 everywhere) at the asked 3, ``-1`` kept."""
    data = HeteroData()
    data["Paper"].num_nodes = 400
    data["Author"].num_nodes = 100
    cites = torch.stack([torch.arange(1, 301), torch.zeros(300, dtype=torch.long)])
    pairs = torch.stack([torch.arange(1, 399), torch.arange(2, 400)])
    data[CITES].edge_index = torch.cat([cites, pairs, pairs.flip(0)[:, 1:]], dim=1)
    writes = torch.stack([torch.arange(400) % 100, torch.arange(400)]).repeat(1, 4)
    data[WRITES].edge_index = writes
    data[REV_WRITES].edge_index = writes.flip(0)
    capped = degree_capped(data, [3, -1])
    assert capped[CITES] == [2, -1]
    assert capped[WRITES] == [3, -1]
