#include "manager/launcher.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/errno_status.h"
#include "base/quote.h"
#include "manager/descriptors.h"
// Boost 1.81's process/v2/environment.hpp is not self-contained: with
// BOOST_PROCESS_USE_STD_FS (set for this library in CMake; Debian ships no
// libboost_filesystem 1.81) it still names boost::optional and Boost's type traits.
// These must come before environment.hpp.
// clang-format off
#include "boost/optional.hpp"
#include "boost/type_traits/is_constructible.hpp"
#include "boost/type_traits/remove_pointer.hpp"
#include "boost/process/v2/environment.hpp"
// clang-format on

namespace hostd::manager {
namespace {

enum Step : int {
  kSignals = 1,
  kSetpgid,
  kPdeathsig,
  kParentGone,
  kCgroup,
  kDescriptors,
  kCloseRange,
  kChdir,
  kCredentials,
  kExec,
  kExecAttempt,  // not a failure: written just before execve, so EOF alone means it died before
};

const char* StepName(int step) {
  switch (step) {
    case kSignals: return "resetting signal handlers";
    case kSetpgid: return "creating its process group";
    case kPdeathsig: return "arming the parent-death signal";
    case kParentGone: return "checking its parent";
    case kCgroup: return "joining its cgroup";
    case kDescriptors: return "setting up its descriptors (stdio, readiness, state)";
    case kCloseRange: return "closing inherited descriptors";
    case kChdir: return "changing to its working directory";
    case kCredentials: return "taking its user's credentials (setgroups/setresgid/setresuid)";
    case kExec: return "exec";
    case kExecAttempt: return "reporting its exec";
    default: return "starting";
  }
}

// The descriptor numbers a child may be given: stdio, kReadyFd, kStateFd.
constexpr int kFdSlots = 5;
static_assert(kReadyFd == 3 && kStateFd == 4, "fds[] below is indexed by the child's descriptor number");

// Everything the child needs, prepared before clone: the child must not allocate.
struct ChildArgs {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* cwd;           // nullptr: inherit
  int fds[kFdSlots];         // sources for 0, 1, 2, kReadyFd and kStateFd (-1: nothing there)
  const char* cgroup_procs;  // nullptr: none
  bool change_user;
  uid_t uid;
  gid_t gid;
  const gid_t* groups;
  size_t group_count;
  pid_t parent;
  int error_pipe;
  bool parent_death_kill;
};

[[noreturn]] __attribute__((no_sanitize("address", "undefined"))) void ChildFail(const ChildArgs* a, int step) {
  int msg[2] = {step, errno};
  ssize_t ignored = ::write(a->error_pipe, msg, sizeof(msg));
  (void)ignored;
  ::_exit(127);
}

__attribute__((no_sanitize("address", "undefined"))) int ChildMain(void* arg) {
  const ChildArgs* a = static_cast<const ChildArgs*>(arg);
  // Default dispositions for everything the daemon handled or ignored.
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof(dfl));
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP) ::sigaction(s, &dfl, nullptr);  // glibc-internal signals fail: fine
  }
  if (::setpgid(0, 0) != 0) ChildFail(a, kSetpgid);
  if (a->parent_death_kill) {
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail(a, kPdeathsig);
    if (::getppid() != a->parent) ChildFail(a, kParentGone);
  }
  if (a->cgroup_procs != nullptr) {
    int fd = ::open(a->cgroup_procs, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0", 1) != 1) ChildFail(a, kCgroup);
    ::close(fd);
  }
  // Move the sources out of the way first: one of them may sit on a target number.
  int moved[kFdSlots];
  for (int i = 0; i < kFdSlots; ++i) {
    moved[i] = a->fds[i] < 0 ? -1 : ::fcntl(a->fds[i], F_DUPFD_CLOEXEC, 10);
    if (a->fds[i] >= 0 && moved[i] < 0) ChildFail(a, kDescriptors);
  }
  for (int i = 0; i < kFdSlots; ++i) {
    if (moved[i] >= 0) {
      if (::dup2(moved[i], i) < 0) ChildFail(a, kDescriptors);  // dup2 clears close-on-exec
    } else {
      ::fcntl(i, F_SETFD, FD_CLOEXEC);  // an empty slot: what the daemon has there must not cross exec
    }
  }
  // Nothing else crosses exec. (The error pipe stays usable until exec closes it.)
  if (int err = MarkCloseOnExecFrom(kFdSlots); err != 0) {
    errno = err;
    ChildFail(a, kCloseRange);
  }
  if (a->cwd != nullptr && ::chdir(a->cwd) != 0) ChildFail(a, kChdir);
  if (a->change_user) {
    // Raw system calls: glibc's setuid() and friends would signal every thread of
    // the daemon to change theirs too (this child shares its memory and thread
    // list). Groups first, the user last, while the privilege to change them lasts.
    if (::syscall(SYS_setgroups, a->group_count, a->groups) != 0) ChildFail(a, kCredentials);
    if (::syscall(SYS_setresgid, a->gid, a->gid, a->gid) != 0) ChildFail(a, kCredentials);
    if (::syscall(SYS_setresuid, a->uid, a->uid, a->uid) != 0) ChildFail(a, kCredentials);
    // A change of credentials clears the parent-death signal: set it again.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) ChildFail(a, kPdeathsig);
    if (::getppid() != a->parent) ChildFail(a, kParentGone);
  }
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  int attempt[2] = {kExecAttempt, 0};
  if (::write(a->error_pipe, attempt, sizeof(attempt)) != static_cast<ssize_t>(sizeof(attempt))) {
    ChildFail(a, kExecAttempt);
  }
  ::execve(a->path, a->argv, a->envp);
  ChildFail(a, kExec);
}

