"""What every servicer shares: routing, the bounded compute executor, admission
control, deadlines, spans and the mapping of failures to gRPC status codes.

A servicer method decodes and validates its request, calls
:meth:`EngineRuntime.run` with an engine operation, and encodes the result.
It never does math and never sees threads or backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from tickwire.common.v1 import execution_pb2
from tickwire.config import Settings
from tickwire.routing.operation import Inputs, Operation
from tickwire.routing.router import (
    BackendNotPresentError,
    ComputeFailedError,
    Router,
    RouteResult,
)
from tickwire.services import errors
from tickwire.store import ArrayStore
from tickwire.telemetry.tracing import Stage, annotate, current_trace_id, stage

BACKEND_TO_NAME = {
    execution_pb2.BACKEND_NUMPY: "numpy",
    execution_pb2.BACKEND_TORCH_CPU: "torch-cpu",
    execution_pb2.BACKEND_TORCH_CUDA: "torch-cuda",
    execution_pb2.BACKEND_MLX: "mlx",
}
NAME_TO_BACKEND = {v: k for k, v in BACKEND_TO_NAME.items()}

Req = TypeVar("Req")
Resp = TypeVar("Resp")
T = TypeVar("T")

#: Requests (or arrays) of at least this many bytes are decoded and hashed on
#: the executor rather than on the event loop thread.
OFFLOAD_BYTES = 1 << 20


@dataclass(frozen=True)
class ServiceSpec:
    """How the app mounts one servicer.

    Attributes
    ----------
    name : str
        Full service name, e.g. ``"tickwire.risk.v1.RiskService"`` (health and
        reflection use it).
    create : callable ``(runtime) -> servicer``
    add_to_server : callable ``(servicer, server) -> None``
        The generated ``add_<Service>Servicer_to_server``.
    """

    name: str
    create: Callable[[EngineRuntime], object]
    add_to_server: Callable[[object, grpc.aio.Server], None]


def rpc(
    method: Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]],
) -> Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]:
    """Decorate a servicer method: an :class:`~tickwire.services.errors.RpcError`
    it raises becomes the call's status, with its rich details."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await method(self, request, context)
        except errors.RpcError as err:
            # The rich details travel in the trailing metadata (grpc-status-details-bin).
            await context.abort_with_status(errors.to_grpc_status(err))
            raise  # abort_with_status() raises; never reached

    return wrapper


