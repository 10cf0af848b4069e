"""Rich gRPC errors (AIP-193): a status code, a developer message, and
``google.rpc`` details (``BadRequest`` field violations, ``ErrorInfo``) that
clients in any language decode without parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

ERROR_DOMAIN = "tickwire.dev"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field: its path (``"scenarios.shape"``) and what is wrong."""

    field: str
    description: str


class Violations:
    """Collects every field violation of a request before any compute starts."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        """Record that ``field`` is bad because of ``description``."""
        self.items.append(FieldViolation(field, description))

    def __bool__(self) -> bool:
        return bool(self.items)


class RpcError(Exception):
    """An error a servicer raises; the runtime turns it into the call's status."""

    def __init__(self, status: status_pb2.Status) -> None:
        super().__init__(status.message)
        self.status = status

    @property
    def code(self) -> grpc.StatusCode:
        """The gRPC status code of this error."""
        return _CODES[self.status.code]


_CODES = {c.value[0]: c for c in grpc.StatusCode}


def _status(code: int, message: str, *details: object) -> status_pb2.Status:
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    return status_pb2.Status(code=code, message=message, details=packed)


def _info(reason: str, **metadata: str) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)


def invalid_argument(violations: Violations | list[FieldViolation]) -> RpcError:
    """INVALID_ARGUMENT with a ``BadRequest`` listing every violation."""
    items = violations.items if isinstance(violations, Violations) else violations
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in items
        ]
    )
    summary = "; ".join(f"{v.field}: {v.description}" for v in items[:5])
    more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
    return RpcError(
        _status(
            code_pb2.INVALID_ARGUMENT,
            f"invalid request: {summary}{more}",
            bad,
            _info("INVALID_ARGUMENT", fields=",".join(v.field for v in items)),
        )
    )


def not_found(resource_type: str, name: str, field: str) -> RpcError:
    """NOT_FOUND for an unknown id, with ``ResourceInfo`` and the field it came from."""
    res = error_details_pb2.ResourceInfo(
        resource_type=resource_type,
        resource_name=name,
        description=f"unknown {field}; register the data again (ids are a cache)",
    )
    return RpcError(
        _status(
            code_pb2.NOT_FOUND,
            f"{field} {name!r} is not registered on this server",
            res,
            _info("NOT_FOUND", field=field),
        )
    )


def failed_precondition(message: str, field: str) -> RpcError:
    """FAILED_PRECONDITION, e.g. a pinned backend this server does not have."""
    pf = error_details_pb2.PreconditionFailure(
        violations=[
            error_details_pb2.PreconditionFailure.Violation(
                type="BACKEND", subject=field, description=message
            )
        ]
    )
    return RpcError(
        _status(
            code_pb2.FAILED_PRECONDITION, message, pf, _info("FAILED_PRECONDITION", field=field)
        )
    )


def resource_exhausted(message: str) -> RpcError:
    """RESOURCE_EXHAUSTED when admission control sheds a call; retry later."""
    return RpcError(
        _status(
            code_pb2.RESOURCE_EXHAUSTED,
            message,
            error_details_pb2.RetryInfo(retry_delay={"nanos": 50_000_000}),
            _info("OVERLOADED"),
        )
    )


def deadline_exceeded(message: str) -> RpcError:
    """DEADLINE_EXCEEDED: the call's deadline passed; its compute was abandoned."""
    return RpcError(_status(code_pb2.DEADLINE_EXCEEDED, message))


def internal(message: str) -> RpcError:
    """INTERNAL with a message a user can act on (e.g. which backends failed)."""
    return RpcError(_status(code_pb2.INTERNAL, message, _info("COMPUTE_FAILED")))


def to_grpc_status(err: RpcError) -> grpc.Status:
    """The ``grpc.Status`` to pass to ``context.abort_with_status``."""
    return rpc_status.to_status(err.status)


def already_exists(message: str, field: str) -> RpcError:
    """ALREADY_EXISTS, e.g. a stream session id that another live stream holds."""
    return RpcError(_status(code_pb2.ALREADY_EXISTS, message, _info("ALREADY_EXISTS", field=field)))
