"""The control-plane client: hostd's gRPC API (proto/hostd/v1/host.proto), typed.

    with hostd.HostClient() as host:                       # $HOSTD_GRPC, else the default socket
        proc = host.spawn("echo", sys.executable, ["echo_proc.py"])
        for event in host.watch(snapshot=True): ...

``HostClient`` is blocking; ``AsyncHostClient`` has the same methods as coroutines
(streams as async iterators) on ``grpc.aio``. Results are the generated messages
(``hostd.v1.host_pb2``: ``Proc``, ``ProcEvent``, ``Tree``, ...); durations are
float seconds. A failed call raises a ``hostd.HostdError`` subclass carrying the
gRPC code and hostd's message (``ProcNotFound``, ``NameTaken``, ...).

The address is found as hostctl finds it: the ``target`` argument, else
``$HOSTD_GRPC``, else ``unix:<runtime dir>/hostd.sock`` where the runtime dir is
``$HOSTD_RUNTIME_DIR``, ``$XDG_RUNTIME_DIR/hostd``, ``/run/hostd`` as root, or
``/tmp/hostd-<uid>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import (Any, AsyncIterator, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import grpc
import grpc.aio
from google.protobuf import duration_pb2

from .errors import from_rpc_error
from .v1 import host_pb2 as pb
from .v1 import host_pb2_grpc as pb_grpc

__all__ = ["AsyncHostClient", "HostClient", "default_target", "grpc_target", "liveness_check", "restart_policy",
           "spawn_request", "pb"]

_MAX_MESSAGE = 80 << 20
_OPTIONS = [("grpc.max_receive_message_length", _MAX_MESSAGE), ("grpc.max_send_message_length", _MAX_MESSAGE)]
_READINESS = {"handshake": pb.READINESS_MODE_HANDSHAKE, "exec": pb.READINESS_MODE_EXEC,
              "notify": pb.READINESS_MODE_NOTIFY}
_RESTART = {"never": pb.RESTART_MODE_NEVER, "on-failure": pb.RESTART_MODE_ON_FAILURE,
            "always": pb.RESTART_MODE_ALWAYS}
_STRATEGY = {"one-for-one": pb.STRATEGY_ONE_FOR_ONE, "one-for-all": pb.STRATEGY_ONE_FOR_ALL,
             "rest-for-one": pb.STRATEGY_REST_FOR_ONE}


def default_target() -> str:
    """hostd's control address as hostctl finds it (see the module docstring)."""
    if os.environ.get("HOSTD_GRPC"):
        return os.environ["HOSTD_GRPC"]
    d = os.environ.get("HOSTD_RUNTIME_DIR")
    if not d and os.environ.get("XDG_RUNTIME_DIR"):
        d = os.environ["XDG_RUNTIME_DIR"] + "/hostd"
    if not d:
        d = "/run/hostd" if os.geteuid() == 0 else f"/tmp/hostd-{os.geteuid()}"
    return f"unix:{d}/hostd.sock"


def grpc_target(addr: str) -> str:
    """A hostd address (``unix:/path``, ``unix:@name``, ``tcp:host:port``) as a gRPC target."""
    if addr.startswith("unix:@"):
        return "unix-abstract:" + addr[len("unix:@"):]
    if addr.startswith("tcp:"):
        return addr[len("tcp:"):]
    return addr


def _dur(seconds: Optional[float]) -> Optional[duration_pb2.Duration]:
    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def _set(msg: Any, **fields: Any) -> Any:
    for k, v in fields.items():
        if v is None:
            continue
        if isinstance(v, duration_pb2.Duration) or hasattr(v, "DESCRIPTOR") and not isinstance(v, (str, bytes)):
            getattr(msg, k).CopyFrom(v)
        elif isinstance(v, Mapping):
            getattr(msg, k).update(v)
        elif isinstance(v, (list, tuple)):
            getattr(msg, k).extend(v)
        else:
            setattr(msg, k, v)
    return msg


def restart_policy(mode: str = "on-failure", *, max_restarts: Optional[int] = None, within: Optional[float] = None,
                   backoff_initial: Optional[float] = None, backoff_max: Optional[float] = None,
                   multiplier: float = 0.0, jitter: Optional[float] = None) -> pb.RestartPolicy:
    """A restart policy: ``mode`` is "never", "on-failure" or "always"."""
    backoff = _set(pb.Backoff(), initial=_dur(backoff_initial), max=_dur(backoff_max), multiplier=multiplier,
                   jitter=jitter)
    return _set(pb.RestartPolicy(mode=_RESTART[mode]), max_restarts=max_restarts, within=_dur(within),
                backoff=backoff)


