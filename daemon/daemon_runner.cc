#include "daemon/daemon_runner.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "base/default_paths.h"
#include "base/errno_status.h"
#include "base/log.h"
#include "base/own_dir.h"
#include "base/small_file.h"
#include "channel/frame_decoder.h"
#include "channel/grpc_target.h"
#include "channel/tls.h"
#include "daemon/adoption.h"
#include "daemon/control_socket.h"
#include "daemon/exec_policy.h"
#include "daemon/grpc_metrics.h"
#include "daemon/host.h"
#include "daemon/host_metrics.h"
#include "daemon/host_service.h"
#include "daemon/lifecycle_log.h"
#include "daemon/ops_http.h"
#include "daemon/proc_store.h"
#include "daemon/sd_notify.h"
#include "daemon/unparsed_request.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "manager/local_proc_manager.h"
#include "manager/process_proc_manager.h"

namespace hostd::daemon {
namespace {

// After a second stop signal, how long hostd waits to see its SIGKILLed procs end
// before it exits anyway (the janitor and PR_SET_PDEATHSIG cover the rest).
constexpr absl::Duration kSecondSignalKillWait = absl::Seconds(1);
// How long the host loop may take to run a no-op before hostd counts as not alive
// (/healthz, the systemd watchdog).
constexpr absl::Duration kAliveWithin = absl::Seconds(1);
// The service hostd's gRPC health answers for, besides "" (the whole server).
constexpr char kServiceName[] = "hostd.v1.HostService";

// Serving or not, under both names a health check may ask for.
void SetHealth(grpc::Server& server, bool serving) {
  grpc::HealthCheckServiceInterface* health = server.GetHealthCheckService();
  if (health == nullptr) return;
  health->SetServingStatus(kServiceName, serving);
  health->SetServingStatus("", serving);
}

int WaitForSignal(const sigset_t& set) {
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

// Waits for a stop signal. Meanwhile SIGHUP reloads the TLS files at once, and
// every `refresh` they are reloaded if they changed (`tls` may be null).
int WaitForSignalOrReload(const sigset_t& set, channel::TlsContext* tls, absl::Duration refresh) {
  const timespec period = absl::ToTimespec(refresh);
  while (true) {
    int sig = tls == nullptr ? WaitForSignal(set) : sigtimedwait(&set, nullptr, &period);
    if (sig < 0) {
      if (errno != EAGAIN) continue;  // EINTR
      absl::StatusOr<bool> changed = tls->ReloadIfChanged();
      if (!changed.ok()) {
        base::Log().error("TLS files changed but cannot be used, the previous ones stay: {}", changed.status().message());
      } else if (*changed) {
        base::Log().info("TLS files changed: reloaded (generation {}); new connections use them", tls->generation());
      }
      continue;
    }
    if (sig != SIGHUP) return sig;
    if (tls == nullptr) {
      base::Log().info("signal=SIGHUP: no TLS certificates to reload");
      continue;
    }
    absl::Status reloaded = tls->Reload();
    if (reloaded.ok()) {
      base::Log().info("signal=SIGHUP: TLS certificates reloaded (generation {}); new connections use them",
                       tls->generation());
    } else {
      base::Log().error("signal=SIGHUP: TLS certificates not reloaded, the previous ones stay: {}", reloaded.message());
    }
  }
}

// Every proc costs hostd descriptors (its link, pidfd, log files while launching),
// and the soft limit is often 1024 where the hard one is far higher: take it all.
void RaiseDescriptorLimit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max) return;
  rlim_t was = lim.rlim_cur;
  lim.rlim_cur = lim.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) {
    base::Log().warn("cannot raise the descriptor limit from {}: {}", was, std::strerror(errno));
    return;
  }
  base::Log().info("descriptor limit raised from {} to {}", was, lim.rlim_cur);
}

