"""The unary call every service client makes: errors as :class:`TickwireError`,
and one transparent retry after re-registering a dataset the server lost.

Registered data (scenario matrices, return histories) is a cache on the
server, keyed by content: a restart, another replica or an eviction answers
``NOT_FOUND`` for an id the client still holds. The client then registers
the same array again (same id) and retries the call once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from tickwire_client.errors import TickwireError


def _lost(err: grpc.RpcError, register_again: object) -> bool:
    return register_again is not None and err.code() == grpc.StatusCode.NOT_FOUND


def call(
    method: Callable[..., Any],
    request: Any,
    timeout: float,
    register_again: Callable[[], object] | None = None,
) -> Any:
    """``method(request)`` with ``timeout`` seconds.

    ``register_again``: for a request that refers to registered data, a
    function that registers it again; on ``NOT_FOUND`` it runs and the call is
    retried once.

    Raises
    ------
    TickwireError
        The call failed (code, message and the BadRequest field violations).
    """
    try:
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as err:
            if not _lost(err, register_again):
                raise
            register_again()  # type: ignore[misc]
            return method(request, timeout=timeout)
    except grpc.RpcError as err:
        raise TickwireError.from_rpc_error(err) from None


async def call_async(
    method: Callable[..., Any],
    request: Any,
    timeout: float,
    register_again: Callable[[], Awaitable[object]] | None = None,
) -> Any:
    """:func:`call` for ``grpc.aio`` methods; ``register_again`` is a coroutine function."""
    try:
        try:
            return await method(request, timeout=timeout)
        except grpc.RpcError as err:
            if not _lost(err, register_again):
                raise
            await register_again()  # type: ignore[misc]
            return await method(request, timeout=timeout)
    except grpc.RpcError as err:
        raise TickwireError.from_rpc_error(err) from None
