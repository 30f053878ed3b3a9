"""Links: the two ends of the hostd link protocol (channel/PROTOCOL.md), on asyncio.

``Listener`` serves an address: it answers HELLO with WELCOME, keeps per session the
highest seq it delivered (sessions outlive connections), hands each new message to
its ``deliver`` callback in order and acknowledges it. A ``deliver`` that is a
coroutine is awaited before the next frame is read: that is the flow control.
On a unix address it accepts only its own user and root (closing any other
connection at once, unread), and it keeps at most ``max_sessions`` sessions.

``Sender`` dials one address and sends messages over one session. It keeps every
message until the listener acknowledges it, reconnects with capped backoff after a
lost connection and resumes the session (nothing is written twice to a listener
that knows it), renumbers and resends what it holds when the listener restarted,
and returns messages it cannot deliver (peer closed, delivery timeout, sender
closed) with a reason, never silently: the message's future fails with
``MessageReturned`` and ``on_returned`` gets the returned message. Its queue is
bounded: ``send`` waits for room, ``post`` raises ``QueueFull``. It connects when it
first has something to send and stays connected. (It has no control lane: nothing
overtakes what is queued.)

Both run on the event loop that created them and are not thread-safe.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import os
import random
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Deque, Dict, Optional, Set, Union

from . import addr as addrs
from .wire import (DEFAULT_FRAME_LIMIT, Frame, FrameReader, FrameType, Message, ProtocolError, ReturnReason, close,
                   frame, hello, parse_hello, parse_welcome, welcome)

Deliver = Callable[[Message], Union[None, Awaitable[None]]]
READ_SIZE = 64 * 1024


class MessageReturned(Exception):
    """A message came back undelivered; ``message`` is the returned message."""

    def __init__(self, message: Message) -> None:
        super().__init__(f"message to {message.src} port {message.port} returned: "
                         f"{message.reason.name.lower()}: {message.note}")
        self.message = message

    @property
    def reason(self) -> ReturnReason:
        return self.message.reason


class QueueFull(Exception):
    """The sender's bounded queue has no room."""


def _quiet(fut: "asyncio.Future[None]") -> None:
    # A caller that never looks at a message's future must not get a warning for it.
    if not fut.cancelled():
        fut.exception()


@dataclass
class _Session:
    delivered: int = 0
    writer: Optional[asyncio.StreamWriter] = None


