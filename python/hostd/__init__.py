"""hostd for Python: the control-plane client (``hostd.HostClient``,
``hostd.AsyncHostClient``), the data-plane client (``hostd.Client``) and the proc
runtime (``hostd.proc``)."""

from .client import Client
from .errors import (DeadlineExceeded, FailedPrecondition, HostdError, InvalidArgument, NameTaken, ProcNotFound,
                     ResourceExhausted, Unavailable, Unimplemented)
from .link import Listener, MessageReturned, QueueFull, Sender
from .wire import Kind, Message, ProtocolError, ReturnReason

__all__ = [
    "AsyncHostClient", "Client", "DeadlineExceeded", "FailedPrecondition", "HostClient", "HostdError",
    "InvalidArgument", "Kind", "Listener", "Message", "MessageReturned", "NameTaken", "ProcNotFound",
    "ProtocolError", "QueueFull", "ResourceExhausted", "ReturnReason", "Sender", "Unavailable", "Unimplemented",
]


def __getattr__(name: str) -> object:
    # The control clients need the generated gRPC stubs; import them only when asked.
    if name in ("HostClient", "AsyncHostClient"):
        from . import control
        return getattr(control, name)
    raise AttributeError(name)