def liveness_check(kind: str = "heartbeat", *, command: Sequence[str] = (), period: Optional[float] = None,
                   timeout: Optional[float] = None, failure_threshold: int = 0, initial_delay: Optional[float] = None,
                   dump_signal: int = 0, dump_grace: Optional[float] = None) -> pb.LivenessCheck:
    """A liveness check: ``kind`` "heartbeat" (the proc calls ``Proc.heartbeat()``) or
    "exec" (hostd runs ``command``; an exit other than 0 is a miss). Seconds; None
    or 0 take hostd's defaults (period 10 s, 3 misses, dump grace 2 s)."""
    check = _set(pb.LivenessCheck(failure_threshold=failure_threshold, dump_signal=dump_signal), period=_dur(period),
                 timeout=_dur(timeout), initial_delay=_dur(initial_delay), dump_grace=_dur(dump_grace))
    if kind == "heartbeat":
        if command:
            raise ValueError("a heartbeat check runs no command")
        check.heartbeat.SetInParent()
    elif kind == "exec":
        check.exec.command.extend(command)
    else:
        raise ValueError(f'liveness kind "{kind}" is neither "heartbeat" nor "exec"')
    return check


def spawn_request(name: str, program: str, args: Sequence[str] = (), *, env: Optional[Mapping[str, str]] = None,
                  inherit_env: Sequence[str] = (), cwd: str = "", readiness: str = "handshake",
                  ready_timeout: Optional[float] = None, labels: Optional[Mapping[str, str]] = None,
                  restart: Union[str, pb.RestartPolicy, None] = None, group: str = "",
                  lease: Optional[Tuple[str, float]] = None,
                  liveness: Optional[pb.LivenessCheck] = None) -> pb.SpawnProcRequest:
    """One spawn: ``readiness`` is "handshake" (a hostd proc), "exec" or "notify".
    ``lease`` is (owner, TTL seconds): the proc is terminated, and not restarted,
    once the owner has not renewed the lease for the TTL (``renew_lease``,
    ``hold_lease``); ``liveness`` a ``liveness_check(...)``."""
    spec = _set(pb.ProcSpec(program=program, cwd=cwd, readiness=_READINESS[readiness]), args=list(args),
                inherit_env=list(inherit_env), ready_timeout=_dur(ready_timeout), liveness=liveness)
    for k, v in (env or {}).items():
        spec.env.add(name=k, value=v)
    req = pb.SpawnProcRequest(name=name, group=group)
    req.spec.CopyFrom(spec)
    req.labels.update(labels or {})
    if restart is not None:
        req.restart.CopyFrom(restart_policy(restart) if isinstance(restart, str) else restart)
    if lease is not None:
        owner, ttl = lease
        req.lease.owner = owner
        req.lease.ttl.CopyFrom(_dur(ttl))
    return req


class _Requests:
    """The request of each call, shared by the blocking and the asyncio client."""

    @staticmethod
    def list(states: Iterable[int] = (), labels: Optional[Mapping[str, str]] = None,
             live_only: bool = False) -> pb.ListProcsRequest:
        return _set(pb.ListProcsRequest(live_only=live_only), states=list(states), labels=labels)

    @staticmethod
    def wait(name: str, timeout: Optional[float], for_good: bool) -> pb.WaitProcRequest:
        return _set(pb.WaitProcRequest(name=name, for_good=for_good), timeout=_dur(timeout))

    @staticmethod
    def terminate(name: str, grace: Optional[float], reason: str) -> pb.TerminateProcRequest:
        return _set(pb.TerminateProcRequest(name=name, reason=reason), grace=_dur(grace))

    @staticmethod
    def terminate_all(grace: Optional[float], max_in_flight: int, reason: str) -> pb.TerminateAllRequest:
        return _set(pb.TerminateAllRequest(max_in_flight=max_in_flight, reason=reason), grace=_dur(grace))

    @staticmethod
    def watch(names: Sequence[str], group: str, snapshot: bool, lease_owner: str = "") -> pb.WatchProcsRequest:
        return _set(pb.WatchProcsRequest(group=group, snapshot=snapshot, lease_owner=lease_owner), names=list(names))

    @staticmethod
    def send(name: str, port: str, payload: Union[bytes, str], reply_timeout: Optional[float],
             timeout: Optional[float]) -> pb.SendMessageRequest:
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        return _set(pb.SendMessageRequest(name=name, port=port, payload=data), reply_timeout=_dur(reply_timeout),
                    timeout=_dur(timeout))

    @staticmethod
    def create_group(name: str, parent: str, strategy: str, max_restarts: Optional[int], within: Optional[float],
                     backoff_initial: Optional[float]) -> pb.CreateGroupRequest:
        req = _set(pb.CreateGroupRequest(name=name, parent=parent, strategy=_STRATEGY[strategy]),
                   max_restarts=max_restarts, within=_dur(within))
        if backoff_initial is not None:
            req.backoff.initial.CopyFrom(_dur(backoff_initial))
        return req

    @staticmethod
    def restart(name: str, handoff: bool, handoff_timeout: Optional[float], grace: Optional[float]
                ) -> pb.RestartProcRequest:
        return _set(pb.RestartProcRequest(name=name, handoff=handoff), handoff_timeout=_dur(handoff_timeout),
                    grace=_dur(grace))

    @staticmethod
    def signal(signal: str, data: Union[bytes, str], group: str) -> pb.BroadcastSignalRequest:
        return pb.BroadcastSignalRequest(signal=signal, data=data.encode() if isinstance(data, str) else data,
                                         group=group)


