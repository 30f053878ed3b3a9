"""A Python proc that answers every message on port "echo" with the same bytes on
"echo.reply", as hostd_test_proc --echo does. Spawn it (handshake readiness, the
default) with an interpreter that has the hostd package, by absolute paths (hostd
runs procs in its state directory, with an explicit environment):

    hostctl spawn echo-py $PWD/.venv/bin/python -- $PWD/python/examples/echo_proc.py
"""

import hostd.proc


def setup(proc: hostd.proc.Proc) -> None:
    async def echo(m: hostd.Message) -> None:
        if not m.returned:
            await proc.reply(m, "echo.reply", m.payload)

    proc.bind("echo", echo)


if __name__ == "__main__":
    hostd.proc.run(setup)
