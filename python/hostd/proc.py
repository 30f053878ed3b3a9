"""The Python proc runtime: a Python program that hostd spawns (readiness
``handshake``, the default) becomes a proc like one built on the C++ runtime.

    import hostd.proc

    def setup(proc: hostd.proc.Proc) -> None:
        proc.bind("echo", lambda m: proc.reply(m, "echo.reply", m.payload))

    hostd.proc.run(setup)

``run`` reads the bootstrap environment hostd prepared (``HOSTD_PROC_ID``,
``HOSTD_HOST_BACKEND``, optional ``HOSTD_LISTEN``, ``HOSTD_READY_FD``,
``HOSTD_PARENT_PID``, ``HOSTD_STATE_FD``), arms SIGKILL on the parent's death, reads
the state the previous incarnation handed over (``Proc.initial_state``), serves
the proc's backend address, calls ``setup`` (bind ports there, so no message finds
them missing), reports ``READY <addr>`` and runs until the agent's "stop" (or
SIGTERM/SIGINT), then exits 0.

Every message that arrives goes to the handler bound to its port, in arrival order;
a handler may be a plain function or a coroutine function (awaited before the next
message is read: a slow handler backs up the link). A message for a port nobody
bound goes back to its sender as "unknown port"; one for another proc as
"unroutable". Everything a proc sends that is not addressed to itself goes to the
host backend, which routes it on. The runtime binds, as the C++ one does:

- ``agent``: "stop [reason]" -> "stopping", "ping" -> "pong", "status",
  "handoff" -> "state\\n<blob>" from the state provider, or "error: <why>";
  answers go to the request's ``src`` on port ``agent.reply``.
- ``signal``: a broadcast signal ``<name>[\\n<data>]`` to the ``on_signal`` handler
  (e.g. "conclude" before hostd shuts down); without a handler it is counted and
  dropped, never returned.

State handoff: ``set_state_provider`` answers the agent's "handoff" (a planned
restart); ``save_state`` sends the blob for the host to keep for an unplanned one
(a crash). Either way the next incarnation finds it in ``initial_state``
(at most ``MAX_STATE_BYTES``).

Liveness: a proc spawned with a heartbeat check calls ``heartbeat()`` from the
code whose progress matters, at least once per check period; the runtime never
beats by itself (a beat from a task of its own would prove only that the event
loop runs).
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import os
import signal
import sys
import time
from typing import Awaitable, Callable, Dict, List, Optional, Union

from .link import Listener, QueueFull, Sender
from .wire import Message, ReturnReason, split_proc_id

MAX_STATE_BYTES = 1 << 20
AGENT_PORT = "agent"
AGENT_REPLY_PORT = "agent.reply"
SIGNAL_PORT = "signal"

Handler = Callable[[Message], Union[None, Awaitable[None]]]
SignalHandler = Callable[[str, bytes], Union[None, Awaitable[None]]]
StateProvider = Callable[[], Union[bytes, Awaitable[bytes]]]


class BootstrapError(Exception):
    """The environment hostd prepares is missing or wrong; the text names the variable."""


class Proc:
    """One proc's runtime: its id, ports, link to the host, stop request and state.

    Made by ``run`` (or ``Proc.start`` for a runtime of one's own). Use it only from
    the event loop it runs on.
    """

    def __init__(self, proc_id: str, host_backend: str, initial_state: Optional[bytes] = None) -> None:
        self.id = proc_id
        self.frontend, self.name = split_proc_id(proc_id)
        self.host_backend = host_backend
        self.initial_state = initial_state
        self.started_at = time.monotonic()
        self.signals_received = 0
        self._ports: Dict[str, Handler] = {}
        self._signal_handler: Optional[SignalHandler] = None
        self._state_provider: Optional[StateProvider] = None
        self._heartbeat: Optional["asyncio.Future[None]"] = None
        self._stop: "asyncio.Future[str]" = asyncio.get_running_loop().create_future()
        self._listener: Optional[Listener] = None
        self._host = Sender(host_backend, on_returned=self._returned_by_link)
        self.bind(AGENT_PORT, self._agent)
        self.bind(SIGNAL_PORT, self._signal)

    @classmethod
    async def start(cls, proc_id: str, host_backend: str, listen: str = "unix:",
                    initial_state: Optional[bytes] = None) -> "Proc":
        self = cls(proc_id, host_backend, initial_state)
        self._listener = await Listener.serve(listen, self._dispatch)
        return self

    @property
    def addr(self) -> str:
        """The backend address this proc serves."""
        assert self._listener is not None
        return self._listener.addr

    def bind(self, port: str, handler: Handler) -> None:
        """ValueError if the port is empty or already bound."""
        if not port:
            raise ValueError("port name is empty")
        if port in self._ports:
            raise ValueError(f'port "{port}" of proc {self.id} is already bound')
        self._ports[port] = handler

    async def send(self, dest: str, port: str, payload: Union[bytes, str] = b"") -> "asyncio.Future[None]":
        """Sends from this proc to ``dest`` (a ProcId; a bare name means a proc on this
        host). Waits while the link to the host is full; the returned future completes
        on the host's acknowledgement. A message that comes back undelivered is
        dispatched to this proc's own port of the same name, as a returned message."""
        dest = dest if "," in dest else f"{self.frontend},{dest}"
        msg = Message(dest, port, self.id, payload.encode() if isinstance(payload, str) else bytes(payload))
        if dest == self.id:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            await self._dispatch(msg)
            fut.set_result(None)
            return fut
        return await self._host.send(msg)

    async def reply(self, to: Message, port: str, payload: Union[bytes, str] = b"") -> "asyncio.Future[None]":
        """Sends ``payload`` to ``to.src`` on ``port``. ValueError when it has no return address."""
        if not to.src:
            raise ValueError(f"message to {to.dest} port {to.port} has no return address to reply to")
        return await self.send(to.src, port, payload)

    def on_signal(self, handler: SignalHandler) -> None:
        """Replaces any earlier signal handler: ``handler(name, data)``."""
        self._signal_handler = handler

    def set_state_provider(self, provider: StateProvider) -> None:
        """Replaces any earlier provider; the agent's "handoff" calls it."""
        self._state_provider = provider

    async def save_state(self, blob: bytes) -> None:
        """Sends ``blob`` for the host to keep for this proc's next incarnation (to
        ``<frontend>,_host.state`` port "save"); returns once queued."""
        if len(blob) > MAX_STATE_BYTES:
            raise ValueError(f"state of proc {self.id} is {len(blob)} bytes; at most {MAX_STATE_BYTES} may be saved")
        await self._host.send(Message(f"{self.frontend},_host.state", "save", self.id, bytes(blob)))

    def heartbeat(self) -> None:
        """Tells the host this proc is making progress (to ``<frontend>,_host.liveness``
        port "heartbeat"). At most one beat is in flight: a call while the last one is
        not yet acknowledged sends nothing, so calling it often is cheap. Never waits;
        with the link to the host full it sends nothing and the next call tries again.
        Call it on the proc's event loop."""
        if self._heartbeat is not None and not self._heartbeat.done():
            return
        try:
            self._heartbeat = self._host.post(Message(f"{self.frontend},_host.liveness", "heartbeat", self.id, b""))
        except QueueFull:
            pass

    async def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits until the host acknowledged everything this proc sent; False at the timeout."""
        return await self._host.flush(timeout)

    def request_stop(self, reason: str) -> None:
        if not self._stop.done():
            self._stop.set_result(reason)

    async def wait_for_stop(self) -> str:
        """The reason given to the first stop request."""
        return await asyncio.shield(self._stop)

    @property
    def stop_requested(self) -> bool:
        return self._stop.done()

    async def close(self) -> None:
        """Stops serving; gives what the proc sent last a moment (1 s) to reach the host."""
        if self._listener is not None:
            await self._listener.close()
        await self._host.close(1.0)

    # Dispatch.

    async def _dispatch(self, msg: Message) -> None:
        if msg.dest != self.id:
            return self._bounce(msg, ReturnReason.UNROUTABLE, f"proc {self.id} received a message for {msg.dest}")
        handler = self._ports.get(msg.port)
        if handler is None:
            return self._bounce(msg, ReturnReason.UNKNOWN_PORT, f'proc {self.id} has no port "{msg.port}"')
        r = handler(msg)
        if inspect.isawaitable(r):
            await r

    def _bounce(self, msg: Message, reason: ReturnReason, note: str) -> None:
        if msg.returned or not msg.src:
            print(f"proc {self.id}: dropping message it cannot deliver ({note})", file=sys.stderr)
            return
        try:
            self._host.post(msg.to_returned(reason, note))
        except Exception as e:  # the link is full: the C++ runtime drops it too (WhenFull::kFail)
            print(f"proc {self.id}: cannot return a message: {e}", file=sys.stderr)

    def _returned_by_link(self, msg: Message) -> None:
        # Our link to the host gave a message back: it goes to our own port, as the host would send it.
        if msg.port in self._ports:
            asyncio.get_running_loop().create_task(self._dispatch(msg))

    async def _agent(self, m: Message) -> None:
        if m.returned:
            return  # an answer of ours came back
        cmd = m.payload.decode(errors="replace")
        if cmd == "stop" or cmd.startswith("stop "):
            self.request_stop(cmd[4:].strip() or "stop requested")
            answer = b"stopping"
        elif cmd == "ping":
            answer = b"pong"
        elif cmd == "status":
            answer = (f"running {self.id} pid={os.getpid()} "
                      f"uptime_ms={int((time.monotonic() - self.started_at) * 1000)} ports={len(self._ports)}").encode()
        elif cmd == "handoff":
            answer = await self._hand_off()
        else:
            answer = f'error: unknown agent command "{cmd[:64]}"'.encode()
        if m.src:
            await self.reply(m, AGENT_REPLY_PORT, answer)

    async def _hand_off(self) -> bytes:
        if self._state_provider is None:
            return b"error: proc has no state provider"
        try:
            given = self._state_provider()
            blob: bytes = await given if inspect.isawaitable(given) else given
        except Exception as e:
            return f"error: {e}".encode()
        if len(blob) > MAX_STATE_BYTES:
            return (f"error: state of proc {self.id} is {len(blob)} bytes; "
                    f"at most {MAX_STATE_BYTES} may be handed over").encode()
        return b"state\n" + bytes(blob)

    async def _signal(self, m: Message) -> None:
        if m.returned:
            return
        self.signals_received += 1
        if self._signal_handler is None:
            return  # counted and dropped: a broadcast is not bounced
        name, _, data = m.payload.partition(b"\n")
        r = self._signal_handler(name.decode(errors="replace"), data)
        if inspect.isawaitable(r):
            await r


# Bootstrap.

def _env(name: str, required: bool = False) -> Optional[str]:
    v = os.environ.get(name)
    if required and not v:
        raise BootstrapError(f"{name} is not set; procs are started by a hostd proc manager, which sets it")
    return v or None


def _fd(name: str) -> Optional[int]:
    v = _env(name)
    if v is None:
        return None
    if not v.isdigit():
        raise BootstrapError(f'{name}="{v}" is invalid: not a descriptor number')
    try:
        os.fstat(int(v))
    except OSError:
        raise BootstrapError(f'{name}="{v}" is invalid: not an open descriptor in this process') from None
    return int(v)


def _arm_parent_death_signal(expected_parent: int) -> None:
    PR_SET_PDEATHSIG = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise BootstrapError(f"prctl(PR_SET_PDEATHSIG): {os.strerror(ctypes.get_errno())}")
    if expected_parent and os.getppid() != expected_parent:
        raise BootstrapError(f"parent {expected_parent} exited before the proc armed its parent-death signal")


def _read_state(fd: int) -> bytes:
    with os.fdopen(fd, "rb", closefd=True) as f:
        blob = f.read(MAX_STATE_BYTES + 1)
    if len(blob) > MAX_STATE_BYTES:
        raise BootstrapError(f"HOSTD_STATE_FD={fd}: the handed-over state is over {MAX_STATE_BYTES} bytes")
    return blob


async def boot(setup: Optional[Callable[[Proc], Union[None, Awaitable[None]]]] = None) -> Proc:
    """Reads the environment, starts the runtime, runs ``setup``, reports readiness."""
    proc_id = _env("HOSTD_PROC_ID", required=True)
    backend = _env("HOSTD_HOST_BACKEND", required=True)
    assert proc_id is not None and backend is not None
    try:
        split_proc_id(proc_id)
    except ValueError as e:
        raise BootstrapError(f'HOSTD_PROC_ID="{proc_id}" is invalid: {e}') from None
    listen = _env("HOSTD_LISTEN") or "unix:"
    ready_fd = _fd("HOSTD_READY_FD")
    state_fd = _fd("HOSTD_STATE_FD")
    parent = _env("HOSTD_PARENT_PID")
    if parent is not None and not parent.isdigit():
        raise BootstrapError(f'HOSTD_PARENT_PID="{parent}" is invalid: not a process id')
    _arm_parent_death_signal(int(parent or 0))
    initial_state = _read_state(state_fd) if state_fd is not None else None
    proc = await Proc.start(proc_id, backend, listen, initial_state)
    if setup is not None:
        r = setup(proc)
        if inspect.isawaitable(r):
            await r
    if ready_fd is not None:
        with os.fdopen(ready_fd, "wb", closefd=True) as f:
            f.write(f"READY {proc.addr}\n".encode())
    return proc


def run(setup: Optional[Callable[[Proc], Union[None, Awaitable[None]]]] = None,
        main: Optional[Callable[[Proc], Awaitable[None]]] = None) -> None:
    """Boots the proc and runs it until a stop request (or ``main`` returns), then exits 0.
    A bootstrap failure is printed to stderr and exits 2."""

    async def body() -> None:
        # The handlers go in before the readiness report: a SIGTERM right after it is a stop.
        loop = asyncio.get_running_loop()
        booted: List[Proc] = []
        early: List[str] = []

        def on_signal(name: str) -> None:
            if booted:
                booted[0].request_stop(name)
            else:
                early.append(name)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, signal.Signals(sig).name)
        try:
            proc = await boot(setup)
        except BootstrapError as e:
            print(f"hostd proc: {e}", file=sys.stderr)
            sys.exit(2)
        booted.append(proc)
        if early:
            proc.request_stop(early[0])
        try:
            if main is not None:
                task = asyncio.ensure_future(main(proc))
                stop = loop.create_task(proc.wait_for_stop())
                await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                if task.done():
                    task.result()
                else:
                    task.cancel()
            else:
                await proc.wait_for_stop()
        finally:
            await proc.close()

    asyncio.run(body())
