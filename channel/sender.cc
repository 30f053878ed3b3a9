// Sender, part 1: the queue. Posting, flow control (bounds, waiting, room
// notifications), acknowledgements and returns, and the public methods. The
// connection that drains the queue is in sender_connection.cc.
#include "channel/sender.h"

#include <time.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "base/status_macros.h"
#include "channel/sender_impl.h"

namespace hostd::channel {

namespace {

constexpr char kReturnReasonUrl[] = "type.hostd.dev/hostd.channel.ReturnReason";

}  // namespace

absl::Status sender_internal::Returned(absl::StatusCode code, ReturnReason reason, absl::string_view msg) {
  absl::Status s(code, msg);
  s.SetPayload(kReturnReasonUrl, absl::Cord(std::string(1, static_cast<char>(reason))));
  return s;
}

int64_t sender_internal::CoarseNanos() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

ReturnReason ReturnReasonOf(const absl::Status& status) {
  absl::optional<absl::Cord> p = status.GetPayload(kReturnReasonUrl);
  if (!p.has_value() || p->size() != 1) return ReturnReason::kNone;
  return static_cast<ReturnReason>(static_cast<uint8_t>(p->Flatten()[0]));
}

Sender::Impl::Impl(EventLoop& loop, ChannelAddr addr, SenderOptions opts, Done on_return)
    : loop_(loop),
      addr_(std::move(addr)),
      opts_(opts),
      on_return_(std::move(on_return)),
      retry_timer_(loop.context()),
      connect_timer_(loop.context()),
      delivery_timer_(loop.context()),
      session_id_(NewSessionId()) {}

// ---- any thread ----

absl::Status Sender::Impl::Post(Message&& msg, Done& done, WhenFull when_full, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  HOSTD_RETURN_IF_ERROR(Admit(msg.wire_size(), when_full, deadline));
  Append(std::move(msg), std::move(done));
  return absl::OkStatus();
}

Sender::Posted Sender::Impl::PostBatch(absl::Span<Message> msgs, WhenFull when_full) {
  Sender::Posted out;
  absl::MutexLock lock(&mu_);
  for (Message& msg : msgs) {
    out.status = Admit(msg.wire_size(), when_full, absl::InfiniteFuture());
    if (!out.status.ok()) break;
    Append(std::move(msg), nullptr);
    ++out.posted;
  }
  return out;
}

absl::Status Sender::Impl::Admit(size_t size, WhenFull when_full, absl::Time deadline) {
  HOSTD_RETURN_IF_ERROR(CheckPostable(size));
  if (HasRoom(size)) return absl::OkStatus();
  if (when_full == WhenFull::kFail || loop_.InLoopThread()) {
    ++stats_.sends_rejected;
    return absl::ResourceExhaustedError(
        absl::StrFormat("send queue to %s is full (%d messages, %d bytes queued); retry later", addr_.ToString(),
                        Depth(), queued_bytes_));
  }
  ++stats_.sends_waited;
  auto room = [this, size]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || HasRoom(size); };
  if (!mu_.AwaitWithDeadline(absl::Condition(&room), deadline)) {
    return absl::DeadlineExceededError(
        absl::StrCat("send queue to ", addr_.ToString(), " stayed full until the deadline"));
  }
  if (closed_) return absl::FailedPreconditionError(absl::StrCat("sender to ", addr_.ToString(), " is closed"));
  return absl::OkStatus();
}

void Sender::Impl::Append(Message&& msg, Done&& done) {
  const size_t size = msg.wire_size();
  const uint64_t seq = next_seq_++;
  const int64_t now = sender_internal::CoarseNanos();
  queue_.push_back(Entry{session_gen_, seq, std::move(msg),
                         EncodeHeader({FrameType::kData, static_cast<uint32_t>(size), seq}), now, std::move(done),
                         now});
  queued_bytes_ += size;
  stats_.max_queue_depth = std::max<uint64_t>(stats_.max_queue_depth, Depth());
  KickSoon();
}

