"""A bulk load keeps its scratch file in one transaction (no Neo4j needed)."""

from __future__ import annotations

from pathlib import Path

from mmgraph.graph.import_files import ImportFiles
from mmgraph.ingest.bulk import ImportSink
from mmgraph.ingest.encoding import Encoders
from mmgraph.ingest.options import IngestOptions, IngestResult
from mmgraph.ingest.quarantine import Quarantine
from mmgraph.ingest.scratch import Scratch


def test_the_import_sink_adds_its_tables_inside_the_scratch_files_transaction(
    tmp_path: Path,
) -> None:
    options = IngestOptions(quarantine_dir=tmp_path / "quarantine")
    with Scratch() as scratch:
        assert scratch.db.in_transaction
        files = ImportFiles(tmp_path, "run")
        quarantine = Quarantine(options.quarantine_dir, "run")
        ImportSink(files, options, Encoders(), scratch, quarantine, IngestResult("run"))
        # Otherwise every later write to the scratch file would be a transaction of its own.
        assert scratch.db.in_transaction
