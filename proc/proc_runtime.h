// ProcRuntime: the runtime inside every proc.
//
// It serves the proc's own backend address (where the host forwards what is
// addressed to this proc), dispatches each message that arrives to the handler
// bound to its port, and sends everything not addressed to this proc to the host
// backend address it was given (the host routes it on). An agent is bound on port "agent" from the start (see agent.h),
// and the signal port ("signal") too.
//
//   auto rt = ProcRuntime::Start(*loop, {id, *ChannelAddr::Parse("unix:"), host_backend});
//   (*rt)->Bind("echo", [&](Message m) { (*rt)->Reply(m, "echo", m.payload()); });
//   auto reason = (*rt)->WaitForStopRequest(absl::InfiniteFuture());   // the agent's stop
//
// A message for a port nobody bound goes back to its sender (reason kUnknownPort);
// one addressed to another proc that reached this one goes back as kUnroutable.
// Handlers run on the loop thread, in arrival order, and must not block.
// Thread-safe; the loop must outlive the runtime.
//
// Signals. A host broadcasts a signal by sending a message to port "signal" of
// each proc; its payload is the signal's name, optionally followed by '\n' and
// data bytes. The handler given to OnSignal sees the two apart. A signal that
// finds no handler is counted and dropped, never returned to its sender: a
// broadcast must not come back from every proc that does not care.
//
// State handoff. A proc that restarts keeps its name, and may hand a state blob
// (at most kMaxStateBytes) to its next incarnation in two ways: on the host's
// request, the agent's "handoff" command asks the StateProvider for the blob; or
// of its own accord, SaveState sends the blob for the host to store. The host
// hands the blob to the next incarnation, which finds it in initial_state().
//
// Liveness. A proc spawned with a heartbeat check (manager/liveness.h) calls
// Heartbeat() from the code whose progress matters, at least once per check
// period: the runtime never beats by itself, since a beat from a thread of its own
// would prove only that the thread runs.
#ifndef HOSTD_PROC_PROC_RUNTIME_H_
#define HOSTD_PROC_PROC_RUNTIME_H_

#include <cstddef>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "channel/event_loop.h"
#include "channel/listener.h"
#include "channel/sender.h"
#include "proc/proc_id.h"

namespace hostd::proc {

// The port every runtime binds for signals from its host.
inline constexpr absl::string_view kSignalPort = "signal";
// The largest state blob a proc may hand to its next incarnation.
inline constexpr size_t kMaxStateBytes = 1u << 20;

class ProcRuntime {
 public:
  struct Options {
    ProcId id;
    channel::ChannelAddr listen;        // the proc's backend address; an "any" form is fine
    channel::ChannelAddr host_backend;  // where everything else goes
    // The state the previous incarnation handed over, if any (at most kMaxStateBytes).
    // (A default member initializer, so 3-field brace inits still compile under -Wextra.)
    std::optional<std::string> initial_state = std::nullopt;
  };
  using Handler = std::function<void(channel::Message)>;
  // A signal's name, and its data (empty when the payload had no '\n').
  using SignalHandler = std::function<void(absl::string_view name, absl::string_view data)>;
  // The proc's state now, for its next incarnation; an error refuses the handoff.
  using StateProvider = std::function<absl::StatusOr<std::string>()>;

  static absl::StatusOr<std::unique_ptr<ProcRuntime>> Start(channel::EventLoop& loop, Options options);
  ~ProcRuntime();

  const ProcId& id() const { return id_; }
  // The concrete backend address this proc serves.
  const channel::ChannelAddr& addr() const { return listener_->addr(); }
  absl::Time started_at() const { return started_at_; }
  // The state the previous incarnation handed over, if any.
  const std::optional<std::string>& initial_state() const { return initial_state_; }

  // AlreadyExists if the port is taken.
  absl::Status Bind(absl::string_view port, Handler handler);
  // To this proc: dispatched here. Anything else: through the host backend. `done`
  // as for channel::Sender::Post (for local dispatch it runs once dispatched).
  absl::Status Send(channel::Message msg, channel::Sender::Done done = nullptr);
  // Sends `payload` to `to.src()` on `port`, from this proc. FailedPrecondition when
  // `to` has no return address.
  absl::Status Reply(const channel::Message& to, absl::string_view port, absl::string_view payload);

  // Replaces any earlier signal handler. It runs on the loop thread, like port
  // handlers, and must not block.
  void OnSignal(SignalHandler fn);
  // Signals received, handled or not.
  uint64_t signals_received() const;

  // Replaces any earlier provider. The agent's "handoff" command calls it, on the
  // loop thread; it must not block.
  void SetStateProvider(StateProvider fn);
  // Sends `blob` to the host to keep for this proc's next incarnation: to
  // "<frontend>,_host.state" on port "save", through the host backend. Returns
  // once the message is queued, not when the host has stored it (like Send, it
  // waits while the link to the host is full; a failure to deliver is logged).
  // InvalidArgument when it is over kMaxStateBytes.
  absl::Status SaveState(std::string blob);

  // Tells the host this proc is making progress: a message to
  // "<frontend>,_host.liveness" on port "heartbeat", through the host backend, on
  // its control lane (ahead of queued data, never waiting for room). At
  // most one is in flight: a call while the previous beat is not yet acknowledged
  // sends nothing (that beat already says as much), so calling it often is cheap.
  // Never blocks; a beat that cannot be delivered is logged.
  absl::Status Heartbeat();

  void RequestStop(std::string reason);
  // The reason given to RequestStop, or DeadlineExceeded.
  absl::StatusOr<std::string> WaitForStopRequest(absl::Time deadline) const;

  // Ports bound now, for status reports.
  size_t port_count() const;

 private:
  class Dispatcher;
  friend void InstallAgent(ProcRuntime& runtime);

  ProcRuntime(channel::EventLoop& loop, Options options);
  void Dispatch(channel::Message msg);
  void DispatchSignal(const channel::Message& msg);
  // For the agent's "handoff": the provider's blob, or why there is none to give.
  absl::StatusOr<std::string> HandOffState();

  channel::EventLoop& loop_;
  const ProcId id_;
  const std::string id_text_;
  const absl::Time started_at_;
  const std::optional<std::string> initial_state_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<channel::Listener> listener_;
  std::unique_ptr<channel::Sender> host_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Handler> ports_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> stop_reason_ ABSL_GUARDED_BY(mu_);
  SignalHandler signal_handler_ ABSL_GUARDED_BY(mu_);
  uint64_t signals_received_ ABSL_GUARDED_BY(mu_) = 0;
  StateProvider state_provider_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<std::atomic<bool>> heartbeat_in_flight_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace hostd::proc

#endif  // HOSTD_PROC_PROC_RUNTIME_H_
