#!/usr/bin/env python3
"""A cluster of four hosts on one machine, each a network namespace running the
real hostd with mutual-TLS frontends, and faults between them.

    cluster_test.py HOSTD HOSTCTL HOSTD_TEST_PROC

Hosts h1..h4 are namespaces with one veth each (10.213.0.1-4/24), plugged into a
bridge that lives in a fifth namespace, so nothing outside the test's own
namespaces is touched. A certificate authority and one certificate per host (its
IP in subjectAltName) are made with openssl; every hostd requires client
certificates. hostd is driven over its unix control socket (namespaces do not
separate the file system), procs are hostd_test_proc: a "sink" on every host, and
per phase a streaming proc on each sending host that sends numbered messages to
the sinks of the other hosts and prints every message of its own that comes back.

Phases, each with all its streams running while the fault happens:
  baseline   no fault
  link-cut   h4's cable (the bridge end of its veth) down for longer than the
             dead-peer timeout, then up
  partition  nftables in h1,h2 drop everything from h3,h4 and the reverse, then healed
  loss       nftables in every host drop a random 10% of incoming packets
  kill       h3's hostd SIGKILLed mid-stream and started again on the same
             address (streams from h1, h2, h4; h3's own procs die with it)
  proc-crash a sink on h4 that aborts mid-stream (streams from h1, h2, h3)

For each phase every message sent is classified from the procs' logs: delivered
(printed by a sink), duplicated (printed more than once), returned (came back to
its sender with a reason), or silently lost: none of these. The test fails if any
message is silently lost. A message that the killed hostd had taken and not yet
handed to its proc dies with it (hop-by-hop acknowledgement; it never reached a
proc and its sink died too): such messages are counted apart ("died in host"),
recognised as exactly the sequence numbers between the last one the old sink
printed and the first one that came back or arrived after the restart.

Dead-peer detection: each hostd logs "link to X: connection lost: why" when an
open link breaks; the time from the fault to the first such line on each peer is
reported (not asserted: the machine is noisy). Exit 77 (skipped) when network
namespaces cannot be made here. Everything made (namespaces with their veths,
bridge and nftables tables, processes, files) is removed on the way out,
whatever happened.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime

HOSTS = ["h1", "h2", "h3", "h4"]
DEAD_PEER_TIMEOUT_S = 3
COUNT = 150     # messages from each sender to each of its targets, per phase
GAP_MS = 20     # between rounds of a stream
SETTLE_S = 45   # every message delivered or returned by then (delivery timeout: 30 s)
SKIP = 77


def log(*a):
    print(*a, flush=True)


def run(*cmd, check=True, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r


class Cluster:
    def __init__(self, hostd, hostctl, test_proc):
        self.hostd, self.hostctl, self.test_proc = hostd, hostctl, test_proc
        self.tag = f"hdc{os.getpid()}"
        self.bridge_ns = f"{self.tag}-br"
        self.ns = {h: f"{self.tag}-{h}" for h in HOSTS}
        self.ip = {h: f"10.213.0.{i + 1}" for i, h in enumerate(HOSTS)}
        self.dir = tempfile.mkdtemp(prefix="hdc.")
        self.procs = {}  # host -> Popen of its hostd
        self.made_ns = []

    # ---- setup and cleanup ----
    def frontend(self, h):
        return f"tls:{self.ip[h]}:7000"

    def pid(self, h, name):
        return f"{self.frontend(h)},{name}"

    def hdir(self, h):
        return os.path.join(self.dir, h)

    def make_network(self):
        for ns in [self.bridge_ns] + list(self.ns.values()):
            run("ip", "netns", "add", ns)
            self.made_ns.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        run("ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", self.bridge_ns, "link", "set", "br0", "up")
        for h in HOSTS:
            cable = f"c{h}"
            run("ip", "link", "add", "eth0", "netns", self.ns[h], "type", "veth", "peer", "name", cable,
                "netns", self.bridge_ns)
            run("ip", "-n", self.bridge_ns, "link", "set", cable, "master", "br0", "up")
            run("ip", "-n", self.ns[h], "addr", "add", f"{self.ip[h]}/24", "dev", "eth0")
            run("ip", "-n", self.ns[h], "link", "set", "eth0", "up")

    def make_certs(self):
        d = os.path.join(self.dir, "pki")
        os.makedirs(d, mode=0o700)
        ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
            "-subj", "/CN=hostd cluster test CA", "-keyout", ca_key, "-out", ca)
        for h in HOSTS:
            key, csr, crt, ext = (os.path.join(d, f"{h}.{x}") for x in ("key", "csr", "crt", "ext"))
            with open(os.open(ext, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(f"basicConstraints=CA:FALSE\nsubjectAltName=IP:{self.ip[h]}\n")
            run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={h}",
                "-keyout", key, "-out", csr)
            run("openssl", "x509", "-req", "-days", "2", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                "-extfile", ext, "-out", crt)
        self.pki = d

    def start_hostd(self, h):
        d = self.hdir(h)
        os.makedirs(d, mode=0o700, exist_ok=True)
        pki = self.pki
        cmd = ["ip", "netns", "exec", self.ns[h], self.hostd,
               "--grpc", f"unix:{d}/g.sock", "--frontend", self.frontend(h), "--backend", f"unix:{d}/b.sock",
               "--state-dir", f"{d}/state", "--tls-cert", f"{pki}/{h}.crt", "--tls-key", f"{pki}/{h}.key",
               "--tls-ca", f"{pki}/ca.crt", "--tls-require-client-cert",
               "--dead-peer-timeout", str(DEAD_PEER_TIMEOUT_S), "--log-format", "json", "--shutdown-grace", "1"]
        logf = open(os.path.join(d, "hostd.log"), "a")
        self.procs[h] = subprocess.Popen(cmd, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        deadline = time.time() + 30
        while self.ctl(h, "list", check=False).returncode != 0:
            if self.procs[h].poll() is not None or time.time() > deadline:
                raise RuntimeError(f"hostd on {h} did not come up; its log: {d}/hostd.log")
            time.sleep(0.05)

    def ctl(self, h, *args, check=True):
        return run(self.hostctl, "--grpc", f"unix:{self.hdir(h)}/g.sock", *args, check=check)

    def spawn(self, h, name, *flags):
        self.ctl(h, "spawn", name, self.test_proc, "--", *flags)

    def logfile(self, h, name):
        return os.path.join(self.hdir(h), "state", "logs", f"{name}.stdout")

    def nft(self, h, *rules):
        # One table per host namespace; "delete table" heals.
        script = f"table inet hdc {{\n chain in {{ type filter hook input priority 0; {' '.join(rules)} }}\n}}\n"
        run("ip", "netns", "exec", self.ns[h], "nft", "-f", "-", input=script)

    def heal(self, h):
        run("ip", "netns", "exec", self.ns[h], "nft", "delete", "table", "inet", "hdc", check=False)

    def cleanup(self):
        for h, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for h, p in self.procs.items():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for ns in reversed(self.made_ns):
            run("ip", "netns", "del", ns, check=False)
        if os.environ.get("HOSTD_CLUSTER_KEEP"):
            log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ---- observations ----
    def lines(self, path, prefix):
        try:
            with open(path, errors="replace") as f:
                return [l.split(" ", 1)[1].rstrip("\n") for l in f if l.startswith(prefix + " ")]
        except FileNotFoundError:
            return []

    def has_line(self, path, text):
        try:
            with open(path, errors="replace") as f:
                return any(l.rstrip("\n") == text for l in f)
        except FileNotFoundError:
            return False

    def link_lost_times(self, h, peer, since):
        """Times of "link to <peer>: connection lost" lines in h's log after `since`."""
        out = []
        needle = f"link to {self.frontend(peer)}: connection lost"
        with open(os.path.join(self.hdir(h), "hostd.log"), errors="replace") as f:
            for line in f:
                if needle not in line:
                    continue
                try:
                    t = datetime.fromisoformat(json.loads(line)["ts"]).timestamp()
                except (ValueError, KeyError):
                    continue
                if t >= since:
                    out.append(t)
        return out

    def detection(self, victims, since):
        """Seconds from `since` to each other host's first lost link to a victim."""
        times = []
        for v in victims:
            for h in HOSTS:
                if h in victims or (h in self.procs and self.procs[h].poll() is not None):
                    continue
                t = self.link_lost_times(h, v, since)
                if t:
                    times.append(min(t) - since)
        return times


