"""Errors of the control API: each carries hostd's gRPC status code and message.

``HostdError`` is the base; the subclasses name the codes a caller can act on
(proto/hostd/v1/host.proto lists them). ``from_rpc_error`` maps a grpc error.
"""

from __future__ import annotations

from typing import Dict, Type

import grpc


class HostdError(Exception):
    """A control call failed: ``code`` (a ``grpc.StatusCode``) and hostd's ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


class InvalidArgument(HostdError):
    """A malformed request (bad name, negative duration, too large)."""


class ProcNotFound(HostdError):
    """No proc (or group) of that name."""


class NameTaken(HostdError):
    """A live proc (or a group) already has that name."""


class DeadlineExceeded(HostdError):
    """The proc did not become ready or end in time, or the call's own deadline passed."""


class FailedPrecondition(HostdError):
    """The proc is in the wrong state (e.g. it failed to start, or refused a handoff)."""


class ResourceExhausted(HostdError):
    """A bounded queue or limit is full; retry later."""


class Unavailable(HostdError):
    """hostd is unreachable, or shutting down and takes no new spawns."""


class Unimplemented(HostdError):
    """The request needs something this host's manager lacks."""


_BY_CODE: Dict[grpc.StatusCode, Type[HostdError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: ProcNotFound,
    grpc.StatusCode.ALREADY_EXISTS: NameTaken,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
}


def from_code(code: grpc.StatusCode, message: str) -> HostdError:
    return _BY_CODE.get(code, HostdError)(code, message)


def from_rpc_error(e: grpc.RpcError) -> HostdError:
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
    details = e.details() if hasattr(e, "details") else str(e)  # type: ignore[attr-defined]
    return from_code(code, details or "")
