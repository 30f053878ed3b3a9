// Router: the message path of a Host. It owns the route table (proc name -> how
// to reach that proc now), the links to procs and to other hosts, and the host's
// own mailboxes, and it forwards every message the host's listeners receive.
//
// Threading: the Router belongs to the Host's loop thread. Every method below,
// except SendToProc and counters(), runs only there (each asserts it), so the
// message path takes no lock. The proc table changes routes by posting to the
// loop (in the order it decides them), never by locking the router.
//
// Routing. A message is routed by its `dest`, `<addr>,<name>`, read from the
// envelope; the frame body is forwarded as it arrived, never re-encoded.
//   - `<addr>` is this host's frontend (compared as text with the frontend's
//     ToString()): to the route `<name>`.
//       starting, restarting: held in a bounded buffer (Options) and flushed in
//         order once the proc is ready; kBufferFull when the buffer is full;
//       ready: posted on the proc's link, dialed with the first message;
//       ready without an address (exec/notify readiness): kUnroutable;
//       ended: kProcExited with its terminal status; no such route: kUnknownProc.
//   - Any other `<addr>`, arriving on the backend: forwarded to that host's
//     frontend over a cached dialed link. Arriving on the frontend: kUnroutable (a
//     frontend serves only its own procs, so messages cannot circle).
//   - Names starting with '_' are the host's own mailboxes (kMailboxPrefix). The
//     state and liveness mailboxes take messages from the backend only: a client
//     on the frontend can neither save a proc's state nor beat for it.
// Undeliverable messages go back to their `src` with the reason; a returned
// message that cannot be delivered is dropped and counted, never returned again.
// Backpressure: a proc link with a full queue makes Deliver return false, so the
// listener stops reading the link the message came on until there is room.
// A message a restarting proc's old link hands back waits for the next
// incarnation, ahead of what arrived since.
// Re-adoption (Options::hold_until_adopted, hostd --keep-procs): the listeners
// serve before the procs of the previous hostd are re-adopted, and their links
// reconnect at once. Until Adopted(), a message from a listener for a name of this
// host that has no route yet is not taken: it waits in its link (the listener
// stops reading that connection, as for backpressure, so nothing is acknowledged)
// instead of coming back "unknown proc" from a proc that is about to be adopted,
// to a sender that may not be adopted yet either (a return to an unknown proc is
// dropped). Adopted() resumes those links; from then on an unknown name is unknown.
// What waits is the one message each paused connection holds (the listener's
// connection cap bounds them), and a wake per connection paused, for as long as
// the adoption lasts.
#ifndef HOSTD_DAEMON_ROUTER_H_
#define HOSTD_DAEMON_ROUTER_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "channel/event_loop.h"
#include "channel/message.h"
#include "channel/receiver.h"
#include "channel/sender.h"
#include "daemon/host_types.h"

namespace hostd::daemon {

// Mailbox names start with '_', which no proc name can (proc/proc_id.h).
inline constexpr char kMailboxPrefix[] = "_host.";
// Where procs send ProcRuntime::SaveState; where broadcast signals come from.
inline constexpr char kStateMailbox[] = "_host.state";
inline constexpr char kSignalMailbox[] = "_host.signal";
// Where procs send ProcRuntime::Heartbeat (manager/liveness.h).
inline constexpr char kLivenessMailbox[] = "_host.liveness";

class Router {
 public:
  struct Options {
    size_t starting_buffer_messages = 1024;  // per starting or restarting proc
    size_t starting_buffer_bytes = 16u << 20;
    channel::SenderOptions proc_link = {};    // to procs
    channel::SenderOptions remote_link = {};  // to other hosts' frontends
    bool hold_until_adopted = false;          // see "Re-adoption" above
  };
  // The two kinds of link the router dials: to its own procs, and to other hosts'
  // frontends. Counters and link stats are kept per kind (index by LinkKind).
  enum class LinkKind : uint8_t { kProc = 0, kRemote = 1 };
  static constexpr size_t kLinkKinds = 2;
  static constexpr size_t kReturnReasons = static_cast<size_t>(channel::ReturnReason::kLast) + 1;
  // Read with relaxed atomics: each value is exact, the set is not one instant.
  struct Counters {
    uint64_t forwarded = 0;
    uint64_t returned = 0;
    uint64_t dropped = 0;
    std::array<uint64_t, kLinkKinds> forwarded_by_kind{};        // messages taken by a link
    std::array<uint64_t, kLinkKinds> forwarded_bytes_by_kind{};  // their wire bytes
    std::array<uint64_t, kLinkKinds> blocked_by_kind{};          // forwards that found the link full (backpressure)
    std::array<uint64_t, kReturnReasons> returned_by_reason{};   // indexed by ReturnReason
  };
  // The stats of every link of one kind, summed: the links open now, and for the
  // cumulative counters also those closed before (queue depth and bytes are of the
  // open links only).
  struct LinkTotals {
    uint64_t open_links = 0;
    channel::SenderStats stats;
  };
  using Mailbox = std::function<void(channel::Message)>;

  Router(channel::EventLoop& loop, Options options);
  ~Router();
  Router(const Router&) = delete;
  Router& operator=(const Router&) = delete;

  // Set once, before the listeners that use the receivers serve.
  void SetAddresses(std::string frontend, std::string backend);
  channel::Receiver& frontend_receiver();
  channel::Receiver& backend_receiver();

