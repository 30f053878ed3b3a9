"""A Python proc that answers every message on port "echo" with the same bytes on
"echo.reply", as hostd_test_proc --echo does. Spawn it with handshake readiness:

    hostctl spawn echo-py /usr/bin/python3 -- python/examples/echo_proc.py
"""

import hostd.proc


def setup(proc: hostd.proc.Proc) -> None:
    async def echo(m: hostd.Message) -> None:
        if not m.returned:
            await proc.reply(m, "echo.reply", m.payload)

    proc.bind("echo", echo)


if __name__ == "__main__":
    hostd.proc.run(setup)
