"""The Python link peer against hostd's listeners and against itself: frames over
the limit refused from the header alone, and the delivery rules of
channel/PROTOCOL.md (resume, reset, returns, bounded queues)."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from typing import List

import pytest

from hostd import Listener, Message, MessageReturned, QueueFull, ReturnReason, Sender
from hostd import wire
from hostd.wire import FrameReader, FrameType, ProtocolError

from conftest import HANG_GUARD, Hostd, Proxy, run


def read_frames(sock: socket.socket) -> List[wire.Frame]:
    """Every frame until the peer closes."""
    sock.settimeout(HANG_GUARD)
    fr = FrameReader()
    frames: List[wire.Frame] = []
    while data := sock.recv(65536):
        frames += fr.feed(data)
    return frames


def test_hostd_refuses_a_frame_over_the_limit_from_its_header_alone(host: Hostd) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(host.frontend[len("unix:"):])
    s.sendall(wire.hello(7))
    # A DATA header announcing one byte over 64 MiB, and no body: hostd must answer
    # at once, without waiting for (or making room for) the body.
    s.sendall(wire.HEADER.pack(wire.MAGIC, wire.VERSION, FrameType.DATA, wire.DEFAULT_FRAME_LIMIT + 1, 1))
    s.shutdown(socket.SHUT_WR)
    frames = read_frames(s)
    s.close()
    assert [f.type for f in frames][0] == FrameType.WELCOME
    assert frames[-1].type == FrameType.CLOSE
    assert frames[-1].body.startswith(b"protocol error:") and b"67108865" in frames[-1].body


def test_hostd_accepts_a_frame_exactly_at_the_limit_of_the_python_reader() -> None:
    fr = FrameReader(limit=100)
    assert fr.feed(wire.frame(FrameType.CLOSE, b"x" * 100))[0].body == b"x" * 100
    with pytest.raises(ProtocolError, match="over the limit"):
        FrameReader(limit=100).feed(wire.HEADER.pack(wire.MAGIC, wire.VERSION, FrameType.DATA, 101, 1))


def test_the_python_listener_refuses_an_oversized_frame_before_its_body_arrives() -> None:
    async def body() -> None:
        got: List[Message] = []
        listener = await Listener.serve("unix:", got.append, frame_limit=1024)
        r, w = await asyncio.open_unix_connection("\0" + listener.addr[len("unix:@"):])
        w.write(wire.hello(9) + wire.HEADER.pack(wire.MAGIC, wire.VERSION, FrameType.DATA, 0xFFFFFFFF, 1))
        await w.drain()  # 4 GiB announced, none sent: the CLOSE must come without it
        fr = FrameReader()
        frames: List[wire.Frame] = []
        while not frames or frames[-1].type != FrameType.CLOSE:
            data = await asyncio.wait_for(r.read(65536), HANG_GUARD)
            assert data, "closed without a CLOSE frame"
            frames += fr.feed(data)
        assert frames[0].type == FrameType.WELCOME
        assert b"over the limit of 1024" in frames[-1].body
        assert got == []
        w.close()
        await listener.close()
    run(body())


def test_the_python_listener_refuses_a_first_frame_that_is_not_hello() -> None:
    async def body() -> None:
        listener = await Listener.serve("unix:", lambda m: None)
        r, w = await asyncio.open_unix_connection("\0" + listener.addr[len("unix:@"):])
        w.write(b"GET / HTTP/1.1\r\n\r\n")
        data = await asyncio.wait_for(r.read(), HANG_GUARD)
        frames = FrameReader().feed(data)
        assert [f.type for f in frames] == [FrameType.CLOSE]
        assert frames[0].body.startswith(b"protocol error: bad magic")
        w.close()
        await listener.close()
    run(body())


def test_a_message_envelope_round_trips_and_a_malformed_one_is_refused() -> None:
    m = Message("unix:@fe,p", "port", "unix:@me,c", b"\x00payload")
    assert Message.decode(m.encode()) == m
    ret = m.to_returned(ReturnReason.UNKNOWN_PORT, "no port")
    assert Message.decode(ret.encode()) == ret
    assert (ret.dest, ret.src, ret.reason) == (m.src, m.dest, ReturnReason.UNKNOWN_PORT)
    with pytest.raises(ProtocolError):
        Message.decode(m.encode()[:14])
    bad_note = bytearray(m.encode())
    struct.pack_into("<H", bad_note, 8, 1)  # a plain message with a note
    with pytest.raises(ProtocolError):
        Message.decode(bytes(bad_note))


async def _serve(got: List[bytes], addr: str = "unix:") -> Listener:
    return await Listener.serve(addr, lambda m: got.append(m.payload), ack_every=4)


def test_a_session_resumes_without_duplicates_across_a_cut() -> None:
    async def body() -> None:
        got: List[bytes] = []
        listener = await _serve(got)
        path = f"/tmp/hpy-proxy-{os.getpid()}.sock"
        proxy = await Proxy(listener.addr.replace("unix:@", "unix:\0"), path).start()
        sender = Sender(proxy.addr)
        futs = []
        for i in range(500):
            futs.append(sender.post(Message("unix:@x,p", "p", "", b"%d" % i)))
            if i % 100 == 50:
                await futs[i - 20]
                proxy.cut()
        await asyncio.wait_for(asyncio.gather(*futs), HANG_GUARD)
        assert got == [b"%d" % i for i in range(500)]
        assert sender.stats.resumes >= 1 and sender.stats.resets == 0
        assert listener.sessions == 1
        await sender.close()
        while listener.sessions:  # the sender's CLOSE ends the session (the hang guard bounds this)
            await asyncio.sleep(0.01)
        await proxy.close()
        os.unlink(path)
        await listener.close()
    run(body())


def test_a_restarted_listener_gets_what_the_sender_still_holds_renumbered() -> None:
    async def body() -> None:
        got1: List[bytes] = []
        addr = f"unix:@hpy-restart-{os.getpid()}"
        first = await _serve(got1, addr)
        sender = Sender(addr)
        await (sender.post(Message("unix:@x,p", "p", "", b"a")))
        await first.close()
        got2: List[bytes] = []
        second = await _serve(got2, addr)
        fut = sender.post(Message("unix:@x,p", "p", "", b"b"))
        await asyncio.wait_for(fut, HANG_GUARD)
        assert (got1, got2) == ([b"a"], [b"b"])
        assert sender.stats.resets + sender.stats.connects >= 2
        await sender.close()
        await second.close()
    run(body())


def test_a_full_sender_queue_refuses_posts_and_send_waits_for_room() -> None:
    async def body() -> None:
        release = asyncio.Event()

        async def slow(m: Message) -> None:
            await release.wait()

        listener = await Listener.serve("unix:", slow)
        sender = Sender(listener.addr, queue_limit=2)
        sender.post(Message("unix:@x,p", "p"))
        sender.post(Message("unix:@x,p", "p"))
        with pytest.raises(QueueFull):
            sender.post(Message("unix:@x,p", "p"))
        waiting = asyncio.ensure_future(sender.send(Message("unix:@x,p", "p")))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        release.set()
        ack = await asyncio.wait_for(waiting, HANG_GUARD)
        await asyncio.wait_for(ack, HANG_GUARD)
        await sender.close()
        await listener.close()
    run(body())


def test_messages_are_returned_with_a_reason_never_dropped() -> None:
    async def body() -> None:
        returned: List[Message] = []
        # Nobody listens: the delivery timeout returns what waited too long.
        sender = Sender("unix:@hpy-nobody-listens", delivery_timeout=0.3, on_returned=returned.append)
        fut = sender.post(Message("unix:@x,p", "p", "unix:@me,c", b"1"))
        with pytest.raises(MessageReturned) as e:
            await asyncio.wait_for(fut, HANG_GUARD)
        assert e.value.reason == ReturnReason.DELIVERY_TIMEOUT
        assert [m.reason for m in returned] == [ReturnReason.DELIVERY_TIMEOUT]
        # Closing returns what is still queued.
        fut = sender.post(Message("unix:@x,p", "p", "unix:@me,c", b"2"))
        await sender.close(timeout=0.05)
        with pytest.raises(MessageReturned) as e:
            await fut
        assert e.value.reason == ReturnReason.SENDER_CLOSED
    run(body())
