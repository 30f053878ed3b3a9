// spawn_bench: spawning and terminating real processes, hostd against a raw
// baseline measured in the same run (scenarios 1-3 of bench/README.md).
//
//   1. Spawn to ready, same child binary (hostd_test_proc), same concurrency:
//      raw = posix_spawn (vfork-class in glibc) + the child writes one byte on an
//      inherited pipe when ready; hostd = ProcessProcManager::Spawn (launcher,
//      process group, cgroup, log files, the proc runtime's READY handshake); and
//      through concurrent gRPC SpawnProcs on an in-process hostd service.
//   2. The same hostd spawns with 1 GiB of touched heap in this process.
//   3. Terminating N ready procs that exit on SIGTERM: raw = kill + waitpid each;
//      hostd = TerminateAll. And procs that ignore SIGTERM with grace G: the
//      overshoot over G.
//
//   build/default/bench/spawn_bench [--quick] [--filter=1.|2.|3.] [--threads=N]
//
// And, only on request (not part of bench/run.sh), why hostd launches with its own
// launcher rather than Boost.Process v2's: N launches of /bin/true, one at a time,
// each timed until the child has exec'd (both launchers wait for that), by
// boost::process::v2's default launcher (fork) and by manager::Launch (clone with
// CLONE_VM | CLONE_VFORK), first with this process small, then holding M MiB of
// touched heap (fork copies the page tables of all of it):
//
//   build/default/bench/spawn_bench --launchers [--launches=N] [--heap-mib=M]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/lock_checks.h"
#include "bench/bench_util.h"
// Boost 1.81's process/v2 headers are not self-contained with
// BOOST_PROCESS_USE_STD_FS (CMake sets it): they still name these.
#include "boost/asio/io_context.hpp"
#include "boost/optional.hpp"
#include "boost/process/v2/process.hpp"
#include "boost/type_traits/is_constructible.hpp"
#include "boost/type_traits/remove_pointer.hpp"
#include "daemon/host.h"
#include "daemon/host_service.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/server_builder.h"
#include "manager/launcher.h"
#include "manager/process_proc_manager.h"
#include "testing/temp_dir.h"

namespace hostd::bench {
namespace {

constexpr char kChild[] = HOSTD_TEST_PROC;
extern "C" char** environ;

// ---- raw baseline -----------------------------------------------------------

// Spawns the child with --ready-byte (plus `extra`) and waits for its byte.
pid_t RawSpawn(const std::vector<std::string>& extra = {}) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 3);  // dup2 clears close-on-exec
  std::vector<std::string> args = {kChild, "--ready-byte"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  char path_env[] = "PATH=/usr/bin:/bin";
  char* envp[] = {path_env, nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, kChild, &fa, nullptr, argv.data(), envp);
  posix_spawn_file_actions_destroy(&fa);
  close(p[1]);
  char c;
  ssize_t n = rc == 0 ? read(p[0], &c, 1) : -1;
  close(p[0]);
  return n == 1 ? pid : -1;
}

void RawKillAll(std::vector<pid_t>& pids, int sig) {
  for (pid_t p : pids) kill(p, sig);
  for (pid_t p : pids) waitpid(p, nullptr, 0);
  pids.clear();
}

// Runs `one(i)` for i in [0, n) on `threads` threads; returns per-call latencies
// (seconds) and the wall time.
struct Run {
  Samples latency;
  double seconds = 0;
  int failed = 0;
};
Run Concurrently(int n, int threads, const std::function<bool(int)>& one) {
  Run r;
  std::atomic<int> next{0};
  std::atomic<int> failed{0};
  std::vector<std::vector<double>> lat(threads);
  absl::Time start = absl::Now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&, t] {
      for (int i = next++; i < n; i = next++) {
        absl::Time t0 = absl::Now();
        if (!one(i)) ++failed;
        lat[t].push_back(absl::ToDoubleSeconds(absl::Now() - t0));
      }
    });
  }
  for (auto& t : ts) t.join();
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  for (auto& v : lat) {
    for (double d : v) r.latency.Add(d);
  }
  r.failed = failed;
  return r;
}

// ---- hostd ------------------------------------------------------------------

struct Hostd {
  testing::TempDir dir;
  std::unique_ptr<manager::ProcessProcManager> mgr =
      *manager::ProcessProcManager::Create({.state_dir = dir.Join("state")});
  channel::ChannelAddr backend = *channel::ChannelAddr::Parse("unix:@hostd-spawn-bench-backend");