class Phase:
    """One phase's streams: senders -> targets, and the sink logs they land in."""

    def __init__(self, c, name, senders, targets_of, sink="sink"):
        self.c, self.name, self.sink = c, name, sink
        self.streams = {s: targets_of(s) for s in senders}
        self.extra_sink_logs = []   # sink logs moved aside (a restarted host's old sink)
        self.detect = []   # seconds from the fault to each peer noticing it
        # Of the messages neither delivered nor returned, those the fault explains.
        self.excused = lambda lost: []

    def start(self):
        for s, targets in self.streams.items():
            ids = "+".join(self.c.pid(t, self.sink) for t in targets)
            self.c.spawn(s, f"s-{self.name}", "--sink", f"--stream-to={ids}", f"--stream-tag={self.name}.{s}",
                         f"--stream-count={COUNT}", f"--stream-gap-ms={GAP_MS}")

    def sender_log(self, s):
        return self.c.logfile(s, f"s-{self.name}")

    def wait_sent(self):
        deadline = time.time() + 60
        while not all(self.c.has_line(self.sender_log(s), "done") for s in self.streams):
            if time.time() > deadline:
                raise RuntimeError(f"{self.name}: streams did not finish sending")
            time.sleep(0.2)

    def tally(self):
        got, ret = {}, {}
        sink_logs = [self.c.logfile(t, self.sink) for t in HOSTS] + self.extra_sink_logs
        for path in sink_logs:
            for p in self.c.lines(path, "got"):
                if p.startswith(self.name + "."):
                    got[p] = got.get(p, 0) + 1
        for s in self.streams:
            for l in self.c.lines(self.sender_log(s), "ret"):
                p, _, why = l.partition(" ")
                ret.setdefault(p, why)
        sent = [f"{self.name}.{s}:{i}:{q}" for s, ts in self.streams.items() for i in range(len(ts))
                for q in range(1, COUNT + 1)]
        lost = [p for p in sent if p not in got and p not in ret]
        return sent, got, ret, lost

    def settle(self):
        """Waits until every message is delivered, returned or excused (or the
        deadline), and returns the tally; `lost` leaves the excused out."""
        deadline = time.time() + SETTLE_S
        while True:
            sent, got, ret, lost = self.tally()
            excused = set(self.excused(lost))
            lost = [p for p in lost if p not in excused]
            if not lost or time.time() > deadline:
                return sent, got, ret, lost
            time.sleep(0.25)


