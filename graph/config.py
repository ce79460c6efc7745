"""One settings object for every part of mmgraph, read from environment variables."""

from __future__ import annotations

import os
from pathlib import Path

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
    """

    home: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("mmgraph")))
    cache: Path = Field(default_factory=lambda: Path(platformdirs.user_cache_dir("mmgraph")))
    neo4j_uri: str | None = None
    neo4j_user: str = "neo4j"
    neo4j_password: str | None = None
    neo4j_database: str = "neo4j"
    neo4j_heap: str = "512m"
    neo4j_pagecache: str = "256m"

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
        }
        return cls(**{field: env[var] for field, var in names.items() if env.get(var)})
