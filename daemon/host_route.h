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

// The route of one proc name. Guarded by Host::mu_; `link` is used on the loop thread.
struct Host::Route {
  enum class State { kStarting, kReady, kNoAddress, kEnded };
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

  std::deque<std::pair<channel::Message, channel::Sender::Done>> buffer;  // kStarting, with their ack hooks
  size_t buffered_bytes = 0;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_HOST_ROUTE_H_
