#include "manager/process_proc_manager.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "base/errno_status.h"
#include "base/log.h"
#include "base/own_dir.h"
#include "base/small_file.h"
#include "base/status_macros.h"
#include "base/unix_addr.h"
#include "channel/sender.h"
#include "manager/launcher.h"
#include "manager/proc_identity.h"
#include "manager/proc_mark.h"
#include "manager/process_handle.h"
#include "proc/bootstrap.h"

namespace hostd::manager {

using proc::ProcStatus;

namespace {

constexpr char kDefaultPath[] = "/usr/local/bin:/usr/bin:/bin";

// The state for a proc's next incarnation, on a sealed memfd at offset 0: the proc
// reads it as it is, and nothing else can change it.
absl::StatusOr<base::UniqueFd> StateMemfd(const std::string& name, const std::string& state) {
  base::UniqueFd fd(::memfd_create(absl::StrCat("hostd-state-", name).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd.valid()) return LaunchError(errno, "memfd for the initial state");
  for (size_t off = 0; off < state.size();) {
    ssize_t n = ::write(fd.get(), state.data() + off, state.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return LaunchError(errno, "writing the initial state");
    off += static_cast<size_t>(n);
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    return LaunchError(errno, "sealing the initial state");
  }
  if (::lseek(fd.get(), 0, SEEK_SET) != 0) return LaunchError(errno, "rewinding the initial state");
  return fd;
}

// The ProcMark token of the procs kept in `state_dir` (<state_dir>/proc-mark): the
// one recorded there, or a fresh one recorded now (written whole and renamed into
// place, mode 0600). Called under the state directory's lock.
absl::StatusOr<std::string> StateDirMarkToken(const std::string& state_dir) {
  const std::string path = absl::StrCat(state_dir, "/proc-mark");
  absl::StatusOr<std::string> have = base::ReadSmallFile(path, 256);
  if (have.ok()) {
    std::string token(absl::StripAsciiWhitespace(*have));
    bool valid = token.size() == kMarkTokenLength &&
                 std::all_of(token.begin(), token.end(), [](char c) { return absl::ascii_isxdigit(c); });
    if (valid) return token;
    base::Log().warn("{}: not a mark token ({} bytes); a fresh one replaces it", path, have->size());
  } else if (!absl::IsNotFound(have.status())) {
    return have.status();
  }
  std::string token = NewMarkToken();
  const std::string tmp = absl::StrCat(path, ".new");
  base::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd.valid()) return base::ErrnoError(absl::StatusCode::kFailedPrecondition, errno, tmp);
  std::string line = token + "\n";
  if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()) || ::fsync(fd.get()) != 0 ||
      ::rename(tmp.c_str(), path.c_str()) != 0) {
    return base::ErrnoError(absl::StatusCode::kFailedPrecondition, errno, path);
  }
  return token;
}

// The environment `spec` gives its program (before the HOSTD_* variables),
// explicitly: the inherit_env names copied from this process, then spec.env.
absl::StatusOr<absl::flat_hash_map<std::string, std::string>> SpecEnv(const SpawnSpec& spec) {
  absl::flat_hash_map<std::string, std::string> env;
  for (const std::string& var : spec.inherit_env) {
    if (const char* v = ::getenv(var.c_str()); v != nullptr) env[var] = v;
  }
  for (const auto& [k, v] : spec.env) {
    if (k.empty() || k.find('=') != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("environment variable name \"", k, "\" is invalid"));
    }
    env[k] = v;
  }
  return env;
}

absl::StatusOr<std::optional<LaunchRequest::Credentials>> SpecCredentials(const SpawnSpec& spec) {
  if (spec.user.empty()) return std::nullopt;
  if (::geteuid() != 0) {
    return absl::PermissionDeniedError(absl::StrCat("running as user \"", spec.user, "\" needs hostd to run as root"));
  }
  absl::StatusOr<LaunchRequest::Credentials> c = ResolveUser(spec.user);
  if (!c.ok()) return c.status();
  return std::optional<LaunchRequest::Credentials>(*std::move(c));
}

}  // namespace

