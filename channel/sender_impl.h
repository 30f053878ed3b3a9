// Sender::Impl, shared by the two files of the Sender (sender.cc: the queue, flow
// control and completions; sender_connection.cc: the connection state machine:
// dial, handshake, write, acks, backoff, session ends). Internal to the Sender: no
// contract for embedders.
//
// Threads. `mu_` guards the queue and what Post and friends read from any thread;
// everything else belongs to the loop thread. The writer points Asio at entries of
// the queue, so the loop thread changes the queue's shape (pops, renumbering) only
// through Mutate, which defers the change while a write is in flight; Post only
// appends, which leaves the entries in place. PostControl inserts mid-queue at once
// when no write holds entries, and otherwise parks the entry until the write ends;
// either way before anything posted after it can be written.
//
// Queue order. By (gen, seq), contiguous seqs within a generation; within the
// current one: entries written to a connection at least once, then control entries
// not yet written, then the rest. It is also sorted by `due_from_ns`.
#ifndef HOSTD_CHANNEL_SENDER_IMPL_H_
#define HOSTD_CHANNEL_SENDER_IMPL_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "boost/asio/steady_timer.hpp"
#include "channel/frame.h"
#include "channel/frame_decoder.h"
#include "channel/sender.h"
#include "channel/transport.h"

namespace hostd::channel {
namespace sender_internal {

// A status that hands a message back, carrying `reason` for ReturnReasonOf.
absl::Status Returned(absl::StatusCode code, ReturnReason reason, absl::string_view msg);

inline std::chrono::nanoseconds ToChrono(absl::Duration d) { return absl::ToChronoNanoseconds(d); }

// The wall clock in Unix nanoseconds to the kernel's tick (1-4 ms), a fraction of
// absl::Now()'s cost: every Post stamps its entry, and what the stamps serve
// (delivery timeouts of seconds, queue-time stats) needs no finer grain. All the
// sender's deadlines compare against this clock, so a timeout fires at most a
// tick late. Plain integers, so that Reap's per-entry arithmetic stays cheap.
int64_t CoarseNanos();

struct Entry {
  uint64_t gen;  // session generation it was posted in; bumped when a session is abandoned
  uint64_t seq;
  Message msg;
  EncodedHeader header;
  int64_t enqueued_ns;  // CoarseNanos()
  Sender::Done done;
  // The delivery timeout runs from here: `enqueued_ns`, or for a control entry the
  // `due_from_ns` of the entry it overtook, so a control cannot postpone the timeout
  // of the messages behind it.
  int64_t due_from_ns;
  bool control = false;  // posted with PostControl
  bool written = false;  // written to a connection at least once
};

// One connection attempt and, if it succeeds, the connection.
struct Conn {
  explicit Conn(Socket s) : sock(std::move(s)) {}
  Socket sock;
  FrameDecoder decoder{4096};  // a listener sends only Welcome, Ack and Close
  bool reading = false;
  bool hello_pending = true;
  bool write_failed = false;  // reads go on: the listener's goodbye may still be in flight
  std::string hello;          // kept alive while being written
  // Small frames of the write in flight, copied together (sender_connection.cc
  // bounds it: at most about 128 KiB, released when nothing is left to write).
  std::string staging;
  // The entries of the write in flight (WriteMore), kept for its capacity.
  std::vector<const Entry*> batch;
};

}  // namespace sender_internal

class Sender::Impl : public std::enable_shared_from_this<Sender::Impl> {
 public:
  Impl(EventLoop& loop, ChannelAddr addr, SenderOptions opts, Done on_return);

  const ChannelAddr& addr() const { return addr_; }
  EventLoop& loop() { return loop_; }

