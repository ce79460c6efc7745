"""The ``mmgraph.v1.Analytics`` RPCs: requests in, :mod:`~mmgraph.service.queries` called, replies
out. Errors are raised as :mod:`mmgraph.core.errors` kinds and turned into status codes by the
error interceptor (:mod:`mmgraph.service.interceptors`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import numpy as np
from neo4j.exceptions import ServiceUnavailable, SessionExpired

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError, UnavailableError
from mmgraph.gnn.artifacts import ModelRun
from mmgraph.ingest.encoders import ImageDecodeError, ImageEncoder
from mmgraph.ingest.encoders.image import ImageTooLargeError
from mmgraph.ingest.encoders.text import make_text_encoder
from mmgraph.ingest.pipeline import Encoders, IngestError, IngestOptions, ingest
from mmgraph.service import queries
from mmgraph.service.ingest_stream import raw_records, refusals
from mmgraph.service.proto.mmgraph.v1 import analytics_pb2 as pb
from mmgraph.service.proto.mmgraph.v1 import analytics_pb2_grpc as pb_grpc
from mmgraph.service.registry import ActiveModel, Registry

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Analytics"].full_name
METHODS = {
    pb.CLUSTER_METHOD_UNSPECIFIED: "kmeans",
    pb.CLUSTER_METHOD_KMEANS: "kmeans",
    pb.CLUSTER_METHOD_HDBSCAN: "hdbscan",
    pb.CLUSTER_METHOD_COMMUNITY: "community",
}


def _deadline(context: grpc.ServicerContext) -> queries.Deadline:
    return queries.Deadline(context.time_remaining)


def _hit(hit: queries.Hit) -> pb.Hit:
    return pb.Hit(uid=hit.uid, type=hit.type, score=hit.score, display=hit.display)


class AnalyticsServicer(pb_grpc.AnalyticsServicer):
    """Answers from the registry's active model and the graph store.

    Args:
        settings: quarantine folder, image pixel limit and text encoder kind.
        registry: the active model (read once per call) and the store.
    """

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        # Models load on first use, once, and are shared by queries and Ingest.
        self.encoders = Encoders(
            text=make_text_encoder(settings.text_encoder),
            image=ImageEncoder(max_pixels=settings.max_image_pixels),
        )

    def Similar(
        self, request: pb.SimilarRequest, context: grpc.ServicerContext
    ) -> pb.SimilarResponse:
        model = self.registry.require()
        deadline = _deadline(context)
        kind = request.WhichOneof("query")
        args = {"k": request.k, "types": tuple(request.types), "space": request.space}
        if kind == "uid":
            hits = queries.similar_to_node(model, request.uid, deadline=deadline, **args)
        elif kind in ("text", "image"):
            # Validate the cheap arguments before the encoder runs.
            queries.check_k(request.k)
            model.types(model.space(request.space), tuple(request.types))
            deadline.check("encoding the query")
            vector = self._encode(kind, request.text if kind == "text" else request.image)
            hits = queries.similar_to_vector(model, kind, vector, deadline=deadline, **args)
        else:
            raise InvalidArgumentError("set one of uid, text or image as the query")
        return pb.SimilarResponse(
            hits=[_hit(h) for h in hits],
            run_id=model.run_id,
            space=model.space(request.space),
        )

    def _encode(self, modality: str, value: str | bytes) -> np.ndarray:
        if modality == "text":
            if not value.strip():
                raise InvalidArgumentError("the text query is empty")
            return self.encoders.text_encoder().encode([value])
        if not value:
            raise InvalidArgumentError("the image query holds no bytes")
        try:
            return self.encoders.image_encoder().encode([value])
        except ImageTooLargeError:
            raise
        except ImageDecodeError as e:
            raise InvalidArgumentError(f"image query: {e.reason}") from e

    def Cluster(
        self, request: pb.ClusterRequest, context: grpc.ServicerContext
    ) -> pb.ClusterResponse:
        model = self.registry.require()
        if request.method not in METHODS:
            raise InvalidArgumentError(f"unknown cluster method {request.method}")
        result = queries.cluster(
            model,
            self.registry.store,
            types=tuple(request.types),
            uids=tuple(request.uids),
            method=METHODS[request.method],
            clusters=request.clusters,
            min_cluster_size=request.min_cluster_size,
            neighbors=request.neighbors,
            space=request.space,
            top=request.top,
            seed=request.seed,
            deadline=_deadline(context),
        )
        return pb.ClusterResponse(
            assignments=[
                pb.Assignment(uid=u, type=t, cluster=int(c))
                for u, t, c in zip(result.uids, result.types, result.labels.tolist(), strict=True)
            ],
            clusters=[
                pb.ClusterSummary(
                    cluster=s.cluster,
                    size=s.size,
                    central=[_hit(h) for h in s.central],
                    neighbors=[pb.CommonNeighbor(**n) for n in s.neighbours],
                )
                for s in result.clusters
            ],
            run_id=model.run_id,
            method=result.method,
        )

    def PredictLinks(
        self, request: pb.PredictLinksRequest, context: grpc.ServicerContext
    ) -> pb.PredictLinksResponse:
        model = self.registry.require()
        links = queries.predict_links(
            model,
            self.registry.store,
            request.uid,
            request.relation,
            k=request.k,
            dst_type=request.dst_type,
            deadline=_deadline(context),
        )
        return pb.PredictLinksResponse(
            links=[
                pb.Link(
                    src=x.src,
                    dst=x.dst,
                    dst_type=x.dst_type,
                    probability=x.probability,
                    display=x.display,
                )
                for x in links
            ],
            run_id=model.run_id,
        )

    def ScoreLinks(
        self, request: pb.ScoreLinksRequest, context: grpc.ServicerContext
    ) -> pb.ScoreLinksResponse:
        model = self.registry.require()
        pairs = [(p.src, p.dst) for p in request.pairs]
        probs = queries.score_links(model, request.relation, pairs, deadline=_deadline(context))
        return pb.ScoreLinksResponse(probabilities=probs.tolist(), run_id=model.run_id)

    def Ingest(
        self, request_iterator: Iterator[pb.IngestRecord], context: grpc.ServicerContext
    ) -> pb.IngestResponse:
        options = IngestOptions(
            quarantine_dir=self.settings.home / "quarantine",
            allow_image_paths=False,
            max_image_pixels=self.settings.max_image_pixels,
        )
        source = f"grpc:{context.peer()}"
        try:
            result = ingest(
                self.registry.store,
                raw_records(request_iterator, source),
                source,
                options,
                self.encoders,
            )
        except IngestError as e:
            if isinstance(e.__cause__, ServiceUnavailable | SessionExpired):
                raise UnavailableError(
                    f"the graph database went away during ingest run {e.result.run_id}; "
                    "send the same stream again to complete it"
                ) from e
            raise
        return pb.IngestResponse(
            run_id=result.run_id or "",
            status=result.status,
            nodes_written=result.nodes_written,
            relationships_written=result.relationships_written,
            quarantined=[
                pb.QuarantinedRecord(record=r.record, field=r.field, message=r.message, key=r.key)
                for r in refusals(result.quarantine_file)
            ],
        )

    def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.ServicerContext
    ) -> pb.ListModelsResponse:
        active = self.registry.active
        promoted = self.registry.promoted()
        return pb.ListModelsResponse(
            models=[model_info(run, active, promoted) for run in self.registry.runs()]
        )

    def UseModel(
        self, request: pb.UseModelRequest, context: grpc.ServicerContext
    ) -> pb.UseModelResponse:
        if not request.run_id:
            raise InvalidArgumentError("run_id is empty; ListModels names the runs")
        model, previous = self.registry.use(request.run_id, promote=request.promote)
        return pb.UseModelResponse(
            model=model_info(model.run, model, self.registry.promoted()),
            previous_run_id=previous.run_id if previous else "",
        )


def model_info(run: ModelRun, active: ActiveModel | None, promoted: str | None) -> pb.ModelInfo:
    """A run as the ``ModelInfo`` message."""
    return pb.ModelInfo(
        run_id=run.run_id,
        model=run.model,
        created=run.created,
        metrics={k: float(v) for k, v in run.metrics.items() if isinstance(v, int | float)},
        spaces=list(run.spaces),
        relations=[f"{s}-{r}->{d}" for s, r, d in run.relations],
        serving=active is not None and active.run_id == run.run_id,
        promoted=promoted == run.run_id,
        nodes={t: len(u) for t, u in run.uids.items()},
    )
