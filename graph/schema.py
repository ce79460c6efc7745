"""The graph's naming rules and schema statements.

Labels, relationship types and property names cannot be Cypher parameters, so every name that
reaches query text is checked here first against a strict pattern.
"""

from __future__ import annotations

import re
from functools import lru_cache

from mmgraph.core.errors import InvalidArgumentError

TYPE_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]{0,63}$")
MODALITY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
PROPERTY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

ENTITY_LABEL = "Entity"
RUN_LABEL = "IngestRun"
STATE_LABEL = "EncoderState"
# Modalities the encoders fill; precomputed vectors must use other names.
ENCODED_MODALITIES = ("text", "image", "num")
# Node properties written by mmgraph itself, which free properties may not overwrite.
RESERVED_PROPERTIES = frozenset(
    {"uid", "type", "text", "image_ref", "image_path", "source", "emb", "emb_model"}
)
CLUSTER_LABEL = "Cluster"
# Relationship types of results written back for analysts (cluster membership, predicted links):
# never real relations, so no input may use them and export must not learn from them.
DERIVED_RELATIONSHIPS = frozenset({"IN_CLUSTER", "PREDICTED"})
# Names no input type may take: labels mmgraph writes itself and its derived relationship types
# (``check_type_name`` checks labels and relationship types alike).
RESERVED_LABELS = (
    frozenset({ENTITY_LABEL, RUN_LABEL, STATE_LABEL, "Model", CLUSTER_LABEL})
    | DERIVED_RELATIONSHIPS
)

# The names of the constraints and index below (a constraint's index has its name).
SCHEMA_NAMES = frozenset({"entity_uid", "ingest_run_id", "encoder_state_key", "entity_type"})
SCHEMA_STATEMENTS = (
    "CREATE CONSTRAINT entity_uid IF NOT EXISTS FOR (n:Entity) REQUIRE n.uid IS UNIQUE",
    "CREATE CONSTRAINT ingest_run_id IF NOT EXISTS FOR (r:IngestRun) REQUIRE r.id IS UNIQUE",
    "CREATE CONSTRAINT encoder_state_key IF NOT EXISTS "
    "FOR (s:EncoderState) REQUIRE s.key IS UNIQUE",
    "CREATE INDEX entity_type IF NOT EXISTS FOR (n:Entity) ON (n.type)",
)


# The checks below run for every record and every written row: a name, once checked, is not
# matched again (a bounded cache of the names that passed; one that fails raises every time).
_checked = lru_cache(maxsize=4096)


class SchemaError(InvalidArgumentError):
    """A label, relationship type, modality or property name breaks the schema's rules."""


@_checked
def check_type_name(name: str) -> str:
    """Return ``name`` if it may be a node label or relationship type, else raise."""
    if not isinstance(name, str) or not TYPE_NAME.fullmatch(name):
        raise SchemaError(f"invalid type name {name!r}: must match {TYPE_NAME.pattern}")
    if name in RESERVED_LABELS:
        raise SchemaError(f"type name {name!r} is reserved by mmgraph")
    return name


@_checked
def check_modality_name(name: str) -> str:
    """Return ``name`` if it may name a modality (``<name>_vec`` / ``<name>_enc``), else raise."""
    if not isinstance(name, str) or not MODALITY_NAME.fullmatch(name):
        raise SchemaError(f"invalid modality name {name!r}: must match {MODALITY_NAME.pattern}")
    return name


@_checked
def check_property_name(name: str) -> str:
    """Return ``name`` if it may be a free node or relationship property, else raise."""
    if not isinstance(name, str) or not PROPERTY_NAME.fullmatch(name):
        raise SchemaError(f"invalid property name {name!r}: must match {PROPERTY_NAME.pattern}")
    if name in RESERVED_PROPERTIES or name.endswith(("_vec", "_enc")):
        raise SchemaError(f"property name {name!r} is reserved by mmgraph")
    return name


@_checked
def vector_property(modality: str) -> str:
    """Node property holding the float32 bytes of ``modality``."""
    return f"{check_modality_name(modality)}_vec"


@_checked
def encoder_property(modality: str) -> str:
    """Node property naming the encoder (``name@version``) that made ``modality``'s vector."""
    return f"{check_modality_name(modality)}_enc"