absl::StatusOr<LaunchRequest> ProcessProcManager::ProbeRequest(const SpawnSpec& spec) const {
  const LivenessSpec& live = spec.liveness;
  HOSTD_RETURN_IF_ERROR(ValidateLiveness(live, "liveness."));
  if (live.kind == LivenessKind::kHeartbeat && spec.readiness != ReadinessMode::kHandshake) {
    return absl::InvalidArgumentError(
        "liveness: a heartbeat check needs the proc runtime (readiness handshake), which sends the beats; use an exec "
        "probe for other programs");
  }
  LaunchRequest req;
  if (live.kind != LivenessKind::kExec) return req;
  HOSTD_ASSIGN_OR_RETURN(auto env, SpecEnv(spec));
  std::string path_list = env.contains("PATH") ? env["PATH"] : kDefaultPath;
  absl::StatusOr<std::string> program = ResolveProgram(live.command[0], path_list);
  if (!program.ok()) {
    return absl::Status(program.status().code(), absl::StrCat("liveness probe: ", program.status().message()));
  }
  if (spec.authorize) {
    if (absl::Status allowed = spec.authorize(*program); !allowed.ok()) {
      return absl::Status(allowed.code(), absl::StrCat("liveness probe: ", allowed.message()));
    }
  }
  HOSTD_ASSIGN_OR_RETURN(req.credentials, SpecCredentials(spec));
  req.path = *program;
  req.argv = live.command;
  for (const auto& [k, v] : env) req.envp.push_back(absl::StrCat(k, "=", v));
  req.cwd = spec.cwd.empty() ? options_.state_dir : spec.cwd;
  return req;
}

ProcessProcManager::ProcessProcManager(ProcessProcManagerOptions options)
    : options_(std::move(options)),
      mark_token_(NewMarkToken()),
      logs_({.dir = absl::StrCat(options_.state_dir, "/logs"),
             .max_bytes = options_.log_max_bytes,
             .rotations = options_.log_rotations,
             .keep_ended = options_.log_keep_ended,
             .keep_age = options_.log_keep_age}) {}

void ProcessProcManager::CheckLogs() {
  absl::flat_hash_map<std::string, std::shared_ptr<ProcHandle>> running;
  absl::flat_hash_set<std::string> live;
  for (auto& h : procs_.All()) {
    live.insert(h->proc_id().name());
    running[h->proc_id().name()] = std::move(h);
  }
  logs_.RotateOversized(live, [&running](const std::string& name, bool stderr_log) {
    // The stderr tail of the end status starts at the truncated file's start
    // (the exit monitor reads it on this thread too).
    if (stderr_log) static_cast<ProcessHandle&>(*running[name]).set_stderr_start(0);
  });
  // Pruning lists the directory: when procs have ended since the last look, and
  // once a minute for the age limit.
  constexpr size_t kChecksPerPrune = 120;
  uint64_t ended = procs_ended_.load();
  if (ended != ended_at_last_prune_ || ++log_checks_ % kChecksPerPrune == 0) {
    ended_at_last_prune_ = ended;
    logs_.Prune(live, absl::Now());
  }
  log_timer_->expires_after(absl::ToChronoNanoseconds(options_.log_check_interval));
  log_timer_->async_wait([this](const boost::system::error_code& ec) {
    // A wait that completed before the destructor reset the timer still runs
    // with success; the reset (on this thread) is what says the manager is going.
    if (!ec && log_timer_ != nullptr) CheckLogs();
  });
}

