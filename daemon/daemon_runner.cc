#include "daemon/daemon_runner.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/default_paths.h"
#include "base/errno_status.h"
#include "base/log.h"
#include "base/own_dir.h"
#include "channel/grpc_target.h"
#include "daemon/host.h"
#include "daemon/host_service.h"
#include "daemon/sd_notify.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "manager/local_proc_manager.h"
#include "manager/process_proc_manager.h"

namespace hostd::daemon {
namespace {

// After a second stop signal, how long hostd waits to see its SIGKILLed procs end
// before it exits anyway (the janitor and PR_SET_PDEATHSIG cover the rest).
constexpr absl::Duration kSecondSignalKillWait = absl::Seconds(1);

int WaitForSignal(const sigset_t& set) {
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
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

}  // namespace

absl::Status RunDaemon(const DaemonConfig& cfg) {
  RaiseDescriptorLimit();
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

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

  std::unique_ptr<manager::ProcManager> mgr_owner;
  manager::BulkTerminate* bulk = nullptr;
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
                                             .log_keep_age = absl::Hours(cfg.log_keep_age_h)});
    if (!m.ok()) return m.status();
    manager::ProcessProcManager* pm = m->get();
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

  HostOptions hopts;
  hopts.max_live_procs = cfg.max_procs;
  hopts.frontend = *channel::ChannelAddr::Parse(cfg.frontend);
  hopts.backend = *channel::ChannelAddr::Parse(cfg.backend);
  absl::StatusOr<std::unique_ptr<Host>> host = Host::Start(*mgr_owner, *bulk, hopts);
  if (!host.ok()) return host.status();

  HostService service(**host, sopts);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::string target = *channel::GrpcTarget(cfg.grpc);
  int port = 0;
  builder.AddListeningPort(target, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(cfg.grpc_max_message_mib << 20);
  builder.SetMaxSendMessageSize(cfg.grpc_max_message_mib << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot serve the control API on ", cfg.grpc,
                                               " (in use, or not allowed); pick another with --grpc"));
  }
  absl::StatusOr<channel::ChannelAddr> grpc_addr = channel::ChannelAddr::Parse(cfg.grpc);
  if (grpc_addr->transport() == channel::Transport::kUnix && !grpc_addr->is_abstract()) {
    chmod(grpc_addr->host().c_str(), 0600);
  }
  base::Log().info("hostd ready: grpc={} frontend={} backend={} manager={} state_dir={} pid={}", cfg.grpc,
                   (*host)->frontend().ToString(), (*host)->backend().ToString(), cfg.manager, cfg.state_dir, getpid());
  (void)SdNotify(absl::StrCat("READY=1\nSTATUS=serving on ", cfg.grpc, "\nMAINPID=", getpid()));

  int sig = WaitForSignal(stop_signals);
  base::Log().info("signal={} shutting down: terminating procs (grace {}s each)", strsignal(sig), cfg.shutdown_grace_s);
  (void)SdNotify("STOPPING=1");
  server->GetHealthCheckService()->SetServingStatus(false);

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
  base::Log().info("procs terminated: attempted={} ok={} failed={}", summary.attempted, summary.ok, summary.failed);
  for (const manager::TerminateOutcome& o : summary.outcomes) {
    if (!o.result.ok())
      base::Log().error("proc={} not confirmed ended: {}", o.proc_id.name(), o.result.status().message());
  }
  server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  server->Wait();
  // Release the second-signal thread.
  finished.store(true);
  pthread_kill(second.native_handle(), SIGTERM);
  second.join();
  return absl::OkStatus();
}

}  // namespace hostd::daemon
