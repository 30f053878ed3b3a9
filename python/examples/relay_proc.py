"""A Python proc that talks to another proc through the host: each message on
port "ask" is forwarded to TARGET's port "echo" (a C++ hostd_test_proc --echo, or
echo_proc.py), and the answer comes back to the asker on "ask.reply".

    hostctl spawn echo-cc build/default/testing/hostd_test_proc -- --echo
    hostctl spawn relay $PWD/.venv/bin/python -- $PWD/python/examples/relay_proc.py echo-cc
    hostctl send relay ask "hi" --reply-timeout 5         # prints: hi
"""

import sys
from typing import List

import hostd.proc


def setup(proc: hostd.proc.Proc) -> None:
    target = sys.argv[1]
    waiting: List[hostd.Message] = []  # askers, in order: the target answers in order

    async def ask(m: hostd.Message) -> None:
        if m.returned:
            return
        waiting.append(m)
        await proc.send(target, "echo", m.payload)

    async def answer(m: hostd.Message) -> None:
        if waiting:
            await proc.reply(waiting.pop(0), "ask.reply", m.payload)

    async def returned(m: hostd.Message) -> None:
        # Our message to the target came back (e.g. it exited): tell the asker why.
        if m.returned and waiting:
            await proc.reply(waiting.pop(0), "ask.reply", f"error: {m.reason.name.lower()}: {m.note}")

    proc.bind("ask", ask)
    proc.bind("echo.reply", answer)
    proc.bind("echo", returned)


if __name__ == "__main__":
    hostd.proc.run(setup)