class Listener:
    """Serves one address; see the module docstring. Create with ``serve``."""

    def __init__(self, deliver: Deliver, *, frame_limit: int = DEFAULT_FRAME_LIMIT, ack_every: int = 256,
                 handshake_timeout: float = 10.0, max_sessions: int = 4096) -> None:
        self._deliver = deliver
        self.max_sessions = max_sessions
        self.frame_limit = frame_limit
        self.ack_every = ack_every
        self.handshake_timeout = handshake_timeout
        self.incarnation = secrets.randbits(64) or 1
        self.addr = ""
        self._server: Optional[asyncio.AbstractServer] = None
        self._sessions: Dict[int, _Session] = {}
        self._tasks: Set[asyncio.Task[None]] = set()
        self._closing = False

    @classmethod
    async def serve(cls, addr: str, deliver: Deliver, **options: object) -> "Listener":
        self = cls(deliver, **options)  # type: ignore[arg-type]
        sock = addrs.listen_socket(addr)
        self.addr = addrs.bound_addr(sock)
        if sock.family == addrs.socket.AF_UNIX:
            self._server = await asyncio.start_unix_server(self._accept, sock=sock, limit=1 << 20)
        else:
            self._server = await asyncio.start_server(self._accept, sock=sock, limit=1 << 20)
        return self

    @property
    def sessions(self) -> int:
        """Sessions this listener remembers (a dialer's CLOSE ends one)."""
        return len(self._sessions)

    async def close(self) -> None:
        """Stops accepting; each open connection gets CLOSE after an ack of what it delivered."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for s in self._sessions.values():
            if s.writer is not None:
                try:
                    s.writer.write(frame(FrameType.ACK, seq=s.delivered) + close("listener closing"))
                    s.writer.close()
                except (ConnectionError, RuntimeError):
                    pass
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family == addrs.socket.AF_UNIX:
            creds = sock.getsockopt(addrs.socket.SOL_SOCKET, addrs.socket.SO_PEERCRED, struct.calcsize("3i"))
            _, uid, _ = struct.unpack("3i", creds)
            if uid not in (os.geteuid(), 0):
                writer.transport.abort()
                return
        task = asyncio.get_running_loop().create_task(self._connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        fr = FrameReader(self.frame_limit)
        session: Optional[_Session] = None
        try:
            try:
                frames = await asyncio.wait_for(self._first_frames(reader, fr), self.handshake_timeout)
            except asyncio.TimeoutError:
                raise ProtocolError(f"no HELLO within {self.handshake_timeout:g} s") from None
            if not frames:
                return
            first = frames.pop(0)
            if first.type != FrameType.HELLO:
                raise ProtocolError(f"the first frame is {first.type.name}, not HELLO")
            sid = parse_hello(first.body)
            session = self._sessions.get(sid)
            resumed = session is not None
            if session is None:
                self._forget_idle_sessions()
                session = self._sessions[sid] = _Session()
            if session.writer is not None:  # an older connection of this session: it goes
                session.writer.close()
            session.writer = writer
            writer.write(welcome(self.incarnation, session.delivered, resumed))
            since_ack = 0
            while True:
                owe_ack = False
                for f in frames:
                    if f.type == FrameType.DATA:
                        if f.seq <= session.delivered:
                            owe_ack = True  # a duplicate: dropped, acknowledged again
                            continue
                        if f.seq != session.delivered + 1:
                            raise ProtocolError(f"DATA seq {f.seq} out of sequence (delivered {session.delivered})")
                        msg = Message.decode(f.body)
                        r = self._deliver(msg)
                        if inspect.isawaitable(r):
                            await r
                        session.delivered = f.seq
                        since_ack += 1
                        if since_ack >= self.ack_every:
                            writer.write(frame(FrameType.ACK, seq=session.delivered))
                            since_ack = 0
                    elif f.type == FrameType.CLOSE:
                        self._sessions.pop(sid, None)
                        return
                    else:
                        raise ProtocolError(f"unexpected {f.type.name} frame from a dialer")
                if since_ack or owe_ack:
                    writer.write(frame(FrameType.ACK, seq=session.delivered))
                    since_ack = 0
                await writer.drain()
                if fr.failed:
                    fr.feed(b"")  # raises the error that followed the frames just handled
                data = await reader.read(READ_SIZE)
                if not data:
                    return
                frames = fr.feed(data)
        except ProtocolError as e:
            try:
                if session is not None:
                    writer.write(frame(FrameType.ACK, seq=session.delivered))
                writer.write(close(f"protocol error: {e}"))
                await writer.drain()
                if writer.can_write_eof():
                    writer.write_eof()
                # Read (discarding) until the dialer closes or a short linger, so the CLOSE is not lost to a reset.
                await asyncio.wait_for(self._drain_until_eof(reader), 2.0)
            except (ConnectionError, asyncio.TimeoutError):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if session is not None and session.writer is writer:
                session.writer = None
            writer.close()

    def _forget_idle_sessions(self) -> None:
        """Past ``max_sessions``, the oldest sessions with no connection are forgotten (a
        dialer that comes back to one finds it reset, and resends what it holds)."""
        if len(self._sessions) < self.max_sessions:
            return
        for sid in [sid for sid, s in self._sessions.items() if s.writer is None]:
            del self._sessions[sid]
            if len(self._sessions) < self.max_sessions:
                return

    @staticmethod
    async def _first_frames(reader: asyncio.StreamReader, fr: FrameReader) -> "list[Frame]":
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                return []
            frames = fr.feed(data)
            if frames:
                return frames

    @staticmethod
    async def _drain_until_eof(reader: asyncio.StreamReader) -> None:
        while await reader.read(READ_SIZE):
            pass


@dataclass
class _Held:
    body: bytes
    msg: Message
    fut: "asyncio.Future[None]"
    posted: float
    seq: int = 0


@dataclass
class SenderStats:
    connects: int = 0
    resumes: int = 0  # connections that resumed an established session
    resets: int = 0  # the listener restarted or forgot the session
    returned: int = 0


class Sender:
    """Dials ``addr`` and sends messages over one session; see the module docstring."""

    def __init__(self, addr: str, *, queue_limit: int = 1024, frame_limit: int = DEFAULT_FRAME_LIMIT,
                 delivery_timeout: float = 30.0, resend_on_restart: bool = True,
                 on_returned: Optional[Callable[[Message], None]] = None) -> None:
        addrs.parse(addr)
        self.addr = addr
        self.queue_limit = queue_limit
        self.frame_limit = frame_limit
        self.delivery_timeout = delivery_timeout
        self.resend_on_restart = resend_on_restart
        self.on_returned = on_returned
        self.stats = SenderStats()
        self._held: Deque[_Held] = collections.deque()
        # How many held messages, from the front, were written to the listener's
        # current incarnation (writes go in order and acks take from the front).
        self._written = 0
        self._session_id = 0
        self._incarnation = 0
        self._next_seq = 1
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False
        self._conn: Optional[asyncio.StreamWriter] = None
        self._new_session()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _new_session(self) -> None:
        self._session_id = secrets.randbits(64) or 1
        self._incarnation = 0
        self._next_seq = 1

    def post(self, msg: Message) -> "asyncio.Future[None]":
        """Queues ``msg``; the future completes when it is acknowledged. QueueFull without room."""
        if self._closed:
            raise RuntimeError(f"sender to {self.addr} is closed")
        if len(self._held) >= self.queue_limit:
            raise QueueFull(f"sender to {self.addr} holds {len(self._held)} messages, its limit")
        body = msg.encode()
        if len(body) > self.frame_limit:
            raise ValueError(f"message of {len(body)} bytes is over the frame limit of {self.frame_limit}")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_quiet)
        self._held.append(_Held(body, msg, fut, time.monotonic(), self._next_seq))
        self._next_seq += 1
        if len(self._held) >= self.queue_limit:
            self._room.clear()
        self._wake.set()
        return fut

    async def send(self, msg: Message) -> "asyncio.Future[None]":
        """Waits for room, queues ``msg``, and returns its acknowledgement future."""
        while len(self._held) >= self.queue_limit and not self._closed:
            await self._room.wait()
        return self.post(msg)

    @property
    def held(self) -> int:
        """Messages sent and not yet acknowledged, or not yet written."""
        return len(self._held)

    async def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits until everything posted so far is acknowledged; False at the timeout."""
        futs = [h.fut for h in self._held]
        if not futs:
            return True
        done, pending = await asyncio.wait(futs, timeout=timeout)
        return not pending

    async def close(self, timeout: float = 1.0) -> None:
        """Waits up to ``timeout`` for acks, ends the session with CLOSE, and returns
        whatever is still held with "sender closed"."""
        if self._closed:
            return
        await self.flush(timeout)
        self._closed = True
        conn = self._conn
        if conn is not None and not self._held:
            try:  # everything was acknowledged: the session is over, the listener may forget it
                conn.write(close())
                await asyncio.wait_for(conn.drain(), 1.0)
            except (ConnectionError, RuntimeError, asyncio.TimeoutError):
                pass
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass
        self._return_all(ReturnReason.SENDER_CLOSED, f"sender to {self.addr} closed")
        self._room.set()

    # The connection loop.

    def _return_all(self, reason: ReturnReason, note: str) -> None:
        held, self._held = self._held, collections.deque()
        self._written = 0
        for h in held:
            self._give_back(h, reason, note)
        self._room.set()

    def _give_back(self, h: _Held, reason: ReturnReason, note: str) -> None:
        returned = h.msg.to_returned(reason, note)
        self.stats.returned += 1
        if not h.fut.done():
            h.fut.set_exception(MessageReturned(returned))
        if self.on_returned is not None and h.msg.src and h.msg.kind == 0:
            self.on_returned(returned)

    def _acked(self, seq: int) -> None:
        while self._held and self._held[0].seq <= seq:
            h = self._held.popleft()
            self._written = max(0, self._written - 1)
            if not h.fut.done():
                h.fut.set_result(None)
        if len(self._held) < self.queue_limit:
            self._room.set()

    def _check_timeout(self) -> Optional[float]:
        """Returns everything when the oldest held message is overdue; else seconds until it is."""
        if not self._held:
            return None
        left = self._held[0].posted + self.delivery_timeout - time.monotonic()
        if left > 0:
            return left
        self._return_all(ReturnReason.DELIVERY_TIMEOUT,
                         f"not acknowledged by {self.addr} within {self.delivery_timeout:g} s")
        self._new_session()
        return None

    async def _wait_wake(self, timeout: Optional[float]) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()

    async def _run(self) -> None:
        backoff = 0.01
        while True:
            if not self._held:
                await self._wait_wake(None)
                continue
            self._check_timeout()
            if not self._held:
                continue
            try:
                reader, writer = await asyncio.wait_for(addrs.connect(self.addr), 10.0)
            except (OSError, asyncio.TimeoutError):
                await asyncio.sleep(backoff * (1 - random.random() * 0.5))
                backoff = min(backoff * 2, 1.0)
                continue
            self.stats.connects += 1
            self._conn = writer
            try:
                if await self._connected(reader, writer):
                    backoff = 0.01
            except (ConnectionError, asyncio.IncompleteReadError, OSError):
                pass
            except ProtocolError as e:
                try:
                    writer.write(close(f"protocol error: {e}"))
                except (ConnectionError, RuntimeError):
                    pass
            finally:
                self._conn = None
                writer.close()
            if self._held:
                await asyncio.sleep(backoff * (1 - random.random() * 0.5))
                backoff = min(backoff * 2, 1.0)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One connection: handshake, then write and read until it ends. True once welcomed."""
        fr = FrameReader(self.frame_limit)
        writer.write(hello(self._session_id))
        await writer.drain()
        frames: "list[Frame]" = []
        while not frames:
            data = await asyncio.wait_for(reader.read(READ_SIZE), 10.0)
            if not data:
                raise ConnectionError("closed before WELCOME")
            frames = fr.feed(data)
        first = frames.pop(0)
        if first.type == FrameType.CLOSE:
            self._peer_closed(first.body)
            return False
        if first.type != FrameType.WELCOME:
            raise ProtocolError(f"expected WELCOME, got {first.type.name}")
        incarnation, delivered, resumed = parse_welcome(first.body)
        if self._incarnation != 0 and (incarnation != self._incarnation or not resumed):
            self._reset()
        else:
            if self._incarnation != 0:
                self.stats.resumes += 1
            self._acked(delivered)
        self._incarnation = incarnation
        self._written = 0  # everything held is written again, from delivered_seq + 1
        reading = asyncio.get_running_loop().create_task(self._read(reader, fr, frames))
        try:
            while not reading.done():
                if self._written < len(self._held):
                    for h in itertools.islice(self._held, self._written, None):
                        writer.write(frame(FrameType.DATA, h.body, h.seq))
                    self._written = len(self._held)
                await writer.drain()
                left = self._check_timeout()
                if self._incarnation == 0:  # a delivery timeout started a new session
                    return True
                waiter = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({reading, waiter}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                self._wake.clear()
            reading.result()
            return True
        finally:
            reading.cancel()

    def _reset(self) -> None:
        """The listener restarted or forgot the session: renumber from 1 (or return what it may have seen)."""
        self.stats.resets += 1
        if not self.resend_on_restart:
            for _ in range(self._written):
                self._give_back(self._held.popleft(), ReturnReason.PEER_RESTARTED, f"{self.addr} restarted")
        self._written = 0
        for i, h in enumerate(self._held):
            h.seq = i + 1
        self._next_seq = len(self._held) + 1
        self._room.set()

    def _peer_closed(self, body: bytes) -> None:
        why = body.decode(errors="replace")
        self._return_all(ReturnReason.PEER_CLOSED, f"{self.addr} closed the link: {why}" if why else
                         f"{self.addr} closed the link")
        self._new_session()

    async def _read(self, reader: asyncio.StreamReader, fr: FrameReader, frames: "list[Frame]") -> None:
        while True:
            for f in frames:
                if f.type == FrameType.ACK:
                    if f.seq >= self._next_seq:
                        raise ProtocolError(f"ACK {f.seq} is above the last seq sent ({self._next_seq - 1})")
                    self._acked(f.seq)
                elif f.type == FrameType.CLOSE:
                    self._peer_closed(f.body)
                    return
                else:
                    raise ProtocolError(f"unexpected {f.type.name} frame from a listener")
            if fr.failed:
                fr.feed(b"")
            data = await reader.read(READ_SIZE)
            if not data:
                raise ConnectionError("connection lost")
            frames = fr.feed(data)