absl::Status Sender::Impl::PostControl(Message&& msg, Done& done) {
  size_t size = msg.wire_size();
  absl::MutexLock lock(&mu_);
  HOSTD_RETURN_IF_ERROR(CheckPostable(size));
  // No room check: a control message must not wait behind the data it overtakes.
  const int64_t now = sender_internal::CoarseNanos();
  Entry e{session_gen_, 0, std::move(msg), {}, now, std::move(done), now, /*control=*/true};
  queued_bytes_ += size;
  if (entries_in_flight_) {
    // Inserting now would move the entries being written. Nothing can be written
    // before AdmitControls runs, so the place the entry takes then is the one it
    // has now.
    pending_controls_.push_back(std::move(e));
  } else {
    InsertControl(std::move(e));
  }
  stats_.max_queue_depth = std::max<uint64_t>(stats_.max_queue_depth, Depth());
  KickSoon();
  return absl::OkStatus();
}

void Sender::Impl::NotifyWhenRoom(size_t bytes, std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (!HasRoom(bytes) && !closed_) {
      room_waiters_.push_back({bytes, std::move(fn)});
      return;
    }
  }
  loop_.Post(std::move(fn));
}

absl::Status Sender::Impl::Flush(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return Depth() == 0; };
  if (!mu_.AwaitWithDeadline(absl::Condition(&drained), deadline)) {
    return absl::DeadlineExceededError(
        absl::StrFormat("%d messages to %s still unacknowledged at the deadline", Depth(), addr_.ToString()));
  }
  return absl::OkStatus();
}

SenderStats Sender::Impl::stats() const {
  absl::MutexLock lock(&mu_);
  SenderStats s = stats_;
  s.queue_depth = Depth();
  s.queue_bytes = queued_bytes_;
  return s;
}

// ---- the queue, under mu_ or on the loop thread through Mutate ----

absl::Status Sender::Impl::CheckPostable(size_t size) {
  if (size > opts_.max_frame_body) {
    ++stats_.sends_rejected;
    return absl::InvalidArgumentError(
        absl::StrFormat("message of %d bytes to %s exceeds the link's frame limit of %d bytes", size, addr_.ToString(),
                        opts_.max_frame_body));
  }
  if (closed_) {
    ++stats_.sends_rejected;
    return absl::FailedPreconditionError(absl::StrCat("sender to ", addr_.ToString(), " is closed"));
  }
  return absl::OkStatus();
}

void Sender::Impl::KickSoon() {
  if (!kick_posted_) {
    kick_posted_ = true;
    loop_.Post([self = shared_from_this()] { self->Kick(); });
  }
}

bool Sender::Impl::HasRoom(size_t size) const {
  return Depth() == 0 || (Depth() < opts_.max_queued_messages && queued_bytes_ + size <= opts_.max_queued_bytes);
}

bool Sender::Impl::QueueEmpty() const {
  absl::MutexLock lock(&mu_);
  return Depth() == 0;
}

void Sender::Impl::InsertControl(Entry e) {
  const uint64_t gen = e.gen;
  auto at = std::partition_point(queue_.begin(), queue_.end(), [gen](const Entry& q) {
    return q.gen < gen || (q.gen == gen && (q.written || q.control));
  });
  size_t i = at - queue_.begin();
  // It takes the seq of the first entry it overtakes; with none, the next free one.
  uint64_t seq;
  if (i < queue_.size() && queue_[i].gen == gen) {
    seq = queue_[i].seq;
  } else if (i > 0 && queue_[i - 1].gen == gen) {
    seq = queue_[i - 1].seq + 1;
  } else {
    seq = next_seq_;  // for a generation already abandoned any seq will do: it is about to be returned
  }
  if (i < queue_.size()) e.due_from_ns = std::min(e.due_from_ns, queue_[i].due_from_ns);
  queue_.insert(at, std::move(e));
  uint64_t next = Renumber(i, gen, seq);
  if (gen == session_gen_) next_seq_ = next;
}

