#include "proc/bootstrap.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"

namespace hostd::proc {
namespace {

absl::Status BadVar(const char* name, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(name, "=\"", value, "\" is invalid: ", why));
}

absl::StatusOr<absl::string_view> Required(const GetEnv& getenv, const char* name) {
  const char* v = getenv(name);
  if (v == nullptr || *v == '\0') {
    return absl::InvalidArgumentError(
        absl::StrCat(name, " is not set; procs are started by a hostd proc manager, which sets it"));
  }
  return absl::string_view(v);
}

}  // namespace

absl::StatusOr<BootstrapEnv> ReadBootstrapEnv(const GetEnv& getenv) {
  HOSTD_ASSIGN_OR_RETURN(absl::string_view id_text, Required(getenv, kEnvProcId));
  absl::StatusOr<ProcId> id = ProcId::Parse(id_text);
  if (!id.ok()) return BadVar(kEnvProcId, id_text, id.status().message());

  HOSTD_ASSIGN_OR_RETURN(absl::string_view backend_text, Required(getenv, kEnvHostBackend));
  absl::StatusOr<channel::ChannelAddr> backend = channel::ChannelAddr::Parse(backend_text);
  if (!backend.ok()) return BadVar(kEnvHostBackend, backend_text, backend.status().message());
  if (backend->is_any()) return BadVar(kEnvHostBackend, backend_text, "a dialable address is needed, not an any-form");

  channel::ChannelAddr listen = *channel::ChannelAddr::Parse("unix:");
  if (const char* v = getenv(kEnvListen); v != nullptr && *v != '\0') {
    absl::StatusOr<channel::ChannelAddr> parsed = channel::ChannelAddr::Parse(v);
    if (!parsed.ok()) return BadVar(kEnvListen, v, parsed.status().message());
    listen = *parsed;
  }

  BootstrapEnv env{*std::move(id), *std::move(backend), std::move(listen)};
  if (const char* v = getenv(kEnvReadyFd); v != nullptr && *v != '\0') {
    int fd = -1;
    if (!absl::SimpleAtoi(v, &fd) || fd < 0) return BadVar(kEnvReadyFd, v, "not a descriptor number");
    if (fcntl(fd, F_GETFD) < 0) return BadVar(kEnvReadyFd, v, "not an open descriptor in this process");
    env.ready_fd = fd;
  }
  if (const char* v = getenv(kEnvStateFd); v != nullptr && *v != '\0') {
    int fd = -1;
    if (!absl::SimpleAtoi(v, &fd) || fd < 0) return BadVar(kEnvStateFd, v, "not a descriptor number");
    if (fcntl(fd, F_GETFD) < 0) return BadVar(kEnvStateFd, v, "not an open descriptor in this process");
    env.state_fd = fd;
  }
  if (const char* v = getenv(kEnvParentPid); v != nullptr && *v != '\0') {
    int pid = 0;
    if (!absl::SimpleAtoi(v, &pid) || pid <= 0) return BadVar(kEnvParentPid, v, "not a process id");
    env.parent_pid = pid;
  }
  if (const char* v = getenv(kEnvOutliveParent); v != nullptr) env.outlive_parent = absl::string_view(v) == "1";
  return env;
}

absl::Status ArmParentDeathSignal(pid_t expected_parent) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    return base::ErrnoError(absl::StatusCode::kInternal, errno, "prctl(PR_SET_PDEATHSIG)");
  }
  // The parent may have died before the signal was armed; then nothing will come.
  if (expected_parent != 0 && getppid() != expected_parent) {
    return absl::FailedPreconditionError(
        absl::StrCat("parent ", expected_parent, " exited before the proc armed its parent-death signal"));
  }
  return absl::OkStatus();
}

absl::Status ReportReady(int fd, const channel::ChannelAddr& addr) {
  std::string line = absl::StrCat("READY ", addr.ToString(), "\n");
  for (size_t off = 0; off < line.size();) {
    ssize_t n = ::write(fd, line.data() + off, line.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      ::close(fd);
      // n == 0 leaves errno unset; a pipe that takes nothing is one nobody reads.
      if (n == 0) err = EPIPE;
      // Unavailable: the parent that waited for the report is gone or stopped listening.
      return base::ErrnoError(absl::StatusCode::kUnavailable, err, absl::StrCat("readiness report on fd ", fd));
    }
    off += static_cast<size_t>(n);
  }
  ::close(fd);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadHandedOverState(int fd) {
  base::UniqueFd owned(fd);
  std::string state;
  // One byte past the limit tells an oversize state from one exactly at it.
  while (state.size() <= kMaxStateBytes) {
    size_t have = state.size();
    state.resize(std::min(have + 64 * 1024, kMaxStateBytes + 1));
    ssize_t n = ::read(owned.get(), state.data() + have, state.size() - have);
    if (n < 0 && errno == EINTR) {
      state.resize(have);
      continue;
    }
    if (n < 0) {
      // InvalidArgument: the environment named a descriptor that cannot be read.
      return base::ErrnoError(absl::StatusCode::kInvalidArgument, errno,
                              absl::StrCat(kEnvStateFd, "=", fd, ": cannot read the handed-over state"));
    }
    state.resize(have + static_cast<size_t>(n));
    if (n == 0) return state;
  }
  return absl::InvalidArgumentError(
      absl::StrCat(kEnvStateFd, "=", fd, ": the handed-over state is over ", kMaxStateBytes, " bytes"));
}

absl::StatusOr<BootedProc> BootstrapProc(const std::function<absl::Status(ProcRuntime&)>& before_ready,
                                         const GetEnv& getenv) {
  HOSTD_ASSIGN_OR_RETURN(BootstrapEnv env, ReadBootstrapEnv(getenv));
  base::UniqueFd state_fd(env.state_fd);  // closed on every path
  if (!env.outlive_parent) HOSTD_RETURN_IF_ERROR(ArmParentDeathSignal(env.parent_pid));
  std::optional<std::string> initial_state;
  if (state_fd.valid()) {
    HOSTD_ASSIGN_OR_RETURN(initial_state, ReadHandedOverState(state_fd.release()));
  }
  BootedProc proc;
  proc.loop = channel::EventLoop::Start("proc");
  HOSTD_ASSIGN_OR_RETURN(
      proc.runtime, ProcRuntime::Start(*proc.loop, {env.id, env.listen, env.host_backend, std::move(initial_state)}));
  if (before_ready) HOSTD_RETURN_IF_ERROR(before_ready(*proc.runtime));
  if (env.ready_fd >= 0) HOSTD_RETURN_IF_ERROR(ReportReady(env.ready_fd, proc.runtime->addr()));
  return proc;
}

}  // namespace hostd::proc
