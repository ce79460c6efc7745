"""Queries and ``Ingest`` encoded on the server's encoder thread, through a real server on
loopback with the real encoders: concurrent queries share forward passes and each caller gets the
answer it gets alone."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from model_runs import save_run
from PIL import Image

from mmgraph.core.config import Settings
from mmgraph.graph.store import GraphStore
from mmgraph.ingest.encoders.text import TextEncoder
from mmgraph.service.rpc.proto.mmgraph.v1 import analytics_pb2 as pb
from mmgraph.service.serving.registry import Registry

TEXTS = [
    "a laughing face",
    "a sleepy cat",
    "fox in the snow",
    "grinning",
    "tears of joy on a round yellow face",
    "dog",
    "a smiling face with open eyes",
    "animal",
]


@pytest.fixture
def fp32(home: Settings, graph: GraphStore, serve):
    """A server with the fp32 text encoder (its vectors do not depend on the batch) answering
    from run "r1"."""
    settings = home.model_copy(update={"text_encoder": "fp32"})
    save_run(settings.home, "r1", seed=1, created="2026-11-25T10:00:00Z")
    registry = Registry(settings.home, graph)
    registry.use("r1", promote=True)
    return serve(settings, registry)


def test_concurrent_text_queries_share_forward_passes_and_get_their_own_answers(
    fp32, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, client = fp32
    alone = {text: client.similar(text=text, k=8) for text in TEXTS}
    passes: list[int] = []
    encode = TextEncoder.encode

    def counted(self: TextEncoder, inputs: list[str], batch_size: int = 64) -> np.ndarray:
        passes.append(len(inputs))
        return encode(self, inputs, batch_size)

    monkeypatch.setattr(TextEncoder, "encode", counted)
    start = threading.Barrier(len(TEXTS))

    def ask(text: str) -> pb.SimilarResponse:
        start.wait()
        return client.similar(text=text, k=8)

    with ThreadPoolExecutor(len(TEXTS)) as pool:
        together = dict(zip(TEXTS, pool.map(ask, TEXTS), strict=True))
    assert sum(passes) == len(TEXTS) and len(passes) < len(TEXTS), passes
    for text in TEXTS:
        mine, theirs = together[text], alone[text]
        assert [h.uid for h in mine.hits] == [h.uid for h in theirs.hits]
        assert [h.score for h in mine.hits] == pytest.approx(
            [h.score for h in theirs.hits], abs=1e-5
        )
        assert (mine.run_id, mine.space) == (theirs.run_id, theirs.space)


def test_ingest_encodes_its_batches_on_the_encoder_thread(fp32, graph: GraphStore) -> None:
    server, client = fp32
    picture = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 200, 10)).save(picture, format="PNG")
    item = pb.Item(uid="p:1", type="Product", text="a green square", image=picture.getvalue())
    reply = client.ingest([pb.IngestRecord(item=item)])
    assert (reply.status, reply.nodes_written) == ("ok", 1)
    assert server.analytics.queries.thread.jobs == 2  # the text's and the picture's
    stored = graph.get_node("p:1")
    assert stored is not None and {"text", "image"} <= set(stored.vectors)
