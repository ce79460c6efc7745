"""The record format (a contract with programs outside the repo) and its validation.

An input record is either an item (a node with optional text, image, numbers and precomputed
vectors) or a relation between two items. Every record is validated here before anything is
written; a bad one becomes a :class:`RecordError` naming where it came from and which field failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from mmgraph.graph.schema import (
    ENCODED_MODALITIES,
    SchemaError,
    check_modality_name,
    check_property_name,
    check_type_name,
)

MAX_UID_LENGTH = 512


def _type_name(value: str) -> str:
    try:
        return check_type_name(value)
    except SchemaError as e:
        raise ValueError(str(e)) from e


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return float(value)


def _property_names(props: dict[str, Any]) -> dict[str, Any]:
    for key, value in props.items():
        try:
            check_property_name(key)
        except SchemaError as e:
            raise ValueError(str(e)) from e
        if isinstance(value, list) and len({type(v) for v in value}) > 1:
            raise ValueError(f"property {key!r}: a list must hold values of one type")
    return props


def _vector_names(vectors: dict[str, list[float]]) -> dict[str, list[float]]:
    for name, values in vectors.items():
        try:
            check_modality_name(name)
        except SchemaError as e:
            raise ValueError(str(e)) from e
        if name in ENCODED_MODALITIES:
            raise ValueError(f"vector name {name!r} is reserved for mmgraph's encoders")
        if not values:
            raise ValueError(f"vector {name!r} is empty")
    return vectors


TypeName = Annotated[StrictStr, AfterValidator(_type_name)]
Uid = Annotated[StrictStr, Field(min_length=1, max_length=MAX_UID_LENGTH)]
Number = Annotated[StrictFloat, AfterValidator(_finite)]
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
PropertyValue = Scalar | list[Scalar]
Properties = Annotated[dict[str, PropertyValue], AfterValidator(_property_names)]


class Item(BaseModel):
    """A node: its uid and type, optional modalities, and free properties."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["item"] = "item"
    uid: Uid
    type: TypeName
    text: StrictStr | None = None
    image: Annotated[StrictStr, Field(min_length=1)] | None = None
    numbers: dict[Annotated[StrictStr, Field(min_length=1)], Number] | None = None
    vectors: Annotated[dict[str, list[Number]], AfterValidator(_vector_names)] | None = None
    props: Properties = Field(default_factory=dict)


class Relation(BaseModel):
    """A typed, weighted relationship from item ``src`` to item ``dst``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["relation"] = "relation"
    src: Uid
    dst: Uid
    type: TypeName
    weight: Number = 1.0
    props: Properties = Field(default_factory=dict)


Record = Item | Relation
_RECORD = TypeAdapter(Annotated[Record, Field(discriminator="kind")])


@dataclass(frozen=True)
class Location:
    """Where a record came from: its source (a file path) and 1-based record number."""

    source: str
    number: int

    def __str__(self) -> str:
        return f"{self.source}#{self.number}"


class RecordError(ValueError):
    """A record that cannot be ingested, with where it came from and which field is wrong."""

    def __init__(self, location: Location, field: str, message: str) -> None:
        super().__init__(f"{location}: {field}: {message}")
        self.location = location
        self.field = field
        self.message = message


def parse_record(raw: Any, location: Location) -> Record:
    """Validate one raw record (a dict from JSON, CSV or Parquet) into an :class:`Item` or
    :class:`Relation`; a record without ``kind`` is a relation if it has ``src``, else an item."""
    if not isinstance(raw, dict):
        raise RecordError(location, "<record>", f"expected an object, got {type(raw).__name__}")
    if "kind" not in raw:
        raw = {**raw, "kind": "relation" if "src" in raw else "item"}
    try:
        return _RECORD.validate_python(raw)
    except ValidationError as e:
        raise _record_error(e, location) from e


def _record_error(error: ValidationError, location: Location) -> RecordError:
    """Name the field that failed; for a union (several errors) the path they share."""
    errors = error.errors()
    path = list(errors[0]["loc"])
    for other in errors[1:]:
        shared = 0
        while shared < min(len(path), len(other["loc"])) and path[shared] == other["loc"][shared]:
            shared += 1
        path = path[:shared]
    # The discriminated union puts the record kind first; it is not a field.
    if path and path[0] in ("item", "relation"):
        path = path[1:]
    if len(errors) == 1:
        message = errors[0]["msg"]
    else:
        message = f"no accepted type matches {errors[0]['input']!r:.80}"
    return RecordError(location, ".".join(str(part) for part in path) or "kind", message)
