"""A proc with state: "incr" adds one and answers the count ("count.reply"),
saving it with the host after each change; "get" answers it; "crash" exits 3 at
once (a failure under on-failure); the state provider hands the count over.
The count starts from the state handed over, if any."""

import os

import hostd.proc


def setup(proc: hostd.proc.Proc) -> None:
    count = int(proc.initial_state or b"0")

    async def incr(m: hostd.Message) -> None:
        nonlocal count
        count += 1
        await proc.save_state(str(count).encode())
        await proc.flush(10)
        await proc.reply(m, "count.reply", str(count))

    async def get(m: hostd.Message) -> None:
        await proc.reply(m, "count.reply", str(count))

    proc.bind("incr", incr)
    proc.bind("get", get)
    proc.bind("crash", lambda m: os._exit(3))
    proc.set_state_provider(lambda: str(count).encode())


hostd.proc.run(setup)