def reasons(ret):
    out = {}
    for why in ret.values():
        k = why.split(":", 1)[0].replace(" ", "-")
        out[k] = out.get(k, 0) + 1
    return ",".join(f"{k}:{v}" for k, v in sorted(out.items())) or "-"


def remove_stale():
    """Namespaces of an earlier run that was killed before it could clean up (its
    pid is gone): their processes are killed, then the namespaces deleted."""
    for line in run("ip", "netns", "list", check=False).stdout.splitlines():
        m = re.match(r"(hdc(\d+)-\S+)", line)
        if not m or os.path.exists(f"/proc/{m.group(2)}"):
            continue
        for pid in run("ip", "netns", "pids", m.group(1), check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run("ip", "netns", "del", m.group(1), check=False)


def main():
    if len(sys.argv) != 4:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft") or not shutil.which("openssl"):
        log("SKIPPED: the cluster test needs root and the ip, nft and openssl commands to make network namespaces")
        return SKIP
    probe = f"hdc{os.getpid()}-probe"
    if run("ip", "netns", "add", probe, check=False).returncode != 0:
        log("SKIPPED: network namespaces cannot be made here (ip netns add failed)")
        return SKIP
    run("ip", "netns", "del", probe, check=False)

    remove_stale()
    c = Cluster(*[os.path.abspath(a) for a in sys.argv[1:]])
    rows, failures = [], []
    # ctest's timeout sends SIGTERM: clean up then too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        c.make_network()
        c.make_certs()
        for h in HOSTS:
            c.start_hostd(h)
        for h in HOSTS:
            c.spawn(h, "sink", "--sink")
        others = lambda s: [t for t in HOSTS if t != s]

        def phase(name, senders, targets_of, fault, sink="sink", detect_expected=False):
            p = Phase(c, name, senders, targets_of, sink)
            t0 = time.time()
            p.start()
            fault(p)
            p.wait_sent()
            sent, got, ret, lost = p.settle()
            died = p.excused([x for x in sent if x not in got and x not in ret])
            dup = sum(n - 1 for n in got.values())
            both = sum(1 for x in ret if x in got)
            det = f"{min(p.detect):.2f}-{max(p.detect):.2f}" if p.detect else "-"
            rows.append((name, len(sent), len(got), dup, len(ret), both, reasons(ret), len(died), len(lost), det,
                         f"{time.time() - t0:.1f}"))
            if detect_expected and not p.detect:
                failures.append(f"{name}: no peer's link noticed the fault")
            if lost:
                failures.append(f"{name}: {len(lost)} messages silently lost, e.g. {lost[:5]}")

        phase("baseline", HOSTS, others, lambda p: time.sleep(0.5))

        def cut(p):
            time.sleep(0.5)
            t = time.time()
            run("ip", "-n", c.bridge_ns, "link", "set", "ch4", "down")
            time.sleep(2 * DEAD_PEER_TIMEOUT_S + 1)
            run("ip", "-n", c.bridge_ns, "link", "set", "ch4", "up")
            p.detect = c.detection(["h4"], t)
        phase("link-cut", HOSTS, others, cut, detect_expected=True)

        def partition(p):
            time.sleep(0.5)
            t = time.time()
            side = {"h1": ("h3", "h4"), "h2": ("h3", "h4"), "h3": ("h1", "h2"), "h4": ("h1", "h2")}
            for h, far in side.items():
                c.nft(h, f"ip saddr {{ {', '.join(c.ip[x] for x in far)} }} drop;")
            time.sleep(2 * DEAD_PEER_TIMEOUT_S + 1)
            for h in HOSTS:
                c.heal(h)
            p.detect = c.detection(["h3", "h4"], t)
        phase("partition", HOSTS, others, partition, detect_expected=True)

        def loss(p):
            for h in HOSTS:
                c.nft(h, "numgen random mod 100 < 10 drop;")
            time.sleep(COUNT * GAP_MS / 1000)
            for h in HOSTS:
                c.heal(h)
        phase("loss10", HOSTS, others, loss)

        def kill(p):
            time.sleep(1.0)
            before = os.path.join(c.hdir("h3"), "sink.before-kill.stdout")
            t = time.time()
            c.procs["h3"].send_signal(signal.SIGKILL)
            c.procs["h3"].wait()
            time.sleep(0.5)
            p.detect = c.detection(["h3"], t)
            shutil.move(c.logfile("h3", "sink"), before)
            p.extra_sink_logs.append(before)
            c.start_hostd("h3")
            c.spawn("h3", "sink", "--sink")

            def excused(lost):
                # Per stream into h3: the seqs after the last one the old sink printed
                # and before the first one the new sink printed or that came back.
                old = {}
                for x in c.lines(before, "got"):
                    if x.startswith(p.name + "."):
                        stream, _, q = x.rpartition(":")
                        old[stream] = max(old.get(stream, 0), int(q))
                _, got, ret, _ = p.tally()
                after = {}
                for x in list(c.lines(c.logfile("h3", "sink"), "got")) + list(ret):
                    if x.startswith(p.name + "."):
                        stream, _, q = x.rpartition(":")
                        if int(q) > old.get(stream, 0):
                            after[stream] = min(after.get(stream, COUNT + 1), int(q))
                out = []
                for x in lost:
                    stream, _, q = x.rpartition(":")
                    if stream in old and stream in after and old[stream] < int(q) < after[stream]:
                        out.append(x)
                return out
            p.excused = excused
        phase("kill-h3", ["h1", "h2", "h4"], lambda s: ["h3"], kill, detect_expected=True)

        c.spawn("h4", "fragile", "--sink", f"--crash-after={COUNT}")
        phase("proc-crash", ["h1", "h2", "h3"], lambda s: ["h4"], lambda p: None, sink="fragile")
    except Exception as e:  # report, then clean up
        failures.append(f"error: {e}")
    finally:
        c.cleanup()

    head = ("phase", "sent", "delivered", "duplicated", "returned", "of them delivered", "reasons", "died in host", "silently lost",
            "detect s", "phase s")
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        log("  ".join(str(v).rjust(w[i]) for i, v in enumerate(r)))
    for f in failures:
        log("FAILED:", f)
    failed = {f.split(":")[0] for f in failures}
    log(f"{len([r for r in rows if r[0] not in failed])} passed, {len(failed)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
