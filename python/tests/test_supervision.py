"""A Python proc under supervision: restarted after a crash with the state it
saved, and restarted on request with the state it handed over."""

from __future__ import annotations

import hostd
from hostd.control import pb, restart_policy

from conftest import HANG_GUARD, Hostd, run


def count(host: Hostd, port: str) -> int:
    r = host.api.send("counter", port, b"", reply_timeout=HANG_GUARD, timeout=HANG_GUARD)
    assert r.replied and r.reply_port == "count.reply"
    return int(r.reply_payload)


def test_a_crashed_python_proc_restarts_on_failure_with_its_saved_state(host: Hostd) -> None:
    host.spawn_py("counter", "counter_proc.py", restart=restart_policy("on-failure", backoff_initial=0.01))
    assert [count(host, "incr") for _ in range(3)] == [1, 2, 3]
    assert host.api.get("counter").saved_state_bytes == len(b"3")
    events = host.api.watch(["counter"])
    async def crash() -> None:
        async with await hostd.Client.connect(host.frontend) as c:
            await c.send("counter", "crash", "first")  # exits 3 at once: a failure
            await c.sender().flush(HANG_GUARD)  # acknowledged by the host (by the proc, or taken for the next)
    run(crash())
    kinds = []
    for ev in events:
        kinds.append(ev.kind)
        if ev.kind == pb.ProcEvent.KIND_RESTARTED:
            break
    events.close()
    assert pb.ProcEvent.KIND_RESTARTING in kinds
    proc = host.api.get("counter")
    assert proc.incarnation == 2 and proc.status.state == pb.PROC_STATE_READY
    assert count(host, "get") == 3  # the new incarnation started from the saved state
    assert count(host, "incr") == 4


def test_a_python_proc_hands_its_state_to_its_next_incarnation(host: Hostd) -> None:
    host.spawn_py("counter", "counter_proc.py", restart="on-failure")
    first_pid = host.api.get("counter").status.pid
    assert [count(host, "incr") for _ in range(5)] == [1, 2, 3, 4, 5]
    proc = host.api.restart("counter", handoff=True, handoff_timeout=HANG_GUARD)
    assert proc.incarnation == 2 and proc.status.pid != first_pid
    assert count(host, "get") == 5
