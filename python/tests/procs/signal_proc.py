"""Records the signals it receives; "signals" answers them, one "name=data" a line."""

import hostd.proc


def setup(proc: hostd.proc.Proc) -> None:
    seen = []
    proc.on_signal(lambda name, data: seen.append(f"{name}={data.decode()}"))

    async def signals(m: hostd.Message) -> None:
        await proc.reply(m, "signals.reply", "\n".join(seen))

    proc.bind("signals", signals)


hostd.proc.run(setup)