uint64_t Sender::Impl::Renumber(size_t from, uint64_t gen, uint64_t seq) {
  for (size_t i = from; i < queue_.size() && queue_[i].gen <= gen; ++i) {
    Entry& e = queue_[i];
    e.gen = gen;
    e.seq = seq++;
    e.header = EncodeHeader({FrameType::kData, static_cast<uint32_t>(e.msg.wire_size()), e.seq});
  }
  return seq;
}

uint64_t Sender::Impl::NewSessionId() {
  uint64_t id = 0;
  while (id == 0) id = absl::Uniform<uint64_t>(rng_);
  return id;
}

void Sender::Impl::Mutate(absl::AnyInvocable<void()> op) {
  loop_.AssertInLoop("Sender::Impl::Mutate");
  if (writing_) {
    deferred_.push_back(std::move(op));
    return;
  }
  op();
}

void Sender::Impl::AdmitControls() {
  loop_.AssertInLoop("Sender::Impl::AdmitControls");
  absl::MutexLock lock(&mu_);
  entries_in_flight_ = false;
  for (Entry& e : pending_controls_) InsertControl(std::move(e));
  pending_controls_.clear();
}

void Sender::Impl::RunDeferred() {
  loop_.AssertInLoop("Sender::Impl::RunDeferred");
  std::vector<absl::AnyInvocable<void()>> work;
  work.swap(deferred_);
  for (auto& w : work) w();
}

uint64_t Sender::Impl::CurrentGen() const {
  absl::MutexLock lock(&mu_);
  return session_gen_;
}

void Sender::Impl::ReapAcked() {
  loop_.AssertInLoop("Sender::Impl::ReapAcked");
  Mutate([this, gen = CurrentGen(), upto = acked_seq_] { Reap(gen, upto); });
}

void Sender::Impl::Reap(uint64_t gen, uint64_t upto) {
  loop_.AssertInLoop("Sender::Impl::Reap");
  // The scratch keeps its capacity from one ack to the next; a `done` that reaps
  // again (re-entry) finds it empty and takes a fresh one. It takes each message
  // and callback, not the whole entry: the messages are freed, and the callbacks
  // run, outside the lock.
  std::vector<Completion> done = std::move(reap_scratch_);
  std::vector<std::function<void()>> waiters;
  {
    absl::MutexLock lock(&mu_);
    const int64_t now = sender_internal::CoarseNanos();
    int64_t waited_total = 0, waited_max = 0;
    while (!queue_.empty() && queue_.front().gen == gen && queue_.front().seq <= upto) {
      Entry& e = queue_.front();
      const int64_t waited = now - e.enqueued_ns;
      waited_total += waited;
      waited_max = std::max(waited_max, waited);
      queued_bytes_ -= e.msg.wire_size();
      done.push_back({std::move(e.done), std::move(e.msg)});
      queue_.pop_front();
    }
    stats_.queue_time_total += absl::Nanoseconds(waited_total);
    stats_.queue_time_max = std::max(stats_.queue_time_max, absl::Nanoseconds(waited_max));
    stats_.messages_acked += done.size();
    if (!done.empty()) waiters = TakeRoomWaiters();
  }
  for (Completion& c : done) {
    if (c.done) c.done(absl::OkStatus(), std::move(c.msg));
  }
  done.clear();
  if (done.capacity() <= kMaxReapScratch) reap_scratch_ = std::move(done);
  for (auto& w : waiters) w();
  ArmDeliveryTimer();
}

std::vector<std::function<void()>> Sender::Impl::TakeRoomWaiters() {
  std::vector<std::function<void()>> ready;
  auto it = std::partition(room_waiters_.begin(), room_waiters_.end(),
                           [this](const auto& w)
                               ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !closed_ && !HasRoom(w.first); });
  for (auto w = it; w != room_waiters_.end(); ++w) ready.push_back(std::move(w->second));
  room_waiters_.erase(it, room_waiters_.end());
  return ready;
}

