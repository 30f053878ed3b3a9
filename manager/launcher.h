// Launcher: starts a program as a child of the calling thread without fork()ing
// the daemon: fork() copies the page tables of the whole daemon, so its cost grows
// with the daemon's memory, while this launch costs the same at any heap size (the
// Boost.Process row of README's dependency table has the measurement).
//
// clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD) runs the child on a stack of its own
// until it calls execve; the parent is suspended meanwhile, all signals blocked so
// no handler of the daemon runs in the shared address space. Between clone and
// exec the child makes async-signal-safe system calls only, everything prepared
// beforehand: default signal dispositions, its own process group, SIGKILL on the
// death of the launching thread (re-checking the parent is still there), joining a
// cgroup, stdin/stdout/stderr, a readiness and a state descriptor in place, every other
// descriptor marked close-on-exec (descriptors.h: close_range, or /proc/self/fd on
// kernels before 5.11), chdir, an empty signal mask, execve. A failed
// step reports which step and errno through a close-on-exec pipe and `_exit(127)`s;
// Launch then reaps the child and returns the error, so no zombie is left. Just
// before execve the child also reports that it is about to exec, so EOF without
// that report means it died before exec (a signal): that is an error too, saying
// how it ended, and the child is reaped.
//
// Errors are LaunchError's (below).
//
// PR_SET_PDEATHSIG follows the *thread* that launched: launch from a thread that
// lives as long as the procs should (ProcessProcManager uses its loop thread).
// LaunchRequest::parent_death_kill = false leaves it unarmed, for procs that are
// to outlive this process (ProcessProcManagerOptions::keep_procs).
#ifndef HOSTD_MANAGER_LAUNCHER_H_
#define HOSTD_MANAGER_LAUNCHER_H_

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "base/unique_fd.h"

namespace hostd::manager {

// The descriptor number a proc finds its readiness pipe on.
inline constexpr int kReadyFd = 3;
// The descriptor number a proc finds its handed-over state on (HOSTD_STATE_FD).
inline constexpr int kStateFd = 4;

struct LaunchRequest {
  std::string path;               // what to execve (already resolved)
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> envp;  // "NAME=value", the whole environment
  std::string cwd;                // empty: inherit
  int stdin_fd = -1;              // -1: /dev/null
  int stdout_fd = -1;             // -1: /dev/null
  int stderr_fd = -1;             // -1: /dev/null
  int ready_fd = -1;              // becomes kReadyFd in the child, if set
  int state_fd = -1;              // becomes kStateFd in the child, if set
  std::string cgroup_procs;       // a cgroup.procs file to join, if set
  // Run as another user: set by the caller from the user database before Launch,
  // since the child cannot read it (ResolveUser).
  struct Credentials {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups
  };
  std::optional<Credentials> credentials;
  // SIGKILL to the child when the launching thread dies (PR_SET_PDEATHSIG). False
  // for procs that are to outlive their manager's process (a hostd restart).
  bool parent_death_kill = true;
};

// The credentials of "NAME" (its primary and supplementary groups) or "NAME:GROUP"
// (that group only). NotFound-style FailedPrecondition naming an unknown user or group.
absl::StatusOr<LaunchRequest::Credentials> ResolveUser(const std::string& user);

struct Launched {
  pid_t pid = 0;
  base::UniqueFd pidfd;
};

absl::StatusOr<Launched> Launch(const LaunchRequest& request);

// A failed system call while starting a proc, as a Status whose code says what it
// means to whoever asked for the proc: a missing program, interpreter, working
// directory or log directory (ENOENT), or an unrunnable format (ENOEXEC), is
// FailedPrecondition, since NotFound reads as "no such proc"; EAGAIN (the process
// limit) is ResourceExhausted, since Unavailable reads as "hostd is unreachable";
// the rest follow base::ErrnoError. `what` names the object and the step.
absl::Status LaunchError(int err, absl::string_view what);

// The program to run: `program` itself if it has a '/', else the first executable
// regular file named `program` in the ':'-separated `path_list` (empty entries are
// skipped: they would mean this process's working directory, not the proc's).
// FailedPrecondition names it, with errno: missing, a directory, not executable.
absl::StatusOr<std::string> ResolveProgram(const std::string& program, const std::string& path_list);

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_LAUNCHER_H_
