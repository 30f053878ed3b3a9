"""Messages through the real hostd: Python and C++ clients and procs, returns with
their reasons, the agent and signals of a Python proc, and a session that resumes
across a cut connection to the frontend."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

import hostd
from hostd import Client, Message, MessageReturned, ReturnReason

from conftest import BUILD, EXAMPLES, HANG_GUARD, HOSTCTL_BIN, Hostd, Proxy, run

ECHO_PY = os.path.join(EXAMPLES, "echo_proc.py")
RELAY_PY = os.path.join(EXAMPLES, "relay_proc.py")


def test_a_python_client_talks_to_a_cpp_echo_proc(host: Hostd) -> None:
    host.spawn_cc("echo-cc", "--echo")

    async def body() -> None:
        async with await Client.connect(host.frontend) as c:
            reply = await c.request("echo-cc", "echo", b"to c++", timeout=HANG_GUARD)
            assert (reply.port, reply.payload, reply.src) == ("echo.reply", b"to c++", f"{host.frontend},echo-cc")
            acks = [await c.send("echo-cc", "echo", f"m{i}") for i in range(200)]
            await asyncio.gather(*acks)
            got = [(await c.receive(HANG_GUARD)).payload for _ in range(200)]
            assert got == [f"m{i}".encode() for i in range(200)]
    run(body())


def test_a_cpp_client_talks_to_a_python_echo_proc(host: Hostd) -> None:
    host.spawn_py("echo-py", ECHO_PY)
    out = subprocess.run([HOSTCTL_BIN, "--grpc", host.grpc, "send", "echo-py", "echo", "to python",
                          "--reply-timeout", "10"], capture_output=True, text=True, timeout=HANG_GUARD)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "to python"


def test_the_cpp_link_client_talks_to_a_python_echo_proc_through_the_frontend(host: Hostd) -> None:
    client = os.environ.get("HOSTD_ECHO_CLIENT") or os.path.join(BUILD, "bench", "echo_client")
    if not os.access(client, os.X_OK):
        pytest.skip(f"{client} is not built (HOSTD_BENCH=OFF)")
    host.spawn_py("echo-py", ECHO_PY)
    out = subprocess.run([client, host.frontend, "echo-py", "rtt", "50", "64"], capture_output=True, text=True,
                         timeout=HANG_GUARD)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.split()) == 50  # one line per round trip that came back


def test_a_python_proc_talks_to_a_python_proc_through_the_host(host: Hostd) -> None:
    host.spawn_py("echo-py", ECHO_PY)
    host.spawn_py("relay", RELAY_PY, ["echo-py"])

    async def body() -> None:
        async with await Client.connect(host.frontend) as c:
            for i in range(20):
                reply = await c.request("relay", "ask", f"q{i}", timeout=HANG_GUARD)
                assert (reply.port, reply.payload) == ("ask.reply", f"q{i}".encode())
    run(body())


def test_a_python_proc_talks_to_a_cpp_proc_through_the_host(host: Hostd) -> None:
    host.spawn_cc("echo-cc", "--echo")
    host.spawn_py("relay", RELAY_PY, ["echo-cc"])
    r = host.api.send("relay", "ask", b"via python to c++", reply_timeout=HANG_GUARD)
    assert r.reply_payload == b"via python to c++"
    host.api.terminate("echo-cc", grace=5)
    r = host.api.send("relay", "ask", b"anyone?", reply_timeout=HANG_GUARD)
    assert r.reply_payload.startswith(b"error: proc_exited")


def test_undeliverable_messages_come_back_with_their_reason(host: Hostd) -> None:
    host.spawn_py("echo-py", ECHO_PY)
    host.spawn_cc("gone", "--exit-after-ms=1")
    host.api.wait("gone", HANG_GUARD)

    async def body() -> None:
        async with await Client.connect(host.frontend) as c:
            cases = [("nobody", "echo", ReturnReason.UNKNOWN_PROC), ("echo-py", "nope", ReturnReason.UNKNOWN_PORT),
                     ("gone", "echo", ReturnReason.PROC_EXITED),
                     ("unix:/nowhere.sock,x", "echo", ReturnReason.UNROUTABLE)]
            for proc, port, reason in cases:
                dest = proc if "," in proc else f"{host.frontend},{proc}"
                fut = await c.sender().send(Message(dest, port, c.addr, b"payload"))
                await fut  # the host took it: a return is a message of its own
                back = await c.receive(HANG_GUARD)
                assert back.returned and back.reason == reason, (proc, port, back)
                assert (back.dest, back.src, back.port, back.payload) == (c.addr, dest, port, b"payload")
                assert back.note
            try:
                await c.request("echo-py", "nope", b"x", timeout=HANG_GUARD)
                raise AssertionError("not returned")
            except MessageReturned as e:
                assert e.reason == ReturnReason.UNKNOWN_PORT and 'no port "nope"' in e.message.note
    run(body())


def test_the_agent_of_a_python_proc_answers_and_stops_it(host: Hostd) -> None:
    host.spawn_py("echo-py", ECHO_PY)

    async def body() -> None:
        async with await Client.connect(host.frontend) as c:
            assert (await c.request("echo-py", "agent", "ping", timeout=HANG_GUARD)).payload == b"pong"
            status = (await c.request("echo-py", "agent", "status", timeout=HANG_GUARD)).payload.decode()
            assert status.startswith(f"running {host.frontend},echo-py pid=") and "ports=3" in status
            handoff = await c.request("echo-py", "agent", "handoff", timeout=HANG_GUARD)
            assert handoff.payload == b"error: proc has no state provider"
            assert (await c.request("echo-py", "agent", "dance", timeout=HANG_GUARD)).payload.startswith(
                b'error: unknown agent command "dance"')
            stopping = await c.request("echo-py", "agent", "stop because", timeout=HANG_GUARD)
            assert (stopping.port, stopping.payload) == ("agent.reply", b"stopping")
    run(body())
    ended = host.api.wait("echo-py", HANG_GUARD)
    assert (ended.status.state, ended.status.exit_code) == (hostd.control.pb.PROC_STATE_STOPPED, 0)


def test_a_python_proc_receives_broadcast_signals(host: Hostd) -> None:
    host.spawn_py("sig", "signal_proc.py")
    sent = host.api.signal("reload", b"v2")
    assert (sent.targeted, sent.delivered) == (1, 1)
    r = host.api.send("sig", "signals", b"", reply_timeout=HANG_GUARD)
    assert r.reply_payload == b"reload=v2"


def test_terminate_stops_a_python_proc_through_its_agent(host: Hostd) -> None:
    host.spawn_py("echo-py", ECHO_PY)
    ended = host.api.terminate("echo-py", grace=HANG_GUARD)
    assert (ended.status.state, ended.status.exit_code) == (hostd.control.pb.PROC_STATE_STOPPED, 0)


def test_a_session_resumes_across_a_cut_frontend_connection(host: Hostd) -> None:
    host.spawn_py("echo-py", ECHO_PY)

    async def body() -> None:
        proxy = await Proxy(host.frontend, os.path.join(host.dir, "proxy.sock")).start()
        try:
            async with await Client.connect(host.frontend, dial=proxy.addr) as c:
                n = 300
                acks = []
                for i in range(n):
                    acks.append(await c.send("echo-py", "echo", f"{i}"))
                    if i in (100, 200):
                        await acks[i - 50]  # the connection is up and in use
                        await asyncio.sleep(0)  # a few more written, not all acknowledged
                        proxy.cut()
                await asyncio.wait_for(asyncio.gather(*acks), HANG_GUARD)
                got = [int((await c.receive(HANG_GUARD)).payload) for _ in range(n)]
                # Every message delivered exactly once, in order: nothing lost, nothing doubled.
                assert got == list(range(n))
                stats = c.sender().stats
                assert stats.connects >= 2 and stats.resumes >= 1 and stats.resets == 0
                assert proxy.connections >= 2
                await asyncio.sleep(0)  # nothing else must be waiting
                assert c.inbox.empty()
        finally:
            await proxy.close()
    run(body())