std::vector<char*> CStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const std::string& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

absl::Status LaunchError(int err, absl::string_view what) {
  switch (err) {
    case ENOENT:
    case ENOEXEC:
    case EACCES:
    case EISDIR:
    case ENOTDIR:
    case ELOOP:
    case ENAMETOOLONG: return base::ErrnoError(absl::StatusCode::kFailedPrecondition, err, what);
    case EAGAIN: return base::ErrnoError(absl::StatusCode::kResourceExhausted, err, what);
    default: return base::ErrnoError(err, what);
  }
}

absl::StatusOr<LaunchRequest::Credentials> ResolveUser(const std::string& user) {
  std::string name = user.substr(0, user.find(':'));
  std::string group_name = user.find(':') == std::string::npos ? "" : user.substr(user.find(':') + 1);
  std::vector<char> buf(1 << 16);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("user \"", name, "\" does not exist on this host"));
  }
  LaunchRequest::Credentials c{.uid = pw.pw_uid, .gid = pw.pw_gid, .groups = {}};
  if (!group_name.empty()) {
    std::vector<char> gbuf(1 << 16);
    struct group gr {};
    struct group* gfound = nullptr;
    if (::getgrnam_r(group_name.c_str(), &gr, gbuf.data(), gbuf.size(), &gfound) != 0 || gfound == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat("group \"", group_name, "\" does not exist on this host"));
    }
    c.gid = gr.gr_gid;
    c.groups = {c.gid};
    return c;
  }
  int n = 64;
  c.groups.resize(n);
  while (::getgrouplist(name.c_str(), c.gid, c.groups.data(), &n) < 0) c.groups.resize(n);
  c.groups.resize(n);
  return c;
}

absl::StatusOr<std::string> ResolveProgram(const std::string& program, const std::string& path_list) {
  if (program.empty()) return absl::InvalidArgumentError("program is empty");
  if (program.find('/') != std::string::npos) {
    // execve would say EACCES for a directory: say what it is.
    struct stat st {};
    if (::stat(program.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      return LaunchError(S_ISDIR(st.st_mode) ? EISDIR : EACCES,
                         absl::StrCat("program ", base::Quote(program), " is not a regular file"));
    }
    if (::access(program.c_str(), X_OK) != 0) {
      const int err = errno;
      return LaunchError(err, absl::StrCat("program ", base::Quote(program)));
    }
    return program;
  }
  namespace environment = boost::process::v2::environment;
  const std::vector<environment::key_value_pair> env = {
      {"PATH", absl::StrJoin(absl::StrSplit(path_list, ':', absl::SkipEmpty()), ":")}};
  std::filesystem::path found = environment::find_executable(program, env);
  if (found.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("program ", base::Quote(program), " not found in PATH=", base::Quote(path_list)));
  }
  return found.string();
}