  // ---- sender.cc: any thread ----
  absl::Status Post(Message&& msg, Done& done, WhenFull when_full, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status PostControl(Message&& msg, Done& done) ABSL_LOCKS_EXCLUDED(mu_);
  Sender::Posted PostBatch(absl::Span<Message> msgs, WhenFull when_full) ABSL_LOCKS_EXCLUDED(mu_);
  void NotifyWhenRoom(size_t bytes, std::function<void()> fn) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Flush(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);
  SenderStats stats() const ABSL_LOCKS_EXCLUDED(mu_);

  // ---- sender_connection.cc: on the loop (each asserts it) ----
  void Close() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using Entry = sender_internal::Entry;
  using Conn = sender_internal::Conn;
  enum class State { kIdle, kConnecting, kHandshaking, kOpen, kBackoff, kClosed };

  // ---- sender.cc: the queue ----
  // Why a message of `size` bytes cannot be posted at all (too large, closed), if so.
  absl::Status CheckPostable(size_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Post's admission of a message of `size` bytes: refused if it cannot be posted
  // at all; if the queue is full, refused (kFail, or on the loop thread) or waited
  // for until there is room, the sender closes, or `deadline`.
  absl::Status Admit(size_t size, WhenFull when_full, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Appends an admitted message as the newest entry and has the loop write it.
  void Append(Message&& msg, Done&& done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void KickSoon() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Messages queued, control entries waiting for their place included.
  size_t Depth() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.size() + pending_controls_.size(); }
  bool HasRoom(size_t size) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool QueueEmpty() const ABSL_LOCKS_EXCLUDED(mu_);
  // Puts a control entry at its place: behind the entries of its generation that
  // were written or are controls, ahead of the rest, which move one seq up.
  void InsertControl(Entry e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Numbers queue_[from..] consecutively from `seq` into generation `gen`, with their
  // headers, up to the first entry of a later generation; returns the seq after the last.
  uint64_t Renumber(size_t from, uint64_t gen, uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t NewSessionId();
  uint64_t CurrentGen() const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<std::function<void()>> TakeRoomWaiters() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Queue mutations, each asserting it runs on the loop. They run in the order they are requested, but
  // never while a write is in flight: its buffers point into the queue. Each op
  // captures the values it needs (ack level, session generation) when requested, so
  // a later reset cannot change what an earlier ack meant.
  void Mutate(absl::AnyInvocable<void()> op);
  void RunDeferred();
  // A write of queued entries ended (the writer calls it before RunDeferred): they
  // may move again, so the control entries posted meanwhile take their places.
  void AdmitControls() ABSL_LOCKS_EXCLUDED(mu_);
  // Completes every message of the current session up to the listener's ack.
  void ReapAcked();
  void Reap(uint64_t gen, uint64_t upto) ABSL_LOCKS_EXCLUDED(mu_);
  // Gives every queued message of generation `gen` a fresh number from 1, for a
  // session the listener starts over.
  void RestartNumbering(uint64_t gen) ABSL_LOCKS_EXCLUDED(mu_);
  // Returns every message posted so far with `why`; later posts start a new session
  // generation numbered from 1.
  void FailAll(absl::Status why) ABSL_LOCKS_EXCLUDED(mu_);
  // Returns the oldest messages while they belong to generation <= gen and seq <= max_seq.
  void Fail(const absl::Status& why, uint64_t gen, uint64_t max_seq) ABSL_LOCKS_EXCLUDED(mu_);

  // ---- sender_connection.cc: the connection; each method asserts it runs on the loop ----
  void Kick() ABSL_LOCKS_EXCLUDED(mu_);
  void Connect();
  void OnConnected(Socket sock);
  void StartRead();
  void OnRead(boost::system::error_code ec, size_t n);
  void HandleFrame(Frame f);
  void OnWelcome(const Welcome& w);
  // The listener said goodbye: everything outstanding goes back, and the next message
  // starts a new session (a later listener at the address is a different peer).
  void PeerClosed(absl::string_view reason);
  void ResetSession();
  void ConnectionLost(absl::string_view why);
  void Disconnect();
  void ScheduleRetry() ABSL_LOCKS_EXCLUDED(mu_);
  void WriteMore() ABSL_LOCKS_EXCLUDED(mu_);
  void ArmDeliveryTimer() ABSL_LOCKS_EXCLUDED(mu_);
  void CheckDeliveryTimeout() ABSL_LOCKS_EXCLUDED(mu_);

  EventLoop& loop_;
  const ChannelAddr addr_;
  const SenderOptions opts_;
  Done on_return_;  // called on the loop only (Fail)

  mutable absl::Mutex mu_;
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);  // by seq: unacknowledged, then unsent
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool kick_posted_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<size_t, std::function<void()>>> room_waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t session_gen_ ABSL_GUARDED_BY(mu_) = 0;
  // A write's buffers point into queue_'s entries: append only.
  bool entries_in_flight_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Entry> pending_controls_ ABSL_GUARDED_BY(mu_);  // posted while entries_in_flight_
  SenderStats stats_ ABSL_GUARDED_BY(mu_);

  // Touched only by the methods above that assert they run on the loop.
  State state_ = State::kIdle;
  std::shared_ptr<Conn> conn_;
  uint64_t attempt_id_ = 0;
  bool writing_ = false;
  std::vector<absl::AnyInvocable<void()>> deferred_;
  // What Reap and Fail take from the entries they complete: the message and its
  // callback, freed and run outside the lock.
  struct Completion {
    Done done;
    Message msg;
  };
  // Reap's, kept between acks: at most kMaxReapScratch of them.
  static constexpr size_t kMaxReapScratch = 4096;
  std::vector<Completion> reap_scratch_;
  uint64_t write_seq_ = 1;        // next seq to write on this connection
  uint64_t highest_written_ = 0;  // in this session
  uint64_t acked_seq_ = 0;
  uint64_t incarnation_ = 0;  // the listener's, 0 until the first welcome
  bool session_established_ = false;
  int backoff_attempts_ = 0;
  bool delivery_timer_armed_ = false;
  // Why the last connection attempt or connection failed ("" after a welcome): the
  // delivery timeout's note carries it.
  std::string last_failure_;
  boost::asio::steady_timer retry_timer_;
  boost::asio::steady_timer connect_timer_;
  boost::asio::steady_timer delivery_timer_;
  absl::BitGen rng_;
  uint64_t session_id_;
};

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_SENDER_IMPL_H_