class EngineRuntime:
    """Runs engine operations for the servicers.

    Parameters
    ----------
    settings : Settings
    router : Router
    store : ArrayStore
        Registered reference data (scenario matrices), by content id.
    """

    def __init__(
        self,
        settings: Settings,
        router: Router,
        store: ArrayStore,
    ) -> None:
        self.settings = settings
        self.router = router
        self.store = store
        self.executor = ThreadPoolExecutor(
            max_workers=settings.resolved_workers(), thread_name_prefix="tickwire-compute"
        )
        self._inflight = 0
        self._inline_ns = settings.inline_threshold_us * 1e3
        for be in router.backends.values():
            store.on_evict.append(be.evict)

    @property
    def inflight(self) -> int:
        """Calls admitted to the executor whose work has not ended yet (including
        work abandoned at a deadline that has not reached its next checkpoint)."""
        return self._inflight

    def shutdown(self) -> None:
        """Stop the executor once queued work is done."""
        self.executor.shutdown(wait=True, cancel_futures=True)

    async def offload(self, fn: Callable[..., T], *args: Any, nbytes: int) -> T:
        """``fn(*args)``, on the executor (after admission control) when it touches
        ``nbytes`` or more than :data:`OFFLOAD_BYTES` (hashing or scanning a large
        matrix would stall the event loop), else inline (an executor hop costs
        more than small work)."""
        if nbytes < OFFLOAD_BYTES:
            return fn(*args)
        return await self._in_executor(functools.partial(fn, *args), None, [False])

    async def decode(self, fn: Callable[[Req], T], request: Req) -> T:
        """Run a servicer's decode-and-validate function under a ``decode`` span,
        off the event loop for large requests. ``fn`` raises ``RpcError``."""
        with self.span("decode"):
            return await self.offload(fn, request, nbytes=request.ByteSize())

    @staticmethod
    def span(name: str) -> contextlib.AbstractContextManager[Stage]:
        """A timed stage of the call (decode, route, compute, encode): a child
        span of the RPC span when the call is traced."""
        return stage(name)

    @staticmethod
    def check_execution(
        options: execution_pb2.ExecutionOptions, field: str, violations: errors.Violations
    ) -> None:
        """Record a violation for a backend enum value that is not a backend, so
        that it is listed with the request's other bad fields."""
        if (
            options.backend != execution_pb2.BACKEND_UNSPECIFIED
            and options.backend not in BACKEND_TO_NAME
        ):
            violations.add(f"{field}.backend", _unknown_backend(options.backend))

    def pinned_backend(self, options: execution_pb2.ExecutionOptions, field: str) -> str | None:
        """The backend name a request pins, None when routed.

        Raises
        ------
        RpcError
            INVALID_ARGUMENT for an enum value that is not a backend.
        """
        if options.backend == execution_pb2.BACKEND_UNSPECIFIED:
            return None
        name = BACKEND_TO_NAME.get(options.backend)
        if name is None:
            raise errors.invalid_argument(
                [errors.FieldViolation(f"{field}.backend", _unknown_backend(options.backend))]
            )
        return name

    async def run(
        self,
        op: Operation,
        inputs: Inputs,
        options: execution_pb2.ExecutionOptions,
        context: grpc.aio.ServicerContext,
        field: str = "execution",
    ) -> tuple[RouteResult, execution_pb2.ExecutionInfo]:
        """Route ``op`` and run it within the call's deadline.

        Tiny calls (estimate under ``inline_threshold_us``) run on the event
        loop thread; others go to the bounded executor, after admission
        control. When the deadline passes or the client cancels, the engine is
        told to stop at its next checkpoint and the call ends.

        Returns
        -------
        The router's result and the ``ExecutionInfo`` for the response.

        Raises
        ------
        RpcError
            INVALID_ARGUMENT, FAILED_PRECONDITION, RESOURCE_EXHAUSTED,
            DEADLINE_EXCEEDED or INTERNAL.
        """
        pinned = self.pinned_backend(options, field)
        remaining = context.time_remaining()
        if remaining is not None and remaining <= 0:
            raise errors.deadline_exceeded("deadline passed before compute started")
        deadline = None if remaining is None else time.monotonic() + remaining
        cancelled = [False]  # set by the event loop, read by the worker (one bool under the GIL)

        def stop() -> bool:
            return cancelled[0] or (deadline is not None and time.monotonic() > deadline)

        with self.span("route") as route_span:
            try:
                ranked = self.router.candidates(op, inputs, pinned)
            except BackendNotPresentError as exc:
                raise errors.failed_precondition(str(exc), f"{field}.backend") from exc
            route_span.set_attribute("tickwire.backend.chosen", ranked[0].backend)
            route_span.set_attribute(
                "tickwire.estimated_ns", int(min(ranked[0].estimated_ns, 2**62))
            )

        call = functools.partial(
            self.router.run,
            op,
            {**inputs, "stop": stop},
            pinned,
            not options.disable_fallback,
            ranked,
        )
        with self.span("compute") as compute_span:
            try:
                if ranked[0].estimated_ns < self._inline_ns:
                    result = call()
                else:
                    result = await self._in_executor(call, remaining, cancelled)
            except ValueError as exc:
                raise errors.invalid_argument(_violations_from(exc)) from exc
            except TimeoutError as exc:
                raise errors.deadline_exceeded(f"{op.name}: {exc}") from exc
            except ComputeFailedError as exc:
                for backend, reason in exc.fallbacks:
                    compute_span.add_event("backend_failed", {"backend": backend, "reason": reason})
                raise errors.internal(
                    f"{exc}. Pin another backend in `{field}.backend`, or retry with a smaller "
                    "request."
                ) from exc
            compute_span.set_attribute("tickwire.backend", result.backend)
            for backend, reason in result.fallbacks:
                compute_span.add_event("backend_failed", {"backend": backend, "reason": reason})

        annotate(
            {
                "tickwire.operation": op.name,
                "tickwire.engine": op.engine,
                "tickwire.backend": result.backend,
                "tickwire.backend.requested": pinned or "auto",
                "tickwire.work_units": int(result.work_units),
                "tickwire.compute_ns": result.compute_ns,
                "tickwire.fallbacks": len(result.fallbacks),
            }
        )
        info = execution_pb2.ExecutionInfo(
            backend_requested=NAME_TO_BACKEND.get(pinned, 0) if pinned else 0,
            backend_used=NAME_TO_BACKEND[result.backend],
            compute_ns=result.compute_ns,
            estimated_ns=int(min(result.estimated_ns, 2**62)),
            fallbacks=[
                execution_pb2.Fallback(backend=NAME_TO_BACKEND[b], reason=r)
                for b, r in result.fallbacks
            ],
            operation=op.name,
            work_units=int(result.work_units),
            trace_id=current_trace_id(),
        )
        return result, info

    async def _in_executor(
        self, call: Callable[[], T], remaining: float | None, cancelled: list[bool]
    ) -> T:
        """Run ``call`` on the executor, after admission control.

        The admission slot is held until the work itself ends (done, failed,
        or dropped from the queue before it started), not only while the
        caller waits: a compute abandoned at the deadline keeps its worker
        until its next checkpoint, and must keep counting against
        ``max_concurrent_calls`` until then, or abandoned work could pile up
        in the executor's queue without bound.
        """
        if self._inflight >= self.settings.max_concurrent_calls:
            raise errors.resource_exhausted(
                f"server busy: {self._inflight} calls in flight "
                f"(limit {self.settings.max_concurrent_calls}); retry with backoff"
            )
        loop = asyncio.get_running_loop()
        work = self.executor.submit(call)
        self._inflight += 1
        # Added before wrap_future's own callback, so the slot is free again
        # before the waiting handler resumes.
        work.add_done_callback(lambda _: _call_soon(loop, self._release))
        try:
            try:
                return await asyncio.wait_for(asyncio.wrap_future(work), timeout=remaining)
            except (TimeoutError, asyncio.CancelledError):
                cancelled[0] = True  # the engine stops at its next checkpoint
                work.cancel()  # or never starts, if it is still queued
                raise
        except TimeoutError as exc:
            raise TimeoutError("deadline passed during compute") from exc

    def _release(self) -> None:
        self._inflight -= 1


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """``callback`` on ``loop``'s thread, from any thread; dropped once the loop is closed."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


def _unknown_backend(value: int) -> str:
    return f"unknown backend {value}; use one of " + ", ".join(execution_pb2.Backend.keys())


def _violations_from(exc: ValueError) -> list[errors.FieldViolation]:
    """Engine ``ValueError("field: message")`` to a field violation."""
    text = str(exc)
    field, sep, message = text.partition(": ")
    if sep and field and " " not in field:
        return [errors.FieldViolation(field, message)]
    return [errors.FieldViolation("request", text)]
