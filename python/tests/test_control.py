"""The control client against the real hostd: every call, and the error each
failure raises (the gRPC code and hostd's message)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time

import grpc
import pytest

import hostd
from hostd.control import AsyncHostClient, HostClient, pb, spawn_request

from conftest import HANG_GUARD, HOSTCTL_BIN, Hostd, TEST_PROC, run


def test_host_info_names_the_addresses_hostd_serves(host: Hostd) -> None:
    info = host.api.host_info()
    assert info.frontend_addr == host.frontend
    assert info.backend_addr == host.backend
    assert info.pid == host.proc.pid
    assert info.manager == "process"


def test_spawn_get_list_and_terminate_a_proc(host: Hostd) -> None:
    proc = host.spawn_cc("a", "--echo", labels={"role": "echo"})
    assert proc.status.state == pb.PROC_STATE_READY
    assert proc.proc_id == f"{host.frontend},a"
    assert host.api.get("a").status.pid == proc.status.pid
    host.spawn_cc("b")
    assert [p.name for p in host.api.list(labels={"role": "echo"})] == ["a"]
    assert sorted(p.name for p in host.api.list(live_only=True)) == ["a", "b"]
    ended = host.api.terminate("a", grace=5, reason="test")
    assert ended.status.state == pb.PROC_STATE_STOPPED
    assert [p.name for p in host.api.list(states=[pb.PROC_STATE_READY])] == ["b"]


def test_spawning_a_taken_name_raises_name_taken(host: Hostd) -> None:
    host.spawn_cc("a")
    with pytest.raises(hostd.NameTaken) as e:
        host.spawn_cc("a")
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS
    assert '"a"' in e.value.message or "a" in e.value.message


def test_a_bad_name_raises_invalid_argument(host: Hostd) -> None:
    with pytest.raises(hostd.InvalidArgument) as e:
        host.spawn_cc("bad name!")
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.message


@pytest.mark.parametrize("call", ["get", "wait", "terminate", "kill", "restart", "logs", "send"])
def test_calls_on_an_unknown_proc_raise_proc_not_found(host: Hostd, call: str) -> None:
    api = host.api
    calls = {
        "get": lambda: api.get("ghost"),
        "wait": lambda: api.wait("ghost", 1),
        "terminate": lambda: api.terminate("ghost", grace=1),
        "kill": lambda: api.kill("ghost"),
        "restart": lambda: api.restart("ghost"),
        "logs": lambda: list(api.logs("ghost")),
        "send": lambda: api.send("ghost", "echo", b"x", timeout=1),
    }
    with pytest.raises(hostd.ProcNotFound) as e:
        calls[call]()
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    assert "ghost" in e.value.message


def test_wait_past_its_timeout_raises_deadline_exceeded_and_returns_the_end_otherwise(host: Hostd) -> None:
    host.spawn_cc("a")
    with pytest.raises(hostd.DeadlineExceeded):
        host.api.wait("a", 0.2)
    host.spawn_cc("b", "--exit-after-ms=100", "--exit-code=7")
    ended = host.api.wait("b", HANG_GUARD)
    assert ended.status.state == pb.PROC_STATE_STOPPED and ended.status.exit_code == 7


def test_kill_ends_a_proc_by_sigkill(host: Hostd) -> None:
    host.spawn_cc("a")
    killed = host.api.kill("a")
    assert killed.status.state == pb.PROC_STATE_KILLED
    assert killed.status.signal == 9


def test_terminate_all_ends_every_proc(host: Hostd) -> None:
    for n in ("a", "b", "c"):
        host.spawn_cc(n)
    summary = host.api.terminate_all(grace=5, reason="test")
    assert (summary.attempted, summary.ok, summary.failed) == (3, 3, 0)
    assert host.api.list(live_only=True) == []


def test_spawn_many_reports_each_result(host: Hostd) -> None:
    res = host.api.spawn_many([spawn_request("a", TEST_PROC), spawn_request("b", TEST_PROC),
                               spawn_request("c", "/nonexistent/program")])
    assert (res.ok, res.failed) == (2, 1)
    failed = [r for r in res.results if r.code != 0]
    assert [r.name for r in failed] == ["c"] and failed[0].error


def test_watch_yields_typed_events_of_a_proc_life(host: Hostd) -> None:
    host.spawn_cc("a")
    events = host.api.watch(["a"], snapshot=True)
    first = next(events)
    assert (first.kind, first.name, first.status.state) == (pb.ProcEvent.KIND_SNAPSHOT, "a", pb.PROC_STATE_READY)
    host.api.terminate("a", grace=5)
    kinds = []
    for ev in events:
        assert isinstance(ev, pb.ProcEvent) and ev.name == "a"
        kinds.append(ev.kind)
        if ev.status.state == pb.PROC_STATE_STOPPED:
            break
    events.close()
    assert kinds and set(kinds) <= {pb.ProcEvent.KIND_TRANSITION, pb.ProcEvent.KIND_TERMINATED}


def test_logs_returns_what_the_proc_wrote_and_follow_ends_with_it(host: Hostd) -> None:
    host.spawn_cc("a", "--stderr=hello from a", "--exit-after-ms=200")
    followed = b"".join(host.api.logs("a", stderr=True, follow=True))
    assert b"hello from a" in followed
    assert b"hello from a" in b"".join(host.api.logs("a", stderr=True))


def test_send_delivers_to_a_port_and_returns_the_reply(host: Hostd) -> None:
    host.spawn_cc("a", "--echo")
    r = host.api.send("a", "echo", b"ping me", reply_timeout=HANG_GUARD)
    assert (r.replied, r.reply_port, r.reply_payload) == (True, "echo.reply", b"ping me")


def test_groups_restart_signal_and_tree(host: Hostd) -> None:
    g = host.api.create_group("workers", strategy="one-for-all", max_restarts=5, within=10)
    assert g.name == "workers" and g.strategy == pb.STRATEGY_ONE_FOR_ALL
    with pytest.raises(hostd.NameTaken):
        host.api.create_group("workers")
    host.spawn_cc("w0", restart="on-failure", group="workers")
    with pytest.raises(hostd.FailedPrecondition) as e:
        host.api.delete_group("workers")
    assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
    restarted = host.api.restart("w0")
    assert restarted.incarnation == 2
    sig = host.api.signal("reload", b"v2", group="workers")
    assert sig.targeted == 1 and sig.failed == 0
    tree = host.api.tree()
    assert [r.group.name for r in tree.roots] == ["workers"]
    assert [c.proc.name for c in tree.roots[0].children] == ["w0"]
    host.api.terminate_all(grace=5)  # frees the name of the ended proc, and so its place in the group
    host.api.delete_group("workers")
    with pytest.raises(hostd.ProcNotFound):
        host.api.delete_group("workers")


def test_a_refused_handoff_raises_failed_precondition_and_the_proc_keeps_running(host: Hostd) -> None:
    host.spawn_cc("a", "--fail-handoff")
    with pytest.raises(hostd.FailedPrecondition) as e:
        host.api.restart("a", handoff=True, handoff_timeout=HANG_GUARD)
    assert "handoff refused" in e.value.message
    assert host.api.get("a").status.state == pb.PROC_STATE_READY


def test_a_hostd_that_is_not_there_raises_unavailable(tmp_path: "os.PathLike[str]") -> None:
    with HostClient(f"unix:{tmp_path}/none.sock", timeout=2) as api:
        with pytest.raises(hostd.Unavailable) as e:
            api.host_info()
    assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_the_default_target_follows_hostd_grpc_then_the_runtime_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    from hostd.control import default_target
    monkeypatch.setenv("HOSTD_GRPC", "unix:/x/h.sock")
    assert default_target() == "unix:/x/h.sock"
    monkeypatch.delenv("HOSTD_GRPC")
    monkeypatch.setenv("HOSTD_RUNTIME_DIR", "/r")
    assert default_target() == "unix:/r/hostd.sock"
    monkeypatch.delenv("HOSTD_RUNTIME_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/5")
    assert default_target() == "unix:/run/user/5/hostd/hostd.sock"


def test_hostd_grpc_reaches_the_same_hostd_as_hostctl(host: Hostd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTD_GRPC", host.grpc)
    with HostClient() as api:
        assert api.host_info().pid == host.proc.pid


def test_the_asyncio_client_makes_the_same_calls(host: Hostd) -> None:
    async def body() -> None:
        async with AsyncHostClient(host.grpc) as api:
            watch = api.watch(["a"])
            first = asyncio.ensure_future(watch.__anext__())
            proc = await api.spawn("a", TEST_PROC, ["--echo", "--stderr=async hello"])
            assert proc.status.state == pb.PROC_STATE_READY
            # The watch may start after the spawn began: any of the spawn's events may come first.
            ev = await first
            assert ev.name == "a"
            assert ev.kind in (pb.ProcEvent.KIND_SPAWNED, pb.ProcEvent.KIND_TRANSITION)
            await watch.aclose()
            assert (await api.get("a")).name == "a"
            assert [p.name for p in await api.list()] == ["a"]
            r = await api.send("a", "echo", b"x", reply_timeout=HANG_GUARD)
            assert r.reply_payload == b"x"
            assert b"async hello" in b"".join([c async for c in api.logs("a", stderr=True)])
            with pytest.raises(hostd.NameTaken):
                await api.spawn("a", TEST_PROC)
            with pytest.raises(hostd.ProcNotFound):
                await api.get("ghost")
            with pytest.raises(hostd.DeadlineExceeded):
                await api.wait("a", 0.2)
            assert (await api.host_info()).frontend_addr == host.frontend
            assert len((await api.tree()).roots) == 1
            assert (await api.signal("hello")).targeted == 1
            assert (await api.restart("a")).incarnation == 2
            g = await api.create_group("g")
            await api.delete_group(g.name)
            assert (await api.terminate("a", grace=5)).status.state == pb.PROC_STATE_STOPPED
            assert (await api.spawn_many([spawn_request("b", TEST_PROC)])).ok == 1
            assert (await api.kill("b")).status.state == pb.PROC_STATE_KILLED
            assert (await api.wait("a", HANG_GUARD)).status.state == pb.PROC_STATE_STOPPED
            await api.spawn("c", "/bin/sleep", ["600"], readiness="exec", lease=("py-async", 60))
            assert (await api.renew_lease("py-async")).procs == 1
            async with api.hold_lease("py-async"):
                assert (await api.get("c")).lease.owner == "py-async"
            assert (await api.terminate_all(grace=5)).failed == 0
    run(body())


def test_a_lease_keeps_its_proc_while_renewed_or_held_and_ends_it_after(host: Hostd) -> None:
    proc = host.api.spawn("leased", "/bin/sleep", ["600"], readiness="exec", restart="always",
                          lease=("py-client", 1.0))
    assert proc.lease.owner == "py-client" and proc.lease.ttl.seconds == 1
    renewed = None
    end = time.monotonic() + 3  # three TTLs of renewals
    while time.monotonic() < end:
        renewed = host.api.renew_lease("py-client")
        time.sleep(0.1)
    assert renewed is not None and renewed.procs == 1
    assert host.api.get("leased").status.state == pb.PROC_STATE_READY
    with host.api.hold_lease("py-client"):
        time.sleep(3)  # three TTLs held by the stream alone
        assert host.api.get("leased").status.state == pb.PROC_STATE_READY
    ended = host.api.wait("leased", HANG_GUARD, for_good=True)
    assert ended.status.reason == "lease expired", ended.status.display
    assert ended.lease.expired and ended.incarnation == 1
    with pytest.raises(hostd.ProcNotFound):
        host.api.renew_lease("py-client")
    with pytest.raises(hostd.InvalidArgument) as e:
        host.api.spawn("x", "/bin/true", readiness="exec", lease=("py-client", 0.5))
    assert "lease.ttl" in e.value.message


def test_hostctl_sees_what_the_python_client_spawned(host: Hostd) -> None:
    host.spawn_cc("a")
    out = subprocess.run([HOSTCTL_BIN, "--grpc", host.grpc, "list", "--json"],
                         capture_output=True, text=True, timeout=HANG_GUARD)
    assert '"a"' in out.stdout


def test_logs_of_an_in_process_proc_raise_unimplemented() -> None:
    local = Hostd(["--manager", "local"])
    try:
        local.api.spawn("a", "in-process")
        with pytest.raises(hostd.Unimplemented) as e:
            list(local.api.logs("a"))
        assert e.value.code == grpc.StatusCode.UNIMPLEMENTED and "no log files" in e.value.message
    finally:
        local.stop()


def test_each_grpc_code_hostd_documents_maps_to_its_exception() -> None:
    from hostd.errors import from_code
    expected = {grpc.StatusCode.INVALID_ARGUMENT: hostd.InvalidArgument, grpc.StatusCode.NOT_FOUND: hostd.ProcNotFound,
                grpc.StatusCode.ALREADY_EXISTS: hostd.NameTaken,
                grpc.StatusCode.DEADLINE_EXCEEDED: hostd.DeadlineExceeded,
                grpc.StatusCode.FAILED_PRECONDITION: hostd.FailedPrecondition,
                grpc.StatusCode.RESOURCE_EXHAUSTED: hostd.ResourceExhausted,
                grpc.StatusCode.UNAVAILABLE: hostd.Unavailable, grpc.StatusCode.UNIMPLEMENTED: hostd.Unimplemented,
                grpc.StatusCode.INTERNAL: hostd.HostdError}
    for code, cls in expected.items():
        e = from_code(code, "why")
        assert type(e) is cls and e.code == code and e.message == "why" and isinstance(e, hostd.HostdError)
