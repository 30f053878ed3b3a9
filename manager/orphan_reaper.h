// OrphanReaper: reaps the zombies that come back to this process (a child
// subreaper) from a manager's procs, and nobody else's.
//
// A proc that daemonises (double fork), or whose children outlive it, leaves
// processes that are reparented to this process; when they exit they stay zombies
// until someone reaps them. The reaper attributes a zombie child to the manager's
// procs by process group (every proc leads its own) or, with cgroups, by cgroup
// (a setsid() orphan leaves its group but not its cgroup), and reaps it by pid. It
// never reaps a live proc's leader (its exit monitor does) nor any other child of
// this process (the embedder's, the janitor).
//
// Without cgroups a setsid() descendant also escapes the group signals that end its
// proc. Every proc carries its manager's mark in its environment (proc_mark.h), so
// once a proc has ended, sweeps over the next kLinger kill every process still
// carrying that proc's mark, wherever it is (SIGKILL, since it already outlived its
// proc), and reap those that come back to this process. With cgroups, cgroup.kill
// does this already and no scan runs.
//
// It does not handle SIGCHLD: a process-wide handler would replace an embedder's
// and interrupt other threads' poll/epoll_wait with EINTR (SA_RESTART does not
// restart those). Instead it sweeps on the manager's loop every kSweepInterval
// while the manager has procs or one ended within kLinger, and soon after each
// proc's exit (sweeps requested in one loop turn are coalesced). A sweep first
// peeks whether this process has a zombie child at all (one waitid that reaps
// nothing); only then does it list the children and look at the zombies among
// them, so a sweep costs one system call when there is nothing to reap.
//
//   OrphanReaper reaper(loop.context(), cgroup_parent, janitor_pid, token);  // on the loop
//   reaper.LeaderStarted(pid, serial);   // launched with MarkValue(token, serial)
//   reaper.LeaderReaped(pid);    // its monitor reaped it
//
// Loop thread only: construct, call and destroy it on the manager's loop thread.
#ifndef HOSTD_MANAGER_ORPHAN_REAPER_H_
#define HOSTD_MANAGER_ORPHAN_REAPER_H_

#include <sys/types.h>

#include <deque>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"

namespace hostd::manager {

class OrphanReaper {
 public:
  static constexpr absl::Duration kSweepInterval = absl::Seconds(1);
  // How long sweeps go on after the last proc ended (its orphans may still be dying).
  static constexpr absl::Duration kLinger = absl::Seconds(5);
  // Ended procs' process groups remembered for attribution.
  static constexpr size_t kEndedGroups = 1 << 16;

  // Processes it remembers having killed, for attributing their zombies.
  static constexpr size_t kKilledMemory = 1 << 16;

  // `cgroup_parent`: the manager's parent cgroup, empty without cgroups. `janitor`:
  // a child of this process never to reap (0 if none). `mark_token`: the manager's
  // ProcMark token (empty: procs carry no mark).
  OrphanReaper(boost::asio::io_context& context, std::string cgroup_parent, pid_t janitor, std::string mark_token);
  ~OrphanReaper();
  OrphanReaper(const OrphanReaper&) = delete;
  OrphanReaper& operator=(const OrphanReaper&) = delete;

  // A proc's leader was launched (it leads process group `pid`) with mark `serial`.
  void LeaderStarted(pid_t pid, uint64_t serial);
  // Its exit monitor reaped it: from now on that pid may be anyone's. Requests a sweep.
  void LeaderReaped(pid_t pid);
  // Kills the ended procs' marked escapees and reaps the attributable zombies now.
  void Sweep();

 private:
  bool Attributable(pid_t zombie) const;
  void KillEscapees();
  void ArmPeriodic();

  boost::asio::io_context& context_;
  const std::string cgroup_parent_;
  const pid_t janitor_;
  const std::string mark_token_;
  absl::flat_hash_map<pid_t, uint64_t> live_leaders_;  // pid -> mark serial
  // Marks of procs that ended within kLinger: their escapees are killed on sight.
  absl::flat_hash_map<uint64_t, absl::Time> ended_marks_;
  absl::flat_hash_set<pid_t> killed_;  // escapees killed, until reaped (bounded)
  absl::flat_hash_set<pid_t> groups_;  // live and ended procs' groups
  std::deque<pid_t> groups_order_;
  boost::asio::steady_timer periodic_;
  bool periodic_armed_ = false;
  bool sweep_posted_ = false;
  absl::Time last_exit_ = absl::InfinitePast();
  // Handlers posted to the loop check it: the reaper may be gone when they run.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_ORPHAN_REAPER_H_