class HostClient:
    """Blocking client of one hostd. ``timeout`` (seconds) bounds each quick call;
    calls that wait on procs (spawn, wait, terminate, restart) take their own."""

    def __init__(self, target: Optional[str] = None, *, timeout: float = 10.0) -> None:
        self.target = target or default_target()
        self.timeout = timeout
        self._channel = grpc.insecure_channel(grpc_target(self.target), options=_OPTIONS)
        self._stub = pb_grpc.HostServiceStub(self._channel)

    def __enter__(self) -> "HostClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout if timeout is not None else self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    def _stream(self, method: str, request: Any) -> Iterator[Any]:
        # The call starts here, not at the first next(): a watch sees what follows it.
        return self._iterate(getattr(self._stub, method)(request))

    @staticmethod
    def _iterate(call: Any) -> Iterator[Any]:
        try:
            yield from call
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                raise from_rpc_error(e) from None
        finally:
            call.cancel()

    def spawn(self, name: str, program: str, args: Sequence[str] = (), *, timeout: float = 60.0,
              **spec: Any) -> pb.Proc:
        """Spawns one proc and returns it once ready; see ``spawn_request`` for ``spec``."""
        return self._call("SpawnProc", spawn_request(name, program, args, **spec), timeout).proc

    def spawn_many(self, requests: Iterable[pb.SpawnProcRequest], *, max_in_flight: int = 0,
                   ranks: Optional[pb.RankEnv] = None, timeout: float = 120.0) -> pb.SpawnProcsResponse:
        """Spawns concurrently; each result has its own code and error. With ``ranks``
        (``pb.RankEnv()`` for the defaults) each proc gets RANK, WORLD_SIZE, LOCAL_RANK
        and LOCAL_WORLD_SIZE in its environment, in request order."""
        return self._call("SpawnProcs", pb.SpawnProcsRequest(procs=list(requests), max_in_flight=max_in_flight,
                                                             ranks=ranks), timeout)

    def get(self, name: str) -> pb.Proc:
        return self._call("GetProc", pb.GetProcRequest(name=name))

    def list(self, states: Iterable[int] = (), labels: Optional[Mapping[str, str]] = None,
             live_only: bool = False) -> List[pb.Proc]:
        return list(self._call("ListProcs", _Requests.list(states, labels, live_only)).procs)

    def wait(self, name: str, timeout: Optional[float] = None, *, for_good: bool = False) -> pb.Proc:
        """The ended proc; DeadlineExceeded at ``timeout``."""
        rpc_timeout = None if timeout is None else timeout + 10.0
        return self._call("WaitProc", _Requests.wait(name, timeout, for_good), rpc_timeout)

    def terminate(self, name: str, grace: Optional[float] = None, reason: str = "") -> pb.Proc:
        return self._call("TerminateProc", _Requests.terminate(name, grace, reason), (grace or 10.0) + 30.0)

    def kill(self, name: str) -> pb.Proc:
        return self._call("KillProc", pb.KillProcRequest(name=name), self.timeout + 20.0)

    def terminate_all(self, grace: Optional[float] = None, max_in_flight: int = 0,
                      reason: str = "") -> pb.TerminateAllResponse:
        return self._call("TerminateAll", _Requests.terminate_all(grace, max_in_flight, reason),
                          (grace or 10.0) + 60.0)

    def watch(self, names: Sequence[str] = (), *, group: str = "", snapshot: bool = False,
              lease_owner: str = "") -> Iterator[pb.ProcEvent]:
        """Lifecycle events as they happen; close the iterator to stop watching. With
        ``lease_owner``, that owner's leases stay renewed while the stream is open."""
        return self._stream("WatchProcs", _Requests.watch(names, group, snapshot, lease_owner))

    def renew_lease(self, owner: str) -> pb.RenewLeaseResponse:
        """Renews every live proc of ``owner`` for one more TTL; ProcNotFound if it has none."""
        return self._call("RenewLease", pb.RenewLeaseRequest(owner=owner))

    @contextlib.contextmanager
    def hold_lease(self, owner: str) -> Iterator[None]:
        """Keeps ``owner``'s leases renewed while the block runs (a WatchProcs stream
        naming it, drained by a thread); its procs outlive the block by one TTL."""
        call = self._stub.WatchProcs(_Requests.watch((), "", False, owner))
        drain = threading.Thread(target=lambda: [None for _ in self._iterate(call)], daemon=True)
        drain.start()
        try:
            yield
        finally:
            call.cancel()
            drain.join()

    def logs(self, name: str, *, stderr: bool = False, tail_bytes: int = 0, follow: bool = False) -> Iterator[bytes]:
        """The log's bytes in chunks; with ``follow``, until the proc ends for good."""
        for chunk in self._stream("StreamLogs", pb.StreamLogsRequest(name=name, stderr=stderr, tail_bytes=tail_bytes,
                                                                     follow=follow)):
            yield chunk.data

    def send(self, name: str, port: str, payload: Union[bytes, str] = b"", *, reply_timeout: Optional[float] = None,
             timeout: Optional[float] = None) -> pb.SendMessageResponse:
        """Delivers one message through hostd (for tools); with ``reply_timeout``, waits for one reply."""
        return self._call("SendMessage", _Requests.send(name, port, payload, reply_timeout, timeout),
                          (timeout or 10.0) + (reply_timeout or 0.0) + 10.0)

    def host_info(self) -> pb.HostInfo:
        return self._call("GetHostInfo", pb.GetHostInfoRequest())

    def create_group(self, name: str, *, parent: str = "", strategy: str = "one-for-one",
                     max_restarts: Optional[int] = None, within: Optional[float] = None,
                     backoff_initial: Optional[float] = None) -> pb.Group:
        return self._call("CreateGroup", _Requests.create_group(name, parent, strategy, max_restarts, within,
                                                                backoff_initial))

    def delete_group(self, name: str) -> None:
        self._call("DeleteGroup", pb.DeleteGroupRequest(name=name))

    def restart(self, name: str, *, handoff: bool = False, handoff_timeout: Optional[float] = None,
                grace: Optional[float] = None) -> pb.Proc:
        """The next incarnation, once ready; FailedPrecondition if a handoff was refused."""
        return self._call("RestartProc", _Requests.restart(name, handoff, handoff_timeout, grace), 90.0)

    def signal(self, signal: str, data: Union[bytes, str] = b"", *, group: str = "") -> pb.BroadcastSignalResponse:
        return self._call("BroadcastSignal", _Requests.signal(signal, data, group), self.timeout + 10.0)

    def tree(self) -> pb.Tree:
        return self._call("GetTree", pb.GetTreeRequest())


