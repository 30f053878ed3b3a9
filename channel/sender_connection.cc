// Sender, part 2: the connection that drains the queue. Dial, handshake (resume or
// reset the session), gathered writes, acks, backoff, the delivery timeout and the
// ends of a session. All on the loop thread; the queue itself is in sender.cc.
#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/log.h"
#include "boost/asio/write.hpp"
#include "channel/sender_impl.h"

namespace hostd::channel {

namespace asio = boost::asio;
using sender_internal::Returned;
using sender_internal::ToChrono;

namespace {

// Cap on one gathered write: enough to amortise the syscall, small enough to keep acks flowing.
constexpr size_t kMaxBatchMessages = 1024;
constexpr size_t kMaxBatchBytes = 1u << 20;
// Frames whose body is at most kCopyBody bytes are copied into the connection's
// staging buffer, so a batch of small frames leaves in one contiguous buffer
// rather than two buffers per frame (a sendmsg takes at most 64); larger bodies
// are written from the queue in place. The copies end a batch at kMaxStaged bytes.
constexpr size_t kCopyBody = 2048;
constexpr size_t kMaxStaged = 64 * 1024;
// A staging buffer larger than this is released when the queue has nothing left to write.
constexpr size_t kKeepStaged = 4096;

}  // namespace

void Sender::Impl::Close() {
  loop_.AssertInLoop("Sender::Impl::Close");
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

void Sender::Impl::Kick() {
  loop_.AssertInLoop("Sender::Impl::Kick");
  {
    absl::MutexLock lock(&mu_);
    kick_posted_ = false;
  }
  ArmDeliveryTimer();
  if (state_ == State::kIdle) return Connect();
  WriteMore();
}

void Sender::Impl::Connect() {
  loop_.AssertInLoop("Sender::Impl::Connect");
  state_ = State::kConnecting;
  uint64_t attempt = ++attempt_id_;
  connect_timer_.expires_after(ToChrono(opts_.connect_timeout));
  connect_timer_.async_wait([self = shared_from_this(), attempt](boost::system::error_code ec) {
    if (ec || attempt != self->attempt_id_) return;
    if (self->state_ == State::kConnecting || self->state_ == State::kHandshaking) {
      self->ConnectionLost("connect and handshake did not finish within the connect timeout");
    }
  });
  AsyncConnect(loop_.context(), addr_, opts_.tls, [self = shared_from_this(), attempt](absl::Status status, Socket sock) {
    if (attempt != self->attempt_id_ || self->state_ != State::kConnecting) return;
    if (!status.ok()) {
      {
        absl::MutexLock lock(&self->mu_);
        ++self->stats_.connect_failures;
      }
      // A refused TLS peer or a missing TLS setup will not fix itself: say so once
      // per distinct cause, loudly.
      bool loud = status.code() == absl::StatusCode::kUnauthenticated ||
                  status.code() == absl::StatusCode::kFailedPrecondition;
      if (loud && status.message() != self->last_failure_) {
        base::Log().warn("dial {}: {}", self->addr_.ToString(), status.message());
      } else {
        base::Log().debug("dial {}: {}", self->addr_.ToString(), status.message());
      }
      self->last_failure_ = std::string(status.message());
      return self->ScheduleRetry();
    }
    self->OnConnected(std::move(sock));
  });
}

void Sender::Impl::OnConnected(Socket sock) {
  loop_.AssertInLoop("Sender::Impl::OnConnected");
  sock.SetDeadPeerTimeout(opts_.dead_peer_timeout);
  conn_ = std::make_shared<Conn>(std::move(sock));
  EncodedHeader h = EncodeHeader({FrameType::kHello, static_cast<uint32_t>(kHelloSize), 0});
  conn_->hello.assign(h.data(), h.size());
  conn_->hello += EncodeHello({session_id_, LinkRole::kMessages});
  state_ = State::kHandshaking;
  StartRead();
  WriteMore();
}

void Sender::Impl::StartRead() {
  loop_.AssertInLoop("Sender::Impl::StartRead");
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

void Sender::Impl::OnRead(boost::system::error_code ec, size_t n) {
  loop_.AssertInLoop("Sender::Impl::OnRead");
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

void Sender::Impl::HandleFrame(Frame f) {
  loop_.AssertInLoop("Sender::Impl::HandleFrame");
  if (state_ == State::kHandshaking) {
    if (f.header.type == FrameType::kClose) return PeerClosed(f.body);
    if (f.header.type != FrameType::kWelcome) {
      return ConnectionLost(
          absl::StrCat("protocol error: expected welcome, got frame type ", static_cast<int>(f.header.type)));
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
      return ConnectionLost(absl::StrCat("protocol error: unexpected frame type ", static_cast<int>(f.header.type)));
  }
}

void Sender::Impl::OnWelcome(const Welcome& w) {
  loop_.AssertInLoop("Sender::Impl::OnWelcome");
  connect_timer_.cancel();
  backoff_attempts_ = 0;
  last_failure_.clear();
  bool restarted = incarnation_ != 0 && w.incarnation != incarnation_;
  bool forgotten = session_established_ && (restarted || !w.resumed);
  incarnation_ = w.incarnation;
  {
    absl::MutexLock lock(&mu_);
    ++stats_.connects;
  }
  if (forgotten) {
    base::Log().info("link to {}: listener {} the session; {} unacknowledged messages", addr_.ToString(),
                     restarted ? "restarted and lost" : "forgot",
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
    Mutate([this, gen = CurrentGen()] { RestartNumbering(gen); });
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

void Sender::Impl::PeerClosed(absl::string_view reason) {
  loop_.AssertInLoop("Sender::Impl::PeerClosed");
  base::Log().debug("link to {}: listener closed: {}", addr_.ToString(), reason);
  Disconnect();
  ResetSession();
  FailAll(Returned(absl::StatusCode::kUnavailable, ReturnReason::kPeerClosed,
                   absl::StrCat("listener at ", addr_.ToString(),
                                " closed: ", reason.empty() ? absl::string_view("no reason given") : reason)));
  state_ = State::kIdle;
}

void Sender::Impl::ResetSession() {
  loop_.AssertInLoop("Sender::Impl::ResetSession");
  session_id_ = NewSessionId();
  session_established_ = false;
  acked_seq_ = 0;
  highest_written_ = 0;
  absl::MutexLock lock(&mu_);
  ++stats_.session_resets;
}

void Sender::Impl::ConnectionLost(absl::string_view why) {
  loop_.AssertInLoop("Sender::Impl::ConnectionLost");
  if (state_ == State::kClosed) return;
  // A TLS listener that requires a client certificate says so in an alert the
  // dialer reads after its own handshake finished (TLS 1.3): as loud as a refusal.
  bool refused = state_ == State::kHandshaking && absl::StrContains(why, "alert");
  if (refused && why != last_failure_) {
    base::Log().warn("link to {}: refused by the listener: {}", addr_.ToString(), why);
  } else if (state_ == State::kOpen) {
    // A peer that died or a link that was cut shows here (dead-peer timeout).
    base::Log().info("link to {}: connection lost: {}", addr_.ToString(), why);
  } else {
    base::Log().debug("link to {}: {}", addr_.ToString(), why);
  }
  if (state_ == State::kHandshaking || state_ == State::kConnecting) last_failure_ = std::string(why);
  Disconnect();
  ScheduleRetry();
}

void Sender::Impl::Disconnect() {
  loop_.AssertInLoop("Sender::Impl::Disconnect");
  ++attempt_id_;
  connect_timer_.cancel();
  if (conn_ != nullptr) {
    boost::system::error_code ignored;
    conn_->sock.close(ignored);
    conn_ = nullptr;
  }
}

void Sender::Impl::ScheduleRetry() {
  loop_.AssertInLoop("Sender::Impl::ScheduleRetry");
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

void Sender::Impl::WriteMore() {
  loop_.AssertInLoop("Sender::Impl::WriteMore");
  if (writing_ || conn_ == nullptr || conn_->write_failed) return;
  std::shared_ptr<Conn> conn = conn_;
  std::vector<asio::const_buffer> bufs;
  if (conn->hello_pending) {
    conn->hello_pending = false;
    bufs.push_back(asio::buffer(conn->hello));
  } else if (state_ == State::kOpen) {
    // Under the lock, only choose the batch; the copying is done outside it, so a
    // thread posting meanwhile is not held up by it. The chosen entries stay put
    // until the write ends: Post only appends (a deque keeps its elements in
    // place), controls park while entries are in flight, and the loop's own
    // changes to the queue wait for the write (Mutate).
    std::vector<const Entry*>& batch = conn->batch;
    batch.clear();
    size_t to_stage = 0;  // bytes of the batch copied into the staging buffer
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty() || write_seq_ >= next_seq_) {
        if (conn->staging.capacity() > kKeepStaged) std::string().swap(conn->staging);
        return;
      }
      write_seq_ = std::max(write_seq_, queue_.front().seq);
      size_t bytes = 0;
      // From the first entry not yet written. The bound matters: while entries of
      // an abandoned generation (numbered apart) are still at the front, the index
      // can fall outside the queue.
      for (size_t i = write_seq_ - queue_.front().seq;
           i < queue_.size() && batch.size() < kMaxBatchMessages && (batch.empty() || bytes < kMaxBatchBytes); ++i) {
        Entry& e = queue_[i];
        const size_t body = e.msg.wire_size();
        const size_t staged = to_stage + kFrameHeaderSize + (body <= kCopyBody ? body : 0);
        if (!batch.empty() && body <= kCopyBody && staged > kMaxStaged) break;
        to_stage = staged;
        e.written = true;
        bytes += kFrameHeaderSize + body;
        if (e.seq <= highest_written_) ++stats_.retransmits;
        write_seq_ = e.seq + 1;
        batch.push_back(&e);
      }
      highest_written_ = std::max(highest_written_, write_seq_ - 1);
      stats_.messages_sent += batch.size();
      stats_.bytes_sent += bytes;
      entries_in_flight_ = !batch.empty();
    }
    std::string& staged = conn->staging;
    staged.clear();
    staged.reserve(to_stage);  // one allocation at most, not a doubling per batch
    // Pieces in order: a run of the staging buffer (data == nullptr: offsets into
    // it, which may still move as it grows) or a body in place.
    struct Piece {
      const char* data;
      size_t off;
      size_t len;
    };
    std::vector<Piece> pieces;
    size_t run = 0;  // where the staged run not yet in `pieces` starts
    for (const Entry* e : batch) {
      staged.append(e->header.data(), e->header.size());
      if (e->msg.wire_size() <= kCopyBody) {
        staged += e->msg.wire();
      } else {
        pieces.push_back({nullptr, run, staged.size() - run});
        pieces.push_back({e->msg.wire().data(), 0, e->msg.wire_size()});
        run = staged.size();
      }
    }
    if (staged.size() > run) pieces.push_back({nullptr, run, staged.size() - run});
    for (const Piece& p : pieces)
      bufs.push_back(asio::buffer(p.data != nullptr ? p.data : staged.data() + p.off, p.len));
  }
  if (bufs.empty()) return;
  writing_ = true;
  asio::async_write(conn->sock, bufs, [self = shared_from_this(), conn](boost::system::error_code ec, size_t) {
    self->writing_ = false;
    self->AdmitControls();
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

// ---- the delivery timeout ----

void Sender::Impl::ArmDeliveryTimer() {
  loop_.AssertInLoop("Sender::Impl::ArmDeliveryTimer");
  if (delivery_timer_armed_ || state_ == State::kClosed) return;
  int64_t oldest;
  {
    absl::MutexLock lock(&mu_);
    if (queue_.empty()) return;
    oldest = queue_.front().due_from_ns;
  }
  delivery_timer_armed_ = true;
  delivery_timer_.expires_after(ToChrono(std::max(
      absl::ZeroDuration(), absl::Nanoseconds(oldest - sender_internal::CoarseNanos()) + opts_.delivery_timeout)));
  delivery_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    self->delivery_timer_armed_ = false;
    if (ec || self->state_ == State::kClosed) return;
    self->CheckDeliveryTimeout();
  });
}

void Sender::Impl::CheckDeliveryTimeout() {
  loop_.AssertInLoop("Sender::Impl::CheckDeliveryTimeout");
  bool expired;
  {
    absl::MutexLock lock(&mu_);
    expired = !queue_.empty() &&
              absl::Nanoseconds(sender_internal::CoarseNanos() - queue_.front().due_from_ns) >= opts_.delivery_timeout;
  }
  if (!expired) return ArmDeliveryTimer();
  base::Log().warn("link to {}: no acknowledgement within {}; returning outstanding messages", addr_.ToString(),
                   absl::FormatDuration(opts_.delivery_timeout));
  Disconnect();
  ResetSession();
  state_ = State::kIdle;
  FailAll(Returned(
      absl::StatusCode::kDeadlineExceeded, ReturnReason::kTimeout,
      absl::StrCat("no acknowledgement from ", addr_.ToString(), " within ",
                   absl::FormatDuration(opts_.delivery_timeout), "; the message may or may not have been delivered",
                   last_failure_.empty() ? "" : absl::StrCat(" (last connection failure: ", last_failure_, ")"))));
}

}  // namespace hostd::channel
