"""Messages of the contract to and from the serving logic's values: an ``Ingest`` stream of
protobuf records as the raw records of batch ingest, and answers as reply messages.

Images travel as bytes and reach the pipeline as bytes: nothing a remote caller sends can make the
service open a file (a path is refused by the run).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mmgraph.gnn.alignment import MODALITIES as ALIGNED_SPACES
from mmgraph.gnn.runs import ModelRun
from mmgraph.ingest.quarantine import Refusal
from mmgraph.ingest.readers import RawRecord
from mmgraph.ingest.records import Location, RecordError
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2 as pb
from mmgraph.service.serving.clustering import Clustering
from mmgraph.service.serving.explain import Explanation
from mmgraph.service.serving.links import Link
from mmgraph.service.serving.similar import Hit


def raw_records(stream: Iterable[pb.IngestRecord], source: str) -> Iterator[RawRecord]:
    """Each streamed record as ``(location, dict)`` (numbered from 1), or a
    :class:`RecordError` in its place when it holds neither an item nor a relation."""
    for number, message in enumerate(stream, start=1):
        location = Location(source, number)
        kind = message.WhichOneof("record")
        if kind == "item":
            yield location, _item(message.item)
        elif kind == "relation":
            yield location, _relation(message.relation)
        else:
            yield location, RecordError(location, "record", "holds neither an item nor a relation")


def _item(item: pb.Item) -> dict[str, Any]:
    raw: dict[str, Any] = {"kind": "item", "uid": item.uid, "type": item.type}
    if item.HasField("text"):
        raw["text"] = item.text
    if item.image:
        raw["image"] = item.image
    if item.numbers:
        raw["numbers"] = dict(item.numbers)
    if item.vectors:
        raw["vectors"] = {name: list(v.values) for name, v in item.vectors.items()}
    if item.props:
        raw["props"] = {key: _value(v) for key, v in item.props.items()}
    return raw


def _relation(rel: pb.Relation) -> dict[str, Any]:
    raw: dict[str, Any] = {"kind": "relation", "src": rel.src, "dst": rel.dst, "type": rel.type}
    if rel.HasField("weight"):
        raw["weight"] = rel.weight
    if rel.props:
        raw["props"] = {key: _value(v) for key, v in rel.props.items()}
    return raw


def _value(value: pb.Value) -> Any:
    """A property value as Python; an unset value becomes ``None``, which validation refuses."""
    kind = value.WhichOneof("kind")
    if kind == "list_value":
        return [_value(v) for v in value.list_value.values]
    return None if kind is None else getattr(value, kind)


def hit_message(hit: Hit) -> pb.Hit:
    """A node found, as the ``Hit`` message."""
    return pb.Hit(uid=hit.uid, type=hit.type, score=hit.score, display=hit.display)


def explanation_message(explanation: Explanation) -> pb.Explanation:
    """Why an answer came back, as the ``Explanation`` message."""
    return pb.Explanation(
        shared=[
            pb.SharedNeighbors(relation=s.relation, count=s.count, uids=s.uids)
            for s in explanation.shared
        ],
        query_modality_weights=explanation.query_weights,
        hit_modality_weights=explanation.hit_weights,
        peers=[pb.Peer(uid=uid, shared=n) for uid, n in explanation.peers],
    )


def similar_message(
    hits: list[Hit], run_id: str, space: str, why: list[Explanation] | None = None
) -> pb.SimilarResponse:
    """The nodes found (and why, when asked), as the ``SimilarResponse``. Each hit is made in
    place in the reply: a ``Hit`` made apart and then copied in cost 4x as much (a tenth of a
    uid query)."""
    reply = pb.SimilarResponse(run_id=run_id, space=space)
    add = reply.hits.add
    for i, hit in enumerate(hits):
        message = add(uid=hit.uid, type=hit.type, score=hit.score, display=hit.display)
        if why is not None:
            message.explanation.CopyFrom(explanation_message(why[i]))
    return reply


def clustering_message(result: Clustering, run_id: str) -> pb.ClusterResponse:
    """Each node's cluster and a summary per cluster, as the ``ClusterResponse``."""
    return pb.ClusterResponse(
        assignments=[
            pb.Assignment(uid=u, type=t, cluster=int(c))
            for u, t, c in zip(result.uids, result.types, result.labels.tolist(), strict=True)
        ],
        clusters=[
            pb.ClusterSummary(
                cluster=s.cluster,
                size=s.size,
                central=[hit_message(h) for h in s.central],
                neighbors=[pb.CommonNeighbor(**n) for n in s.neighbours],
            )
            for s in result.clusters
        ],
        run_id=run_id,
        method=result.method,
    )


def link_message(link: Link, explanation: Explanation | None = None) -> pb.Link:
    """A predicted link (and why, when asked), as the ``Link`` message."""
    return pb.Link(
        src=link.src,
        dst=link.dst,
        dst_type=link.dst_type,
        probability=link.probability,
        display=link.display,
        explanation=explanation_message(explanation) if explanation else None,
    )


def refusal_message(refusal: Refusal) -> pb.QuarantinedRecord:
    """A record the run refused, as the ``QuarantinedRecord`` message."""
    return pb.QuarantinedRecord(
        record=refusal.record, field=refusal.field, message=refusal.message, key=refusal.key
    )


def model_info(run: ModelRun, serving: bool, promoted: bool) -> pb.ModelInfo:
    """A run as the ``ModelInfo`` message."""
    aligned = (
        sorted(ALIGNED_SPACES) if run.aligned and set(ALIGNED_SPACES) <= set(run.spaces) else []
    )
    return pb.ModelInfo(
        run_id=run.run_id,
        model=run.model,
        created=run.created,
        metrics={k: float(v) for k, v in run.metrics.items() if isinstance(v, int | float)},
        spaces=list(run.spaces),
        relations=[f"{s}-{r}->{d}" for s, r, d in run.relations],
        serving=serving,
        promoted=promoted,
        nodes={t: len(u) for t, u in run.uids.items()},
        aligned_spaces=aligned,
    )
