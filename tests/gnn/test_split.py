"""The link split's guarantees on small hand-built graphs."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from mmgraph.gnn.split import (
    SplitConfig,
    SplitError,
    check_no_leak,
    split_graph,
    with_reverse_edges,
)


def _graph(n_items: int = 40, n_tags: int = 30) -> HeteroData:
    g = torch.Generator().manual_seed(0)
    data = HeteroData()
    data["Item"].num_nodes = n_items
    data["Item"].text_x = torch.randn(n_items, 4, generator=g)
    data["Item"].text_mask = torch.ones(n_items, dtype=torch.bool)
    data["Item"].image_x = torch.randn(n_items, 3, generator=g)
    data["Item"].image_mask = torch.arange(n_items) % 4 != 0
    data["Tag"].num_nodes = n_tags
    data["Class"].num_nodes = 3
    src = torch.arange(n_items).repeat_interleave(3)
    dst = (src * 7 + torch.arange(src.numel()) % 3) % n_tags
    data["Item", "HAS_TAG", "Tag"].edge_index = torch.stack([src, dst])
    pairs = torch.stack([torch.arange(n_items - 1), torch.arange(1, n_items)])
    # Both directions of a symmetric relation: they must be split together.
    data["Item", "LIKE", "Item"].edge_index = torch.cat([pairs, pairs.flip(0)], dim=1)
    data["Item", "IN_CLASS", "Class"].edge_index = torch.stack(
        [torch.arange(n_items), torch.arange(n_items) % 3]
    )
    return data


def _pairs(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return set(zip(edge_index[0].tolist(), edge_index[1].tolist(), strict=True))


def test_no_held_out_edge_or_its_reverse_reaches_a_message_passing_graph() -> None:
    config = SplitConfig(target_relations=("HAS_TAG", "LIKE"), label_relation="IN_CLASS")
    split = split_graph(_graph(), config)
    generator = torch.Generator().manual_seed(1)
    epochs = [split.train_graph(generator) for _ in range(5)]
    val_graph, test_graph = split.graph("val"), split.graph("test")
    check_no_leak(split, [val_graph, test_graph] + [g for g, _ in epochs])
    for graph in [val_graph, test_graph, split.full_graph()] + [g for g, _ in epochs]:
        assert not any(rel in ("IN_CLASS", "rev_IN_CLASS") for _, rel, _ in graph.edge_types)
    for edge_type, held in split.test.items():
        src, rel, dst = edge_type
        test_pairs = _pairs(held.edge_index)
        if src == dst:
            test_pairs |= {(b, a) for a, b in test_pairs}
        for graph in [val_graph, test_graph] + [g for g, _ in epochs]:
            assert not test_pairs & _pairs(graph[edge_type].edge_index)
            assert not test_pairs & _pairs(graph[dst, f"rev_{rel}", src].edge_index.flip(0))
        val_pairs = _pairs(split.val[edge_type].edge_index)
        assert not val_pairs & _pairs(val_graph[edge_type].edge_index)
        assert val_pairs <= _pairs(test_graph[edge_type].edge_index)
    for graph, supervision in epochs:
        for edge_type, sup in supervision.items():
            assert sup.size(1) > 0
            assert not _pairs(sup) & _pairs(graph[edge_type].edge_index)


def test_the_leak_guard_catches_a_leak() -> None:
    split = split_graph(_graph(), SplitConfig(label_relation="IN_CLASS"))
    leaky = split.graph("test")
    edge_type = ("Item", "HAS_TAG", "Tag")
    leaky[edge_type].edge_index = torch.cat(
        [leaky[edge_type].edge_index, split.test[edge_type].edge_index[:, :1]], dim=1
    )
    with pytest.raises(SplitError, match="leaked"):
        check_no_leak(split, [leaky])


def test_negatives_are_filtered_and_hard_ones_are_two_hops_away() -> None:
    data = _graph()
    config = SplitConfig(label_relation="IN_CLASS", num_negatives=10, num_hard_negatives=4)
    split = split_graph(data, config)
    true_links = _pairs(data["Item", "HAS_TAG", "Tag"].edge_index)
    held = split.test["Item", "HAS_TAG", "Tag"]
    assert held.negatives.shape == held.hard.shape == (held.edge_index.size(1), 14)
    assert held.hard.any()
    train = split.graph("test")["Item", "HAS_TAG", "Tag"].edge_index
    items_of_tag: dict[int, set[int]] = {}
    for item, tag in _pairs(train):
        items_of_tag.setdefault(tag, set()).add(item)
    pairs = held.edge_index.t().tolist()
    for (s, d), row, hard in zip(pairs, held.negatives.tolist(), held.hard.tolist(), strict=True):
        assert len(set(row)) == len(row) and d not in row
        assert all((s, n) not in true_links for n in row)
        for n in (n for n, is_hard in zip(row, hard, strict=True) if is_hard):
            # A hard negative shares an item with the true tag in the graph edges are ranked in.
            assert items_of_tag.get(n, set()) & items_of_tag.get(d, set())


def test_a_graph_too_small_for_the_negatives_gets_fewer_per_edge() -> None:
    split = split_graph(_graph(), SplitConfig(label_relation="IN_CLASS"))
    held = split.test["Item", "HAS_TAG", "Tag"]
    assert held.negatives.size(1) == 30 - 3  # 30 tags, 3 of them linked to each item


def test_labels_come_through_the_label_relation_and_the_via_relation() -> None:
    data = _graph()
    data["Item", "VARIANT_OF", "Item"].edge_index = torch.tensor([[0], [1]])
    data["Item", "IN_CLASS", "Class"].edge_index = data["Item", "IN_CLASS", "Class"].edge_index[
        :, 1:
    ]
    config = SplitConfig(label_relation="IN_CLASS", label_via="VARIANT_OF")
    split = split_graph(data, config)
    y = split.labels["Item"]
    assert y[0] == y[1] == 1  # item 0 takes item 1's class through VARIANT_OF
    assert (y >= 0).all()


def test_same_seed_same_split_and_retrieval_nodes_have_both_modalities() -> None:
    data = _graph()
    a = split_graph(data, SplitConfig(label_relation="IN_CLASS", retrieval_ratio=0.2))
    b = split_graph(data, SplitConfig(label_relation="IN_CLASS", retrieval_ratio=0.2))
    edge_type = ("Item", "HAS_TAG", "Tag")
    assert torch.equal(a.test[edge_type].edge_index, b.test[edge_type].edge_index)
    assert torch.equal(a.test[edge_type].negatives, b.test[edge_type].negatives)
    nodes = a.retrieval_nodes["Item"]
    assert nodes.numel() == 6
    assert data["Item"].image_mask[nodes].all()


def test_impossible_splits_are_refused() -> None:
    with pytest.raises(SplitError, match="not in the graph"):
        split_graph(_graph(), SplitConfig(target_relations=("NOPE",)))
    tiny = _graph(n_items=2, n_tags=30)
    with pytest.raises(SplitError, match="too few"):
        split_graph(tiny, SplitConfig(target_relations=("LIKE",), label_relation=None))
    with pytest.raises(SplitError, match="val_ratio"):
        SplitConfig(val_ratio=1.5)
    with pytest.raises(SplitError, match="reverse types"):
        split_graph(with_reverse_edges(_graph()), SplitConfig(label_relation="IN_CLASS"))


def test_retrieval_nodes_are_marked_out_of_the_contrastive_term() -> None:
    split = split_graph(_graph(), SplitConfig(label_relation="IN_CLASS", retrieval_ratio=0.2))
    exclude = split.graph("val")["Item"].contrastive_exclude
    assert exclude.nonzero().flatten().tolist() == split.retrieval_nodes["Item"].tolist()