absl::StatusOr<std::unique_ptr<ProcessProcManager>> ProcessProcManager::Create(ProcessProcManagerOptions options) {
  if (options.state_dir.empty()) return absl::InvalidArgumentError("ProcessProcManager needs a state directory");
  // Procs' output lands here: a directory of hostd's user, 0700 whatever the umask.
  for (const std::string& dir : {options.state_dir, absl::StrCat(options.state_dir, "/logs")}) {
    if (absl::Status s = base::MakeOwnDir(dir, 0700); !s.ok()) return absl::FailedPreconditionError(s.message());
  }
  // Orphaned descendants of procs come back to us instead of escaping to init.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    // Only a kernel without subreapers fails here: not the caller's argument's fault.
    return base::ErrnoError(absl::StatusCode::kFailedPrecondition, errno, "prctl(PR_SET_CHILD_SUBREAPER)");
  }
  std::unique_ptr<ProcessProcManager> mgr(new ProcessProcManager(std::move(options)));
  if (mgr->options_.use_cgroups) {
    absl::StatusOr<std::unique_ptr<CgroupTree>> tree = CgroupTree::Create();
    if (tree.ok()) {
      mgr->cgroups_ = *std::move(tree);
    } else {
      mgr->cgroup_fallback_reason_ = std::string(tree.status().message());
      base::Log().info("procs use process groups without cgroups: {}", mgr->cgroup_fallback_reason_);
    }
  } else {
    mgr->cgroup_fallback_reason_ = "disabled by configuration";
  }
  if (!mgr->options_.default_limits.empty() && mgr->cgroups_ == nullptr) {
    mgr->loop_ = channel::EventLoop::Start("procs");  // the destructor runs on a whole manager
    return absl::FailedPreconditionError(absl::StrCat("default limits (", mgr->options_.default_limits.ToString(),
                                                      ") need a cgroup per proc, and cgroups are off: ",
                                                      mgr->cgroup_fallback_reason_));
  }
  JanitorReattach reattach;
  if (mgr->options_.keep_procs) {
    // One owner per state directory: the lock's holder is who the procs belong to.
    reattach.lock_path = absl::StrCat(mgr->options_.state_dir, "/hostd.lock");
    reattach.token = absl::StrCat(NewMarkToken(), " ", ::getpid());
    reattach.timeout = mgr->options_.reattach_timeout;
    mgr->state_lock_.reset(::open(reattach.lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!mgr->state_lock_.valid()) {
      mgr->loop_ = channel::EventLoop::Start("procs");
      return base::ErrnoError(absl::StatusCode::kFailedPrecondition, errno, reattach.lock_path);
    }
    if (::flock(mgr->state_lock_.get(), LOCK_EX | LOCK_NB) != 0) {
      mgr->loop_ = channel::EventLoop::Start("procs");
      return absl::FailedPreconditionError(absl::StrCat("another hostd holds ", reattach.lock_path,
                                                        ": one hostd per state directory with --keep-procs"));
    }
    if (::ftruncate(mgr->state_lock_.get(), 0) != 0 ||
        ::pwrite(mgr->state_lock_.get(), reattach.token.data(), reattach.token.size(), 0) !=
            static_cast<ssize_t>(reattach.token.size())) {
      mgr->loop_ = channel::EventLoop::Start("procs");
      return base::ErrnoError(absl::StatusCode::kFailedPrecondition, errno, reattach.lock_path);
    }
    absl::StatusOr<std::string> token = StateDirMarkToken(mgr->options_.state_dir);
    if (!token.ok()) {
      mgr->loop_ = channel::EventLoop::Start("procs");
      return token.status();
    }
    mgr->mark_token_ = *std::move(token);
  }
  if (mgr->options_.janitor) {
    // Forked before the loop thread exists, while this process is as small as it gets.
    absl::StatusOr<std::unique_ptr<Janitor>> janitor =
        Janitor::Start(mgr->cgroups_ ? mgr->cgroups_->parent() : std::string(), mgr->mark_token_, reattach);
    if (!janitor.ok()) {
      mgr->loop_ = channel::EventLoop::Start("procs");  // the destructor runs on a whole manager
      return janitor.status();
    }
    mgr->janitor_ = *std::move(janitor);
  }
  mgr->loop_ = channel::EventLoop::Start("procs");
  ProcessProcManager* raw = mgr.get();
  mgr->loop_->RunSync([raw] {
    raw->loop_thread_ = std::this_thread::get_id();
    raw->reaper_ =
        std::make_unique<OrphanReaper>(raw->loop_->context(), raw->cgroups_ ? raw->cgroups_->parent() : std::string(),
                                       raw->janitor_pid(), raw->mark_token_);
    raw->log_space_ = std::make_unique<LogSpace>(raw->loop_->context(), absl::StrCat(raw->options_.state_dir, "/logs"));
    raw->log_timer_ = std::make_unique<boost::asio::steady_timer>(raw->loop_->context());
    raw->CheckLogs();  // ended procs' logs from an earlier run are pruned at once
  });
  return mgr;
}

