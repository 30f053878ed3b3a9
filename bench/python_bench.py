#!/usr/bin/python3
"""python_bench: scenario 10 of bench/README.md, the Python package against the C++
code in the same run, through a real hostd (unix sockets).

  10. A Python client -> host -> Python echo proc, next to the C++ client
      (bench/echo_client) -> host -> the same Python echo proc: throughput of 64 B
      messages posted back to back (each echoed back to the client), and round trip
      one at a time (p50). Context rows: the C++ client to a C++ echo proc
      (hostd_test_proc --echo) against the Python echo proc, the proc side alone.

  PYTHONPATH=build/default/python/site bench/python_bench.py [--quick]

Prints table rows as the other benchmarks do (bench/run.sh gathers them); the ratio
is Python / C++.
"""

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List

import hostd
from hostd.control import HostClient

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.path.join(ROOT, "build", "default")
HOSTD_BIN = os.path.join(BUILD, "daemon", "hostd")
ECHO_CLIENT = os.path.join(BUILD, "bench", "echo_client")
TEST_PROC = os.path.join(BUILD, "testing", "hostd_test_proc")
ECHO_PY = os.path.join(ROOT, "python", "examples", "echo_proc.py")
GUARD = 120.0


def si(v: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.2f}{suffix}" if suffix != "k" else f"{v / div:.1f}k"
    return f"{v:.1f}"


def spread(samples: List[float], unit: str) -> str:
    return f"{si(statistics.median(samples))} {unit} ({si(min(samples))}..{si(max(samples))})"


def row(scenario: str, baseline: str, value: str, ratio: float, goal: str = "-", met: bool = False) -> None:
    print(f"| {scenario} | {baseline} | {value} | {ratio:.2f}x | {goal} | "
          f"{'-' if goal == '-' else 'yes' if met else '**no**'} |", flush=True)


def quantile(v: List[float], q: float) -> float:
    s = sorted(v)
    return s[min(int(q * (len(s) - 1) + 0.5), len(s) - 1)]


class Host:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="hpyb", dir="/tmp")
        self.frontend = f"unix:{self.dir}/fe.sock"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(f"{self.dir}/notify")
        notify.settimeout(GUARD)
        self.proc = subprocess.Popen(
            [HOSTD_BIN, "--grpc", f"unix:{self.dir}/hostd.sock", "--frontend", self.frontend, "--backend",
             f"unix:{self.dir}/be.sock", "--state-dir", f"{self.dir}/state", "--log-level", "warn"],
            env=dict(os.environ, NOTIFY_SOCKET=f"{self.dir}/notify"))
        notify.recv(512)
        notify.close()
        self.api = HostClient(f"unix:{self.dir}/hostd.sock")
        site = os.path.dirname(os.path.dirname(os.path.abspath(hostd.__file__)))
        self.api.spawn("echo-py", sys.executable, [ECHO_PY], env={"PYTHONPATH": site}, ready_timeout=GUARD)
        self.api.spawn("echo-cc", TEST_PROC, ["--echo"], ready_timeout=GUARD)

    def close(self) -> None:
        self.api.terminate_all(grace=5)
        self.api.close()
        self.proc.terminate()
        self.proc.wait(GUARD)
        shutil.rmtree(self.dir, ignore_errors=True)


def cc_client(host: Host, proc: str, mode: str, count: int) -> List[float]:
    out = subprocess.run([ECHO_CLIENT, host.frontend, proc, mode, str(count), "64"], capture_output=True,
                         text=True, timeout=GUARD, check=True)
    return [float(x) for x in out.stdout.split()]


async def py_throughput(host: Host, proc: str, count: int) -> float:
    async with await hostd.Client.connect(host.frontend, inbox_limit=4096) as c:
        await c.request(proc, "echo", b"x" * 64, timeout=GUARD)  # the links are up
        payload = b"x" * 64

        async def replies() -> None:
            for _ in range(count):
                await c.receive(GUARD)

        start = time.perf_counter()
        taking = asyncio.ensure_future(replies())
        sender = c.sender()
        dest, src = c.proc_id(proc), c.addr
        for _ in range(count):
            await sender.send(hostd.Message(dest, "echo", src, payload))
        await asyncio.wait_for(taking, GUARD)
        return count / (time.perf_counter() - start)


async def py_rtt(host: Host, proc: str, count: int) -> List[float]:
    async with await hostd.Client.connect(host.frontend) as c:
        await c.request(proc, "echo", b"x" * 64, timeout=GUARD)
        out = []
        sender = c.sender()
        dest, src = c.proc_id(proc), c.addr
        for _ in range(count):
            start = time.perf_counter()
            await sender.send(hostd.Message(dest, "echo", src, b"x" * 64))
            await c.receive(GUARD)
            out.append(time.perf_counter() - start)
        return out


def main() -> None:
    quick = "--quick" in sys.argv
    runs, n, rtts = (1, 200, 50) if quick else (5, 20000, 2000)
    host = Host()
    try:
        tput: dict = {"cc->py": [], "py->py": [], "cc->cc": []}
        for _ in range(runs):
            tput["cc->py"] += cc_client(host, "echo-py", "throughput", n)
            tput["py->py"].append(asyncio.run(py_throughput(host, "echo-py", n)))
            tput["cc->cc"] += cc_client(host, "echo-cc", "throughput", n)
        rtt = {"cc->py": cc_client(host, "echo-py", "rtt", rtts), "py->py": asyncio.run(py_rtt(host, "echo-py", rtts)),
               "cc->cc": cc_client(host, "echo-cc", "rtt", rtts)}
    finally:
        host.close()
    med = {k: statistics.median(v) for k, v in tput.items()}
    p50 = {k: quantile(v, 0.5) for k, v in rtt.items()}
    row("10. Python client -> host -> Python echo proc vs C++ client, unix 64 B echoed: throughput",
        spread(tput["cc->py"], "msg/s"), spread(tput["py->py"], "msg/s"), med["py->py"] / med["cc->py"])
    row("10. Python client -> host -> Python echo proc vs C++ client: round trip p50 (lower is better)",
        f"{p50['cc->py'] * 1e6:.1f} us", f"{p50['py->py'] * 1e6:.1f} us", p50["py->py"] / p50["cc->py"])
    row("10. (context) C++ client: Python echo proc vs C++ echo proc: throughput",
        spread(tput["cc->cc"], "msg/s"), spread(tput["cc->py"], "msg/s"), med["cc->py"] / med["cc->cc"])
    row("10. (context) C++ client: Python echo proc vs C++ echo proc: round trip p50",
        f"{p50['cc->cc'] * 1e6:.1f} us", f"{p50['cc->py'] * 1e6:.1f} us", p50["cc->py"] / p50["cc->cc"])


if __name__ == "__main__":
    main()
