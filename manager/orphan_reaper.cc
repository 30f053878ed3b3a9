#include "manager/orphan_reaper.h"

#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/small_file.h"
#include "boost/asio/post.hpp"
#include "manager/cgroup.h"
#include "manager/proc_mark.h"

namespace hostd::manager {
namespace {

// Children of this process, live or zombie, from /proc/self/task/*/children.
std::vector<pid_t> OwnChildren() {
  std::vector<pid_t> out;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    absl::StatusOr<std::string> text = base::ReadSmallFile(task.path() / "children");
    if (!text.ok()) continue;  // the thread ended
    for (absl::string_view word : absl::StrSplit(*text, ' ', absl::SkipEmpty())) {
      int pid = 0;
      if (absl::SimpleAtoi(word, &pid)) out.push_back(pid);
    }
  }
  return out;
}

// State letter and process group from /proc/<pid>/stat.
bool StatOf(pid_t pid, char* state, pid_t* pgrp) {
  absl::StatusOr<std::string> text = base::ReadSmallFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!text.ok()) return false;  // gone (or going: ESRCH)
  const std::string& s = *text;
  size_t close = s.rfind(')');
  if (close == std::string::npos || close + 2 >= s.size()) return false;
  std::vector<absl::string_view> f = absl::StrSplit(absl::string_view(s).substr(close + 2), ' ');
  int g = 0;
  if (f.size() < 3 || f[0].empty() || !absl::SimpleAtoi(f[2], &g)) return false;
  *state = f[0][0];
  *pgrp = g;
  return true;
}

// Whether `pid` is an exited, unreaped child of this process; reaps nothing.
bool IsZombieChild(idtype_t type, pid_t pid) {
  siginfo_t info{};
  return ::waitid(type, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid != 0;
}

}  // namespace

OrphanReaper::OrphanReaper(boost::asio::io_context& context, std::string cgroup_parent, pid_t janitor,
                           std::string mark_token)
    : context_(context),
      cgroup_parent_(std::move(cgroup_parent)),
      janitor_(janitor),
      mark_token_(std::move(mark_token)),
      periodic_(context) {}

OrphanReaper::~OrphanReaper() { periodic_.cancel(); }

void OrphanReaper::LeaderStarted(pid_t pid, uint64_t serial) {
  live_leaders_[pid] = serial;
  groups_.insert(pid);
  groups_order_.push_back(pid);
  if (groups_order_.size() > kEndedGroups) {  // forget the oldest group, unless its proc still runs
    pid_t oldest = groups_order_.front();
    groups_order_.pop_front();
    if (live_leaders_.contains(oldest)) {
      groups_order_.push_back(oldest);
    } else {
      groups_.erase(oldest);
    }
  }
  ArmPeriodic();
}

void OrphanReaper::LeaderReaped(pid_t pid) {
  last_exit_ = absl::Now();
  if (auto it = live_leaders_.find(pid); it != live_leaders_.end()) {
    // Without cgroups its setsid() escapees are found by its mark.
    if (cgroup_parent_.empty() && !mark_token_.empty()) ended_marks_[it->second] = last_exit_;
    live_leaders_.erase(it);
  }
  if (sweep_posted_) return;  // one sweep for every exit handled in this loop turn
  sweep_posted_ = true;
  boost::asio::post(context_, [this, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired()) return;
    sweep_posted_ = false;
    Sweep();
  });
}

void OrphanReaper::ArmPeriodic() {
  if (periodic_armed_) return;
  periodic_armed_ = true;
  periodic_.expires_after(absl::ToChronoNanoseconds(kSweepInterval));
  periodic_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    if (ec || alive.expired()) return;
    periodic_armed_ = false;
    Sweep();
    if (!live_leaders_.empty() || absl::Now() - last_exit_ < kLinger) ArmPeriodic();
  });
}

void OrphanReaper::KillEscapees() {
  const absl::Time now = absl::Now();
  absl::erase_if(ended_marks_, [&](const auto& entry) { return now - entry.second > kLinger; });
  if (ended_marks_.empty()) return;
  struct Scan {
    OrphanReaper* self;
  } scan{this};
  ScanMarked(
      mark_token_.c_str(),
      [](pid_t pid, uint64_t serial, void* context) {
        OrphanReaper* self = static_cast<Scan*>(context)->self;
        if (!self->ended_marks_.contains(serial) || self->live_leaders_.contains(pid)) return;
        if (::kill(pid, SIGKILL) != 0) return;                             // gone already
        if (self->killed_.size() >= kKilledMemory) self->killed_.clear();  // only attribution is lost
        self->killed_.insert(pid);
      },
      &scan);
}

void OrphanReaper::Sweep() {
  KillEscapees();
  if (!IsZombieChild(P_ALL, 0)) return;  // the usual case: nothing to reap at all
  for (pid_t pid : OwnChildren()) {
    // A live leader is its monitor's to reap; an ended leader's pid may be an orphan's now.
    if (pid == janitor_ || live_leaders_.contains(pid)) continue;
    if (!IsZombieChild(P_PID, pid) || !Attributable(pid)) continue;
    siginfo_t info{};
    ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG);
    killed_.erase(pid);
  }
}

bool OrphanReaper::Attributable(pid_t zombie) const {
  char state = 0;
  pid_t pgrp = 0;
  if (!StatOf(zombie, &state, &pgrp) || state != 'Z') return false;
  if (groups_.contains(pgrp) || killed_.contains(zombie)) return true;
  if (cgroup_parent_.empty()) return false;
  // A setsid() orphan left its group but not its cgroup.
  absl::StatusOr<std::string> text = base::ReadSmallFile(absl::StrCat("/proc/", zombie, "/cgroup"));
  if (!text.ok()) return false;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) {
      return absl::StrContains(absl::StrCat(CgroupTree::MountPoint(), line, "/"), cgroup_parent_ + "/");
    }
  }
  return false;
}

}  // namespace hostd::manager