absl::StatusOr<Launched> Launch(const LaunchRequest& req) {
  std::vector<char*> argv = CStrings(req.argv);
  std::vector<char*> envp = CStrings(req.envp);
  base::UniqueFd dev_null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!dev_null.valid()) return LaunchError(errno, "open /dev/null");
  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) return LaunchError(errno, "pipe for exec errors");
  base::UniqueFd err_read(err_pipe[0]), err_write(err_pipe[1]);

  ChildArgs args{};
  args.path = req.path.c_str();
  args.argv = argv.data();
  args.envp = envp.data();
  args.cwd = req.cwd.empty() ? nullptr : req.cwd.c_str();
  args.fds[0] = req.stdin_fd >= 0 ? req.stdin_fd : dev_null.get();
  args.fds[1] = req.stdout_fd >= 0 ? req.stdout_fd : dev_null.get();
  args.fds[2] = req.stderr_fd >= 0 ? req.stderr_fd : dev_null.get();
  args.fds[kReadyFd] = req.ready_fd;
  args.fds[kStateFd] = req.state_fd;
  args.cgroup_procs = req.cgroup_procs.empty() ? nullptr : req.cgroup_procs.c_str();
  args.change_user = req.credentials.has_value();
  if (req.credentials) {
    args.uid = req.credentials->uid;
    args.gid = req.credentials->gid;
    args.groups = req.credentials->groups.data();
    args.group_count = req.credentials->groups.size();
  }
  args.parent = ::getpid();
  args.error_pipe = err_write.get();
  args.parent_death_kill = req.parent_death_kill;

  constexpr size_t kStackSize = 64 * 1024;
  std::unique_ptr<char[]> stack(new char[kStackSize]);
  sigset_t all, old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  pid_t pid =
      ::clone(ChildMain, stack.get() + kStackSize, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &args, &pidfd);
  int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return LaunchError(clone_errno, absl::StrCat("clone for ", req.path));
  Launched out{pid, base::UniqueFd(pidfd)};

  // Until EOF (exec closed the pipe, or the child is gone): the child writes
  // kExecAttempt just before execve, and a failed step writes which and errno. So
  // the attempt alone means it exec'd (or died in exec: its exit says how), and
  // nothing at all means it died before exec.
  err_write.reset();
  int msg[4] = {0, 0, 0, 0};
  size_t have = 0;
  while (have < sizeof(msg)) {
    ssize_t n = ::read(err_read.get(), reinterpret_cast<char*>(msg) + have, sizeof(msg) - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    have += static_cast<size_t>(n);
  }
  constexpr size_t kRecord = 2 * sizeof(int);
  if (have == kRecord && msg[0] == kExecAttempt) return out;
  siginfo_t info{};
  ::waitid(P_PIDFD, static_cast<id_t>(out.pidfd.get()), &info, WEXITED);  // reap: no zombie
  if (have == 0) {
    const char* sig = info.si_code == CLD_EXITED ? nullptr : sigabbrev_np(info.si_status);
    std::string how = info.si_code == CLD_EXITED ? absl::StrCat("exited with code ", info.si_status)
                      : sig != nullptr           ? absl::StrCat("was killed by SIG", sig)
                                                 : absl::StrCat("was killed by signal ", info.si_status);
    return absl::InternalError(absl::StrCat("starting ", req.path, ": the child ", how, " before exec"));
  }
  const int* failure = msg[0] == kExecAttempt ? msg + 2 : msg;  // the step that failed
  if (have != (failure == msg ? kRecord : 2 * kRecord)) {
    return absl::InternalError(absl::StrCat("starting ", req.path, ": the child failed before exec; no reason given"));
  }
  std::string what = failure[0] == kExec ? absl::StrCat("exec ", req.path)
                                         : absl::StrCat("starting ", req.path, ": ", StepName(failure[0]));
  if (failure[0] == kChdir) absl::StrAppend(&what, " ", req.cwd);
  return LaunchError(failure[1], what);
}

}  // namespace hostd::manager
