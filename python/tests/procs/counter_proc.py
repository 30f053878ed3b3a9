"""A proc with state: "incr" adds one and answers the count ("count.reply"),
saving it with the host after each change; "get" answers it; "crash TOKEN" exits
3 at once (a failure under on-failure); the state provider hands the count over.
The count starts from the state handed over, if any.

A message its incarnation did not acknowledge goes to the next incarnation again
(at-least-once across a crash), so the crash is made idempotent: the token is
saved before the exit, and a crash message whose token is in the state is ignored.
"""

import os

import hostd.proc


def setup(proc: hostd.proc.Proc) -> None:
    count_text, _, crashed = (proc.initial_state or b"0").decode().partition(" ")
    count = int(count_text)

    async def incr(m: hostd.Message) -> None:
        nonlocal count
        count += 1
        await proc.save_state(str(count).encode())
        await proc.flush(10)
        await proc.reply(m, "count.reply", str(count))

    async def get(m: hostd.Message) -> None:
        await proc.reply(m, "count.reply", str(count))

    async def crash(m: hostd.Message) -> None:
        token = m.payload.decode()
        if token == crashed:
            return
        await proc.save_state(f"{count} {token}".encode())
        await proc.flush(10)
        os._exit(3)

    proc.bind("incr", incr)
    proc.bind("get", get)
    proc.bind("crash", crash)
    proc.set_state_provider(lambda: str(count).encode())


hostd.proc.run(setup)
