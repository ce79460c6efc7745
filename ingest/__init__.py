"""Ingestion: validate records, encode their modalities, upsert them into the graph store."""
