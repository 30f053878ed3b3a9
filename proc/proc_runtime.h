// ProcRuntime: the runtime inside every proc.
//
// It serves the proc's own backend address (`#n` in DESIGN.md), dispatches each
// message that arrives to the handler bound to its port, and sends everything not
// addressed to this proc to the host backend address it was given (the host routes
// it on). An agent is bound on port "agent" from the start (see agent.h).
//
//   auto rt = ProcRuntime::Start(*loop, {id, *ChannelAddr::Parse("unix:"), host_backend});
//   (*rt)->Bind("echo", [&](Message m) { (*rt)->Reply(m, "echo", m.payload()); });
//   auto reason = (*rt)->WaitForStopRequest(absl::InfiniteFuture());   // the agent's stop
//
// A message for a port nobody bound goes back to its sender (reason kUnknownPort);
// one addressed to another proc that reached this one goes back as kUnroutable.
// Handlers run on the loop thread, in arrival order, and must not block.
// Thread-safe; the loop must outlive the runtime.
#ifndef HOSTD_PROC_PROC_RUNTIME_H_
#define HOSTD_PROC_PROC_RUNTIME_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "channel/event_loop.h"
#include "channel/listener.h"
#include "channel/sender.h"
#include "proc/proc_id.h"

namespace hostd::proc {

class ProcRuntime {
 public:
  struct Options {
    ProcId id;
    channel::ChannelAddr listen;        // the proc's backend address; an "any" form is fine
    channel::ChannelAddr host_backend;  // where everything else goes
  };
  using Handler = std::function<void(channel::Message)>;

  static absl::StatusOr<std::unique_ptr<ProcRuntime>> Start(channel::EventLoop& loop, Options options);
  ~ProcRuntime();

  const ProcId& id() const { return id_; }
  // The concrete backend address this proc serves.
  const channel::ChannelAddr& addr() const { return listener_->addr(); }
  absl::Time started_at() const { return started_at_; }

  // AlreadyExists if the port is taken.
  absl::Status Bind(absl::string_view port, Handler handler);
  // To this proc: dispatched here. Anything else: through the host backend. `done`
  // as for channel::Sender::Post (for local dispatch it runs once dispatched).
  absl::Status Send(channel::Message msg, channel::Sender::Done done = nullptr);
  // Sends `payload` to `to.src()` on `port`, from this proc. FailedPrecondition when
  // `to` has no return address.
  absl::Status Reply(const channel::Message& to, absl::string_view port, absl::string_view payload);

  void RequestStop(std::string reason);
  // The reason given to RequestStop, or DeadlineExceeded.
  absl::StatusOr<std::string> WaitForStopRequest(absl::Time deadline) const;

  // Ports bound now, for status reports.
  size_t port_count() const;

 private:
  class Dispatcher;
  ProcRuntime(channel::EventLoop& loop, Options options);
  void Dispatch(channel::Message msg);

  channel::EventLoop& loop_;
  const ProcId id_;
  const std::string id_text_;
  const absl::Time started_at_;
  std::unique_ptr<Dispatcher> dispatcher_;
  std::unique_ptr<channel::Listener> listener_;
  std::unique_ptr<channel::Sender> host_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Handler> ports_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> stop_reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hostd::proc

#endif  // HOSTD_PROC_PROC_RUNTIME_H_
