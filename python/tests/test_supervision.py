"""A Python proc under supervision: restarted after a crash with the state it
saved, restarted on request with the state it handed over, and killed when it
stops heartbeating."""

from __future__ import annotations

import time

import hostd
from hostd.control import liveness_check, pb, restart_policy

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


def test_a_python_proc_that_stops_heartbeating_is_killed_for_it(host: Hostd) -> None:
    check = liveness_check("heartbeat", period=0.2, failure_threshold=10)
    host.spawn_py("beater", "heartbeat_proc.py", liveness=check)

    def beats() -> int:
        r = host.api.send("beater", "beats", b"", reply_timeout=HANG_GUARD, timeout=HANG_GUARD)
        assert r.replied and r.reply_port == "beats.reply"
        return int(r.reply_payload)

    # Past many periods (100 beats of 20 ms: ten periods of 200 ms) it still runs.
    guard = time.monotonic() + HANG_GUARD
    while beats() < 100:
        assert time.monotonic() < guard, "the proc's main loop did not beat 100 times"
        time.sleep(0.05)
    proc = host.api.get("beater")
    assert proc.status.state == pb.PROC_STATE_READY and proc.incarnation == 1
    assert proc.liveness.HasField("heartbeat") and proc.liveness.failure_threshold == 10
    host.api.send("beater", "stall", b"", timeout=HANG_GUARD)
    ended = host.api.wait("beater", timeout=HANG_GUARD)
    assert ended.status.state == pb.PROC_STATE_KILLED
    assert ended.status.reason == "liveness failed: no heartbeat for 10 period(s) of 200ms"