ProcessProcManager::~ProcessProcManager() {
  std::vector<std::shared_ptr<ProcessHandle>> handles;
  {
    absl::MutexLock lock(&mu_);
    for (auto& weak : handed_out_) {
      if (auto h = weak.lock()) handles.push_back(std::move(h));
    }
    handed_out_.clear();
  }
  // Every proc still running gets SIGKILL at once; then each is waited for on the
  // loop, where its exit is observed, however busy the loop was meanwhile.
  for (auto& h : handles) h->KillWithoutWaiting();
  for (auto& h : handles) h->DetachFromManager();
  loop_->RunSync([&] {
    for (auto& h : handles) h->ReleaseWithManager();
    reaper_.reset();  // on its loop thread, which it belongs to
    log_space_.reset();
    log_timer_.reset();
  });
  handles.clear();
  loop_.reset();
  janitor_.reset();  // nothing is left for it to sweep; it exits and is reaped
  cgroups_.reset();
}

std::string ProcessProcManager::LogPath(const std::string& name, bool stderr_log, int rotation) const {
  return logs_.Path(name, stderr_log, rotation);
}

std::vector<std::shared_ptr<ProcHandle>> ProcessProcManager::Procs() const { return procs_.All(); }

TerminateSummary ProcessProcManager::TerminateAll(absl::Duration grace, int max_in_flight, absl::string_view reason) {
  return TerminateHandles(Procs(), grace, max_in_flight, reason);
}

TerminateSummary ProcessProcManager::KillAll(absl::Time deadline) { return KillHandles(Procs(), deadline); }

