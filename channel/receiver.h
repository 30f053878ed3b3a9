// Receiver: where a Listener hands the messages it receives; Inbox: a bounded one.
//
// Backpressure runs through Deliver: a receiver with no room returns false and keeps
// `wake`; the link then stops reading from that peer (its kernel buffer fills, then
// the sender's bounded queue, then the sending caller waits or fails) until the
// receiver calls `wake`. A message counts as delivered, and is acknowledged to its
// sender, only once Deliver has taken it.
//
// Runs. The listener hands over the frames of one read as a run of Deliver calls
// and then calls EndOfRun, so a receiver feeding another thread can wake it once
// per run instead of once per message (Inbox does).
#ifndef HOSTD_CHANNEL_RECEIVER_H_
#define HOSTD_CHANNEL_RECEIVER_H_

#include <deque>
#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "channel/message.h"

namespace hostd::channel {

class Receiver {
 public:
  using Wake = std::function<void()>;
  virtual ~Receiver() = default;

  // Called on the listener's loop thread, in order within each session. Either takes
  // `msg` (moves from it) and returns true, or leaves it untouched, keeps a copy of
  // `wake` and returns false; `wake` may then be called once from any thread.
  virtual bool Deliver(Message& msg, const Wake& wake) = 0;
  // Called on the same thread after each run of Deliver calls (also after one that
  // ends with a refusal). Whoever calls Deliver must call it before waiting on the
  // receiver's consumer.
  virtual void EndOfRun() {}
};

// A bounded, thread-safe queue of received messages for consumer threads to pull.
// A consumer waiting in Receive is woken by EndOfRun (once per run, however many
// messages it brought) or by a Deliver that finds the queue full.
class Inbox final : public Receiver {
 public:
  explicit Inbox(size_t capacity = 1024) : capacity_(capacity) {}

  bool Deliver(Message& msg, const Wake& wake) override;
  void EndOfRun() override;

  // The next message, or DeadlineExceeded when none arrives by `deadline`.
  absl::StatusOr<Message> Receive(absl::Time deadline = absl::InfiniteFuture());
  // Moves up to `max` (at least 1) of the queued messages, oldest first, onto the
  // end of `out`, under one lock; waits for the first as Receive does. Returns how
  // many it moved, or DeadlineExceeded (with `out` untouched) when none arrives by
  // `deadline`.
  absl::StatusOr<size_t> ReceiveBatch(std::vector<Message>& out, size_t max,
                                      absl::Time deadline = absl::InfiniteFuture());
  size_t size() const;

 private:
  // Waits until a message is queued; false if none is by `deadline`.
  bool AwaitMessage(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<Message> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<Wake> waiting_ ABSL_GUARDED_BY(mu_);
  absl::CondVar arrived_;
  int consumers_waiting_ ABSL_GUARDED_BY(mu_) = 0;
  bool wake_due_ ABSL_GUARDED_BY(mu_) = false;  // a waiting consumer has messages to take
};

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_RECEIVER_H_
