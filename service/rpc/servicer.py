"""The ``mmgraph.v1.Analytics`` RPCs: each parses its request, calls the serving logic or a
workflow, and builds its reply (:mod:`.messages`). Errors are raised as
:mod:`mmgraph.core.errors` kinds and turned into status codes by the error interceptor
(:mod:`.interceptors`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError
from mmgraph.ingest.encoding import Encoders
from mmgraph.ingest.quarantine import Refusal
from mmgraph.service.rpc import messages
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2 as pb
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2_grpc as pb_grpc
from mmgraph.service.serving.clustering import cluster
from mmgraph.service.serving.deadline import Deadline
from mmgraph.service.serving.encoder_thread import EncoderThread, ForwardPlan
from mmgraph.service.serving.explain import Explanation, explain_links, explain_pairs
from mmgraph.service.serving.links import predict_links, score_links
from mmgraph.service.serving.options import ClusterOptions
from mmgraph.service.serving.query_encoder import QueryEncoder
from mmgraph.service.serving.registry import Registry
from mmgraph.service.serving.similar import similar_to_node, similar_to_query
from mmgraph.service.workflows.ingest import ingest_stream

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Analytics"].full_name
METHODS = {
    pb.CLUSTER_METHOD_UNSPECIFIED: "kmeans",
    pb.CLUSTER_METHOD_KMEANS: "kmeans",
    pb.CLUSTER_METHOD_HDBSCAN: "hdbscan",
    pb.CLUSTER_METHOD_COMMUNITY: "community",
}


def _deadline(context: grpc.ServicerContext) -> Deadline:
    return Deadline(context.time_remaining)


class AnalyticsServicer(pb_grpc.AnalyticsServicer):
    """Answers from the registry's active model and the graph store.

    Args:
        settings: quarantine folder, image pixel limit, text encoder kind and device.
        registry: the active model (read once per call) and the store.
        encoders: the encoders of queries and ``Ingest`` (default: the settings', each pass on
            ``plan.threads`` threads), loaded on first use and shared by both; their forward
            passes run on ``plan.lanes`` lanes
            (:class:`~mmgraph.service.serving.query_encoder.QueryEncoder`), queries that arrive
            together in one batch.
        plan: lanes and threads of the forward passes (default: one lane, the encoders' own
            threads).
    """

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        encoders: Encoders | None = None,
        plan: ForwardPlan | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry
        threads = plan.threads if plan else None
        self.encoders = encoders or Encoders.from_settings(settings, threads)
        self.queries = QueryEncoder(self.encoders, EncoderThread(lanes=plan.lanes if plan else 1))

    def close(self) -> None:
        """Stop the encoder thread (after the server stopped taking calls)."""
        self.queries.close()

    def Similar(
        self, request: pb.SimilarRequest, context: grpc.ServicerContext
    ) -> pb.SimilarResponse:
        model = self.registry.require()
        kind = request.WhichOneof("query")
        args = {
            "k": request.k,
            "types": tuple(request.types),
            "space": request.space,
            "deadline": _deadline(context),
        }
        if kind == "uid":
            hits = similar_to_node(model, request.uid, **args)
        elif kind in ("text", "image"):
            value = request.text if kind == "text" else request.image
            hits = similar_to_query(model, self.queries, kind, value, **args)
        else:
            raise InvalidArgumentError("set one of uid, text or image as the query")
        why = None
        if request.explain:
            args["deadline"].check("explaining the hits")
            source = request.uid if kind == "uid" else None
            why = explain_pairs(model, self.registry.store, source, [h.uid for h in hits])
        return messages.similar_message(hits, model.run_id, model.space(request.space), why)

    def Cluster(
        self, request: pb.ClusterRequest, context: grpc.ServicerContext
    ) -> pb.ClusterResponse:
        model = self.registry.require()
        if request.method not in METHODS:
            raise InvalidArgumentError(f"unknown cluster method {request.method}")
        options = ClusterOptions(
            method=METHODS[request.method],
            clusters=request.clusters,
            min_cluster_size=request.min_cluster_size,
            neighbors=request.neighbors,
            space=request.space,
            top=request.top,
            seed=request.seed,
        )
        result = cluster(
            model,
            self.registry.store,
            types=tuple(request.types),
            uids=tuple(request.uids),
            options=options,
            deadline=_deadline(context),
        )
        return messages.clustering_message(result, model.run_id)

    def PredictLinks(
        self, request: pb.PredictLinksRequest, context: grpc.ServicerContext
    ) -> pb.PredictLinksResponse:
        model = self.registry.require()
        deadline = _deadline(context)
        links = predict_links(
            model,
            self.registry.store,
            request.uid,
            request.relation,
            k=request.k,
            dst_type=request.dst_type,
            deadline=deadline,
        )
        why: list[Explanation | None] = [None] * len(links)
        if request.explain:
            deadline.check("explaining the links")
            why = explain_links(
                model, self.registry.store, request.uid, request.relation, [x.dst for x in links]
            )
        return pb.PredictLinksResponse(
            links=[messages.link_message(x, w) for x, w in zip(links, why, strict=True)],
            run_id=model.run_id,
        )

    def ScoreLinks(
        self, request: pb.ScoreLinksRequest, context: grpc.ServicerContext
    ) -> pb.ScoreLinksResponse:
        model = self.registry.require()
        pairs = [(p.src, p.dst) for p in request.pairs]
        probs = score_links(model, request.relation, pairs, deadline=_deadline(context))
        return pb.ScoreLinksResponse(probabilities=probs.tolist(), run_id=model.run_id)

    def Ingest(
        self, request_iterator: Iterator[pb.IngestRecord], context: grpc.ServicerContext
    ) -> pb.IngestResponse:
        source = f"grpc:{context.peer()}"
        refused: list[Refusal] = []
        result = ingest_stream(
            self.settings,
            self.registry.store,
            messages.raw_records(request_iterator, source),
            source,
            self.queries.ingest_encoders(),
            on_refusal=refused.append,
        )
        return pb.IngestResponse(
            run_id=result.run_id or "",
            status=result.status,
            nodes_written=result.nodes_written,
            relationships_written=result.relationships_written,
            quarantined=[
                messages.refusal_message(r) for r in sorted(refused, key=lambda r: r.record)
            ],
        )

    def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelsResponse:
        active = self.registry.active
        promoted = self.registry.promoted()
        return pb.ListModelsResponse(
            models=[
                messages.model_info(
                    run, active is not None and active.run_id == run.run_id, promoted == run.run_id
                )
                for run in self.registry.runs()
            ]
        )

    def UseModel(
        self, request: pb.UseModelRequest, context: grpc.ServicerContext
    ) -> pb.UseModelResponse:
        if not request.run_id:
            raise InvalidArgumentError("run_id is empty; ListModels names the runs")
        model, previous = self.registry.use(request.run_id, promote=request.promote)
        return pb.UseModelResponse(
            model=messages.model_info(model.run, True, self.registry.promoted() == model.run_id),
            previous_run_id=previous.run_id if previous else "",
        )
