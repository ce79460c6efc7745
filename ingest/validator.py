"""Checks of an item against the rest of its input and the stored graph, before it is written."""

from __future__ import annotations

from collections.abc import Callable

from mmgraph.ingest.encoding import image_source
from mmgraph.ingest.records import Item, Location, RecordError
from mmgraph.ingest.scratch import Scratch


class Validator:
    """Checks an item against the rest of the input: one type per uid, and one dimension per
    (type, vector name), that of the stored vectors if any, else of the first in the input; and
    its ``image`` field: a well-formed ``data:`` URI, or a path only if paths are allowed."""

    def __init__(
        self,
        scratch: Scratch,
        stored_dimension: Callable[[str, str], int | None],
        allow_image_paths: bool = True,
    ) -> None:
        self.scratch = scratch
        self.stored_dimension = stored_dimension
        self.allow_image_paths = allow_image_paths
        self.dims: dict[tuple[str, str], tuple[int, str]] = {}

    def check(self, item: Item, location: Location) -> bool:
        """Raise a :class:`RecordError` for an item that cannot be written; else whether its uid
        came earlier in the input (with the same type)."""
        seen = self.scratch.claim(item.uid, item.type, location)
        if seen is not None and seen[0] != item.type:
            raise RecordError(location, "type", f"uid {item.uid!r} is a {seen[0]} at {seen[1]}")
        if item.image is not None:
            # A malformed data URI, or a path from a caller that may not name files, makes the
            # record invalid; a picture that cannot be used later costs only the picture.
            image_source(item.image, location, self.allow_image_paths)
        for name, vector in (item.vectors or {}).items():
            key = (item.type, name)
            if key not in self.dims:
                stored = self.stored_dimension(*key)
                self.dims[key] = (
                    (stored, f"the stored {item.type} vectors have")
                    if stored is not None
                    else (len(vector), f"record {location} has")
                )
            dim, where = self.dims[key]
            if dim != len(vector):
                message = f"has {len(vector)} dimensions; {where} {dim}"
                raise RecordError(location, f"vectors.{name}", message)
        return seen is not None
