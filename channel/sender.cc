#include "channel/sender.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/write.hpp"
#include "channel/frame_decoder.h"
#include "channel/transport.h"

namespace hostd::channel {

namespace asio = boost::asio;

namespace {

constexpr char kReturnReasonUrl[] = "type.hostd.dev/hostd.channel.ReturnReason";
// Cap on one gathered write: enough to amortise the syscall, small enough to keep acks flowing.
constexpr size_t kMaxBatchMessages = 256;
constexpr size_t kMaxBatchBytes = 1u << 20;

absl::Status Returned(absl::StatusCode code, ReturnReason reason, absl::string_view msg) {
  absl::Status s(code, msg);
  s.SetPayload(kReturnReasonUrl, absl::Cord(std::string(1, static_cast<char>(reason))));
  return s;
}

std::chrono::nanoseconds ToChrono(absl::Duration d) { return absl::ToChronoNanoseconds(d); }

struct Entry {
  uint64_t gen;  // session generation it was posted in; bumped when a session is abandoned
  uint64_t seq;
  Message msg;
  EncodedHeader header;
  absl::Time enqueued;
  Sender::Done done;
};

// One connection attempt and, if it succeeds, the connection.
struct Conn {
  explicit Conn(Socket s) : sock(std::move(s)) {}
  Socket sock;
  FrameDecoder decoder{4096};  // a listener sends only Welcome, Ack and Close
  bool reading = false;
  bool hello_pending = true;
  bool write_failed = false;  // reads go on: the listener's goodbye may still be in flight
  std::string hello;  // kept alive while being written
};

}  // namespace

ReturnReason ReturnReasonOf(const absl::Status& status) {
  absl::optional<absl::Cord> p = status.GetPayload(kReturnReasonUrl);
  if (!p.has_value() || p->size() != 1) return ReturnReason::kNone;
  return static_cast<ReturnReason>(static_cast<uint8_t>(p->Flatten()[0]));
}

class Sender::Impl : public std::enable_shared_from_this<Sender::Impl> {
 public:
  Impl(EventLoop& loop, ChannelAddr addr, SenderOptions opts)
      : loop_(loop),
        addr_(std::move(addr)),
        opts_(opts),
        retry_timer_(loop.context()),
        connect_timer_(loop.context()),
        delivery_timer_(loop.context()),
        session_id_(NewSessionId()) {}

  const ChannelAddr& addr() const { return addr_; }

  absl::Status Post(Message&& msg, Done& done, WhenFull when_full, absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    size_t size = msg.wire_size();
    absl::MutexLock lock(&mu_);
    if (size > opts_.max_frame_body) {
      ++stats_.sends_rejected;
      return absl::InvalidArgumentError(absl::StrFormat(
          "message of %d bytes to %s exceeds the link's frame limit of %d bytes", size, addr_.ToString(),
          opts_.max_frame_body));
    }
    if (closed_) {
      ++stats_.sends_rejected;
      return absl::FailedPreconditionError(absl::StrCat("sender to ", addr_.ToString(), " is closed"));
    }
    if (!HasRoom(size)) {
      if (when_full == WhenFull::kFail || loop_.InLoopThread()) {
        ++stats_.sends_rejected;
        return absl::ResourceExhaustedError(absl::StrFormat(
            "send queue to %s is full (%d messages, %d bytes queued); retry later", addr_.ToString(), queue_.size(),
            queued_bytes_));
      }
      ++stats_.sends_waited;
      auto room = [this, size]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return closed_ || HasRoom(size); };
      if (!mu_.AwaitWithDeadline(absl::Condition(&room), deadline)) {
        return absl::DeadlineExceededError(
            absl::StrCat("send queue to ", addr_.ToString(), " stayed full until the deadline"));
      }
      if (closed_) return absl::FailedPreconditionError(absl::StrCat("sender to ", addr_.ToString(), " is closed"));
    }
    uint64_t seq = next_seq_++;
    queue_.push_back(Entry{session_gen_, seq, std::move(msg), EncodeHeader({FrameType::kData, static_cast<uint32_t>(size), seq}),
                           absl::Now(), std::move(done)});
    queued_bytes_ += size;
    stats_.max_queue_depth = std::max<uint64_t>(stats_.max_queue_depth, queue_.size());
    if (!kick_posted_) {
      kick_posted_ = true;
      loop_.Post([self = shared_from_this()] { self->Kick(); });
    }
    return absl::OkStatus();
  }

