"""The frames and message envelope of the hostd link protocol (channel/PROTOCOL.md).

Pure encoding and decoding, no I/O. ``FrameReader`` is fed bytes as they arrive and
yields whole frames; it checks magic, version, type and the length limit from the
16 header bytes alone, before it keeps anything of the body, so a peer that
announces a huge frame costs nothing until its bytes actually arrive.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

MAGIC = b"hd"
VERSION = 1
HEADER = struct.Struct("<2sBBIQ")  # magic, version, type, length, seq
HEADER_SIZE = HEADER.size  # 16
ENVELOPE = struct.Struct("<BBHHHHH")  # kind, reason, dest, port, src, note lengths, reserved
ENVELOPE_SIZE = ENVELOPE.size  # 12
HELLO = struct.Struct("<QB7s")
WELCOME = struct.Struct("<QQB7s")
DEFAULT_FRAME_LIMIT = 64 << 20
ROLE_MESSAGE_LINK = 1


class FrameType(enum.IntEnum):
    HELLO = 1
    WELCOME = 2
    DATA = 3
    ACK = 4
    CLOSE = 5


class Kind(enum.IntEnum):
    MESSAGE = 0
    RETURNED = 1


class ReturnReason(enum.IntEnum):
    """Why a message came back to its sender (the ``reason`` byte)."""

    NONE = 0
    UNKNOWN_PROC = 1
    PROC_EXITED = 2
    DELIVERY_TIMEOUT = 3
    TOO_LARGE = 4
    PEER_CLOSED = 5
    PEER_RESTARTED = 6
    SENDER_CLOSED = 7
    UNROUTABLE = 8
    UNKNOWN_PORT = 9
    BUFFER_FULL = 10


class ProtocolError(Exception):
    """The peer broke the protocol; the text is the cause sent in a CLOSE."""


@dataclass(frozen=True)
class Message:
    """One message: where it goes, the port, where replies go, and opaque bytes.

    A returned message (``kind == Kind.RETURNED``) carries why in ``reason`` and
    ``note``; its ``dest`` is the original ``src``.
    """

    dest: str
    port: str
    src: str = ""
    payload: bytes = b""
    kind: Kind = Kind.MESSAGE
    reason: ReturnReason = ReturnReason.NONE
    note: str = ""

    @property
    def returned(self) -> bool:
        return self.kind == Kind.RETURNED

    def to_returned(self, reason: ReturnReason, note: str) -> "Message":
        return Message(self.src, self.port, self.dest, self.payload, Kind.RETURNED, reason,
                       note.encode()[:0xFFFF].decode(errors="ignore"))

    def encode(self) -> bytes:
        fields = [self.dest.encode(), self.port.encode(), self.src.encode(), self.note.encode()]
        for name, f in zip(("destination", "port", "source", "note"), fields):
            if len(f) > 0xFFFF:
                raise ValueError(f"message {name} is {len(f)} bytes; at most 65535 allowed")
        if self.kind == Kind.MESSAGE and (fields[3] or self.reason != ReturnReason.NONE):
            raise ValueError("a plain message has no note and no return reason")
        head = ENVELOPE.pack(int(self.kind), int(self.reason), *(len(f) for f in fields), 0)
        return b"".join([head, *fields, bytes(self.payload)])

    @staticmethod
    def decode(body: bytes) -> "Message":
        if len(body) < ENVELOPE_SIZE:
            raise ProtocolError(f"message body of {len(body)} bytes is shorter than its {ENVELOPE_SIZE}-byte envelope")
        kind, reason, dl, pl, sl, nl, reserved = ENVELOPE.unpack_from(body)
        if kind > 1:
            raise ProtocolError(f"message kind {kind} is unknown")
        if reserved != 0:
            raise ProtocolError("message envelope reserved field is not zero")
        end = ENVELOPE_SIZE + dl + pl + sl + nl
        if end > len(body):
            raise ProtocolError(f"message strings need {end} bytes; the body has {len(body)}")
        if kind == 0 and (nl or reason):
            raise ProtocolError("a plain message carries a note or a reason; only returned messages have one")
        if kind == 1 and not 1 <= reason <= max(ReturnReason):
            raise ProtocolError(f"returned message has unknown reason {reason}")
        mv = memoryview(body)
        o = ENVELOPE_SIZE
        dest = str(mv[o:o + dl], "utf-8", "replace"); o += dl
        port = str(mv[o:o + pl], "utf-8", "replace"); o += pl
        src = str(mv[o:o + sl], "utf-8", "replace"); o += sl
        note = str(mv[o:o + nl], "utf-8", "replace"); o += nl
        return Message(dest, port, src, bytes(mv[o:]), Kind(kind), ReturnReason(reason), note)


def frame(ftype: FrameType, body: bytes = b"", seq: int = 0) -> bytes:
    return HEADER.pack(MAGIC, VERSION, int(ftype), len(body), seq) + body


def hello(session_id: int) -> bytes:
    return frame(FrameType.HELLO, HELLO.pack(session_id, ROLE_MESSAGE_LINK, bytes(7)))


def welcome(incarnation: int, delivered: int, resumed: bool) -> bytes:
    return frame(FrameType.WELCOME, WELCOME.pack(incarnation, delivered, 1 if resumed else 0, bytes(7)))


def close(reason: str = "") -> bytes:
    return frame(FrameType.CLOSE, reason.encode())


def parse_hello(body: bytes) -> int:
    if len(body) != HELLO.size:
        raise ProtocolError(f"HELLO body is {len(body)} bytes; expected {HELLO.size}")
    session_id, role, reserved = HELLO.unpack(body)
    if session_id == 0:
        raise ProtocolError("HELLO session id is 0")
    if role != ROLE_MESSAGE_LINK:
        raise ProtocolError(f"HELLO role {role} is unknown")
    if reserved != bytes(7):
        raise ProtocolError("HELLO reserved bytes are not zero")
    return session_id


def parse_welcome(body: bytes) -> Tuple[int, int, bool]:
    if len(body) != WELCOME.size:
        raise ProtocolError(f"WELCOME body is {len(body)} bytes; expected {WELCOME.size}")
    incarnation, delivered, resumed, _ = WELCOME.unpack(body)
    if incarnation == 0:
        raise ProtocolError("WELCOME incarnation is 0")
    if resumed > 1 or (not resumed and delivered):
        raise ProtocolError("WELCOME says the session is new but has a delivered seq")
    return incarnation, delivered, bool(resumed)


@dataclass
class Frame:
    type: FrameType
    seq: int
    body: bytes


class FrameReader:
    """Splits a byte stream into frames, checking each header before its body.

    ``feed`` raises ProtocolError for a bad header at once, whether or not any of
    the body has arrived. ``pending`` tells a stream that ended inside a frame
    (truncated) from one that ended between frames (clean).
    """

    def __init__(self, limit: int = DEFAULT_FRAME_LIMIT) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._need: Optional[Tuple[FrameType, int, int]] = None  # type, length, seq of the frame in progress
        self._error: Optional[ProtocolError] = None

    @property
    def failed(self) -> bool:
        """A bad header followed the frames the last ``feed`` returned; the next ``feed`` raises it."""
        return self._error is not None

    @property
    def pending(self) -> bool:
        return bool(self._buf) or self._need is not None

    def feed(self, data: bytes) -> List[Frame]:
        """The frames completed by ``data``. The frames before a bad header are returned
        first; the error is raised by the next call (``failed`` says it is pending)."""
        if self._error is not None:
            raise self._error
        self._buf += data
        out: List[Frame] = []
        try:
            self._parse(out)
        except ProtocolError as e:
            if not out:
                raise
            self._error = e
        return out

    def _parse(self, out: List[Frame]) -> None:
        while True:
            if self._need is None:
                if len(self._buf) < HEADER_SIZE:
                    return
                magic, version, ftype, length, seq = HEADER.unpack_from(self._buf)
                if magic != MAGIC:
                    raise ProtocolError(f"bad magic {bytes(magic)!r}")
                if version != VERSION:
                    raise ProtocolError(f"version {version} is not supported (this peer speaks {VERSION})")
                if not 1 <= ftype <= 5:
                    raise ProtocolError(f"frame type {ftype} is unknown")
                if length > self.limit:
                    raise ProtocolError(f"frame body of {length} bytes is over the limit of {self.limit}")
                del self._buf[:HEADER_SIZE]
                self._need = (FrameType(ftype), length, seq)
            ftype, length, seq = self._need
            if len(self._buf) < length:
                return
            body = bytes(self._buf[:length])
            del self._buf[:length]
            self._need = None
            out.append(Frame(ftype, seq, body))


def split_proc_id(proc_id: str) -> Tuple[str, str]:
    """``<addr>,<name>`` split at the last comma."""
    addr, sep, name = proc_id.rpartition(",")
    if not sep or not addr or not name:
        raise ValueError(f"proc id {proc_id!r} is not <address>,<name>")
    return addr, name

