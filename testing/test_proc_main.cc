// hostd_test_proc: a proc built on the real bootstrap and runtime, with a flag for
// each behaviour the manager tests need. Flags are --name or --name=value:
//
//   --echo                 bind port "echo": answer every message to its src, port "echo.reply"
//   --exit-after-ms=T      exit on its own after T ms (with --exit-code, default 0)
//   --exit-code=N          exit code for --exit-after-ms and for a stop (default 0)
//   --ignore-sigterm       SIG_IGN for SIGTERM
//   --ignore-stop          keep running when the agent is asked to stop
//   --crash                abort() once ready (SIGABRT)
//   --never-ready          bootstrap but never report readiness
//   --ready-after-ms=T     report readiness T ms late
//   --grandchild           fork a child that sleeps in our process group
//   --grandchild-setsid    double fork; the grandchild calls setsid() and sleeps
//   --flood-stdout=BYTES   write that many bytes to stdout at start
//   --print-lines=N        write "line <i>" (padded to 100 bytes) for i in 1..N to stdout
//                          at start, one write each, --line-gap-us=U apart (default 0)
//   --list-fds             print "fds: 0 1 2 ..." (its open descriptors) to stdout
//   --stderr=TEXT          write TEXT to stderr at start
//   --notify               no runtime: send READY=1 to $NOTIFY_SOCKET, then sleep
//   --plain                no runtime: just sleep (for exec readiness)
//   --ready-byte           no runtime: write one byte to fd 3, then sleep (the raw
//                          spawn baseline of bench/spawn_bench)
//   --log-signals          print "signal <name>" to stdout for each signal received
//   --log-data             bind port "data": print "data <payload>" to stdout for each message
//   --state=TEXT           the proc's current state starts as TEXT; a state provider
//                          hands the current state over (the agent's "handoff")
//   --print-state          before ready, print "initial-state <state or NONE>" to stdout;
//                          a handed-over state becomes the current state (so
//                          handoffs chain across incarnations)
//   --fail-handoff         the state provider refuses: "handoff refused by --fail-handoff"
//   --save-state=TEXT      once ready, SaveState(TEXT) (the host keeps it)
//   --sink                 bind port "sink": print "got <payload>" for each message, and
//                          "ret <payload> <reason>: <note>" for each of ours that came back
//   --crash-after=K        with --sink: abort() right after printing the K-th "got"
//   --stream-to=ID+ID+...  with --sink, once ready: send --stream-count=N (default 100)
//                          messages to port "sink" of each ProcId, one round every
//                          --stream-gap-ms=G (default 10), payloads "<--stream-tag>:<i>:<seq>"
//                          (i: the ProcId's index, seq from 1), printing "sent <payload>"
//                          before each; a send its own host link hands back prints
//                          "ret <payload> local: <status>"; then "done". The receivers
//                          need --sink too, or every message comes back "unknown port".
//                          Without --sink it exits 2: what comes back would arrive at a
//                          port it lacks and be dropped, unseen
//   --alloc-mb=N           at start, allocate and touch N MiB, then print "allocated N MiB"
//   --tick-ms=T            once ready, print "tick <n>" (n from 1) every T ms, until it ends
//   --forks=N              at start, fork N children that sleep, then print
//                          "forks <made> failed <failed>" (errno of the first failure)
//   --heartbeat-ms=P       once ready, ProcRuntime::Heartbeat() every P ms from the main
//                          thread; with --heartbeat-count=N only N times, then print
//                          "heartbeats stopped" and stay alive without beating
//   --dump-signal=N        on signal N print "dump signal <NN>" (two digits) to stdout and go on
// Port "set-state" is always bound: a message there makes its payload the current
// state (installing the provider if there was none) and is answered "ok" on port
// "set-state.reply". Without --state, --fail-handoff, an adopted initial state or a
// set-state, the proc has no state provider.
// Grandchild pids are printed to stdout as "grandchild <pid>". Every stdout line is
// flushed at once, so a test can read the log while the proc runs.
#include <dirent.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/unix_addr.h"
#include "proc/bootstrap.h"

namespace {

using hostd::proc::ProcRuntime;

absl::flat_hash_map<std::string, std::string> ParseFlags(int argc, char** argv) {
  absl::flat_hash_map<std::string, std::string> flags;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) continue;
    size_t eq = a.find('=');
    flags[a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2)] =
        eq == std::string::npos ? "" : a.substr(eq + 1);
  }
  return flags;
}

