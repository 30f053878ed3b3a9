"""A proc whose main loop heartbeats every 20 ms: "beats" answers how many beats
it made ("beats.reply"); "stall" stops the beats while the proc stays alive."""

import asyncio

import hostd.proc


async def main(proc: hostd.proc.Proc) -> None:
    beats = 0
    stalled = asyncio.Event()

    async def count(m: hostd.Message) -> None:
        await proc.reply(m, "beats.reply", str(beats))

    proc.bind("beats", count)
    proc.bind("stall", lambda m: stalled.set())
    while not proc.stop_requested:
        if not stalled.is_set():
            proc.heartbeat()
            beats += 1
        await asyncio.sleep(0.02)


hostd.proc.run(main=main)
