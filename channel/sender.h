// Sender: the dialing end of a link. Carries messages to one address, each exactly
// once and in order while both ends live, across reconnects.
//
//   auto sender = Sender::Dial(*loop, addr);          // connects lazily
//   absl::Status s = sender->Send(*std::move(msg));  // blocks until acknowledged
//   sender->Post(std::move(msg), [](absl::Status s, Message m) {
//     if (!s.ok()) Bounce(ReturnReasonOf(s), m);       // fire-and-forget with a return path
//   });
//
// Delivery. Every message gets the next sequence number of the session and stays
// queued until the listener acknowledges it. A lost connection is re-dialed with
// capped exponential backoff and jitter; the session resumes, the listener reports
// what it already delivered, and only the rest is retransmitted. If the listener at
// the address restarted (a new incarnation id) or lost the session, the session is
// reset explicitly: unacknowledged messages are redelivered to the new incarnation
// or returned, per `on_peer_restart`. A graceful close by the listener returns every
// outstanding message at once (kPeerClosed); so does a message not acknowledged within
// `delivery_timeout` (kTimeout; such a message may or may not have been delivered).
// Nothing is dropped silently: each Post's `done` runs exactly once.
//
// Return handler. A sender dialed with `on_return` hands it every message that
// was posted without a `done` of its own and comes back, with why; such a message
// costs no completion at all once acknowledged. For a caller with one return path
// for everything it posts on a link (a host's router): no callback per message.
// Without one, a message posted with no `done` that comes back is dropped.
//
// Flow control. The queue (unsent + unacknowledged) is bounded by message count and
// bytes. A full queue makes Post wait (WhenFull::kWait) or fail with
// ResourceExhausted (WhenFull::kFail); a loop-thread caller must use kFail and may ask
// NotifyWhenRoom. A message over the frame limit is refused with InvalidArgument.
//
// Writes. Queued messages leave in gathered writes of up to 1024 frames or 1 MiB;
// frames with bodies up to 2 KiB are copied into one staging buffer per
// connection (at most 64 KiB of frames per write, so its capacity stays under
// 128 KiB; above 4 KiB it is released once the queue has nothing left to write),
// larger bodies are written from the queue in place.
//
// Control lane. PostControl queues a small urgent message (e.g. a signal to a proc)
// ahead of every queued message not yet written to a connection; messages already
// written keep their place, and so do earlier control messages. Everything posted
// after it is delivered after it. It is not held back by a full queue, but counts
// toward it. Only the sender's queue order changes: the listener sees an ordinary
// message, and delivery stays exactly once and in (the new) order across reconnects.
//
// Thread-safe. `done` callbacks run on the loop thread and must not block; they may
// run after Close() returns. The loop must outlive the Sender and keep running until
// the callbacks have run: a callback still queued when the loop is destroyed is
// destroyed with it, unrun.
#ifndef HOSTD_CHANNEL_SENDER_H_
#define HOSTD_CHANNEL_SENDER_H_

#include <functional>
#include <memory>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "channel/channel_addr.h"
#include "channel/event_loop.h"
#include "channel/frame.h"
#include "channel/link_stats.h"
#include "channel/message.h"
#include "channel/tls.h"

