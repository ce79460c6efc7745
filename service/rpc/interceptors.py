"""Server interceptors: bearer-token authentication, and errors to status codes in one place.

The error interceptor wraps every method of the Analytics service, so servicer code (and the
token check) raises :mod:`mmgraph.core.errors` kinds and never calls ``context.abort`` itself;
the mapping is :func:`mmgraph.service.rpc.status.status_for`. Health checks and reflection are
grpc's own services and keep their own handling; a call whose caller went away is not an error.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

import grpc

from mmgraph.core.errors import InvalidArgumentError, UnauthenticatedError
from mmgraph.service.rpc.status import status_for

# Methods any caller may reach without a token: health checks and reflection.
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)
_BEHAVIOURS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def _rewrap(
    handler: grpc.RpcMethodHandler, wrap: Callable[[Any, bool], Any]
) -> grpc.RpcMethodHandler:
    """``handler`` with its behaviour function replaced by ``wrap(behaviour, streams_out)``."""
    for name in _BEHAVIOURS:
        behaviour = getattr(handler, name)
        if behaviour is not None:
            factory = getattr(grpc, f"{name}_rpc_method_handler")
            return factory(
                wrap(behaviour, handler.response_streaming),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler


def _abort(context: grpc.ServicerContext, error: Exception) -> None:
    status = status_for(error)
    context.abort(status.code, status.message)


def _translated(behaviour: Callable[..., Any], streams_out: bool) -> Callable[..., Any]:
    """``behaviour`` with its exceptions turned into statuses."""
    if streams_out:

        @functools.wraps(behaviour)
        def stream(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from behaviour(request, context)
            except Exception as e:
                if context.code() is not None:  # already aborted with a status of its own
                    raise
                if context.is_active():
                    _abort(context, e)

        return stream

    @functools.wraps(behaviour)
    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behaviour(request, context)
        except Exception as e:
            if context.code() is not None:
                raise
            if context.is_active():
                _abort(context, e)
            return None

    return unary


class ErrorInterceptor(grpc.ServerInterceptor):
    """Turns exceptions escaping a handler of ``service`` into status codes (see
    :mod:`mmgraph.service.rpc.status`); must come first, so that it sees the token check's
    refusals too.

    Args:
        service: the full name of the service whose methods it wraps (``mmgraph.v1.Analytics``).
    """

    def __init__(self, service: str) -> None:
        self._prefix = f"/{service}/"
        # method -> (handler, its wrapped twin): wrapped once, not on every call. Kept per
        # method, so a handler made for one call (a token refusal) replaces the entry, never
        # adds one.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(self._prefix):
            return handler
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is None or known[0] is not handler:
            known = self._wrapped[method] = (handler, _rewrap(handler, _translated))
        return known[1]


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` metadata (an
    :class:`~mmgraph.core.errors.UnauthenticatedError`, ``UNAUTHENTICATED``); health checks and
    reflection stay open. The token is compared in constant time.

    Args:
        token: the token every call must carry.
    """

    def __init__(self, token: str) -> None:
        if not token:
            raise InvalidArgumentError("token must not be empty")
        self._expected = f"Bearer {token}".encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_SERVICES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization", "")
        given = given.encode() if isinstance(given, str) else given
        if hmac.compare_digest(given, self._expected):
            return handler
        message = (
            "wrong bearer token"
            if given
            else "this server needs `authorization: Bearer <token>` metadata (MMGRAPH_TOKEN)"
        )
        return _rewrap(handler, lambda _behaviour, streams_out: _refuse(message, streams_out))


def _refuse(message: str, streams_out: bool) -> Callable[..., Any]:
    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        raise UnauthenticatedError(message)

    if not streams_out:
        return refuse

    def refuse_stream(request: Any, context: grpc.ServicerContext) -> Any:
        refuse(request, context)
        yield  # pragma: no cover - refuse raises

    return refuse_stream
