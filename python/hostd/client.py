"""The data-plane client: messages to procs through a host's frontend, and their
replies and returns back on an address of the client's own.

    async with hostd.Client.connect("unix:/run/hostd/frontend.sock") as c:
        reply = await c.request("echo-a", "echo", b"hi")      # a Message on "echo.reply"

The client serves a listener (default ``unix:``: a kernel-chosen abstract name) and
names ``<that address>,<name>`` as the ``src`` of what it sends, so a proc's reply
and any returned message (with its reason) come back to it. Messages to procs go
over one ``Sender`` per frontend (bounded queue, acknowledgements, session resume
across reconnects). Incoming messages wait in a bounded inbox; a full inbox stops
the client reading its links, which backs up the senders.

``dial`` overrides where the frontend is reached (e.g. through a proxy) while
``frontend`` stays the address procs are named by. Not thread-safe: use it from
the event loop that created it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Dict, Optional, Union

from .link import Listener, MessageReturned, Sender
from .wire import Message, split_proc_id

Payload = Union[bytes, bytearray, memoryview, str]


def _bytes(p: Payload) -> bytes:
    return p.encode() if isinstance(p, str) else bytes(p)


class Client:
    """See the module docstring. Create with ``await Client.connect(frontend)``."""

    def __init__(self, frontend: str, *, dial: Optional[str] = None, name: Optional[str] = None,
                 inbox_limit: int = 1024, queue_limit: int = 1024, delivery_timeout: float = 30.0) -> None:
        self.frontend = frontend
        self.dial = dial or frontend
        self.name = name or f"_py{os.getpid()}"
        self.inbox: "asyncio.Queue[Message]" = asyncio.Queue(inbox_limit)
        self._queue_limit = queue_limit
        self._delivery_timeout = delivery_timeout
        self._listener: Optional[Listener] = None
        self._senders: Dict[str, Sender] = {}
        self._waiters: Dict[str, "asyncio.Future[Message]"] = {}
        self._ids = itertools.count(1)

    @classmethod
    async def connect(cls, frontend: str, *, listen: str = "unix:", **options: object) -> "Client":
        self = cls(frontend, **options)  # type: ignore[arg-type]
        self._listener = await Listener.serve(listen, self._arrived)
        return self

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def addr(self) -> str:
        """This client's own ``<address>,<name>``: the ``src`` of what it sends."""
        assert self._listener is not None
        return f"{self._listener.addr},{self.name}"

    def proc_id(self, proc: str) -> str:
        """A proc name on this client's frontend as a ProcId; a full ProcId is kept."""
        return proc if "," in proc else f"{self.frontend},{proc}"

    def sender(self, frontend: Optional[str] = None) -> Sender:
        """The link to ``frontend`` (default: this client's), made on first use."""
        fe = frontend or self.frontend
        s = self._senders.get(fe)
        if s is None:
            s = self._senders[fe] = Sender(self.dial if fe == self.frontend else fe, queue_limit=self._queue_limit,
                                           delivery_timeout=self._delivery_timeout, on_returned=self._on_returned)
        return s

    async def send(self, proc: str, port: str, payload: Payload = b"", *, src_name: Optional[str] = None
                   ) -> "asyncio.Future[None]":
        """Sends to ``proc`` (a name on the frontend, or a full ProcId) on ``port``; waits for
        room in the queue and returns a future completed by the host's acknowledgement
        (failing with MessageReturned if the link returns it)."""
        dest = self.proc_id(proc)
        fe, _ = split_proc_id(dest)
        src = f"{self._listener.addr},{src_name or self.name}" if self._listener else ""
        return await self.sender(fe).send(Message(dest, port, src, _bytes(payload)))

    async def receive(self, timeout: Optional[float] = None) -> Message:
        """The next message for this client (a reply, or a returned message with its reason)."""
        if not self.inbox.empty():
            return self.inbox.get_nowait()
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def request(self, proc: str, port: str, payload: Payload = b"", *, timeout: float = 10.0) -> Message:
        """Sends and waits for the one reply addressed to a name of its own. Raises
        MessageReturned if the message came back (unknown proc, proc exited, ...)."""
        tag = f"{self.name}.r{next(self._ids)}"
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters[tag] = fut
        try:
            await self.send(proc, port, payload, src_name=tag)
            msg = await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.pop(tag, None)
        if msg.returned:
            raise MessageReturned(msg)
        return msg

    async def close(self) -> None:
        for s in self._senders.values():
            await s.close()
        if self._listener is not None:
            await self._listener.close()

    async def _arrived(self, msg: Message) -> None:
        _, name = msg.dest.rpartition(",")[::2]
        fut = self._waiters.get(name)
        if fut is not None and not fut.done():
            fut.set_result(msg)
            return
        await self.inbox.put(msg)

    def _on_returned(self, msg: Message) -> None:
        # A message the link itself gave back: it goes where the host would have sent it.
        _, name = msg.dest.rpartition(",")[::2]
        fut = self._waiters.get(name)
        if fut is not None and not fut.done():
            fut.set_result(msg)
        elif not self.inbox.full():
            self.inbox.put_nowait(msg)