absl::StatusOr<std::shared_ptr<ProcHandle>> ProcessProcManager::Spawn(const proc::ProcId& id,
                                                                      const channel::ChannelAddr& forwarder,
                                                                      const SpawnSpec& spec) {
  const absl::Time deadline =
      spec.ready_timeout > absl::ZeroDuration() ? absl::Now() + spec.ready_timeout : absl::InfiniteFuture();
  const std::string& name = id.name();
  auto fail = [&](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat("cannot spawn proc \"", name, "\": ", s.message()));
  };

  // The environment, explicitly.
  absl::StatusOr<absl::flat_hash_map<std::string, std::string>> spec_env = SpecEnv(spec);
  if (!spec_env.ok()) return fail(spec_env.status());
  absl::flat_hash_map<std::string, std::string> env = *std::move(spec_env);
  if (spec.initial_state.has_value() && spec.initial_state->size() > proc::kMaxStateBytes) {
    return fail(absl::InvalidArgumentError(absl::StrCat("initial state is ", spec.initial_state->size(),
                                                        " bytes; at most ", proc::kMaxStateBytes, " allowed")));
  }
  const CgroupLimits limits = spec.limits.Or(options_.default_limits);
  if (absl::Status valid = ValidateLimits(limits, "limits."); !valid.ok()) return fail(valid);
  if (!limits.empty() && cgroups_ == nullptr) {
    return fail(absl::FailedPreconditionError(absl::StrCat("its limits (", limits.ToString(),
                                                           ") need a cgroup per proc, and cgroups are off: ",
                                                           cgroup_fallback_reason_)));
  }
  std::string path_list = env.contains("PATH") ? env["PATH"] : kDefaultPath;
  absl::StatusOr<std::string> program = ResolveProgram(spec.program, path_list);
  if (!program.ok()) return fail(program.status());
  if (spec.authorize) {
    if (absl::Status allowed = spec.authorize(*program); !allowed.ok()) return fail(allowed);
  }
  absl::StatusOr<std::optional<LaunchRequest::Credentials>> credentials = SpecCredentials(spec);
  if (!credentials.ok()) return fail(credentials.status());
  absl::StatusOr<LaunchRequest> probe = ProbeRequest(spec);
  LivenessSpec liveness = spec.liveness;
  if (!probe.ok() && spec.skip_refused_probe && spec.liveness.kind == LivenessKind::kExec) {
    base::Log().warn("proc={} started without its liveness check ({}): {}", name, spec.liveness.ToString(),
                     probe.status().message());
    liveness = {};
    probe = LaunchRequest{};
  }
  if (!probe.ok()) return fail(probe.status());
  std::vector<std::string> argv = {spec.program};
  argv.insert(argv.end(), spec.args.begin(), spec.args.end());
  std::string command = absl::StrJoin(argv, " ");

  // Claim the name before touching anything of the proc's (its log files above all).
  auto handle = std::make_shared<ProcessHandle>(this, id, command);
  if (absl::Status added = procs_.Add(name, handle); !added.ok()) return added;
  std::string cgroup_dir;
  // From here on a failure ends the handle (anyone who saw it in Procs() sees it
  // end) and frees the name.
  auto abandon = [&](const absl::Status& s) {
    procs_.Remove(name, handle.get());
    if (!cgroup_dir.empty()) (void)CgroupTree::Remove(cgroup_dir);
    (void)handle->cell().Transition(ProcStatus::Failed(std::string(s.message())));
    return s;
  };

  env[proc::kEnvProcId] = id.ToString();
  env[proc::kEnvHostBackend] = forwarder.ToString();
  env[proc::kEnvParentPid] = absl::StrCat(::getpid());
  if (options_.keep_procs) env[proc::kEnvOutliveParent] = "1";
  const uint64_t mark_serial = next_mark_serial_.fetch_add(1, std::memory_order_relaxed);
  env[kEnvProcMark] = MarkValue(mark_token_, mark_serial);
  handle->set_mark_serial(mark_serial);
  handle->set_liveness(std::move(liveness), *std::move(probe));
  base::UniqueFd ready_read, ready_write, notify_sock, state_fd;
  if (spec.readiness == ReadinessMode::kHandshake) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return abandon(fail(LaunchError(errno, "readiness pipe")));
    ready_read.reset(p[0]);
    ready_write.reset(p[1]);
    env[proc::kEnvReadyFd] = absl::StrCat(kReadyFd);
    if (spec.initial_state.has_value()) {
      absl::StatusOr<base::UniqueFd> memfd = StateMemfd(name, *spec.initial_state);
      if (!memfd.ok()) return abandon(fail(memfd.status()));
      state_fd = *std::move(memfd);
      env[proc::kEnvStateFd] = absl::StrCat(kStateFd);
    }
  } else if (spec.readiness == ReadinessMode::kNotify) {
    static std::atomic<uint64_t> serial{0};
    std::string abstract = absl::StrCat("hostd-notify-", ::getpid(), "-", ++serial);
    absl::StatusOr<base::UnixAddr> addr = base::UnixAddr::Create(absl::StrCat("@", abstract));
    if (!addr.ok()) return abandon(fail(addr.status()));
    notify_sock.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!notify_sock.valid() || ::bind(notify_sock.get(), addr->get(), addr->size()) != 0) {
      return abandon(fail(LaunchError(errno, "notify socket")));
    }
    env["NOTIFY_SOCKET"] = absl::StrCat("@", abstract);
  }
  std::vector<std::string> envp;
  for (const auto& [k, v] : env) envp.push_back(absl::StrCat(k, "=", v));

  absl::StatusOr<std::pair<base::UniqueFd, base::UniqueFd>> log_fds = logs_.Open(name, spec.append_logs);
  if (!log_fds.ok()) return abandon(fail(log_fds.status()));
  base::UniqueFd out = std::move(log_fds->first);
  base::UniqueFd err = std::move(log_fds->second);
  struct stat err_stat {};
  if (::fstat(err.get(), &err_stat) != 0) return abandon(fail(LaunchError(errno, "stat of its stderr log")));
  handle->set_stderr_start(err_stat.st_size);
  if (cgroups_ != nullptr) {
    absl::StatusOr<std::string> dir = cgroups_->CreateChild(name);
    if (!dir.ok()) return abandon(fail(dir.status()));
    cgroup_dir = *dir;
    handle->set_cgroup_dir(cgroup_dir);
    if (absl::Status set = cgroups_->ApplyLimits(cgroup_dir, limits); !set.ok()) return abandon(fail(set));
  }
  {
    absl::MutexLock lock(&mu_);
    std::erase_if(handed_out_, [](const auto& w) { return w.expired(); });
    handed_out_.push_back(handle);
  }

  LaunchRequest req;
  req.path = *program;
  req.argv = std::move(argv);
  req.envp = std::move(envp);
  req.cwd = spec.cwd.empty() ? options_.state_dir : spec.cwd;
  req.stdout_fd = out.get();
  req.stderr_fd = err.get();
  req.ready_fd = ready_write.get();
  req.state_fd = state_fd.get();
  if (!cgroup_dir.empty()) req.cgroup_procs = cgroup_dir + "/cgroup.procs";
  req.credentials = *std::move(credentials);
  req.parent_death_kill = !options_.keep_procs;
  absl::Status launched;
  // Launch from the loop thread: PR_SET_PDEATHSIG follows the launching thread.
  loop_->RunSync([&] {
    absl::StatusOr<Launched> l = Launch(req);
    if (!l.ok()) {
      launched = l.status();
      return;
    }
    handle->Started(l->pid, std::move(l->pidfd));
    if (ready_read.valid()) handle->WatchHandshake(std::move(ready_read));
    if (notify_sock.valid()) handle->WatchNotify(std::move(notify_sock));
    if (spec.readiness == ReadinessMode::kExec) handle->MarkReady(std::nullopt);
  });
  ready_write.reset();  // the child holds the only write end now
  state_fd.reset();     // and the only copy of its state
  if (!launched.ok()) {
    return abandon(absl::Status(launched.code(), absl::StrCat("cannot spawn proc \"", name, "\" (command: ", command,
                                                              "): ", launched.message())));
  }

  absl::Status ready = handle->Ready(deadline);
  if (ready.ok()) return handle;
  // Transactional: whatever it is doing, it goes, and nothing of it stays registered.
  bool timed_out = absl::IsDeadlineExceeded(ready);
  absl::StatusOr<ProcStatus> end = handle->Kill();
  std::string problem = handle->ready_problem();
  std::string what = timed_out ? absl::StrCat("did not become ready within ", absl::FormatDuration(spec.ready_timeout),
                                              " and was killed")
                               : absl::StrCat("ended before it was ready");
  if (timed_out && spec.readiness == ReadinessMode::kHandshake && problem.empty()) {
    problem =
        "a program without hostd's proc runtime never reports ready: spawn it with readiness exec or notify "
        "(hostctl spawn --readiness exec|notify)";
  }
  std::string status = end.ok() ? end->ToString() : std::string(end.status().message());
  std::string tail = end.ok() && !end->stderr_tail.empty() ? absl::StrCat("; stderr: ", end->stderr_tail) : "";
  return absl::Status(timed_out ? absl::StatusCode::kDeadlineExceeded : absl::StatusCode::kFailedPrecondition,
                      absl::StrCat("proc \"", name, "\" ", what, " (", status, ", command: ", command, ")",
                                   problem.empty() ? "" : absl::StrCat("; ", problem), tail));
}