  // ---- The route table (loop thread) --------------------------------------------
  // `gen` tells successive incarnations of one name apart: what an older
  // incarnation's link hands back is not mistaken for the current one's.
  // A proc is starting: messages wait. Replaces an ended route of the same name.
  void Open(const std::string& name, uint64_t gen);
  // It is ready (at `addr`; none: it takes no messages): what waited is flushed in
  // order, ahead of anything routed later. Ignored unless starting or restarting.
  void Activate(const std::string& name, uint64_t gen, std::optional<channel::ChannelAddr> addr);
  // Its incarnation ended and the next is on the way: its link closes, and what the
  // link hands back and what arrives meanwhile waits for the next one.
  void Restart(const std::string& name);
  // Ended for good: what waited, and later messages, come back with `note`.
  void End(const std::string& name, std::string note);
  // A first start failed: what waited comes back with `note`; the name is unknown.
  void Abandon(const std::string& name, uint64_t gen, std::string note);
  // The name is forgotten (an ended route whose name was freed).
  void Forget(const std::string& name);
  // Re-adoption is over: the links held for unknown names resume (see above).
  void Adopted();

  // Signals `payload` (port proc::kSignalPort, from kSignalMailbox) on each named
  // route's control lane: it overtakes data queued for the proc; a starting or
  // restarting proc gets it first when ready. `done` gets the tally once every
  // signal was acknowledged or came back. Loop thread.
  void Signal(const std::vector<std::string>& names, const std::string& payload,
              absl::AnyInvocable<void(BroadcastResult)> done);

  // A mailbox of the host (`name` starts with kMailboxPrefix). Loop thread.
  void AddMailbox(std::string name, Mailbox fn);
  // Sends a message back to its src (loop thread).
  void Return(channel::Message msg, channel::ReturnReason reason, absl::string_view note);

  // Sends `payload` to `name`'s port from a fresh mailbox. Any thread; `done` runs
  // once, on the loop: OK with no reply when the proc's link acknowledged it and
  // `reply_timeout` is zero; OK with the reply when one came within
  // `reply_timeout`; otherwise why not (the return reason in the text). The whole
  // exchange is bounded by `timeout` (+ reply_timeout).
  struct Reply {
    bool replied = false;
    std::string port;
    std::string payload;
  };
  void SendToProc(const std::string& name, const std::string& port, std::string payload, absl::Duration timeout,
                  absl::Duration reply_timeout, absl::AnyInvocable<void(absl::StatusOr<Reply>)> done);

  // Closes every link; from here on nothing is returned (loop thread).
  void Close();
  // Loop thread: messages taken from clients or procs that a link still holds
  // unacknowledged, or that wait for a starting proc (a hand-over waits for 0).
  size_t Unacked() const;

  Counters counters() const;  // any thread
  // Link stats by LinkKind. Loop thread: a scraper RunSyncs it, so the message
  // path keeps its no-lock rule (each Sender's own stats lock aside).
  std::array<LinkTotals, kLinkKinds> LinkStats() const;

 private:
  class Entrance;
  struct Route;
  using Held = std::deque<std::pair<channel::Message, channel::Sender::Done>>;

  // A message a listener received. Until Adopted(), one for a name of this host
  // with no route is not taken and `wake` is kept for Adopted() (see Re-adoption).
  bool RouteMessage(channel::Message& msg, const channel::Receiver::Wake& wake, bool from_frontend);
  // `hook`, when given, replaces the default ack callback (and is consumed if the
  // message is taken).
  bool RouteLocal(channel::Message& msg, absl::string_view name, const channel::Receiver::Wake& wake,
                  channel::Sender::Done* hook = nullptr);
  bool RouteRemote(channel::Message& msg, absl::string_view addr, const channel::Receiver::Wake& wake);
  // The return handler of a link: what it hands back goes to ForwardFailed of the
  // route `name` ("" for a remote link) in generation `gen`. Each link serves one
  // route generation (or one remote host), so a forwarded message carries no
  // callback of its own.
  channel::Sender::Done ReturnsTo(std::string name, uint64_t gen);
  // Posts on `link`; false (and `wake` armed) when its queue is full. What the link
  // hands back goes to its return handler, or to `hook` when given.
  bool Forward(channel::Sender& link, LinkKind kind, channel::Message& msg, const channel::Receiver::Wake& wake,
               channel::Sender::Done* hook = nullptr);
  void ForwardFailed(const std::string& name, uint64_t gen, const absl::Status& status, channel::Message msg);
  // The route's link, dialed now if it has none, with the route generation's return path.
  channel::Sender& LinkOf(const std::string& name, Route& r);
  void Bounce(Held held, channel::ReturnReason reason, const std::string& note);
  // Closes `link` and keeps its cumulative stats for LinkStats().
  void Retire(LinkKind kind, channel::Sender& link);

  channel::EventLoop& loop_;
  const Options opts_;
  std::unique_ptr<Entrance> front_;
  std::unique_ptr<Entrance> back_;
  std::string frontend_text_;
  std::string backend_text_;

  // Loop thread only.
  bool closing_ = false;
  bool adopting_;                                        // Options::hold_until_adopted, until Adopted()
  std::vector<channel::Receiver::Wake> adoption_wakes_;  // links held until Adopted()
  absl::flat_hash_map<std::string, std::unique_ptr<Route>> routes_;
  absl::flat_hash_map<std::string, std::unique_ptr<channel::Sender>> remotes_;
  absl::flat_hash_map<std::string, Mailbox> mailboxes_;
  uint64_t next_mailbox_ = 1;

  std::array<channel::SenderStats, kLinkKinds> retired_{};  // closed links' stats

  std::atomic<uint64_t> returned_{0};
  std::atomic<uint64_t> dropped_{0};
  std::array<std::atomic<uint64_t>, kLinkKinds> forwarded_{};
  std::array<std::atomic<uint64_t>, kLinkKinds> forwarded_bytes_{};
  std::array<std::atomic<uint64_t>, kLinkKinds> blocked_{};
  std::array<std::atomic<uint64_t>, kReturnReasons> returned_by_reason_{};
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_ROUTER_H_
