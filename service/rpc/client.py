"""A small typed client of the Analytics service, used by ``mmgraph query`` and the tests.

Failed calls raise ``grpc.RpcError`` carrying the server's status code and message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import grpc

from mmgraph.core.config import Settings
from mmgraph.core.errors import InvalidArgumentError
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2 as pb
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2_grpc as pb_grpc
from mmgraph.service.serving.options import ClusterOptions

DEFAULT_TIMEOUT = 30.0
CLUSTER_METHODS = {
    "kmeans": pb.CLUSTER_METHOD_KMEANS,
    "hdbscan": pb.CLUSTER_METHOD_HDBSCAN,
    "community": pb.CLUSTER_METHOD_COMMUNITY,
}


class AnalyticsClient:
    """Calls an mmgraph server.

    Args:
        target: ``host:port``.
        token: sent as ``authorization: Bearer <token>`` when given.
        tls_cert: a PEM certificate to trust: the channel then uses TLS.
        timeout: each call's deadline in seconds.
        max_message_bytes: the largest reply accepted (and request sent).
    """

    def __init__(
        self,
        target: str,
        token: str | None = None,
        tls_cert: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_message_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
        ]
        if tls_cert is not None:
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_cert.read_bytes())
            self.channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.AnalyticsStub(self.channel)
        self.timeout = timeout
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()

    @classmethod
    def from_settings(cls, settings: Settings, target: str | None = None) -> AnalyticsClient:
        """A client of the server ``settings`` describe (or of ``target``), with its token,
        TLS certificate and message limit."""
        return cls(
            target or f"{settings.grpc_host}:{settings.grpc_port}",
            token=settings.token,
            tls_cert=settings.tls_cert,
            max_message_bytes=settings.max_message_bytes,
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> AnalyticsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _kw(self, timeout: float | None) -> dict:
        return {"timeout": self.timeout if timeout is None else timeout, "metadata": self.metadata}

    def similar(
        self,
        uid: str | None = None,
        *,
        text: str | None = None,
        image: bytes | None = None,
        k: int = 10,
        types: Sequence[str] = (),
        space: str = "",
        explain: bool = False,
        timeout: float | None = None,
    ) -> pb.SimilarResponse:
        """The k nodes nearest to a node uid, a text or image bytes (give exactly one); with
        ``explain``, why each was found."""
        if sum(x is not None for x in (uid, text, image)) != 1:
            raise InvalidArgumentError("give exactly one of uid, text or image")
        request = pb.SimilarRequest(k=k, types=list(types), space=space, explain=explain)
        if uid is not None:
            request.uid = uid
        elif text is not None:
            request.text = text
        else:
            request.image = image
        return self.stub.Similar(request, **self._kw(timeout))

    def cluster(
        self,
        *,
        types: Sequence[str] = (),
        uids: Sequence[str] = (),
        options: ClusterOptions | None = None,
        timeout: float | None = None,
    ) -> pb.ClusterResponse:
        """Cluster nodes by type and/or uid as ``options`` say (``kmeans``, ``hdbscan`` or
        ``community``; default k-means)."""
        options = options or ClusterOptions()
        request = pb.ClusterRequest(
            types=list(types),
            uids=list(uids),
            method=CLUSTER_METHODS[options.method],
            clusters=options.clusters,
            min_cluster_size=options.min_cluster_size,
            neighbors=options.neighbors,
            space=options.space,
            top=options.top,
            seed=options.seed,
        )
        return self.stub.Cluster(request, **self._kw(timeout))

    def predict_links(
        self,
        uid: str,
        relation: str,
        *,
        k: int = 10,
        dst_type: str = "",
        explain: bool = False,
        timeout: float | None = None,
    ) -> pb.PredictLinksResponse:
        """The k most likely new ``relation`` links from ``uid``; with ``explain``, why each
        was predicted."""
        request = pb.PredictLinksRequest(
            uid=uid, relation=relation, k=k, dst_type=dst_type, explain=explain
        )
        return self.stub.PredictLinks(request, **self._kw(timeout))

    def score_links(
        self, relation: str, pairs: Iterable[tuple[str, str]], *, timeout: float | None = None
    ) -> list[float]:
        """The probability of each (src, dst) ``relation`` link, in order."""
        request = pb.ScoreLinksRequest(
            relation=relation, pairs=[pb.NodePair(src=s, dst=d) for s, d in pairs]
        )
        return list(self.stub.ScoreLinks(request, **self._kw(timeout)).probabilities)

    def ingest(
        self, records: Iterable[pb.IngestRecord], *, timeout: float | None = None
    ) -> pb.IngestResponse:
        """Stream records (``pb.IngestRecord(item=...)`` / ``(relation=...)``) as one run."""
        return self.stub.Ingest(iter(records), **self._kw(timeout))

    def list_models(self, *, timeout: float | None = None) -> list[pb.ModelInfo]:
        """The trained runs, newest first."""
        return list(self.stub.ListModels(pb.ListModelsRequest(), **self._kw(timeout)).models)

    def use_model(
        self, run_id: str, *, promote: bool = False, timeout: float | None = None
    ) -> pb.UseModelResponse:
        """Make ``run_id`` answer (and, with ``promote``, be served after a restart)."""
        request = pb.UseModelRequest(run_id=run_id, promote=promote)
        return self.stub.UseModel(request, **self._kw(timeout))