namespace hostd::channel {

enum class WhenFull { kWait, kFail };
enum class OnPeerRestart { kRedeliver, kReturn };

struct SenderOptions {
  uint32_t max_frame_body = kDefaultMaxFrameBody;
  size_t max_queued_messages = 16384;
  size_t max_queued_bytes = 64u << 20;  // one message larger than this still fits alone
  absl::Duration delivery_timeout = absl::Seconds(30);
  absl::Duration connect_timeout = absl::Seconds(10);  // connect plus handshake
  absl::Duration backoff_initial = absl::Milliseconds(10);
  absl::Duration backoff_max = absl::Seconds(1);
  double backoff_multiplier = 2.0;
  double backoff_jitter = 0.5;  // each delay is cut by a random fraction up to this
  OnPeerRestart on_peer_restart = OnPeerRestart::kRedeliver;
  // tcp:/tls: connections whose listener stops answering (host down, link cut:
  // no FIN or RST ever comes) are aborted within about this and dialled again
  // (Socket::SetDeadPeerTimeout); zero leaves the kernel's defaults (hours).
  absl::Duration dead_peer_timeout = absl::ZeroDuration();
  // Required to dial a tls: address (channel/tls.h). A handshake refused either way
  // (certificate not verified, none offered to a listener that requires one) is
  // logged as a warning and retried like any failed dial; messages that time out
  // meanwhile come back with the refusal in their note.
  std::shared_ptr<TlsContext> tls;
};

// The ReturnReason carried by a status a Sender hands back (kNone for others).
ReturnReason ReturnReasonOf(const absl::Status& status);

class Sender {
 public:
  // OK once acknowledged; otherwise why, with the message handed back.
  using Done = absl::AnyInvocable<void(absl::Status status, Message msg)>;

  // `on_return` (see "Return handler" above) runs on the loop thread, once per
  // message returned, for as long as the sender has messages to return.
  static std::unique_ptr<Sender> Dial(EventLoop& loop, const ChannelAddr& addr, SenderOptions options = {},
                                      Done on_return = nullptr);
  // Close(absl::Now()): outstanding messages are returned with kSenderClosed.
  ~Sender();
  Sender(const Sender&) = delete;
  Sender& operator=(const Sender&) = delete;

  // Queues `msg`. On error (too large, queue full with kFail, closed) neither `msg`
  // nor `done` is consumed and `done` never runs.
  absl::Status Post(Message&& msg, Done done, WhenFull when_full = WhenFull::kWait);
  // What PostBatch queued: the first `posted` messages, moved from. If that is not
  // all of them, `status` says why the next one was not queued, as Post would.
  struct Posted {
    size_t posted = 0;
    absl::Status status;
  };
  // Queues `msgs` in order, each as Post(msg, nullptr, when_full) would: none has a
  // `done` of its own, so one that comes back goes to the return handler (and is
  // dropped without one), and one acknowledged costs no completion. The queue's
  // lock is taken once for the batch instead of once per message; with kWait, a
  // message that finds the queue full waits for room as Post does, the messages
  // before it already on their way. Stops at the first message that cannot be
  // queued, leaving it and the rest untouched.
  Posted PostBatch(absl::Span<Message> msgs, WhenFull when_full = WhenFull::kWait);
  // Queues `msg` on the control lane: ahead of every queued message not yet written
  // to the connection (messages already written keep their place), behind earlier
  // control messages. Every message posted after it is delivered after it. Not
  // refused for a full queue (control messages may exceed the queue bounds); refused
  // like Post for a message over the frame limit or a closed sender. Same `done`
  // contract as Post. Never blocks.
  absl::Status PostControl(Message&& msg, Done done);
  // Posts and waits for the acknowledgement. DeadlineExceeded if none by `deadline`
  // (the message then stays queued and may still be delivered). Not on the loop thread.
  absl::Status Send(Message msg, absl::Time deadline = absl::InfiniteFuture());
  // Runs `fn` once (on the loop thread) when the queue has room for a message of
  // `bytes` (its wire_size()), or the sender closed; at once if that is so already.
  void NotifyWhenRoom(size_t bytes, std::function<void()> fn);
  // Waits until every queued message is acknowledged (or returned).
  absl::Status Flush(absl::Time deadline);
  // Flushes until `flush_deadline`, tells the listener the session is over, and
  // returns what is still queued with kSenderClosed. Later Posts fail. Idempotent.
  void Close(absl::Time flush_deadline = absl::Now());

  const ChannelAddr& addr() const;
  SenderStats stats() const;

  class Impl;

 private:
  explicit Sender(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  // Shared with in-flight Asio handlers, which may outlive the Sender.
  std::shared_ptr<Impl> impl_;
};

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_SENDER_H_