// Says loudly what an operator allowed that exposes hostd.
void WarnAboutExposure(const DaemonConfig& cfg, const channel::ChannelAddr& frontend,
                       const channel::ChannelAddr& grpc) {
  for (auto [flag, addr] : {std::pair{"--frontend", &frontend}, std::pair{"--grpc", &grpc}}) {
    if (addr->transport() == channel::Transport::kTcp && !addr->is_loopback()) {
      base::Log().warn(
          "INSECURE (--insecure): {} {} is plaintext on a non-loopback address: anyone who reaches it can {} and "
          "read what passes",
          flag, addr->ToString(),
          flag == std::string("--grpc") ? "spawn programs as uid " + std::to_string(geteuid()) : "send to every proc");
    }
  }
  if (grpc.is_inet() && cfg.allow_exec.empty()) {
    base::Log().warn(
        "the control API is on {} and no --allow-exec is set: every client it accepts may run any "
        "program as uid {}",
        grpc.ToString(), geteuid());
  }
}

// Handed to the next image across an upgrade's exec: the previous janitor, a child
// of this pid that exits once the new image holds the state lock, to be reaped.
constexpr char kEnvPreviousJanitor[] = "HOSTD_PREVIOUS_JANITOR";

// This process's own argv, as the kernel holds it.
std::vector<std::string> OwnArgv() {
  absl::StatusOr<std::string> cmdline = base::ReadSmallFile("/proc/self/cmdline", 1 << 20);
  std::vector<std::string> argv;
  if (!cmdline.ok()) return argv;
  for (absl::string_view a : absl::StrSplit(*cmdline, absl::string_view("\0", 1))) argv.emplace_back(a);
  if (!argv.empty() && argv.back().empty()) argv.pop_back();
  return argv;
}

// Re-executes this process as `path` with the same arguments; returns only on failure.
absl::Status ExecUpgrade(const std::string& path, pid_t janitor) {
  std::vector<std::string> args = OwnArgv();
  if (args.empty()) return absl::InternalError("cannot read /proc/self/cmdline");
  args[0] = path;
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::setenv(kEnvPreviousJanitor, absl::StrCat(janitor).c_str(), 1);
  ::execv(path.c_str(), argv.data());
  return base::ErrnoError(errno, absl::StrCat("exec ", path));
}

// After an upgrade: reaps the previous image's janitor once it has seen this image
// take the state lock (it then exits without killing anything).
void ReapPreviousJanitor() {
  const char* v = ::getenv(kEnvPreviousJanitor);
  int pid = 0;
  if (v == nullptr || !absl::SimpleAtoi(v, &pid) || pid <= 0) return;
  ::unsetenv(kEnvPreviousJanitor);
  std::thread([pid] { ::waitpid(pid, nullptr, 0); }).detach();
}

}  // namespace

