"""Server interceptors: bearer-token authentication, and errors to status codes in one place.

The error interceptor wraps every method handler, so servicer code raises
:mod:`mmgraph.core.errors` kinds and never calls ``context.abort`` itself; the mapping is
:func:`mmgraph.service.errors.status_for`.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

import grpc

from mmgraph.service.errors import status_for

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
                _abort(context, e)

        return stream

    @functools.wraps(behaviour)
    def unary(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return behaviour(request, context)
        except Exception as e:
            if context.code() is not None:
                raise
            _abort(context, e)

    return unary


class ErrorInterceptor(grpc.ServerInterceptor):
    """Turns exceptions escaping a handler into status codes (see :mod:`mmgraph.service.errors`)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        return None if handler is None else _rewrap(handler, _translated)


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without ``authorization: Bearer <token>`` metadata (``UNAUTHENTICATED``);
    health checks and reflection stay open. The token is compared in constant time.

    Args:
        token: the token every call must carry.
    """

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("token must not be empty")
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
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if not streams_out:
        return refuse

    def refuse_stream(request: Any, context: grpc.ServicerContext) -> Any:
        refuse(request, context)
        yield  # pragma: no cover - abort raises

    return refuse_stream
