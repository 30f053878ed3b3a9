// Host::Route, shared by the files of the Host (host.cc: the table and spawning;
// host_routing.cc: routing). Internal to the Host: no contract for embedders.
#ifndef HOSTD_DAEMON_HOST_ROUTE_H_
#define HOSTD_DAEMON_HOST_ROUTE_H_

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/host.h"

namespace hostd::daemon {

// Mailbox names start with '_', which no proc name can (proc/proc_id.h).
inline constexpr char kMailboxPrefix[] = "_host.";
// Where procs send ProcRuntime::SaveState; where broadcast signals come from.
inline constexpr char kStateMailbox[] = "_host.state";
inline constexpr char kSignalMailbox[] = "_host.signal";

using Held = std::deque<std::pair<channel::Message, channel::Sender::Done>>;

// Lets handle watchers (on manager threads) post to the loop while the Host lives.
struct Host::Gate {
  absl::Mutex mu;
  channel::EventLoop* loop ABSL_GUARDED_BY(mu) = nullptr;
  void Post(absl::AnyInvocable<void()> fn) {
    absl::MutexLock lock(&mu);
    if (loop != nullptr) loop->Post(std::move(fn));
  }
};

// The route of one proc name. Guarded by Host::mu_; `link` is used on the loop thread.
struct Host::Route {
  // kRestarting: the last incarnation ended and the next is on the way (or about
  // to be); messages wait in `buffer` as for kStarting.
  enum class State { kStarting, kReady, kNoAddress, kRestarting, kEnded };
  // What becomes of the live incarnation when it ends, decided before (a group
  // restart or give-up stopping it, a requested restart).
  enum class Fate { kNone, kRestart, kEnd, kRequestedRestart };
  std::string name;
  uint64_t gen = 0;  // distinguishes successive procs of one name
  State state = State::kStarting;
  proc::ProcStatus status;
  Labels labels;
  std::string program;
  std::vector<std::string> args;
  absl::Time created_at;
  std::shared_ptr<manager::ProcHandle> handle;
  uint64_t watch_id = 0;
  std::optional<channel::ChannelAddr> addr;  // kReady: the proc's backend address
  std::shared_ptr<channel::Sender> link;       // kReady, dialed with the first message

  Held buffer;  // kStarting, kRestarting: with their ack hooks
  size_t buffered_bytes = 0;
  size_t buffer_front = 0;  // entries at the front placed out of arrival order (signals, requeued)
  // Holds `m` ahead of what arrived in order, behind what was placed ahead before.
  void HoldAhead(channel::Message m) {
    buffered_bytes += m.wire_size();
    buffer.emplace(buffer.begin() + static_cast<std::ptrdiff_t>(buffer_front++), std::move(m), nullptr);
  }

  // Supervision (host_supervision.cc).
  manager::SpawnSpec spec;  // starts each incarnation
  int incarnation = 1;
  absl::Time incarnation_started;
  Fate fate = Fate::kNone;
  bool stop_requested = false;   // Terminate/Kill/TerminateChildren: no restart
  bool restart_requested = false;  // a Restart call is under way
  bool spawning = false;           // kRestarting: a job is starting the next incarnation
  std::optional<std::string> handoff_state;  // for the next incarnation, from a requested restart
  std::optional<std::string> saved_state;    // the last ProcRuntime::SaveState
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_HOST_ROUTE_H_
