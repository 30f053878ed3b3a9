#include "manager/janitor.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/errno_status.h"
#include "base/log.h"
#include "manager/descriptors.h"
#include "manager/proc_mark.h"

namespace hostd::manager {
namespace {

constexpr uint32_t kTrack = 1;
constexpr uint32_t kUntrack = 2;
constexpr int kSockFd = 3;  // the janitor's end, after the descriptor clean-up

struct Record {
  uint32_t op;
  int32_t pgid;
};

// Everything the janitor needs, prepared before fork: the child must not allocate.
struct JanitorArgs {
  int sock;
  const char* cgroup_parent;  // nullptr: none
  const char* cgroup_kill;    // <parent>/cgroup.kill
  pid_t* table;               // kCapacity slots, 0 = free
  const char* mark_token;     // nullptr: procs carry no mark
  const char* lock_path;      // nullptr: no reattach wait
  const char* lock_token;
  size_t lock_token_len;
  int64_t reattach_ms;
};

__attribute__((no_sanitize("address", "undefined"))) int64_t NowMs() {
  struct timespec ts {};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// True once a new owner holds the lock: an exclusive flock on the file, which holds
// a token other than ours.
__attribute__((no_sanitize("address", "undefined"))) bool NewOwnerHolds(const JanitorArgs& a) {
  int fd = ::open(a.lock_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  if (!held) ::flock(fd, LOCK_UN);
  char buf[128];
  ssize_t n = held ? ::pread(fd, buf, sizeof(buf), 0) : 0;
  ::close(fd);
  if (!held || n <= 0) return false;  // free, or the new owner has not written its token yet
  return static_cast<size_t>(n) != a.lock_token_len || std::memcmp(buf, a.lock_token, a.lock_token_len) != 0;
}

// Waits up to the reattach timeout for a new owner; true if one came.
__attribute__((no_sanitize("address", "undefined"))) bool AwaitNewOwner(const JanitorArgs& a) {
  const int64_t deadline = NowMs() + a.reattach_ms;
  while (true) {
    if (NewOwnerHolds(a)) return true;
    if (NowMs() >= deadline) return false;
    struct timespec ts {
      0, 50 * 1000 * 1000
    };
    ::nanosleep(&ts, nullptr);
  }
}

__attribute__((no_sanitize("address", "undefined"))) void KillMarked(pid_t pid, uint64_t, void*) {
  ::kill(pid, SIGKILL);
}

// Kills every process carrying the manager's mark, pass after pass: a process
// forking as it is killed leaves a marked child for the next pass.
__attribute__((no_sanitize("address", "undefined"))) void KillAllMarked(const char* token) {
  for (int pass = 0; pass < 100; ++pass) {
    if (ScanMarked(token, KillMarked, nullptr) == 0) return;
    struct timespec ts {
      0, 5 * 1000 * 1000
    };  // the killed are still exiting (a zombie's environ reads empty)
    ::nanosleep(&ts, nullptr);
  }
}

// Removes the (emptied) child cgroups of `parent`, then `parent`.
__attribute__((no_sanitize("address", "undefined"))) void RemoveCgroups(const char* parent) {
  char buf[4096];
  char path[4096];
  size_t plen = std::strlen(parent);
  if (plen + 2 >= sizeof(path)) return;
  for (int attempt = 0; attempt < 200; ++attempt) {
    int dfd = ::open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    long n;
    while ((n = ::syscall(SYS_getdents64, dfd, buf, sizeof(buf))) > 0) {
      for (long off = 0; off < n;) {
        auto* d = reinterpret_cast<struct dirent64*>(buf + off);
        off += d->d_reclen;
        if (d->d_type != DT_DIR || d->d_name[0] == '.') continue;
        size_t nlen = std::strlen(d->d_name);
        if (plen + 1 + nlen + 1 > sizeof(path)) continue;
        std::memcpy(path, parent, plen);
        path[plen] = '/';
        std::memcpy(path + plen + 1, d->d_name, nlen + 1);
        ::rmdir(path);
      }
    }
    ::close(dfd);
    if (::rmdir(parent) == 0 || errno == ENOENT) return;
    struct timespec ts {
      0, 10 * 1000 * 1000
    };  // killed members are still exiting
    ::nanosleep(&ts, nullptr);
  }
}

[[noreturn]] __attribute__((no_sanitize("address", "undefined"))) void JanitorMain(const JanitorArgs& a) {
  struct sigaction ign;
  std::memset(&ign, 0, sizeof(ign));
  ign.sa_handler = SIG_IGN;
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU}) ::sigaction(s, &ign, nullptr);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setpgid(0, 0);  // out of the daemon's group: signals to it do not reach us
  // Keep only our end: a listening socket or the daemon's end held here would
  // outlive the daemon.
  if (a.sock != kSockFd) {
    ::dup2(a.sock, kSockFd);
  } else {
    ::fcntl(kSockFd, F_SETFD, 0);
  }
  (void)CloseDescriptorsFrom(kSockFd + 1);
  for (int fd = 0; fd < kSockFd; ++fd) ::close(fd);
  Record rec;
  size_t have = 0;
  while (true) {
    ssize_t n = ::read(kSockFd, reinterpret_cast<char*>(&rec) + have, sizeof(rec) - have);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the daemon is gone (or said goodbye by closing)
    have += static_cast<size_t>(n);
    if (have < sizeof(rec)) continue;
    have = 0;
    if (rec.pgid <= 0) continue;
    if (rec.op == kTrack) {
      for (size_t i = 0; i < Janitor::kCapacity; ++i) {
        if (a.table[i] == 0) {
          a.table[i] = rec.pgid;
          break;
        }
      }
    } else if (rec.op == kUntrack) {
      for (size_t i = 0; i < Janitor::kCapacity; ++i) {
        if (a.table[i] == rec.pgid) {
          a.table[i] = 0;
          break;
        }
      }
    }
  }
  if (a.lock_path != nullptr && AwaitNewOwner(a)) ::_exit(0);  // the procs have a new owner
  if (a.cgroup_kill != nullptr) {
    int fd = ::open(a.cgroup_kill, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      ssize_t ignored = ::write(fd, "1", 1);
      (void)ignored;
      ::close(fd);
    }
  }
  for (size_t i = 0; i < Janitor::kCapacity; ++i) {
    if (a.table[i] > 0) ::kill(-a.table[i], SIGKILL);
  }
  // Descendants that left their proc's group (setsid) and, without cgroups, every
  // other container.
  if (a.mark_token != nullptr) KillAllMarked(a.mark_token);
  if (a.cgroup_parent != nullptr) RemoveCgroups(a.cgroup_parent);
  ::_exit(0);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Janitor>> Janitor::Start(const std::string& cgroup_parent, const std::string& mark_token,
                                                        const JanitorReattach& reattach) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return base::ErrnoError(errno, "janitor socketpair");
  }
  base::UniqueFd ours(sv[0]), theirs(sv[1]);
  std::string kill_path = cgroup_parent.empty() ? "" : cgroup_parent + "/cgroup.kill";
  std::vector<pid_t> table(kCapacity, 0);
  JanitorArgs args{theirs.get(),
                   cgroup_parent.empty() ? nullptr : cgroup_parent.c_str(),
                   kill_path.empty() ? nullptr : kill_path.c_str(),
                   table.data(),
                   mark_token.empty() ? nullptr : mark_token.c_str(),
                   reattach.lock_path.empty() ? nullptr : reattach.lock_path.c_str(),
                   reattach.token.c_str(),
                   reattach.token.size(),
                   absl::ToInt64Milliseconds(reattach.timeout)};
  // A real fork, once: the janitor must outlive us, so it cannot share our memory.
  pid_t pid = ::fork();
  // fork fails only for want of memory or processes (ENOMEM, EAGAIN).
  if (pid < 0) return base::ErrnoError(absl::StatusCode::kResourceExhausted, errno, "janitor fork");
  if (pid == 0) JanitorMain(args);
  return std::unique_ptr<Janitor>(new Janitor(pid, std::move(ours)));
}

Janitor::~Janitor() {
  {
    absl::MutexLock lock(&mu_);
    sock_.reset();  // EOF: the janitor sweeps (nothing is left by now) and exits
  }
  ::waitpid(pid_, nullptr, 0);
}

void Janitor::Send(uint32_t op, pid_t pgid) {
  Record rec{op, static_cast<int32_t>(pgid)};
  absl::MutexLock lock(&mu_);
  if (::send(sock_.get(), &rec, sizeof(rec), MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(rec))) {
    base::Log().warn("janitor (pid {}) did not take process group {}: {}", pid_, pgid, std::strerror(errno));
  }
}

void Janitor::Track(pid_t pgid) { Send(kTrack, pgid); }
void Janitor::Untrack(pid_t pgid) { Send(kUntrack, pgid); }

}  // namespace hostd::manager
