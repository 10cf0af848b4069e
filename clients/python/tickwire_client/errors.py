"""Errors raised by the client, decoded from the server's rich status."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    """A request field the server rejected, and why."""

    field: str
    description: str


@dataclass
class TickwireError(Exception):
    """A failed call: gRPC status code, message, and the ``BadRequest`` field violations.

    Attributes
    ----------
    code : grpc.StatusCode
    message : str
    field_violations : list of FieldViolation
        Non-empty for INVALID_ARGUMENT.
    reason : str
        ``google.rpc.ErrorInfo.reason`` when the server sent one.
    """

    code: grpc.StatusCode
    message: str
    field_violations: list[FieldViolation] = field(default_factory=list)
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    @property
    def fields(self) -> list[str]:
        """Names of the rejected fields."""
        return [v.field for v in self.field_violations]

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> TickwireError:
        """Decode a ``grpc.RpcError`` (sync or aio), rich details included."""
        code = err.code() if callable(getattr(err, "code", None)) else grpc.StatusCode.UNKNOWN
        message = err.details() if callable(getattr(err, "details", None)) else str(err)
        violations: list[FieldViolation] = []
        reason = ""
        status = None
        try:
            status = rpc_status.from_call(err)
        except (ValueError, AttributeError):  # aio errors carry the trailers differently
            status = None
        if status is None:
            md = (
                err.trailing_metadata()
                if callable(getattr(err, "trailing_metadata", None))
                else None
            )
            for key, value in md or ():
                if key == "grpc-status-details-bin":
                    from google.rpc import status_pb2

                    status = status_pb2.Status.FromString(value)
        for detail in status.details if status is not None else ():
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
        return cls(code, message or "", violations, reason)
