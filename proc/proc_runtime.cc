#include "proc/proc_runtime.h"

#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "proc/agent.h"

namespace hostd::proc {

using channel::Message;
using channel::ReturnReason;

// Hands every arriving message to the runtime. Handlers never block, so it never
// refuses one: flow control is the handlers' business (e.g. the Inbox they feed).
class ProcRuntime::Dispatcher final : public channel::Receiver {
 public:
  explicit Dispatcher(ProcRuntime& rt) : rt_(rt) {}
  bool Deliver(Message& msg, const Wake&) override {
    rt_.Dispatch(std::move(msg));
    return true;
  }

 private:
  ProcRuntime& rt_;
};

ProcRuntime::ProcRuntime(channel::EventLoop& loop, Options options)
    : loop_(loop),
      id_(options.id),
      id_text_(options.id.ToString()),
      started_at_(absl::Now()),
      initial_state_(std::move(options.initial_state)) {}

absl::StatusOr<std::unique_ptr<ProcRuntime>> ProcRuntime::Start(channel::EventLoop& loop, Options options) {
  if (options.initial_state.has_value() && options.initial_state->size() > kMaxStateBytes) {
    return absl::InvalidArgumentError(absl::StrCat("initial state of proc ", options.id.ToString(), " is ",
                                                   options.initial_state->size(), " bytes; at most ", kMaxStateBytes,
                                                   " allowed"));
  }
  const channel::ChannelAddr listen = options.listen;
  const channel::ChannelAddr host_backend = options.host_backend;
  std::unique_ptr<ProcRuntime> rt(new ProcRuntime(loop, std::move(options)));
  rt->dispatcher_ = std::make_unique<Dispatcher>(*rt);
  HOSTD_ASSIGN_OR_RETURN(rt->listener_, channel::Listener::Serve(loop, listen, *rt->dispatcher_));
  rt->host_ = channel::Sender::Dial(loop, host_backend);
  InstallAgent(*rt);
  // Bound here, before anything can arrive, so no signal is ever bounced as kUnknownPort.
  HOSTD_RETURN_IF_ERROR(rt->Bind(kSignalPort, [raw = rt.get()](Message m) { raw->DispatchSignal(m); }));
  return rt;
}

ProcRuntime::~ProcRuntime() {
  listener_->Close();
  // Give what the proc sent last a moment to reach the host.
  host_->Close(absl::Now() + absl::Seconds(1));
}

absl::Status ProcRuntime::Bind(absl::string_view port, Handler handler) {
  if (port.empty()) return absl::InvalidArgumentError("port name is empty");
  absl::MutexLock lock(&mu_);
  if (!ports_.try_emplace(std::string(port), std::move(handler)).second) {
    return absl::AlreadyExistsError(absl::StrCat("port \"", port, "\" of proc ", id_text_, " is already bound"));
  }
  return absl::OkStatus();
}

size_t ProcRuntime::port_count() const {
  absl::MutexLock lock(&mu_);
  return ports_.size();
}

void ProcRuntime::Dispatch(Message msg) {
  auto bounce = [&](ReturnReason reason, std::string note) {
    if (msg.kind() == Message::Kind::kReturned || msg.src().empty()) {
      base::Log().warn("proc {}: dropping message it cannot deliver ({})", id_text_, note);
      return;
    }
    (void)host_->Post(msg.ToReturned(reason, note), nullptr, channel::WhenFull::kFail);
  };
  if (msg.dest() != id_text_) {
    return bounce(ReturnReason::kUnroutable, absl::StrCat("proc ", id_text_, " received a message for ", msg.dest()));
  }
  Handler handler;
  {
    absl::MutexLock lock(&mu_);
    auto it = ports_.find(msg.port());
    if (it != ports_.end()) handler = it->second;
  }
  if (!handler) {
    return bounce(ReturnReason::kUnknownPort, absl::StrCat("proc ", id_text_, " has no port \"", msg.port(), "\""));
  }
  handler(std::move(msg));
}

absl::Status ProcRuntime::Send(Message msg, channel::Sender::Done done) {
  if (msg.dest() == id_text_) {
    auto shared = std::make_shared<Message>(std::move(msg));
    auto done_ptr = std::make_shared<channel::Sender::Done>(std::move(done));
    loop_.Post([this, shared, done_ptr] {
      Message copy = *done_ptr ? Message(*shared) : std::move(*shared);
      Dispatch(std::move(copy));
      if (*done_ptr) (*done_ptr)(absl::OkStatus(), std::move(*shared));
    });
    return absl::OkStatus();
  }
  return host_->Post(std::move(msg), std::move(done));
}

absl::Status ProcRuntime::Reply(const Message& to, absl::string_view port, absl::string_view payload) {
  if (to.src().empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("message to ", to.dest(), " port ", to.port(), " has no return address to reply to"));
  }
  HOSTD_ASSIGN_OR_RETURN(Message reply, Message::Create(to.src(), port, id_text_, payload));
  return Send(std::move(reply));
}