// The proc's state for --state, --print-state and port "set-state": set on the
// main thread before the runtime runs, then read and written on its loop thread.
class CurrentState {
 public:
  void Set(std::string state) {
    absl::MutexLock lock(&mu_);
    state_ = std::move(state);
  }
  std::optional<std::string> Get() const {
    absl::MutexLock lock(&mu_);
    return state_;
  }

 private:
  mutable absl::Mutex mu_;
  std::optional<std::string> state_ ABSL_GUARDED_BY(mu_);
};

// One line to stdout, flushed at once: tests read the log while the proc runs.
void PrintLine(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

int IntFlag(const absl::flat_hash_map<std::string, std::string>& f, const std::string& name, int def) {
  auto it = f.find(name);
  int v = def;
  if (it != f.end() && !absl::SimpleAtoi(it->second, &v)) {
    std::fprintf(stderr, "hostd_test_proc: --%s=%s is not a number\n", name.c_str(), it->second.c_str());
    std::exit(2);
  }
  return v;
}

// Prints the grandchild's pid before returning, so it is on stdout before readiness.
void SpawnGrandchild(bool setsid_too) {
  int pipefd[2];
  if (pipe(pipefd) != 0) return;
  pid_t child = fork();
  if (child < 0) return;
  if (child == 0) {
    close(pipefd[0]);
    pid_t sleeper = getpid();
    if (setsid_too) {
      sleeper = fork();
      if (sleeper != 0) {
        ssize_t ignored = write(pipefd[1], &sleeper, sizeof(sleeper));
        (void)ignored;
        _exit(0);  // the grandchild is orphaned and comes back to the subreaper
      }
      setsid();
    } else {
      ssize_t ignored = write(pipefd[1], &sleeper, sizeof(sleeper));
      (void)ignored;
    }
    close(pipefd[1]);
    while (true) pause();
  }
  close(pipefd[1]);
  pid_t sleeper = 0;
  if (read(pipefd[0], &sleeper, sizeof(sleeper)) == sizeof(sleeper)) {
    std::printf("grandchild %d\n", sleeper);
    std::fflush(stdout);
  }
  close(pipefd[0]);
  if (setsid_too) waitpid(child, nullptr, 0);
}

// Port "sink": what arrives, and what of ours comes back, one line each.
class Sink {
 public:
  explicit Sink(int crash_after) : crash_after_(crash_after) {}
  // On the runtime's loop thread.
  void Take(const hostd::channel::Message& m) {
    if (m.kind() == hostd::channel::Message::Kind::kReturned) {
      PrintLine(absl::StrCat("ret ", m.payload(), " ", hostd::channel::ReturnReasonName(m.reason()), ": ", m.note()));
      return;
    }
    PrintLine(absl::StrCat("got ", m.payload()));
    if (crash_after_ > 0 && ++taken_ == crash_after_) std::abort();
  }

 private:
  const int crash_after_;
  int taken_ = 0;
};

// --stream-to: `count` rounds, one message to each of `to` per round.
void Stream(hostd::proc::ProcRuntime& rt, const std::vector<std::string>& to, const std::string& tag, int count,
            int gap_ms) {
  using hostd::channel::Message;
  for (int seq = 1; seq <= count; ++seq) {
    for (size_t i = 0; i < to.size(); ++i) {
      std::string payload = absl::StrCat(tag, ":", i, ":", seq);
      PrintLine(absl::StrCat("sent ", payload));
      auto came_back = [payload](absl::Status s, Message) {
        if (!s.ok()) PrintLine(absl::StrCat("ret ", payload, " local: ", s.message()));
      };
      absl::StatusOr<Message> m = Message::Create(to[i], "sink", rt.id().ToString(), payload);
      absl::Status sent = m.ok() ? rt.Send(*std::move(m), came_back) : m.status();
      if (!sent.ok()) PrintLine(absl::StrCat("ret ", payload, " local: ", sent.message()));
    }
    absl::SleepFor(absl::Milliseconds(gap_ms));
  }
  PrintLine("done");
}

void ListFds() {
  std::string out = "fds:";
  DIR* d = opendir("/proc/self/fd");
  int self = dirfd(d);
  while (dirent* e = readdir(d)) {
    int fd = 0;
    if (absl::SimpleAtoi(e->d_name, &fd) && fd != self) absl::StrAppend(&out, " ", fd);
  }
  closedir(d);
  std::printf("%s\n", out.c_str());
  std::fflush(stdout);
}

int Notify() {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr) return 3;
  absl::StatusOr<hostd::base::UnixAddr> sa = hostd::base::UnixAddr::Create(path);
  if (!sa.ok()) return 3;
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  const char msg[] = "STATUS=starting\nREADY=1\n";
  sendto(fd, msg, sizeof(msg) - 1, 0, sa->get(), sa->size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto flags = ParseFlags(argc, argv);
  auto has = [&](const char* f) { return flags.contains(f); };
  if (has("stream-to") && !has("sink")) {
    std::fprintf(stderr,
                 "hostd_test_proc: --stream-to needs --sink: the messages that come back arrive at this proc's port "
                 "\"sink\"\n");
    return 2;
  }
  if (has("ignore-sigterm")) std::signal(SIGTERM, SIG_IGN);
  if (int sig = IntFlag(flags, "dump-signal", 0); sig > 0) {
    static int dump_signal = sig;
    std::signal(sig, [](int) {
      // Only async-signal-safe calls here.
      char line[] = "dump signal 00\n";
      line[12] = static_cast<char>('0' + dump_signal / 10);
      line[13] = static_cast<char>('0' + dump_signal % 10);
      (void)!::write(1, line, sizeof(line) - 1);
    });
  }
  if (auto it = flags.find("stderr"); it != flags.end()) std::fprintf(stderr, "%s\n", it->second.c_str());
  if (int n = IntFlag(flags, "flood-stdout", 0); n > 0) {
    std::string chunk(4096, 'x');
    for (int left = n; left > 0; left -= 4096) std::fwrite(chunk.data(), 1, std::min(left, 4096), stdout);
    std::fflush(stdout);
  }
  if (int n = IntFlag(flags, "print-lines", 0); n > 0) {
    int gap_us = IntFlag(flags, "line-gap-us", 0);
    for (int i = 1; i <= n; ++i) {
      std::string line = absl::StrCat("line ", i, " ");
      line.resize(99, '.');
      line += '\n';
      if (::write(1, line.data(), line.size()) < 0) return 3;
      if (gap_us > 0) absl::SleepFor(absl::Microseconds(gap_us));
    }
  }
  if (int mb = IntFlag(flags, "alloc-mb", 0); mb > 0) {
    constexpr size_t kMiB = 1 << 20;
    for (int i = 0; i < mb; ++i) std::memset(std::malloc(kMiB), 1, kMiB);  // kept until exit
    PrintLine(absl::StrCat("allocated ", mb, " MiB"));
  }
  if (int n = IntFlag(flags, "forks", 0); n > 0) {
    int made = 0, failed = 0, first_errno = 0;
    for (int i = 0; i < n; ++i) {
      pid_t child = fork();
      if (child == 0) {
        while (true) pause();
      }
      if (child > 0) {
        ++made;
      } else if (failed++ == 0) {
        first_errno = errno;
      }
    }
    PrintLine(absl::StrCat("forks ", made, " failed ", failed, failed > 0 ? absl::StrCat(" ", strerrorname_np(first_errno)) : ""));
  }
  if (has("list-fds")) ListFds();
  if (has("grandchild")) SpawnGrandchild(false);
  if (has("grandchild-setsid")) SpawnGrandchild(true);
  int exit_code = IntFlag(flags, "exit-code", 0);
  int exit_after = IntFlag(flags, "exit-after-ms", -1);
  absl::Time until = exit_after >= 0 ? absl::Now() + absl::Milliseconds(exit_after) : absl::InfiniteFuture();
  if (has("plain") || has("notify") || has("ready-byte")) {
    if (has("notify") && Notify() != 0) return 3;
    if (has("ready-byte")) {
      if (::write(3, "R", 1) != 1) return 3;
      ::close(3);
    }
    // Staying alive until --exit-after-ms is the behaviour asked for.
    while (absl::Now() < until) absl::SleepFor(std::min(absl::Milliseconds(100), until - absl::Now()));
    return exit_code;
  }

  if (has("never-ready")) {
    // Read and validate the environment, but never report.
    absl::StatusOr<hostd::proc::BootstrapEnv> env = hostd::proc::ReadBootstrapEnv(::getenv);
    if (!env.ok()) {
      std::fprintf(stderr, "%s\n", std::string(env.status().message()).c_str());
      return 2;
    }
    while (true) pause();
  }
  // Being slow to get ready is the behaviour asked for.
  if (int late = IntFlag(flags, "ready-after-ms", 0); late > 0) absl::SleepFor(absl::Milliseconds(late));

  CurrentState state;
  Sink sink(IntFlag(flags, "crash-after", 0));
  if (auto it = flags.find("state"); it != flags.end()) state.Set(it->second);
  absl::StatusOr<hostd::proc::BootedProc> proc = hostd::proc::BootstrapProc([&](ProcRuntime& rt) -> absl::Status {
    using hostd::channel::Message;
    if (has("echo")) {
      absl::Status bound = rt.Bind("echo", [&rt](Message m) {
        if (m.kind() == Message::Kind::kMessage) (void)rt.Reply(m, "echo.reply", m.payload());
      });
      if (!bound.ok()) return bound;
    }
    if (has("log-signals")) {
      rt.OnSignal([](absl::string_view name, absl::string_view) { PrintLine(absl::StrCat("signal ", name)); });
    }
    if (has("log-data")) {
      absl::Status bound = rt.Bind("data", [](Message m) {
        if (m.kind() == Message::Kind::kMessage) PrintLine(absl::StrCat("data ", m.payload()));
      });
      if (!bound.ok()) return bound;
    }
    if (has("sink")) {
      absl::Status bound = rt.Bind("sink", [&sink](Message m) { sink.Take(m); });
      if (!bound.ok()) return bound;
    }
    if (has("print-state")) {
      const std::optional<std::string>& initial = rt.initial_state();
      PrintLine(absl::StrCat("initial-state ", initial.has_value() ? *initial : "NONE"));
      if (initial.has_value()) state.Set(*initial);
    }
    if (has("fail-handoff")) {
      rt.SetStateProvider([]() -> absl::StatusOr<std::string> {
        return absl::FailedPreconditionError("handoff refused by --fail-handoff");
      });
    } else if (state.Get().has_value()) {
      rt.SetStateProvider([&state]() -> absl::StatusOr<std::string> { return *state.Get(); });
    }
    return rt.Bind("set-state", [&rt, &state, fail = has("fail-handoff")](Message m) {
      if (m.kind() != Message::Kind::kMessage) return;
      bool had = state.Get().has_value();
      state.Set(std::string(m.payload()));
      if (!had && !fail) rt.SetStateProvider([&state]() -> absl::StatusOr<std::string> { return *state.Get(); });
      (void)rt.Reply(m, "set-state.reply", "ok");
    });
  });
  if (!proc.ok()) {
    std::fprintf(stderr, "hostd_test_proc: %s\n", std::string(proc.status().message()).c_str());
    return 2;
  }
  if (auto it = flags.find("save-state"); it != flags.end()) {
    if (absl::Status saved = proc->runtime->SaveState(it->second); !saved.ok()) {
      std::fprintf(stderr, "hostd_test_proc: --save-state: %s\n", std::string(saved.message()).c_str());
      return 2;
    }
  }
  if (has("crash")) std::abort();
  if (int tick_ms = IntFlag(flags, "tick-ms", 0); tick_ms > 0) {
    std::thread([tick_ms] {
      for (int n = 1;; ++n) {
        absl::SleepFor(absl::Milliseconds(tick_ms));
        PrintLine(absl::StrCat("tick ", n));
      }
    }).detach();
  }
  if (auto it = flags.find("stream-to"); it != flags.end()) {
    Stream(*proc->runtime, absl::StrSplit(it->second, '+', absl::SkipEmpty()), flags["stream-tag"],
           IntFlag(flags, "stream-count", 100), IntFlag(flags, "stream-gap-ms", 10));
  }
  const int beat_ms = IntFlag(flags, "heartbeat-ms", 0);
  int beats_left = IntFlag(flags, "heartbeat-count", -1);
  while (true) {
    const bool beating = beat_ms > 0 && beats_left != 0;
    absl::Time wake = beating ? std::min(until, absl::Now() + absl::Milliseconds(beat_ms)) : until;
    absl::StatusOr<std::string> stop = proc->runtime->WaitForStopRequest(wake);
    if (!stop.ok() && beating && absl::Now() < until) {
      if (absl::Status beat = proc->runtime->Heartbeat(); !beat.ok()) {
        std::fprintf(stderr, "hostd_test_proc: heartbeat: %s\n", std::string(beat.message()).c_str());
      }
      if (--beats_left == 0) PrintLine("heartbeats stopped");
      continue;
    }
    if (!stop.ok()) return exit_code;  // --exit-after-ms elapsed
    if (!has("ignore-stop")) {
      std::fprintf(stderr, "stopping: %s\n", stop->c_str());
      return exit_code;
    }
    until = absl::InfiniteFuture();
    while (true) pause();  // deaf to stops: only a signal ends it
  }
}