void Sender::Impl::RestartNumbering(uint64_t gen) {
  loop_.AssertInLoop("Sender::Impl::RestartNumbering");
  absl::MutexLock lock(&mu_);
  uint64_t next = Renumber(0, gen, 1);
  // A later generation (the session was abandoned since) numbers its own entries.
  if (gen == session_gen_) next_seq_ = next;
}

void Sender::Impl::FailAll(absl::Status why) {
  loop_.AssertInLoop("Sender::Impl::FailAll");
  uint64_t gen;
  {
    absl::MutexLock lock(&mu_);
    gen = session_gen_++;
    next_seq_ = 1;
  }
  Mutate([this, why = std::move(why), gen] { Fail(why, gen, UINT64_MAX); });
}

void Sender::Impl::Fail(const absl::Status& why, uint64_t gen, uint64_t max_seq) {
  loop_.AssertInLoop("Sender::Impl::Fail");
  std::vector<Completion> failed;
  std::vector<std::function<void()>> waiters;
  {
    absl::MutexLock lock(&mu_);
    while (!queue_.empty() && queue_.front().gen <= gen && queue_.front().seq <= max_seq) {
      Entry& e = queue_.front();
      queued_bytes_ -= e.msg.wire_size();
      failed.push_back({std::move(e.done), std::move(e.msg)});
      queue_.pop_front();
    }
    stats_.messages_returned += failed.size();
    waiters = TakeRoomWaiters();
  }
  for (Completion& c : failed) {
    Done& to = c.done ? c.done : on_return_;
    if (to) to(why, std::move(c.msg));
  }
  for (auto& w : waiters) w();
}

std::unique_ptr<Sender> Sender::Dial(EventLoop& loop, const ChannelAddr& addr, SenderOptions options,
                                     Done on_return) {
  return std::unique_ptr<Sender>(new Sender(std::make_shared<Impl>(loop, addr, options, std::move(on_return))));
}

Sender::~Sender() { Close(); }

absl::Status Sender::Post(Message&& msg, Done done, WhenFull when_full) {
  return impl_->Post(std::move(msg), done, when_full, absl::InfiniteFuture());
}

Sender::Posted Sender::PostBatch(absl::Span<Message> msgs, WhenFull when_full) {
  return impl_->PostBatch(msgs, when_full);
}

absl::Status Sender::PostControl(Message&& msg, Done done) { return impl_->PostControl(std::move(msg), done); }

absl::Status Sender::Send(Message msg, absl::Time deadline) {
  if (impl_->loop().InLoopThread()) {
    return absl::FailedPreconditionError("Sender::Send would block the loop thread; use Post");
  }
  struct Result {
    absl::Notification done;
    absl::Status status;
  };
  auto result = std::make_shared<Result>();
  Done done = [result](absl::Status s, Message) {
    result->status = std::move(s);
    result->done.Notify();
  };
  absl::Status posted = impl_->Post(std::move(msg), done, WhenFull::kWait, deadline);
  if (!posted.ok()) return posted;
  if (!result->done.WaitForNotificationWithDeadline(deadline)) {
    return absl::DeadlineExceededError(
        absl::StrCat("message to ", impl_->addr().ToString(), " not acknowledged by the deadline; it stays queued"));
  }
  return result->status;
}

void Sender::NotifyWhenRoom(size_t bytes, std::function<void()> fn) { impl_->NotifyWhenRoom(bytes, std::move(fn)); }

absl::Status Sender::Flush(absl::Time deadline) { return impl_->Flush(deadline); }

void Sender::Close(absl::Time flush_deadline) {
  if (!impl_->loop().InLoopThread()) (void)impl_->Flush(flush_deadline);
  impl_->loop().RunSync([impl = impl_] { impl->Close(); });
}

const ChannelAddr& Sender::addr() const { return impl_->addr(); }
SenderStats Sender::stats() const { return impl_->stats(); }

}  // namespace hostd::channel