absl::StatusOr<std::shared_ptr<ProcHandle>> ProcessProcManager::Adopt(const proc::ProcId& id,
                                                                      const AdoptRequest& request) {
  const std::string& name = id.name();
  if (!options_.keep_procs) return absl::FailedPreconditionError("adopting procs needs keep_procs");
  if (request.pid <= 0) return absl::InvalidArgumentError(absl::StrCat("proc \"", name, "\": no pid recorded"));
  // The pidfd first, then the identity: if the process it names is still running
  // after the checks, the checks were of that process (its pid cannot be reused
  // while it lives).
  auto gone = [&] { return absl::NotFoundError(absl::StrCat("proc \"", name, "\" (pid ", request.pid, ") has ended")); };
  base::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, request.pid, 0)));
  if (!pidfd.valid()) {
    if (errno == ESRCH) return gone();
    return base::ErrnoError(absl::StatusCode::kUnavailable, errno,
                            absl::StrCat("proc \"", name, "\" (pid ", request.pid, "): cannot open a pidfd"));
  }
  auto ended = [&] {
    pollfd p{pidfd.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  };
  // A check that cannot be read says the proc has ended only if it has.
  auto unreadable = [&](const absl::Status& why) {
    return absl::Status(ended() ? absl::StatusCode::kNotFound : absl::StatusCode::kUnavailable,
                        absl::StrCat("proc \"", name, "\": ", why.message()));
  };
  if (request.start_time == 0) {
    return absl::UnavailableError(
        absl::StrCat("proc \"", name, "\" (pid ", request.pid, "): its start time was not recorded; it cannot be told "
                     "from a stranger"));
  }
  absl::StatusOr<uint64_t> start = ProcStartTime(request.pid);
  if (!start.ok()) return unreadable(start.status());
  if (*start != request.start_time) {
    return absl::FailedPreconditionError(absl::StrCat("proc \"", name, "\": pid ", request.pid,
                                                      " is now another process (started at tick ", *start,
                                                      ", the proc at tick ", request.start_time, ")"));
  }
  if (!request.cgroup_dir.empty()) {
    absl::StatusOr<std::string> cg = ProcCgroupPath(request.pid);
    if (!cg.ok()) return unreadable(cg.status());
    if (CgroupTree::MountPoint() + *cg != request.cgroup_dir) {
      return absl::AbortedError(absl::StrCat("proc \"", name, "\": pid ", request.pid,
                                             " (the same process: its start time matches) is in cgroup ", *cg,
                                             ", not the proc's ", request.cgroup_dir));
    }
  }
  if (ended()) return gone();
  auto handle = std::make_shared<ProcessHandle>(this, id, request.command);
  handle->set_mark_serial(request.mark_serial);
  if (absl::Status added = procs_.Add(name, handle); !added.ok()) return added;
  handle->set_cgroup_dir(request.cgroup_dir);
  ReserveMarkSerials(request.mark_serial);
  // The check is re-armed as it was, unless its probe can no longer be run here
  // (the exec allow-list changed, say): the proc is still adopted, without it.
  if (absl::StatusOr<LaunchRequest> probe = ProbeRequest(request.spec); probe.ok()) {
    handle->set_liveness(request.spec.liveness, *std::move(probe));
  } else {
    base::Log().warn("proc={} re-adopted without its liveness check ({}): {}", name,
                     request.spec.liveness.ToString(), probe.status().message());
  }
  {
    absl::MutexLock lock(&mu_);
    std::erase_if(handed_out_, [](const auto& w) { return w.expired(); });
    handed_out_.push_back(handle);
  }
  loop_->RunSync([&] {
    handle->Adopted(request.pid, request.start_time, std::move(pidfd));
    handle->MarkReady(request.addr);
  });
  return std::shared_ptr<ProcHandle>(handle);
}