  manager::SpawnSpec Spec(std::vector<std::string> args = {}) {
    manager::SpawnSpec spec;
    spec.program = kChild;
    spec.args = std::move(args);
    spec.ready_timeout = absl::Seconds(60);
    return spec;
  }
  bool Spawn(const std::string& name, const manager::SpawnSpec& spec) {
    return mgr->Spawn(*proc::ProcId::Parse(absl::StrCat("unix:@bench,", name)), backend, spec).ok();
  }
};

struct SpawnFigures {
  Samples rate;  // spawns per second, one sample per repetition
  Samples p50;   // seconds
};

void AddRun(SpawnFigures& f, const Run& r, int n) {
  f.rate.Add(n / r.seconds);
  f.p50.Add(r.latency.Median());
}

SpawnFigures RawSpawns(int n, int threads, int reps) {
  SpawnFigures f;
  for (int rep = 0; rep < reps; ++rep) {
    std::vector<pid_t> pids(n, -1);
    Run r = Concurrently(n, threads, [&](int i) { return (pids[i] = RawSpawn()) > 0; });
    AddRun(f, r, n);
    RawKillAll(pids, SIGKILL);
  }
  return f;
}

SpawnFigures HostdSpawns(Hostd& h, int n, int threads, int reps, bool exec_readiness = false) {
  SpawnFigures f;
  manager::SpawnSpec spec = h.Spec();
  if (exec_readiness) {  // no proc runtime in the child: hostd's own share of a spawn
    spec.args = {"--plain"};
    spec.readiness = manager::ReadinessMode::kExec;
  }
  for (int rep = 0; rep < reps; ++rep) {
    Run r = Concurrently(n, threads, [&](int i) { return h.Spawn(absl::StrCat("s", rep, "-", i), spec); });
    AddRun(f, r, n);
    h.mgr->TerminateAll(absl::ZeroDuration(), n, "bench");
  }
  return f;
}

// An in-process hostd control plane over the same manager, on a unix socket.
SpawnFigures GrpcSpawns(Hostd& h, int n, int threads, int reps) {
  auto host = *daemon::Host::Start(*h.mgr, *h.mgr, {});
  daemon::HostService service(*host, {});
  grpc::ServerBuilder b;
  std::string sock = "unix:" + h.dir.Join("grpc.sock");
  b.AddListeningPort(sock, grpc::InsecureServerCredentials());
  b.RegisterService(&service);
  auto server = b.BuildAndStart();
  auto stub = v1::HostService::NewStub(grpc::CreateChannel(sock, grpc::InsecureChannelCredentials()));
  SpawnFigures f;
  for (int rep = 0; rep < reps; ++rep) {
    v1::SpawnProcsRequest req;
    req.set_max_in_flight(threads);
    for (int i = 0; i < n; ++i) {
      v1::SpawnProcRequest* one = req.add_procs();
      one->set_name(absl::StrCat("g", rep, "-", i));
      one->mutable_spec()->set_program(kChild);
    }
    v1::SpawnProcsResponse resp;
    grpc::ClientContext ctx;
    absl::Time t0 = absl::Now();
    grpc::Status s = stub->SpawnProcs(&ctx, req, &resp);
    double secs = absl::ToDoubleSeconds(absl::Now() - t0);
    if (!s.ok() || resp.failed() > 0) std::fprintf(stderr, "grpc spawns failed: %s\n", s.error_message().c_str());
    f.rate.Add(n / secs);
    host->TerminateChildren(absl::ZeroDuration(), n, "bench");
  }
  server->Shutdown();
  return f;
}

// ---- scenario 3 -------------------------------------------------------------

// `n` raw children, each sent `sig`, until every one is reaped.
Samples RawTerminate(int n, int reps, int sig) {
  Samples s;
  for (int rep = 0; rep < reps; ++rep) {
    std::vector<pid_t> pids(n, -1);
    Concurrently(n, 8, [&](int i) { return (pids[i] = RawSpawn()) > 0; });
    absl::Time t0 = absl::Now();
    RawKillAll(pids, sig);
    s.Add(absl::ToDoubleSeconds(absl::Now() - t0));
  }
  return s;
}

Samples HostdTerminate(Hostd& h, int n, int reps, const std::vector<std::string>& args, absl::Duration grace) {
  Samples s;
  manager::SpawnSpec spec = h.Spec(args);
  for (int rep = 0; rep < reps; ++rep) {
    Concurrently(n, 8, [&](int i) { return h.Spawn(absl::StrCat("t", rep, "-", i), spec); });
    absl::Time t0 = absl::Now();
    manager::TerminateSummary sum = h.mgr->TerminateAll(grace, n, "bench");
    s.Add(absl::ToDoubleSeconds(absl::Now() - t0));
    if (sum.failed > 0) std::fprintf(stderr, "terminate-all: %d failed\n", sum.failed);
  }
  return s;
}