absl::Status RunDaemon(const DaemonConfig& cfg) {
  RaiseDescriptorLimit();
  channel::FrameDecoder::SetPartialBodyBudget(cfg.max_partial_frame_bytes);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  // SIGHUP reloads the TLS certificates; the main thread waits for all three.
  sigset_t main_signals = stop_signals;
  sigaddset(&main_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &main_signals, nullptr);

  absl::StatusOr<ExecPolicy> policy = ExecPolicy::Create(cfg.allow_exec, cfg.allow_user);
  if (!policy.ok()) return policy.status();
  std::shared_ptr<channel::TlsContext> tls;
  if (!cfg.tls_ca.empty()) {
    absl::StatusOr<std::shared_ptr<channel::TlsContext>> t =
        channel::TlsContext::Create({.cert_file = cfg.tls_cert,
                                     .key_file = cfg.tls_key,
                                     .ca_file = cfg.tls_ca,
                                     .require_client_cert = cfg.tls_require_client_cert});
    if (!t.ok()) return t.status();
    tls = *std::move(t);
  }

  // The directories of unix sockets hostd binds: private to its user.
  for (const std::string& addr : {cfg.grpc, cfg.frontend, cfg.backend}) {
    absl::StatusOr<channel::ChannelAddr> a = channel::ChannelAddr::Parse(addr);
    if (a.ok() && a->transport() == channel::Transport::kUnix && !a->is_abstract() && !a->host().empty()) {
      std::string dir = std::filesystem::path(a->host()).parent_path();
      if (dir == base::DefaultRuntimeDir()) {
        if (absl::Status s = base::MakeOwnDir(dir, 0700); !s.ok()) return s;
      }
    }
  }
  // The state directory holds procs' logs and state: hostd's user's alone.
  if (absl::Status s = base::MakeOwnDir(cfg.state_dir, 0700); !s.ok()) return s;

  if (cfg.keep_procs && cfg.manager != "process") {
    return absl::InvalidArgumentError("--keep-procs needs --manager process (in-process procs die with hostd)");
  }
  if (!cfg.default_limits.empty() && cfg.manager != "process") {
    return absl::InvalidArgumentError("--default-* limits need --manager process (in-process procs share hostd's cgroup)");
  }
  std::unique_ptr<manager::ProcManager> mgr_owner;
  manager::ProcessProcManager* pm = nullptr;
  manager::BulkTerminate* bulk = nullptr;
  // An upgrade under way (HostService::Upgrade): the binary to re-execute.
  absl::Mutex upgrade_mu;
  std::string upgrade_path;
  HostServiceOptions sopts;
  sopts.version = kVersion;
  sopts.max_watch_streams = cfg.max_watch_streams;
  sopts.max_watch_bytes = cfg.max_watch_bytes;
  if (cfg.manager == "process") {
    absl::StatusOr<std::unique_ptr<manager::ProcessProcManager>> m =
        manager::ProcessProcManager::Create({.state_dir = cfg.state_dir,
                                             .use_cgroups = cfg.cgroups,
                                             .log_max_bytes = cfg.log_max_bytes,
                                             .log_rotations = cfg.log_rotations,
                                             .log_keep_ended = cfg.log_keep_ended,
                                             .log_keep_age = absl::Hours(cfg.log_keep_age_h),
                                             .keep_procs = cfg.keep_procs,
                                             .reattach_timeout = absl::Seconds(cfg.reattach_timeout_s),
                                             .default_limits = cfg.default_limits});
    if (!m.ok()) return m.status();
    ReapPreviousJanitor();
    pm = m->get();
    sopts.manager_kind = "process";
    sopts.cgroup_fallback = pm->cgroups_enabled() ? "" : pm->cgroup_fallback_reason();
    sopts.log_path = [pm](const std::string& name, bool err, int rotation) { return pm->LogPath(name, err, rotation); };
    if (!pm->cgroups_enabled()) base::Log().warn("procs run without cgroups: {}", pm->cgroup_fallback_reason());
    bulk = pm;
    mgr_owner = *std::move(m);
  } else {
    auto m = std::make_unique<manager::LocalProcManager>();
    bulk = m.get();
    sopts.manager_kind = "local";
    mgr_owner = std::move(m);
  }

  sopts.max_spawn_batch = cfg.max_spawn_batch;
  sopts.max_watch_backlog = cfg.watch_backlog;
  sopts.upgrade = [&cfg, &upgrade_mu, &upgrade_path](const std::string& path) -> absl::Status {
    if (!cfg.keep_procs) {
      return absl::FailedPreconditionError("upgrade needs hostd --keep-procs: without it the procs would die");
    }
    if (path.empty() || path[0] != '/') return absl::InvalidArgumentError("path: must be absolute");
    if (::access(path.c_str(), X_OK) != 0) {
      return base::ErrnoError(absl::StatusCode::kFailedPrecondition, errno, absl::StrCat("path ", path));
    }
    absl::MutexLock lock(&upgrade_mu);
    if (!upgrade_path.empty()) return absl::FailedPreconditionError("an upgrade is already under way");
    upgrade_path = path;
    ::kill(::getpid(), SIGTERM);  // wakes the main thread's sigwait
    return absl::OkStatus();
  };

  HostOptions hopts;
  hopts.max_live_procs = cfg.max_procs;
  hopts.frontend = *channel::ChannelAddr::Parse(cfg.frontend);
  hopts.backend = *channel::ChannelAddr::Parse(cfg.backend);
  hopts.hold_until_adopted = cfg.keep_procs;
  if (!cfg.advertise.empty()) hopts.advertise = *channel::ChannelAddr::Parse(cfg.advertise);
  hopts.listener.tls = tls;
  hopts.listener.dead_peer_timeout = absl::Seconds(cfg.dead_peer_timeout_s);
  hopts.remote_link.dead_peer_timeout = absl::Seconds(cfg.dead_peer_timeout_s);
  hopts.remote_link.tls = tls;
  channel::ChannelAddr grpc_addr = *channel::ChannelAddr::Parse(cfg.grpc);
  WarnAboutExposure(cfg, hopts.frontend, grpc_addr);
  sopts.exec_policy = *std::move(policy);
  absl::StatusOr<std::unique_ptr<Host>> host = Host::Start(*mgr_owner, *bulk, hopts);
  if (!host.ok()) return host.status();

  LifecycleLog lifecycle_log(**host);
  DeathHistory deaths(**host, {.per_name = cfg.death_history});
  sopts.deaths = &deaths;
  HostMetrics metrics(**host);
  GrpcMetrics grpc_metrics(metrics.registry());
  // Set once the server is built; Drain calls cannot come before.
  std::atomic<grpc::Server*> serving{nullptr};
  std::atomic<bool> shutting_down{false};
  sopts.on_spawn_done = [&metrics](const absl::Status& s) { metrics.SpawnDone(s); };
  // The control socket: hostd accepts every connection itself, to know each
  // caller (SO_PEERCRED on unix:, the client certificate on tls:, whose TLS hostd
  // ends), cap connections and recover from running out of descriptors; gRPC
  // gets each connection in plaintext. The frontend's TlsContext serves tls:, so
  // SIGHUP and --tls-refresh reload both.
  absl::StatusOr<std::unique_ptr<ControlSocket>> listening =
      ControlSocket::Listen(grpc_addr, cfg.max_grpc_connections, tls);
  if (!listening.ok()) return listening.status();
  std::unique_ptr<ControlSocket> control = *std::move(listening);
  sopts.caller_of = [c = control.get()](const std::string& peer) { return c->CallerOf(peer); };
  sopts.on_drain = [&serving, &shutting_down](bool draining) {
    if (grpc::Server* s = serving.load(); s != nullptr && !shutting_down.load()) SetHealth(*s, !draining);
  };
  // The durable proc table: what a hostd with --keep-procs re-adopts next time.
  std::unique_ptr<ProcStore> store;
  if (pm != nullptr) {
    absl::StatusOr<std::unique_ptr<ProcStore>> opened = ProcStore::Open(cfg.state_dir);
    if (!opened.ok()) return opened.status();
    store = *std::move(opened);
    RecordInto(**host, *store, [pm](const std::string& name, bool err) { return pm->LogPath(name, err); });
    if (cfg.keep_procs) {
      AdoptionSummary a = AdoptStored(store->loaded(), store->loaded_groups(), *pm, **host, *store, sopts.exec_policy);
      base::Log().info(
          "durable proc table {}: {} procs recorded, {} re-adopted, {} restarting again, {} ended while hostd was "
          "down, {} pids reused by other processes (not adopted), {} killed mid-start, {} left alone (not adoptable), "
          "{} unrecorded launches killed",
          store->path(), a.rows, a.adopted, a.restarted, a.ended, a.strangers, a.killed, a.not_adopted, a.unrecorded);
      (*host)->Adopted();
    } else {
      // Without --keep-procs the previous hostd's procs died with it, and so did
      // its groups.
      for (const StoredProc& row : store->loaded()) store->Forget(row.name);
      for (const StoredGroup& g : store->loaded_groups()) store->RecordGroup(g.name, std::nullopt);
    }
  }

  HostService service(**host, sopts);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  // First, so that the metrics count the status it sets.
  interceptors.push_back(std::make_unique<UnparsedRequestFactory>());
  interceptors.push_back(grpc_metrics.Factory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(cfg.grpc_max_message_mib << 20);
  builder.SetMaxSendMessageSize(cfg.grpc_max_message_mib << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot serve the control API on ", cfg.grpc,
                                               " (in use, or not allowed); pick another with --grpc"));
  }
  control->Serve(*server);
  SetHealth(*server, true);
  serving = server.get();

  Host& h = **host;
  std::unique_ptr<OpsHttpServer> http;
  if (!cfg.http.empty()) {
    absl::StatusOr<std::unique_ptr<OpsHttpServer>> started =
        OpsHttpServer::Start(metrics, {.addr = cfg.http,
                                       .allow_remote = cfg.http_allow_remote,
                                       .not_ready = [&h, &shutting_down]() -> std::string {
                                         if (shutting_down.load()) return "hostd is shutting down";
                                         if (h.draining()) return "hostd is draining (hostctl drain --off ends it)";
                                         return "";
                                       },
                                       .alive = [&h] { return h.Responsive(kAliveWithin); }});
    if (!started.ok()) {
      control->StopAccepting();  // none is handed to a server shutting down
      server->Shutdown(absl::ToChronoTime(absl::Now()));
      return started.status();
    }
    http = *std::move(started);
  }
  base::LogEvent(spdlog::level::info, "hostd ready",
                 {{"grpc", cfg.grpc},
                  {"frontend", h.frontend().ToString()},
                  {"frontend_bound", h.bound_frontend().ToString()},
                  {"backend", h.backend().ToString()},
                  {"http", http ? http->addr() : ""},
                  {"manager", cfg.manager},
                  {"state_dir", cfg.state_dir},
                  {"version", kVersion}});
  (void)SdNotify(absl::StrCat("READY=1\nSTATUS=serving on ", cfg.grpc, "\nMAINPID=", getpid()));
  absl::Duration watchdog_period = WatchdogPeriod();
  if (watchdog_period > absl::ZeroDuration()) {
    base::LogEvent(spdlog::level::info, "systemd watchdog on",
                   {{"period_ms", absl::ToInt64Milliseconds(watchdog_period)},
                    {"ping_every_ms", absl::ToInt64Milliseconds(watchdog_period / 2)}});
  }
  SdWatchdog watchdog(watchdog_period, [&h] { return h.Responsive(kAliveWithin); });

  int sig = WaitForSignalOrReload(main_signals, tls.get(), absl::Seconds(cfg.tls_refresh_s));
  absl::Time shutdown_began = absl::Now();
  shutting_down = true;
  base::LogEvent(spdlog::level::info, "shutting down",
                 {{"signal", sigabbrev_np(sig) ? sigabbrev_np(sig) : "?"},
                  {"live_procs", h.live_procs()},
                  {"grace_ms", static_cast<int64_t>(cfg.shutdown_grace_s * 1000)}});
  if (cfg.keep_procs) {
    std::string upgrade;
    {
      absl::MutexLock lock(&upgrade_mu);
      upgrade = upgrade_path;
    }
    // Hand over: no spawn half done, the control API drained (an Upgrade's reply
    // goes out), the message listeners closed and what they took delivered, the
    // durable table committed. The procs keep running; the janitor waits
    // --reattach-timeout for the next hostd.
    base::Log().info("{}: leaving {} procs running for the next hostd", upgrade.empty() ? strsignal(sig) : "upgrade",
                     (*host)->live_procs());
    (void)SdNotify(upgrade.empty() ? "STOPPING=1" : "RELOADING=1");
    SetHealth(*server, false);
    (*host)->StopSpawns("hostd is handing its procs over to the next hostd", absl::Now() + absl::Seconds(10),
                        /*hand_over=*/true);
    if (http) http->Stop();
    control->StopAccepting();  // none is handed to a server shutting down
    // Streams never end on their own: each is told why, so that the server's
    // Shutdown waits only for calls in flight (an Upgrade's reply).
    service.EndStreams(absl::UnavailableError(
        "hostd is handing its procs over to the next hostd; watch again once it is up"), /*logs=*/true);
    server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    server->Wait();
    size_t unacked = (*host)->Quiesce(absl::Now() + absl::Seconds(5));
    if (unacked > 0) base::Log().warn("hand-over: {} messages taken were not acknowledged by their procs", unacked);
    store->Flush();
    if (!upgrade.empty()) {
      base::Log().info("upgrade: re-executing {} (pid {})", upgrade, getpid());
      absl::Status s = ExecUpgrade(upgrade, pm->janitor_pid());
      base::Log().error("upgrade failed: {}; the procs wait {}s for a new hostd", s.message(), cfg.reattach_timeout_s);
      std::fflush(nullptr);
      _exit(1);
    }
    std::fflush(nullptr);
    _exit(0);  // not returning: destroying the manager would end the procs
  }
  (void)SdNotify("STOPPING=1");
  SetHealth(*server, false);

  // A second signal: no more grace. The manager SIGKILLs every proc at once; the
  // short wait only lets the summary say whether each was seen gone.
  std::atomic<bool> finished{false};
  std::thread second([&stop_signals, &finished, bulk] {
    int again = WaitForSignal(stop_signals);
    if (finished.load()) return;  // woken by the normal path below
    base::Log().warn("signal={} again: killing every proc now", strsignal(again));
    manager::TerminateSummary killed = bulk->KillAll(absl::Now() + kSecondSignalKillWait);
    base::Log().warn("procs killed: attempted={} seen_ended={} not_seen_ended={}", killed.attempted, killed.ok,
                     killed.failed);
    _exit(128 + again);
  });

  absl::Duration grace = absl::Seconds(cfg.shutdown_grace_s);
  (*host)->StopSpawns("hostd is shutting down", absl::Now() + grace);
  // Procs hear "conclude" on the control lane before any SIGTERM: each gets the
  // signal acknowledged (or it comes back) before termination begins, bounded so
  // that a proc that does not read cannot hold shutdown up.
  auto concluded = std::make_shared<absl::Notification>();
  (*host)->Broadcast("conclude", "hostd is shutting down", "", [concluded](absl::StatusOr<BroadcastResult> r) {
    if (r.ok()) {
      base::Log().info("conclude signal: targeted={} delivered={} failed={}", r->targeted, r->delivered, r->failed);
    }
    concluded->Notify();
  });
  if (!concluded->WaitForNotificationWithTimeout(std::min(grace / 2, absl::Seconds(2)))) {
    base::Log().warn("conclude signal: not every proc acknowledged it in time; terminating anyway");
  }
  manager::TerminateSummary summary =
      (*host)->TerminateChildren(grace, cfg.shutdown_max_in_flight, "hostd is shutting down");
  for (const manager::TerminateOutcome& o : summary.outcomes) {
    if (!o.result.ok()) {
      base::LogEvent(spdlog::level::err, "proc not confirmed ended",
                     {{"proc", o.proc_id.name()}, {"reason", o.result.status().message()}});
    }
  }
  HostCounters counters = h.counters();
  base::LogEvent(spdlog::level::info, "shutdown summary",
                 {{"attempted", summary.attempted},
                  {"ok", summary.ok},
                  {"failed", summary.failed},
                  {"spawned_total", counters.spawned},
                  {"forwarded_total", counters.forwarded},
                  {"returned_total", counters.returned},
                  {"duration_ms", absl::ToInt64Milliseconds(absl::Now() - shutdown_began)},
                  {"uptime_s", absl::ToInt64Seconds(absl::Now() - h.started_at())}});
  if (http) http->Stop();
  control->StopAccepting();  // none is handed to a server shutting down
  // Watchers get every proc's end, then this; log followers end with their procs.
  service.EndStreams(absl::UnavailableError("hostd has shut down"), /*logs=*/false);
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  server->Wait();
  // Release the second-signal thread.
  finished.store(true);
  pthread_kill(second.native_handle(), SIGTERM);
  second.join();
  return absl::OkStatus();
}

}  // namespace hostd::daemon