  void NotifyWhenRoom(size_t bytes, std::function<void()> fn) ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (!HasRoom(bytes) && !closed_) {
        room_waiters_.push_back({bytes, std::move(fn)});
        return;
      }
    }
    loop_.Post(std::move(fn));
  }

  absl::Status Flush(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto drained = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return queue_.empty(); };
    if (!mu_.AwaitWithDeadline(absl::Condition(&drained), deadline)) {
      return absl::DeadlineExceededError(absl::StrFormat("%d messages to %s still unacknowledged at the deadline",
                                                         queue_.size(), addr_.ToString()));
    }
    return absl::OkStatus();
  }

  // Loop thread.
  void Close() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (closed_) return;
      closed_ = true;
    }
    retry_timer_.cancel();
    connect_timer_.cancel();
    delivery_timer_.cancel();
    if (conn_ != nullptr && state_ == State::kOpen && !writing_ && QueueEmpty()) {
      // Say goodbye so the listener can drop the session; close once written.
      auto frame = std::make_shared<std::string>();
      EncodedHeader h = EncodeHeader({FrameType::kClose, 0, 0});
      frame->assign(h.data(), h.size());
      std::shared_ptr<Conn> conn = conn_;
      asio::async_write(conn->sock, asio::buffer(*frame), [conn, frame](boost::system::error_code, size_t) {
        boost::system::error_code ignored;
        conn->sock.close(ignored);
      });
      conn_ = nullptr;
    } else {
      Disconnect();
    }
    state_ = State::kClosed;
    FailAll(Returned(absl::StatusCode::kCancelled, ReturnReason::kSenderClosed,
                     absl::StrCat("sender to ", addr_.ToString(), " closed before the message was acknowledged")));
  }

  SenderStats stats() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    SenderStats s = stats_;
    s.queue_depth = queue_.size();
    s.queue_bytes = queued_bytes_;
    return s;
  }

  EventLoop& loop() { return loop_; }

 private:
  enum class State { kIdle, kConnecting, kHandshaking, kOpen, kBackoff, kClosed };

  bool HasRoom(size_t size) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.empty() ||
           (queue_.size() < opts_.max_queued_messages && queued_bytes_ + size <= opts_.max_queued_bytes);
  }
  bool QueueEmpty() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return queue_.empty();
  }

  uint64_t NewSessionId() {
    uint64_t id = 0;
    while (id == 0) id = absl::Uniform<uint64_t>(rng_);
    return id;
  }

  // ---- loop thread from here on ----

  void Kick() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      kick_posted_ = false;
    }
    ArmDeliveryTimer();
    if (state_ == State::kIdle) return Connect();
    WriteMore();
  }

  void Connect() {
    state_ = State::kConnecting;
    uint64_t attempt = ++attempt_id_;
    connect_timer_.expires_after(ToChrono(opts_.connect_timeout));
    connect_timer_.async_wait([self = shared_from_this(), attempt](boost::system::error_code ec) {
      if (ec || attempt != self->attempt_id_) return;
      if (self->state_ == State::kConnecting || self->state_ == State::kHandshaking) {
        self->ConnectionLost("connect and handshake did not finish within the connect timeout");
      }
    });
    AsyncConnect(loop_.context(), addr_, [self = shared_from_this(), attempt](absl::Status status, Socket sock) {
      if (attempt != self->attempt_id_ || self->state_ != State::kConnecting) return;
      if (!status.ok()) {
        {
          absl::MutexLock lock(&self->mu_);
          ++self->stats_.connect_failures;
        }
        base::Log().debug("dial {}: {}", self->addr_.ToString(), status.message());
        return self->ScheduleRetry();
      }
      self->OnConnected(std::move(sock));
    });
  }

  void OnConnected(Socket sock) {
    conn_ = std::make_shared<Conn>(std::move(sock));
    EncodedHeader h = EncodeHeader({FrameType::kHello, static_cast<uint32_t>(kHelloSize), 0});
    conn_->hello.assign(h.data(), h.size());
    conn_->hello += EncodeHello({session_id_, LinkRole::kMessages});
    state_ = State::kHandshaking;
    StartRead();
    WriteMore();
  }

  void StartRead() {
    std::shared_ptr<Conn> conn = conn_;
    if (conn == nullptr || conn->reading) return;
    conn->reading = true;
    absl::Span<char> span = conn->decoder.WritableSpan();
    conn->sock.async_read_some(asio::buffer(span.data(), span.size()),
                               [self = shared_from_this(), conn](boost::system::error_code ec, size_t n) {
                                 conn->reading = false;
                                 if (conn != self->conn_) return;
                                 self->OnRead(ec, n);
                               });
  }

  void OnRead(boost::system::error_code ec, size_t n) {
    if (ec) {
      if (conn_->write_failed && ec == asio::error::eof) {
        return ConnectionLost("listener closed the connection while we were writing");
      }
      return ConnectionLost(ec == asio::error::eof ? std::string("listener closed the connection without a goodbye")
                                                   : absl::StrCat("read failed: ", ec.message()));
    }
    std::shared_ptr<Conn> conn = conn_;
    conn->decoder.CommitWrite(n);
    while (conn == conn_) {
      absl::StatusOr<std::optional<Frame>> f = conn->decoder.Next();
      if (!f.ok()) return ConnectionLost(absl::StrCat("protocol error: ", f.status().message()));
      if (!f->has_value()) break;
      HandleFrame(std::move(**f));
    }
    if (conn == conn_) StartRead();
  }

  void HandleFrame(Frame f) {
    if (state_ == State::kHandshaking) {
      if (f.header.type == FrameType::kClose) return PeerClosed(f.body);
      if (f.header.type != FrameType::kWelcome) {
        return ConnectionLost(absl::StrCat("protocol error: expected welcome, got frame type ",
                                           static_cast<int>(f.header.type)));
      }
      absl::StatusOr<Welcome> w = DecodeWelcome(f.body);
      if (!w.ok()) return ConnectionLost(absl::StrCat("protocol error: ", w.status().message()));
      return OnWelcome(*w);
    }
    switch (f.header.type) {
      case FrameType::kAck:
        if (f.header.seq > highest_written_) {
          return ConnectionLost(absl::StrCat("protocol error: ack for seq ", f.header.seq, " which was never sent"));
        }
        acked_seq_ = std::max(acked_seq_, f.header.seq);
        return ReapAcked();
      case FrameType::kClose: return PeerClosed(f.body);
      default:
        return ConnectionLost(
            absl::StrCat("protocol error: unexpected frame type ", static_cast<int>(f.header.type)));
    }
  }

  void OnWelcome(const Welcome& w) {
    connect_timer_.cancel();
    backoff_attempts_ = 0;
    bool restarted = incarnation_ != 0 && w.incarnation != incarnation_;
    bool forgotten = session_established_ && (restarted || !w.resumed);
    incarnation_ = w.incarnation;
    {
      absl::MutexLock lock(&mu_);
      ++stats_.connects;
    }
    if (forgotten) {
      base::Log().info("link to {}: listener {} the session; {} unacknowledged messages",
                       addr_.ToString(), restarted ? "restarted and lost" : "forgot",
                       opts_.on_peer_restart == OnPeerRestart::kRedeliver ? "redelivering" : "returning");
      {
        absl::MutexLock lock(&mu_);
        ++stats_.session_resets;
      }
      if (opts_.on_peer_restart == OnPeerRestart::kReturn) {
        // Only messages written to the old incarnation and not acknowledged are in
        // doubt; the ones it never saw go to the new incarnation like any others.
        absl::Status why = Returned(absl::StatusCode::kUnavailable, ReturnReason::kPeerRestarted,
                                    absl::StrCat("listener at ", addr_.ToString(),
                                                 " restarted before acknowledging the message; it may have been "
                                                 "delivered to the previous incarnation"));
        Mutate([this, why, gen = CurrentGen(), written = highest_written_] { Fail(why, gen, written); });
      }
      Mutate([this] { Renumber(); });
      acked_seq_ = 0;
      highest_written_ = 0;
    } else if (w.delivered_seq > highest_written_) {
      return ConnectionLost(absl::StrCat("protocol error: listener claims delivery up to seq ", w.delivered_seq,
                                         " but only ", highest_written_, " were sent"));
    } else {
      acked_seq_ = std::max(acked_seq_, w.delivered_seq);
    }
    session_established_ = true;
    write_seq_ = acked_seq_ + 1;
    state_ = State::kOpen;
    ReapAcked();
    WriteMore();
  }

  // The listener said goodbye: everything outstanding goes back, and the next message
  // starts a new session (a later listener at the address is a different peer).
  void PeerClosed(absl::string_view reason) {
    base::Log().debug("link to {}: listener closed: {}", addr_.ToString(), reason);
    Disconnect();
    ResetSession();
    FailAll(Returned(absl::StatusCode::kUnavailable, ReturnReason::kPeerClosed,
                     absl::StrCat("listener at ", addr_.ToString(), " closed: ",
                                  reason.empty() ? absl::string_view("no reason given") : reason)));
    state_ = State::kIdle;
  }

  void ResetSession() {
    session_id_ = NewSessionId();
    session_established_ = false;
    acked_seq_ = 0;
    highest_written_ = 0;
    absl::MutexLock lock(&mu_);
    ++stats_.session_resets;
  }

  void ConnectionLost(absl::string_view why) {
    if (state_ == State::kClosed) return;
    base::Log().debug("link to {}: {}", addr_.ToString(), why);
    Disconnect();
    ScheduleRetry();
  }

  void Disconnect() {
    ++attempt_id_;
    connect_timer_.cancel();
    if (conn_ != nullptr) {
      boost::system::error_code ignored;
      conn_->sock.close(ignored);
      conn_ = nullptr;
    }
  }

  void ScheduleRetry() ABSL_LOCKS_EXCLUDED(mu_) {
    if (state_ == State::kClosed) return;
    if (QueueEmpty()) {
      state_ = State::kIdle;  // reconnect lazily, when there is something to send
      return;
    }
    double base = absl::ToDoubleSeconds(opts_.backoff_initial) *
                  std::pow(opts_.backoff_multiplier, std::min(backoff_attempts_, 30));
    base = std::min(base, absl::ToDoubleSeconds(opts_.backoff_max));
    double jitter = absl::Uniform(rng_, 0.0, std::clamp(opts_.backoff_jitter, 0.0, 1.0));
    ++backoff_attempts_;
    state_ = State::kBackoff;
    retry_timer_.expires_after(ToChrono(absl::Seconds(base * (1.0 - jitter))));
    retry_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec && self->state_ == State::kBackoff) self->Connect();
    });
  }

  void WriteMore() ABSL_LOCKS_EXCLUDED(mu_) {
    if (writing_ || conn_ == nullptr || conn_->write_failed) return;
    std::shared_ptr<Conn> conn = conn_;
    std::vector<asio::const_buffer> bufs;
    if (conn->hello_pending) {
      conn->hello_pending = false;
      bufs.push_back(asio::buffer(conn->hello));
    } else if (state_ == State::kOpen) {
      absl::MutexLock lock(&mu_);
      if (queue_.empty() || write_seq_ >= next_seq_) return;
      write_seq_ = std::max(write_seq_, queue_.front().seq);
      size_t i = write_seq_ - queue_.front().seq;
      size_t bytes = 0;
      for (size_t n = 0; i < queue_.size() && n < kMaxBatchMessages && (n == 0 || bytes < kMaxBatchBytes); ++i, ++n) {
        const Entry& e = queue_[i];
        bufs.push_back(asio::buffer(e.header));
        bufs.push_back(asio::buffer(e.msg.wire()));
        bytes += kFrameHeaderSize + e.msg.wire_size();
        if (e.seq <= highest_written_) ++stats_.retransmits;
        write_seq_ = e.seq + 1;
      }
      highest_written_ = std::max(highest_written_, write_seq_ - 1);
      stats_.messages_sent += bufs.size() / 2;
      stats_.bytes_sent += bytes;
    }
    if (bufs.empty()) return;
    writing_ = true;
    asio::async_write(conn->sock, bufs, [self = shared_from_this(), conn](boost::system::error_code ec, size_t) {
      self->writing_ = false;
      self->RunDeferred();
      if (conn != self->conn_) return self->WriteMore();
      if (ec) {
        // The listener may have acked and said goodbye before closing (EPIPE): let the
        // read reach those frames, or the end of the stream, before deciding.
        conn->write_failed = true;
        if (!conn->reading) self->ConnectionLost(absl::StrCat("write failed: ", ec.message()));
        return;
      }
      self->WriteMore();
    });
  }

  // Queue mutations run in the order they are requested, but never while a write is
  // in flight: its buffers point into the queue. Each op captures the values it needs
  // (ack level, session generation) when requested, so a later reset cannot change
  // what an earlier ack meant.
  void Mutate(absl::AnyInvocable<void()> op) {
    if (writing_) {
      deferred_.push_back(std::move(op));
      return;
    }
    op();
  }

  void RunDeferred() {
    std::vector<absl::AnyInvocable<void()>> work;
    work.swap(deferred_);
    for (auto& w : work) w();
  }

  uint64_t CurrentGen() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return session_gen_;
  }

  // Completes every message of the current session up to the listener's ack.
  void ReapAcked() {
    Mutate([this, gen = CurrentGen(), upto = acked_seq_] { Reap(gen, upto); });
  }

  void Reap(uint64_t gen, uint64_t upto) ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<Entry> done;
    std::vector<std::function<void()>> waiters;
    {
      absl::MutexLock lock(&mu_);
      absl::Time now = absl::Now();
      while (!queue_.empty() && queue_.front().gen == gen && queue_.front().seq <= upto) {
        Entry& e = queue_.front();
        absl::Duration waited = now - e.enqueued;
        stats_.queue_time_total += waited;
        stats_.queue_time_max = std::max(stats_.queue_time_max, waited);
        queued_bytes_ -= e.msg.wire_size();
        done.push_back(std::move(e));
        queue_.pop_front();
      }
      stats_.messages_acked += done.size();
      if (!done.empty()) waiters = TakeRoomWaiters();
    }
    for (Entry& e : done) {
      if (e.done) e.done(absl::OkStatus(), std::move(e.msg));
    }
    for (auto& w : waiters) w();
    ArmDeliveryTimer();
  }

  std::vector<std::function<void()>> TakeRoomWaiters() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<std::function<void()>> ready;
    auto it = std::partition(room_waiters_.begin(), room_waiters_.end(),
                             [this](const auto& w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
                               return !closed_ && !HasRoom(w.first);
                             });
    for (auto w = it; w != room_waiters_.end(); ++w) ready.push_back(std::move(w->second));
    room_waiters_.erase(it, room_waiters_.end());
    return ready;
  }

  // Gives every queued message a fresh number from 1 in the current generation, for
  // a session the listener starts over.
  void Renumber() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    uint64_t seq = 1;
    for (Entry& e : queue_) {
      e.gen = session_gen_;
      e.seq = seq++;
      e.header = EncodeHeader({FrameType::kData, static_cast<uint32_t>(e.msg.wire_size()), e.seq});
    }
    next_seq_ = seq;
  }

  // Returns every message posted so far with `why`; later posts start a new session
  // generation numbered from 1.
  void FailAll(absl::Status why) ABSL_LOCKS_EXCLUDED(mu_) {
    uint64_t gen;
    {
      absl::MutexLock lock(&mu_);
      gen = session_gen_++;
      next_seq_ = 1;
    }
    Mutate([this, why = std::move(why), gen] { Fail(why, gen, UINT64_MAX); });
  }

  // Returns the oldest messages while they belong to generation <= gen and seq <= max_seq.
  void Fail(const absl::Status& why, uint64_t gen, uint64_t max_seq) ABSL_LOCKS_EXCLUDED(mu_) {
    std::vector<Entry> failed;
    std::vector<std::function<void()>> waiters;
    {
      absl::MutexLock lock(&mu_);
      while (!queue_.empty() && queue_.front().gen <= gen && queue_.front().seq <= max_seq) {
        queued_bytes_ -= queue_.front().msg.wire_size();
        failed.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      stats_.messages_returned += failed.size();
      waiters = TakeRoomWaiters();
    }
    for (Entry& e : failed) {
      if (e.done) e.done(why, std::move(e.msg));
    }
    for (auto& w : waiters) w();
  }

  void ArmDeliveryTimer() ABSL_LOCKS_EXCLUDED(mu_) {
    if (delivery_timer_armed_ || state_ == State::kClosed) return;
    absl::Time oldest;
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) return;
      oldest = queue_.front().enqueued;
    }
    delivery_timer_armed_ = true;
    delivery_timer_.expires_after(ToChrono(std::max(absl::ZeroDuration(), oldest + opts_.delivery_timeout - absl::Now())));
    delivery_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      self->delivery_timer_armed_ = false;
      if (ec || self->state_ == State::kClosed) return;
      self->CheckDeliveryTimeout();
    });
  }

  void CheckDeliveryTimeout() ABSL_LOCKS_EXCLUDED(mu_) {
    bool expired;
    {
      absl::MutexLock lock(&mu_);
      expired = !queue_.empty() && queue_.front().enqueued + opts_.delivery_timeout <= absl::Now();
    }
    if (!expired) return ArmDeliveryTimer();
    base::Log().warn("link to {}: no acknowledgement within {}; returning outstanding messages", addr_.ToString(),
                     absl::FormatDuration(opts_.delivery_timeout));
    Disconnect();
    ResetSession();
    state_ = State::kIdle;
    FailAll(Returned(absl::StatusCode::kDeadlineExceeded, ReturnReason::kTimeout,
                     absl::StrCat("no acknowledgement from ", addr_.ToString(), " within ",
                                  absl::FormatDuration(opts_.delivery_timeout),
                                  "; the message may or may not have been delivered")));
  }

  EventLoop& loop_;
  const ChannelAddr addr_;
  const SenderOptions opts_;

  mutable absl::Mutex mu_;
  std::deque<Entry> queue_ ABSL_GUARDED_BY(mu_);  // by seq: unacknowledged, then unsent
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool kick_posted_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<size_t, std::function<void()>>> room_waiters_ ABSL_GUARDED_BY(mu_);
  uint64_t session_gen_ ABSL_GUARDED_BY(mu_) = 0;
  SenderStats stats_ ABSL_GUARDED_BY(mu_);

  // Loop thread only.
  State state_ = State::kIdle;
  std::shared_ptr<Conn> conn_;
  uint64_t attempt_id_ = 0;
  bool writing_ = false;
  std::vector<absl::AnyInvocable<void()>> deferred_;
  uint64_t write_seq_ = 1;        // next seq to write on this connection
  uint64_t highest_written_ = 0;  // in this session
  uint64_t acked_seq_ = 0;
  uint64_t incarnation_ = 0;  // the listener's, 0 until the first welcome
  bool session_established_ = false;
  int backoff_attempts_ = 0;
  bool delivery_timer_armed_ = false;
  asio::steady_timer retry_timer_;
  asio::steady_timer connect_timer_;
  asio::steady_timer delivery_timer_;
  absl::BitGen rng_;
  uint64_t session_id_;
};

std::unique_ptr<Sender> Sender::Dial(EventLoop& loop, const ChannelAddr& addr, SenderOptions options) {
  return std::unique_ptr<Sender>(new Sender(std::make_shared<Impl>(loop, addr, options)));
}

Sender::~Sender() { Close(); }

absl::Status Sender::Post(Message&& msg, Done done, WhenFull when_full) {
  return impl_->Post(std::move(msg), done, when_full, absl::InfiniteFuture());
}

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
    return absl::DeadlineExceededError(absl::StrCat("message to ", impl_->addr().ToString(),
                                                    " not acknowledged by the deadline; it stays queued"));
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