// Context for scenario 3: the same hostd procs ended by a SIGTERM from outside
// (no stop message, no proc shutdown code), until hostd has observed every end
// (exit monitor, group and cgroup clean-up, reaping).
Samples HostdSigtermOnly(Hostd& h, int n, int reps) {
  Samples s;
  manager::SpawnSpec spec = h.Spec();
  for (int rep = 0; rep < reps; ++rep) {
    Concurrently(n, 8, [&](int i) { return h.Spawn(absl::StrCat("k", rep, "-", i), spec); });
    std::vector<std::shared_ptr<manager::ProcHandle>> procs = h.mgr->Procs();
    absl::Time t0 = absl::Now();
    for (auto& p : procs) kill(p->status().pid, SIGTERM);
    for (auto& p : procs) (void)p->Wait(absl::Now() + absl::Seconds(60));
    s.Add(absl::ToDoubleSeconds(absl::Now() - t0));
  }
  return s;
}

// ---- launchers --------------------------------------------------------------

constexpr char kTrue[] = "/bin/true";

// Seconds per launch (until exec), each child reaped before the next launch.
Samples BoostLaunches(int n) {
  boost::asio::io_context ctx;
  Samples s;
  for (int i = 0; i < n; ++i) {
    boost::system::error_code ec;
    absl::Time t0 = absl::Now();
    boost::process::v2::process child =
        boost::process::v2::default_process_launcher()(ctx, ec, kTrue, std::vector<std::string>{});
    s.Add(absl::ToDoubleSeconds(absl::Now() - t0));
    if (ec) {
      std::fprintf(stderr, "boost::process::v2 launch of %s: %s\n", kTrue, ec.message().c_str());
      return s;
    }
    child.wait(ec);
  }
  return s;
}

Samples HostdLaunches(int n) {
  manager::LaunchRequest req;
  req.path = kTrue;
  req.argv = {kTrue};
  req.envp = {"PATH=/usr/bin:/bin"};
  Samples s;
  for (int i = 0; i < n; ++i) {
    absl::Time t0 = absl::Now();
    absl::StatusOr<manager::Launched> child = manager::Launch(req);
    s.Add(absl::ToDoubleSeconds(absl::Now() - t0));
    if (!child.ok()) {
      std::fprintf(stderr, "hostd launch of %s: %s\n", kTrue, child.status().ToString().c_str());
      return s;
    }
    siginfo_t info{};
    ::waitid(P_PIDFD, static_cast<id_t>(child->pidfd.get()), &info, WEXITED);
  }
  return s;
}

// Both launchers in the same run, small and with `heap_mib` of touched heap; one
// row per heap size: baseline = Boost.Process v2 (fork), hostd = manager::Launch.
void CompareLaunchers(int n, int heap_mib) {
  auto row = [n](const std::string& heap, const Samples& boost, const Samples& hostd) {
    Row(absl::StrFormat("launch %d x %s, one at a time, %s: p50 until exec", n, kTrue, heap), Ms(boost.Median()),
        Ms(hostd.Median()), hostd.Median() / boost.Median(), "-", true);
  };
  Samples boost_small = BoostLaunches(n);
  Samples hostd_small = HostdLaunches(n);
  row("small heap", boost_small, hostd_small);
  const size_t bytes = static_cast<size_t>(heap_mib) << 20;
  std::unique_ptr<char[]> heap(new char[bytes]);
  std::memset(heap.get(), 1, bytes);
  Samples boost_big = BoostLaunches(n);
  Samples hostd_big = HostdLaunches(n);
  row(absl::StrFormat("%d MiB touched heap", heap_mib), boost_big, hostd_big);
  volatile char sink = heap[bytes / 2];
  (void)sink;
}

}  // namespace
}  // namespace hostd::bench

