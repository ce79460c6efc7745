"""The record format (a contract with programs outside the repo) and its validation.

An input record is either an item (a node with optional text, image, numbers and precomputed
vectors) or a relation between two items. Every record is validated here before anything is
written; a bad one becomes a :class:`RecordError` naming where it came from and which field failed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NoReturn

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBytes,
    StrictFloat,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from mmgraph.core.errors import InvalidArgumentError
from mmgraph.graph.schema import (
    ENCODED_MODALITIES,
    check_modality_name,
    check_property_name,
    check_type_name,
)

MAX_UID_LENGTH = 512
INT64 = (-(2**63), 2**63 - 1)
# Vectors are stored as float32: a larger magnitude would become infinite.
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Relationship properties mmgraph sets itself.
RESERVED_RELATION_PROPERTIES = frozenset({"weight", "source"})


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return float(value)


def _utf8(value: str) -> str:
    """Refuse strings Neo4j cannot store, such as lone surrogates from ``"\\ud800"`` in JSON."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"is not valid UTF-8 text ({e.reason} at position {e.start})") from e
    return value


def _scalar(key: str, value: Any) -> None:
    """Check one property value: a boolean, a 64-bit integer, a finite float or UTF-8 text."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise ValueError(f"property {key!r}: {value} does not fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"property {key!r}: {value} is not a finite number")
    elif isinstance(value, str):
        try:
            _utf8(value)
        except ValueError as e:
            raise ValueError(f"property {key!r} {e}") from e
    else:
        raise ValueError(
            f"property {key!r}: a {type(value).__name__} is not a string, number or boolean"
        )


def _properties(props: dict[str, Any], reserved: frozenset[str] = frozenset()) -> dict[str, Any]:
    for key, value in props.items():
        check_property_name(key)
        if key in reserved:
            raise ValueError(f"property name {key!r} is reserved by mmgraph")
        values = value if isinstance(value, list) else [value]
        for element in values:
            _scalar(key, element)
        if len({type(v) for v in values}) > 1:
            raise ValueError(f"property {key!r}: a list must hold values of one type")
    return props


def _relation_properties(props: dict[str, Any]) -> dict[str, Any]:
    return _properties(props, RESERVED_RELATION_PROPERTIES)


class FloatVector(list):
    """A validated vector: its values as the record gave them, and ``array``, the same values as
    the float32 array that is written, made once while they were checked."""

    __slots__ = ("array",)


def _finite_vector(values: list[float]) -> list[float]:
    """Refuse a value that is not finite once stored as float32 (NaN, infinity, or beyond
    float32's range): one conversion of the list in C, whose extremes bound the range (NaN fails
    the bound too). The values come back as a :class:`FloatVector` holding that array, so the
    list is not converted again when it is written (checking it, then converting it again, took
    a fifth of the item stage's 105 s at 1M items)."""
    if not values:
        return values  # refused by name with the other vectors' checks
    try:
        array = np.fromiter(values, dtype=np.float64, count=len(values))
    except OverflowError:  # an integer beyond float64: named below
        array = None
    if array is None or not (array.max() <= FLOAT32_MAX and array.min() >= -FLOAT32_MAX):
        bad = next(i for i, v in enumerate(values) if not abs(v) <= FLOAT32_MAX)
        raise ValueError(f"value {bad} ({values[bad]}) is not a finite float32 number")
    vector = FloatVector(values)
    vector.array = array.astype(np.float32)
    return vector


def _finite_numbers(numbers: dict[str, float]) -> dict[str, float]:
    """Refuse a number that is not finite (one check of the sum for all of them)."""
    if math.isfinite(sum(numbers.values())):
        return numbers
    bad = next((key for key, value in numbers.items() if not math.isfinite(value)), None)
    if bad is None:
        return numbers
    raise ValueError(f"{bad!r}: must be a finite number")


def _vector_names(vectors: dict[str, list[float]]) -> dict[str, list[float]]:
    for name, values in vectors.items():
        check_modality_name(name)
        if name in ENCODED_MODALITIES:
            raise ValueError(f"vector name {name!r} is reserved for mmgraph's encoders")
        if not values:
            raise ValueError(f"vector {name!r} is empty")
    return vectors


class NoProperties(dict[str, Any]):
    """The ``props`` of every record that gives none: one empty mapping, read-only and hashable,
    which pydantic hands out as it is. A mutable default (``default_factory=dict``) is called for
    each such record from pydantic's core, a cost per relation line of the same order as the
    rest of its validation."""

    __slots__ = ()

    def __hash__(self) -> int:
        return 0

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a record's default props are read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only
    __ior__ = _read_only


NO_PROPERTIES = NoProperties()


Text = Annotated[StrictStr, AfterValidator(_utf8)]
# The schema's checks raise SchemaError, a ValueError, which pydantic reports as a field error.
TypeName = Annotated[StrictStr, AfterValidator(check_type_name)]
Uid = Annotated[Text, Field(min_length=1, max_length=MAX_UID_LENGTH)]
Number = Annotated[StrictFloat, AfterValidator(_finite)]
Vector = Annotated[list[StrictFloat], AfterValidator(_finite_vector)]
Properties = Annotated[dict[str, Any], AfterValidator(_properties)]
RelationProperties = Annotated[dict[str, Any], AfterValidator(_relation_properties)]


class Item(BaseModel):
    """A node: its uid and type, optional modalities, and free properties."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["item"] = "item"
    uid: Uid
    type: TypeName
    text: Text | None = None
    # A path or a data: URI from files; the picture's bytes from the gRPC stream or Parquet.
    image: (
        Annotated[Text, Field(min_length=1)] | Annotated[StrictBytes, Field(min_length=1)] | None
    ) = None
    numbers: (
        Annotated[
            dict[Annotated[Text, Field(min_length=1)], StrictFloat],
            AfterValidator(_finite_numbers),
        ]
        | None
    ) = None
    vectors: Annotated[dict[str, Vector], AfterValidator(_vector_names)] | None = None
    props: Properties = NO_PROPERTIES


class Relation(BaseModel):
    """A typed, weighted relationship from item ``src`` to item ``dst``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["relation"] = "relation"
    src: Uid
    dst: Uid
    type: TypeName
    weight: Number = 1.0
    props: RelationProperties = NO_PROPERTIES


Record = Item | Relation
_RECORD = TypeAdapter(Annotated[Record, Field(discriminator="kind")])
# Straight from JSON text: an item has no ``src`` (extra fields are refused) and a relation must
# have one, so a record is valid as at most one of them and either order picks the kind the
# discriminator above would. A line that names ``"src"`` tries the relation first: a relation
# tried as an item first was validated twice (0.9 us a line, 0.2 s per 100k items' relations).
_RECORD_TEXT = TypeAdapter(Annotated[Record, Field(union_mode="left_to_right")])
_RELATION_FIRST = TypeAdapter(Annotated[Relation | Item, Field(union_mode="left_to_right")])


class JsonText(str):
    """A record still as its JSON text (a JSONL line): :func:`parse_record` parses and validates
    it in one pass in pydantic's core, and :func:`raw_value` parses it only when it must be shown
    (a refusal), so a good record is never turned into Python values twice."""

    __slots__ = ()


@dataclass(frozen=True)
class Location:
    """Where a record came from: its source (a file path) and 1-based record number."""

    source: str
    number: int

    def __str__(self) -> str:
        return f"{self.source}#{self.number}"


class RecordError(InvalidArgumentError):
    """A record that cannot be ingested, with where it came from and which field is wrong."""

    def __init__(self, location: Location, field: str, message: str) -> None:
        super().__init__(f"{location}: {field}: {message}")
        self.location = location
        self.field = field
        self.message = message


def json_value(text: str, location: Location) -> Any:
    """The value of one record's JSON text; a :class:`RecordError` naming the record if the text
    is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(location, "<record>", f"not valid JSON: {e.msg}") from e


def raw_value(raw: Any) -> Any:
    """A raw record as Python values, to be shown: a :class:`JsonText` parsed (``None`` if it is
    not JSON), anything else as it is."""
    if not isinstance(raw, JsonText):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return None


def parse_record(raw: Any, location: Location) -> Record:
    """Validate one raw record (a dict from JSON, CSV or Parquet, or a :class:`JsonText`) into an
    :class:`Item` or :class:`Relation`; a record without ``kind`` is a relation if it has
    ``src``, else an item."""
    if isinstance(raw, JsonText):
        try:
            adapter = _RELATION_FIRST if '"src"' in raw else _RECORD_TEXT
            return adapter.validate_json(raw)
        except ValidationError:
            # Refused (or text pydantic's parser does not take, such as a lone surrogate escape):
            # parsed and validated as any other record, for the same errors, fields and messages.
            raw = json_value(raw, location)
    if not isinstance(raw, dict):
        raise RecordError(location, "<record>", f"expected an object, got {type(raw).__name__}")
    if "kind" not in raw:
        raw = {**raw, "kind": "relation" if "src" in raw else "item"}
    try:
        return _RECORD.validate_python(raw)
    except ValidationError as e:
        raise _record_error(e, location) from e


def _record_error(error: ValidationError, location: Location) -> RecordError:
    """Name the first field that failed, and how many other problems the record has."""
    errors = error.errors()
    path = [str(part) for part in errors[0]["loc"]]
    # The discriminated union puts the record kind first; it is not a field.
    if path and path[0] in ("item", "relation"):
        path = path[1:]
    message = errors[0]["msg"]
    if len(errors) > 1:
        others = len(errors) - 1
        message += f" (and {others} more problem{'s' if others > 1 else ''})"
    return RecordError(location, ".".join(path) or "kind", message)