void ProcessProcManager::ReserveMarkSerials(uint64_t last) {
  uint64_t next = next_mark_serial_.load(std::memory_order_relaxed);
  while (next <= last && !next_mark_serial_.compare_exchange_weak(next, last + 1, std::memory_order_relaxed)) {
  }
}

uint64_t ProcessProcManager::ReserveMarkSerialsInUse(uint64_t last) {
  uint64_t highest = last;
  ScanMarked(
      mark_token_.c_str(),
      [](pid_t, uint64_t serial, void* context) {
        uint64_t& h = *static_cast<uint64_t*>(context);
        h = std::max(h, serial);
      },
      &highest);
  ReserveMarkSerials(highest);
  return next_mark_serial_.load(std::memory_order_relaxed);
}

int ProcessProcManager::KillUnadoptedMarked(uint64_t first_own, const std::vector<uint64_t>& spared) {
  struct Sweep {
    uint64_t first_own;
    absl::flat_hash_set<uint64_t> kept;  // the serials of this manager's procs, and the spared
    absl::flat_hash_set<pid_t> signalled;  // a killed process still shows its mark until it has exited
    std::vector<base::UniqueFd> killed;    // their pidfds, to reap those that are this process's children
  } sweep{.first_own = first_own, .kept = {spared.begin(), spared.end()}, .signalled = {}, .killed = {}};
  for (const std::shared_ptr<ProcHandle>& h : Procs()) sweep.kept.insert(h->mark_serial());
  // Again while a pass kills something: a process may fork between the scan and
  // its kill, and its child carries the mark too.
  for (int pass = 0; pass < 5; ++pass) {
    const size_t before = sweep.killed.size();
    ScanMarked(
        mark_token_.c_str(),
        [](pid_t pid, uint64_t serial, void* context) {
          Sweep& s = *static_cast<Sweep*>(context);
          if (serial >= s.first_own || s.kept.contains(serial) || s.signalled.contains(pid)) return;
          base::UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
          if (!fd.valid() || ::syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0) != 0) return;
          s.signalled.insert(pid);
          s.killed.push_back(std::move(fd));
          base::Log().warn("pid={} carried the mark of a launch no proc was recorded for (serial {}): killed", pid,
                           serial);
        },
        &sweep);
    if (sweep.killed.size() == before) break;
  }
  // After an upgrade's exec this process is the parent of what the previous image
  // launched: it reaps those itself (no proc of its own leads their groups, so the
  // orphan reaper would not); waitid on another's child fails at once.
  const absl::Time deadline = absl::Now() + absl::Seconds(2);
  for (const base::UniqueFd& fd : sweep.killed) {
    siginfo_t info{};
    while (::waitid(P_PIDFD, static_cast<id_t>(fd.get()), &info, WEXITED | WNOHANG) == 0 && info.si_pid == 0 &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  return static_cast<int>(sweep.killed.size());
}

}  // namespace hostd::manager