int main(int argc, char** argv) {
  hostd::base::SkipLockOrderChecks();
  using namespace hostd::bench;
  const bool quick = QuickMode(argc, argv);
  const std::string filter = FilterArg(argc, argv);  // "1.", "2." or "3.": one scenario
  auto want = [&](const char* prefix) { return filter.empty() || filter == prefix; };
  const int n = quick ? 8 : 200;
  int threads = 8;  // --threads=N: spawns at once in scenarios 1-2
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) threads = std::max(1, std::atoi(argv[i] + 10));
  }
  const int reps = quick ? 1 : 5;
  signal(SIGPIPE, SIG_IGN);
  bool launchers = false;
  int launches = 200;
  int heap_mib = 1024;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--launchers") == 0) launchers = true;
    if (std::strncmp(argv[i], "--launches=", 11) == 0) launches = std::max(1, std::atoi(argv[i] + 11));
    if (std::strncmp(argv[i], "--heap-mib=", 11) == 0) heap_mib = std::max(1, std::atoi(argv[i] + 11));
  }
  if (launchers) {
    CompareLaunchers(launches, heap_mib);
    return 0;
  }

  Hostd h;
  // 1. Spawn to ready.
  SpawnFigures raw, lib, rpc;
  if (want("1.") || want("2.")) {
    raw = RawSpawns(n, threads, reps);
    lib = HostdSpawns(h, n, threads, reps);
  }
  if (want("1.")) {
    rpc = GrpcSpawns(h, n, threads, reps);
    Row(absl::StrFormat("1. spawn to ready, %d procs, %d at once: throughput", n, threads), Spread(raw.rate, "/s"),
        Spread(lib.rate, "/s"), lib.rate.Median() / raw.rate.Median(), ">= 0.8x",
        lib.rate.Median() >= 0.8 * raw.rate.Median());
    Row("1. spawn to ready: p50 latency", Ms(raw.p50.Median()), Ms(lib.p50.Median()),
        lib.p50.Median() / raw.p50.Median(), "<= 1.3x", lib.p50.Median() <= 1.3 * raw.p50.Median());
    Row("1. spawn via gRPC SpawnProcs: throughput", Spread(raw.rate, "/s"), Spread(rpc.rate, "/s"),
        rpc.rate.Median() / raw.rate.Median(), ">= 0.6x", rpc.rate.Median() >= 0.6 * raw.rate.Median());
    SpawnFigures exec = HostdSpawns(h, n, threads, reps, /*exec_readiness=*/true);
    Row("1. (context) spawn with exec readiness, no proc runtime in the child: p50", Ms(raw.p50.Median()),
        Ms(exec.p50.Median()), exec.p50.Median() / raw.p50.Median(), "-", true);
  }

  // 2. The same with 1 GiB of touched heap.
  if (want("2.")) {
    size_t bytes = quick ? (64u << 20) : (1u << 30);
    std::unique_ptr<char[]> heap(new char[bytes]);
    std::memset(heap.get(), 1, bytes);
    SpawnFigures big = HostdSpawns(h, n, threads, reps);
    Row(absl::StrFormat("2. spawn p50 with %d MiB heap vs small heap", static_cast<int>(bytes >> 20)),
        Ms(lib.p50.Median()), Ms(big.p50.Median()), big.p50.Median() / lib.p50.Median(), "<= 1.2x",
        big.p50.Median() <= 1.2 * lib.p50.Median());
    volatile char sink = heap[bytes / 2];
    (void)sink;
  }

  // 3. Terminating everything.
  if (!want("3.")) return 0;
  const int many = quick ? 10 : 1000;
  const int treps = quick ? 1 : 3;
  Samples raw_term = RawTerminate(many, treps, SIGTERM);
  Samples lib_term = HostdTerminate(h, many, treps, {}, absl::Seconds(10));
  Row(absl::StrFormat("3. terminate %d ready procs (exit on SIGTERM)", many), Ms(raw_term.Median()),
      Ms(lib_term.Median()), lib_term.Median() / raw_term.Median(), "<= 1.5x",
      lib_term.Median() <= 1.5 * raw_term.Median());
  Samples observed = HostdSigtermOnly(h, many, treps);
  Row(absl::StrFormat("3. (context) %d hostd procs ended by SIGTERM from outside, until hostd saw every end", many),
      Ms(raw_term.Median()), Ms(observed.Median()), observed.Median() / raw_term.Median(), "-", true);
  const int stubborn = quick ? 4 : 100;
  const absl::Duration grace = absl::Seconds(1);
  // Baseline: what the machine needs to kill and reap that many children at all,
  // the floor under any time over the grace.
  Samples raw_kill = RawTerminate(stubborn, treps, SIGKILL);
  Samples ignore = HostdTerminate(h, stubborn, treps, {"--ignore-sigterm", "--ignore-stop"}, grace);
  double over = ignore.Median() - absl::ToDoubleSeconds(grace);
  Row(absl::StrFormat("3. terminate %d procs ignoring SIGTERM, grace 1 s: time over grace (raw: SIGKILL + reap)",
                      stubborn),
      Ms(raw_kill.Median()), Ms(over), over / raw_kill.Median(), "<= 100 ms", over <= 0.1);
  return 0;
}
