"""One settings object for every part of mmgraph, read from environment variables.

Lives outside the layers so that every one of them may import it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, Field


class Settings(BaseModel):
    """Where local state lives and which Neo4j to use.

    Environment variables (all optional):

    - ``MMGRAPH_HOME``: local state (Neo4j data, quarantine files, datasets, model runs);
      default: the user's data dir (``~/.local/share/mmgraph``).
    - ``MMGRAPH_CACHE``: downloads that can be fetched again (Neo4j jars, npm packages, exported
      encoder models); default ``~/.cache/mmgraph``. Kept apart from the home so a temporary home
      (as the tests use) does not download everything again.
    - ``NEO4J_URI``, ``NEO4J_USER``, ``NEO4J_PASSWORD``, ``NEO4J_DATABASE``: a Neo4j 5.x server to
      use; when ``NEO4J_URI`` is unset, mmgraph starts its own local Neo4j under the home.
    - ``MMGRAPH_NEO4J_HEAP``, ``MMGRAPH_NEO4J_PAGECACHE``: memory of the local Neo4j (JVM sizes
      such as ``512m`` or ``2g``); small by default so tests and laptops are not swamped.
    - ``MMGRAPH_DEVICE``: ``cpu`` or ``cuda``; default CUDA when torch sees a GPU, else the CPU.
    - ``MMGRAPH_TRAIN_MEMORY``: bytes training may use (default 8 GB): full-batch when its
      estimated peak fits, mini-batches otherwise; shared by the ranks of one machine.
    - ``MMGRAPH_TEXT_ENCODER``: ``fp32`` (default) or ``int8`` (quantised MiniLM, faster on CPU;
      its vectors carry their own tag and never mix with fp32 ones).
    - ``MMGRAPH_MAX_IMAGE_PIXELS``: pictures above this many pixels are refused from their header,
      before any decode (default 40 million).
    - ``MMGRAPH_GRPC_HOST``, ``MMGRAPH_GRPC_PORT``: where ``mmgraph serve`` listens (default
      ``127.0.0.1:50051``); ``MMGRAPH_TOKEN``: a bearer token every call must carry (off when
      unset); ``MMGRAPH_TLS_CERT``, ``MMGRAPH_TLS_KEY``: PEM files that turn TLS on;
      ``MMGRAPH_MAX_MESSAGE_BYTES``: the largest request or reply (default 16 MiB).
    """

    home: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("mmgraph")))
    cache: Path = Field(default_factory=lambda: Path(platformdirs.user_cache_dir("mmgraph")))
    neo4j_uri: str | None = None
    neo4j_user: str = "neo4j"
    neo4j_password: str | None = None
    neo4j_database: str = "neo4j"
    neo4j_heap: str = "512m"
    neo4j_pagecache: str = "256m"
    device: str | None = None
    train_memory: int = Field(default=8_000_000_000, ge=1)
    text_encoder: Literal["fp32", "int8"] = "fp32"
    max_image_pixels: int = Field(default=40_000_000, ge=1)
    grpc_host: str = "127.0.0.1"
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``), ignoring empty values."""
        env = os.environ if environ is None else environ
        names = {
            "home": "MMGRAPH_HOME",
            "cache": "MMGRAPH_CACHE",
            "neo4j_uri": "NEO4J_URI",
            "neo4j_user": "NEO4J_USER",
            "neo4j_password": "NEO4J_PASSWORD",
            "neo4j_database": "NEO4J_DATABASE",
            "neo4j_heap": "MMGRAPH_NEO4J_HEAP",
            "neo4j_pagecache": "MMGRAPH_NEO4J_PAGECACHE",
            "device": "MMGRAPH_DEVICE",
            "train_memory": "MMGRAPH_TRAIN_MEMORY",
            "text_encoder": "MMGRAPH_TEXT_ENCODER",
            "max_image_pixels": "MMGRAPH_MAX_IMAGE_PIXELS",
            "grpc_host": "MMGRAPH_GRPC_HOST",
            "grpc_port": "MMGRAPH_GRPC_PORT",
            "token": "MMGRAPH_TOKEN",
            "tls_cert": "MMGRAPH_TLS_CERT",
            "tls_key": "MMGRAPH_TLS_KEY",
            "max_message_bytes": "MMGRAPH_MAX_MESSAGE_BYTES",
        }
        return cls(**{field: env[var] for field, var in names.items() if env.get(var)})