void ProcRuntime::OnSignal(SignalHandler fn) {
  absl::MutexLock lock(&mu_);
  signal_handler_ = std::move(fn);
}

uint64_t ProcRuntime::signals_received() const {
  absl::MutexLock lock(&mu_);
  return signals_received_;
}

void ProcRuntime::DispatchSignal(const Message& msg) {
  if (msg.kind() == Message::Kind::kReturned) return;  // not a signal: one of ours came back
  SignalHandler handler;
  {
    absl::MutexLock lock(&mu_);
    ++signals_received_;
    handler = signal_handler_;
  }
  if (!handler) return;  // counted and dropped: a broadcast is not bounced
  absl::string_view payload = msg.payload();
  size_t nl = payload.find('\n');
  if (nl == absl::string_view::npos) return handler(payload, absl::string_view());
  handler(payload.substr(0, nl), payload.substr(nl + 1));
}

void ProcRuntime::SetStateProvider(StateProvider fn) {
  absl::MutexLock lock(&mu_);
  state_provider_ = std::move(fn);
}

absl::StatusOr<std::string> ProcRuntime::HandOffState() {
  StateProvider provider;
  {
    absl::MutexLock lock(&mu_);
    provider = state_provider_;
  }
  if (!provider) return absl::FailedPreconditionError("proc has no state provider");
  absl::StatusOr<std::string> blob = provider();
  if (!blob.ok()) return blob.status();
  if (blob->size() > kMaxStateBytes) {
    return absl::FailedPreconditionError(absl::StrCat("state of proc ", id_text_, " is ", blob->size(),
                                                      " bytes; at most ", kMaxStateBytes, " may be handed over"));
  }
  return blob;
}

absl::Status ProcRuntime::SaveState(std::string blob) {
  if (blob.size() > kMaxStateBytes) {
    return absl::InvalidArgumentError(absl::StrCat("state of proc ", id_text_, " is ", blob.size(), " bytes; at most ",
                                                   kMaxStateBytes, " may be saved"));
  }
  HOSTD_ASSIGN_OR_RETURN(
      Message msg, Message::Create(absl::StrCat(id_.frontend().ToString(), ",_host.state"), "save", id_text_, blob));
  // Nobody waits for the host's acknowledgement, so a failure is only logged.
  return host_->Post(std::move(msg), [id = id_text_](absl::Status s, Message) {
    if (!s.ok()) base::Log().warn("proc {}: its saved state did not reach the host: {}", id, s.message());
  });
}

absl::Status ProcRuntime::Heartbeat() {
  if (heartbeat_in_flight_->exchange(true)) return absl::OkStatus();
  absl::StatusOr<Message> msg =
      Message::Create(absl::StrCat(id_.frontend().ToString(), ",_host.liveness"), "heartbeat", id_text_, "");
  if (!msg.ok()) {
    heartbeat_in_flight_->store(false);
    return msg.status();
  }
  // The flag, not the runtime: the acknowledgement may come after the runtime is gone.
  // On the control lane: ahead of data queued for the host, and never waiting for
  // room, so a proc whose link is full still proves its progress.
  absl::Status s = host_->PostControl(*std::move(msg), [id = id_text_, in_flight = heartbeat_in_flight_](absl::Status s,
                                                                                                     Message) {
    in_flight->store(false);
    if (!s.ok()) base::Log().warn("proc {}: its heartbeat did not reach the host: {}", id, s.message());
  });
  if (!s.ok()) heartbeat_in_flight_->store(false);
  return s;
}

void ProcRuntime::RequestStop(std::string reason) {
  absl::MutexLock lock(&mu_);
  if (!stop_reason_.has_value()) stop_reason_ = std::move(reason);
}

absl::StatusOr<std::string> ProcRuntime::WaitForStopRequest(absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto requested = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_reason_.has_value(); };
  if (!mu_.AwaitWithDeadline(absl::Condition(&requested), deadline)) {
    return absl::DeadlineExceededError(absl::StrCat("proc ", id_text_, " was not asked to stop"));
  }
  return *stop_reason_;
}

}  // namespace hostd::proc
