"""The bare driver loop: the least a program must do to write a JSONL file of records into Neo4j,
the ceiling that ``mmgraph ingest`` is measured against (``bench/ingest.py``).

It creates the uid constraint (as the product does: every ``MERGE`` and ``MATCH`` on uid uses its
index), reads the file with ``json.loads``, packs each item's vectors and numbers as float32
bytes, and writes in ``UNWIND`` batches, one transaction each: items by ``MERGE`` on uid with the
properties the product stores (type label, ``type``, ``source``, free properties, ``<name>_vec``
and ``<name>_enc``; numbers unstandardised, in the same pass), then, in a second read of the file,
relations by ``MATCH`` of both ends and ``MERGE`` with ``weight`` and ``source``. No validation,
quarantine, scratch file, audit trail or progress, and no overlap of reading with writing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import neo4j
import numpy as np

RUN = "bare"
CONSTRAINT = "CREATE CONSTRAINT entity_uid IF NOT EXISTS FOR (n:Entity) REQUIRE n.uid IS UNIQUE"
NODES = """
UNWIND $rows AS row
MERGE (n:Entity {uid: row.uid})
ON CREATE SET n:%s, n.type = $type, n.source = $run
SET n += row.props
"""
RELATIONSHIPS = """
UNWIND $rows AS row
MATCH (a:Entity {uid: row.src})
MATCH (b:Entity {uid: row.dst})
MERGE (a)-[r:%s]->(b)
ON CREATE SET r.source = $run
SET r.weight = row.weight
"""


def bare_ingest(driver: neo4j.Driver, path: Path, batch: int) -> dict[str, Any]:
    """Write ``path`` as described above; the counts written and seconds per stage."""
    timings = {"read": 0.0, "write_nodes": 0.0, "write_relationships": 0.0}
    nodes: dict[str, list[dict[str, Any]]] = {}
    written = {"nodes": 0, "relationships": 0}

    def flush(query: str, kind: str, label: str, rows: list[dict[str, Any]], key: str) -> None:
        t0 = time.perf_counter()
        driver.execute_query(query % label, rows=rows, type=label, run=RUN)
        timings[key] += time.perf_counter() - t0
        written[kind] += len(rows)
        rows.clear()

    t0 = time.perf_counter()
    driver.execute_query(CONSTRAINT)
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            if "src" in record:
                continue
            props = dict(record.get("props", {}))
            for name, vector in record.get("vectors", {}).items():
                props[f"{name}_vec"] = np.asarray(vector, dtype="<f4").tobytes()
                props[f"{name}_enc"] = f"{name}@given"
            if record.get("numbers"):
                props["num_vec"] = np.asarray(list(record["numbers"].values()), "<f4").tobytes()
                props["num_enc"] = "raw@bare"
            rows = nodes.setdefault(record["type"], [])
            rows.append({"uid": record["uid"], "props": props})
            if len(rows) >= batch:
                timings["read"] += time.perf_counter() - t0
                flush(NODES, "nodes", record["type"], rows, "write_nodes")
                t0 = time.perf_counter()
    for label, rows in nodes.items():
        if rows:
            flush(NODES, "nodes", label, rows, "write_nodes")
    relationships: dict[str, list[dict[str, Any]]] = {}
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if '"src"' not in line:
                continue
            record = json.loads(line)
            rows = relationships.setdefault(record["type"], [])
            rows.append(
                {"src": record["src"], "dst": record["dst"], "weight": record.get("weight", 1.0)}
            )
            if len(rows) >= batch:
                timings["read"] += time.perf_counter() - t0
                flush(RELATIONSHIPS, "relationships", record["type"], rows, "write_relationships")
                t0 = time.perf_counter()
    timings["read"] += time.perf_counter() - t0
    for label, rows in relationships.items():
        if rows:
            flush(RELATIONSHIPS, "relationships", label, rows, "write_relationships")
    return {
        "nodes_written": written["nodes"],
        "relationships_written": written["relationships"],
        "timings": timings,
    }
