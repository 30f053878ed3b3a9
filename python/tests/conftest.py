"""Fixtures: the real hostd in a temp dir, and the binaries built beside it.

The binaries come from the environment (HOSTD_BIN, HOSTCTL_BIN, HOSTD_TEST_PROC:
the CTest test ``python_test`` sets them) or from build/default. Each test gets its
own hostd; its teardown terminates every proc and ends hostd, so no process is left.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from typing import Dict, Iterator, List, Optional

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, "build", "default")
PROCS = os.path.join(os.path.dirname(__file__), "procs")
EXAMPLES = os.path.join(ROOT, "python", "examples")
HANG_GUARD = 30.0  # seconds: only against hangs, never a timing assertion


def _binary(env: str, rel: str) -> str:
    path = os.environ.get(env) or os.path.join(BUILD, rel)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not built (set {env} or build the default preset)")
    return path


HOSTD_BIN = _binary("HOSTD_BIN", "daemon/hostd")
HOSTCTL_BIN = _binary("HOSTCTL_BIN", "hostctl/hostctl")
TEST_PROC = _binary("HOSTD_TEST_PROC", "testing/hostd_test_proc")

import hostd  # noqa: E402  (after the path checks: the package comes from PYTHONPATH)
from hostd.control import HostClient  # noqa: E402


def python_path() -> str:
    """Where procs spawned by hostd find the hostd package."""
    return os.path.dirname(os.path.dirname(os.path.abspath(hostd.__file__)))


class Hostd:
    """hostd on sockets in a temp dir, awaited through $NOTIFY_SOCKET."""

    def __init__(self, extra: Optional[List[str]] = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="hpy", dir="/tmp")
        self.grpc = f"unix:{self.dir}/hostd.sock"
        self.frontend = f"unix:{self.dir}/fe.sock"
        self.backend = f"unix:{self.dir}/be.sock"
        self.state_dir = os.path.join(self.dir, "state")
        notify_path = os.path.join(self.dir, "notify")
        self._notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.bind(notify_path)
        env = dict(os.environ, NOTIFY_SOCKET=notify_path)
        self.proc = subprocess.Popen(
            [HOSTD_BIN, "--grpc", self.grpc, "--frontend", self.frontend, "--backend", self.backend,
             "--state-dir", self.state_dir, "--shutdown-grace", "2", "--log-level", "warn", *(extra or [])],
            env=env)
        self._notify.settimeout(HANG_GUARD)
        got = self._notify.recv(512)
        assert b"READY=1" in got, got
        self.api = HostClient(self.grpc)

    def spawn_py(self, name: str, script: str, args: List[str] = (), **spec: object) -> "hostd.control.pb.Proc":
        """Spawns a Python proc (a script under tests/procs or python/examples)."""
        path = script if os.path.isabs(script) else os.path.join(PROCS, script)
        env: Dict[str, str] = dict(spec.pop("env", {}) or {})  # type: ignore[arg-type]
        env.setdefault("PYTHONPATH", python_path())
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        return self.api.spawn(name, sys.executable, [path, *args], env=env, ready_timeout=HANG_GUARD, **spec)

    def spawn_cc(self, name: str, *flags: str, **spec: object) -> "hostd.control.pb.Proc":
        return self.api.spawn(name, TEST_PROC, list(flags), ready_timeout=HANG_GUARD, **spec)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.api.terminate_all(grace=2)
            except hostd.HostdError:
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(HANG_GUARD)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.api.close()
        self._notify.close()
        shutil.rmtree(self.dir, ignore_errors=True)


    def reset(self) -> None:
        """Back to a host with no procs and no groups, for the next test."""
        assert self.proc.poll() is None, "hostd exited during the test"
        self.api.terminate_all(grace=5)
        groups = [n.group.name for n in self.api.tree().roots if n.HasField("group")]
        while groups:  # children before their parents
            for g in list(groups):
                try:
                    self.api.delete_group(g)
                    groups.remove(g)
                except hostd.FailedPrecondition:
                    pass
            groups += [c.group.name for n in self.api.tree().roots for c in n.children if c.HasField("group")]


@pytest.fixture(scope="module")
def module_host() -> Iterator[Hostd]:
    h = Hostd()
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def host(module_host: Hostd) -> Iterator[Hostd]:
    """One hostd per test module (it takes a second to shut down), emptied after each test."""
    yield module_host
    module_host.reset()


def run(coro: "asyncio.Future[object]") -> object:
    """Runs a test coroutine with the hang guard."""
    async def guarded() -> object:
        return await asyncio.wait_for(coro, HANG_GUARD * 2)
    return asyncio.run(guarded())


class Proxy:
    """A byte-for-byte unix-socket proxy in front of an address; ``cut()`` drops every
    connection at once (no CLOSE frame), as a lost network would."""

    def __init__(self, target: str, path: str) -> None:
        self.target = target
        self.addr = f"unix:{path}"
        self._path = path
        self._pairs: List[asyncio.StreamWriter] = []
        self.connections = 0
        self._server: Optional[asyncio.AbstractServer] = None

    async def start(self) -> "Proxy":
        self._server = await asyncio.start_unix_server(self._accept, path=self._path)
        return self

    async def _accept(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.connections += 1
        ur, uw = await asyncio.open_unix_connection(self.target[len("unix:"):])
        self._pairs += [w, uw]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(r, uw), pump(ur, w))

    def cut(self) -> None:
        for w in self._pairs:
            w.transport.abort()
        self._pairs.clear()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