class AsyncHostClient:
    """``HostClient`` on ``grpc.aio``: the same methods as coroutines; ``watch`` and
    ``logs`` are async iterators."""

    def __init__(self, target: Optional[str] = None, *, timeout: float = 10.0) -> None:
        self.target = target or default_target()
        self.timeout = timeout
        self._channel = grpc.aio.insecure_channel(grpc_target(self.target), options=_OPTIONS)
        self._stub = pb_grpc.HostServiceStub(self._channel)

    async def __aenter__(self) -> "AsyncHostClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        try:
            return await getattr(self._stub, method)(request, timeout=timeout if timeout is not None else self.timeout)
        except grpc.aio.AioRpcError as e:
            raise from_rpc_error(e) from None

    def _stream(self, method: str, request: Any) -> AsyncIterator[Any]:
        return self._iterate(getattr(self._stub, method)(request))

    @staticmethod
    async def _iterate(call: Any) -> AsyncIterator[Any]:
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise from_rpc_error(e) from None
        finally:
            call.cancel()

    async def spawn(self, name: str, program: str, args: Sequence[str] = (), *, timeout: float = 60.0,
                    **spec: Any) -> pb.Proc:
        return (await self._call("SpawnProc", spawn_request(name, program, args, **spec), timeout)).proc

    async def spawn_many(self, requests: Iterable[pb.SpawnProcRequest], *, max_in_flight: int = 0,
                         ranks: Optional[pb.RankEnv] = None, timeout: float = 120.0) -> pb.SpawnProcsResponse:
        return await self._call("SpawnProcs", pb.SpawnProcsRequest(procs=list(requests), max_in_flight=max_in_flight,
                                                                   ranks=ranks), timeout)

    async def get(self, name: str) -> pb.Proc:
        return await self._call("GetProc", pb.GetProcRequest(name=name))

    async def list(self, states: Iterable[int] = (), labels: Optional[Mapping[str, str]] = None,
                   live_only: bool = False) -> List[pb.Proc]:
        return list((await self._call("ListProcs", _Requests.list(states, labels, live_only))).procs)

    async def wait(self, name: str, timeout: Optional[float] = None, *, for_good: bool = False) -> pb.Proc:
        rpc_timeout = None if timeout is None else timeout + 10.0
        return await self._call("WaitProc", _Requests.wait(name, timeout, for_good), rpc_timeout)

    async def terminate(self, name: str, grace: Optional[float] = None, reason: str = "") -> pb.Proc:
        return await self._call("TerminateProc", _Requests.terminate(name, grace, reason), (grace or 10.0) + 30.0)

    async def kill(self, name: str) -> pb.Proc:
        return await self._call("KillProc", pb.KillProcRequest(name=name), self.timeout + 20.0)

    async def terminate_all(self, grace: Optional[float] = None, max_in_flight: int = 0,
                            reason: str = "") -> pb.TerminateAllResponse:
        return await self._call("TerminateAll", _Requests.terminate_all(grace, max_in_flight, reason),
                                (grace or 10.0) + 60.0)

    def watch(self, names: Sequence[str] = (), *, group: str = "", snapshot: bool = False,
              lease_owner: str = "") -> AsyncIterator[pb.ProcEvent]:
        return self._stream("WatchProcs", _Requests.watch(names, group, snapshot, lease_owner))

    async def renew_lease(self, owner: str) -> pb.RenewLeaseResponse:
        return await self._call("RenewLease", pb.RenewLeaseRequest(owner=owner))

    @contextlib.asynccontextmanager
    async def hold_lease(self, owner: str) -> AsyncIterator[None]:
        """``HostClient.hold_lease`` as an async context manager."""
        async def drain() -> None:
            async for _ in self.watch(lease_owner=owner):
                pass
        task = asyncio.ensure_future(drain())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def logs(self, name: str, *, stderr: bool = False, tail_bytes: int = 0,
                   follow: bool = False) -> AsyncIterator[bytes]:
        async for chunk in self._stream("StreamLogs", pb.StreamLogsRequest(name=name, stderr=stderr,
                                                                           tail_bytes=tail_bytes, follow=follow)):
            yield chunk.data

    async def send(self, name: str, port: str, payload: Union[bytes, str] = b"", *,
                   reply_timeout: Optional[float] = None, timeout: Optional[float] = None) -> pb.SendMessageResponse:
        return await self._call("SendMessage", _Requests.send(name, port, payload, reply_timeout, timeout),
                                (timeout or 10.0) + (reply_timeout or 0.0) + 10.0)

    async def host_info(self) -> pb.HostInfo:
        return await self._call("GetHostInfo", pb.GetHostInfoRequest())

    async def create_group(self, name: str, *, parent: str = "", strategy: str = "one-for-one",
                           max_restarts: Optional[int] = None, within: Optional[float] = None,
                           backoff_initial: Optional[float] = None) -> pb.Group:
        return await self._call("CreateGroup", _Requests.create_group(name, parent, strategy, max_restarts, within,
                                                                      backoff_initial))

    async def delete_group(self, name: str) -> None:
        await self._call("DeleteGroup", pb.DeleteGroupRequest(name=name))

    async def restart(self, name: str, *, handoff: bool = False, handoff_timeout: Optional[float] = None,
                      grace: Optional[float] = None) -> pb.Proc:
        return await self._call("RestartProc", _Requests.restart(name, handoff, handoff_timeout, grace), 90.0)

    async def signal(self, signal: str, data: Union[bytes, str] = b"", *,
                     group: str = "") -> pb.BroadcastSignalResponse:
        return await self._call("BroadcastSignal", _Requests.signal(signal, data, group), self.timeout + 10.0)

    async def tree(self) -> pb.Tree:
        return await self._call("GetTree", pb.GetTreeRequest())
