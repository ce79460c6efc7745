"""Server reflection that answers every symbol the protocol defines: services, methods, messages,
fields, oneofs, enums and their values, so that ``grpcurl describe mmgraph.v1.Analytics.Similar``
and ``ghz --call mmgraph.v1.Analytics.Similar`` need no local file.

grpcio-reflection finds a symbol's file with ``DescriptorPool.FindFileContainingSymbol``, which
knows no methods (grpc/grpc#34743: "Symbol not found"), nor an enum value named inside its enum
(``mmgraph.v1.ClusterMethod.CLUSTER_METHOD_KMEANS``, as grpcurl names it; protobuf's own name is
``mmgraph.v1.CLUSTER_METHOD_KMEANS``). It is handed a pool that asks the service or the enum the
name's last part belongs to when the pool itself does not know a name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FileDescriptor
from grpc_reflection.v1alpha import reflection


class MethodAwarePool:
    """``pool`` whose :meth:`FindFileContainingSymbol` also finds ``package.Service.Method`` and
    ``package.Enum.VALUE``."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self._pool = pool

    def FindFileContainingSymbol(self, symbol: str) -> FileDescriptor:
        """The file defining ``symbol``; ``KeyError`` when none does (as the pool's own)."""
        try:
            return self._pool.FindFileContainingSymbol(symbol)
        except KeyError:
            pass
        parent, _, name = symbol.rpartition(".")
        for find, members in (
            (self._pool.FindServiceByName, "methods_by_name"),
            (self._pool.FindEnumTypeByName, "values_by_name"),
        ):
            try:
                found = find(parent)
            except KeyError:
                continue
            if name in getattr(found, members):
                return found.file
        raise KeyError(symbol)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)


def enable_reflection(server: grpc.Server, service_names: Iterable[str]) -> None:
    """Add the reflection service, listing ``service_names`` and answering every symbol of the
    default pool (every generated module imported)."""
    names = (*service_names, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(
        names, server, pool=MethodAwarePool(descriptor_pool.Default())
    )
