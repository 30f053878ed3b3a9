#include "channel/listener.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "base/log.h"
#include "base/status_macros.h"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/write.hpp"
#include "channel/frame_decoder.h"
#include "channel/transport.h"

namespace hostd::channel {

namespace asio = boost::asio;

namespace {

class ServerConn;

struct Session {
  uint64_t delivered = 0;
  std::weak_ptr<ServerConn> conn;
  absl::Time idle_since = absl::InfiniteFuture();
};

std::chrono::nanoseconds ToChrono(absl::Duration d) { return absl::ToChronoNanoseconds(d); }

// After its goodbye a connection reads (and discards) until the peer closes, so the
// goodbye is not lost to EPIPE or a TCP reset; this bounds that wait, and a goodbye
// the peer never reads.
constexpr absl::Duration kCloseLinger = absl::Seconds(2);

}  // namespace

// All state lives on the loop thread.
class Listener::Impl : public std::enable_shared_from_this<Listener::Impl> {
 public:
  Impl(EventLoop& loop, Receiver& receiver, ListenerOptions opts)
      : loop(loop), receiver(receiver), opts(opts), sweep_timer(loop.context()) {
    incarnation = opts.incarnation;
    while (incarnation == 0) incarnation = absl::Uniform<uint64_t>(absl::BitGen());
  }

  void Start();
  void Close();
  void SweepSessions();
  void ConnEnded(const std::shared_ptr<ServerConn>& conn);

  EventLoop& loop;
  Receiver& receiver;
  const ListenerOptions opts;
  uint64_t incarnation = 0;
  std::unique_ptr<StreamAcceptor> acceptor;
  ChannelAddr addr = ChannelAddr::Local(0);
  absl::node_hash_map<uint64_t, Session> sessions;  // node map: Session& stays valid
  absl::flat_hash_set<std::shared_ptr<ServerConn>> conns;
  ListenerStats stats;
  uint64_t next_conn_id = 1;
  bool closed = false;
  asio::steady_timer sweep_timer;
  // Set by a caller of Close() waiting for the goodbye frames to be written.
  std::function<void()> on_all_closed;
};

namespace {

// One accepted connection. Holds the Impl (so handlers can run after the Listener is
// destroyed); the Impl drops its reference when the connection ends.
class ServerConn : public std::enable_shared_from_this<ServerConn> {
 public:
  ServerConn(std::shared_ptr<Listener::Impl> owner, Socket sock, uint64_t id)
      : owner_(std::move(owner)),
        sock_(std::move(sock)),
        decoder_(owner_->opts.max_frame_body),
        handshake_timer_(owner_->loop.context()),
        ack_timer_(owner_->loop.context()),
        close_timer_(owner_->loop.context()),
        stall_timer_(owner_->loop.context()),
        name_(absl::StrCat("connection #", id, " to ", owner_->addr.ToString())) {}

  void Start() {
    std::weak_ptr<ServerConn> weak = weak_from_this();
    EventLoop* loop = &owner_->loop;
    wake_ = [weak, loop] {
      // The receiver may call this late; a connection that is gone needs nothing.
      if (weak.expired()) return;
      loop->Post([weak] {
        if (auto self = weak.lock()) self->Resume();
      });
    };
    handshake_timer_.expires_after(ToChrono(owner_->opts.handshake_timeout));
    handshake_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec && self->state_ == State::kHandshake) {
        if (!self->tls_done_) {
          base::Log().warn("{}: closing: the TLS handshake did not finish within the handshake timeout", self->name_);
          return self->Finish();
        }
        self->ProtocolError(absl::DeadlineExceededError("no hello within the handshake timeout"));
      }
    });
    sock_.SetDeadPeerTimeout(owner_->opts.dead_peer_timeout);
    if (!sock_.is_tls()) {
      tls_done_ = true;
      return StartRead();
    }
    sock_.AsyncHandshake("", [self = shared_from_this()](absl::Status s) {
      if (self->state_ != State::kHandshake) return;
      if (!s.ok()) {
        // Nothing can be said to a peer that has no TLS session with us.
        ++self->owner_->stats.tls_handshake_failures;
        base::Log().warn("{}: refused: {}", self->name_, s.message());
        return self->Finish();
      }
      self->tls_done_ = true;
      self->StartRead();
    });
  }

  // Graceful: ack what was delivered, say goodbye, close once written.
  void CloseGracefully(absl::string_view reason) {
    if (state_ == State::kHandshake) return Finish();
    if (state_ != State::kOpen) return;
    SayGoodbye(reason);
  }

  // Immediate: a newer connection took over this session.
  void Abandon() { Finish(); }

 private:
  // kClosing: goodbye queued; kDraining: goodbye written and our side shut down.
  // Both read and discard until the peer closes.
  enum class State { kHandshake, kOpen, kClosing, kDraining, kClosed };

  bool Discarding() const { return state_ == State::kClosing || state_ == State::kDraining; }

  void StartRead() {
    if (state_ == State::kClosed || reading_) return;
    if (Discarding()) {
      reading_ = true;
      discard_.resize(4096);
      sock_.async_read_some(asio::buffer(discard_), [self = shared_from_this()](boost::system::error_code ec, size_t) {
        self->reading_ = false;
        if (ec) return self->Finish();
        self->StartRead();
      });
      return;
    }
    if (paused_) {
      stall_timer_.cancel();  // our own pause is not the peer's stall
      return;
    }
    if (decoder_.partial()) ArmStall();
    reading_ = true;
    absl::Span<char> span = decoder_.WritableSpan();
    sock_.async_read_some(asio::buffer(span.data(), span.size()),
                          [self = shared_from_this()](boost::system::error_code ec, size_t n) { self->OnRead(ec, n); });
  }

  void OnRead(boost::system::error_code ec, size_t n) {
    reading_ = false;
    if (state_ == State::kClosed) return;
    if (Discarding()) return ec ? Finish() : StartRead();
    if (ec) {
      if (ec == asio::error::eof) {
        absl::Status tail = decoder_.Finish();
        if (!tail.ok()) base::Log().warn("{}: peer went away: {}", name_, tail.message());
      } else if (ec != asio::error::operation_aborted) {
        base::Log().debug("{}: read failed: {}", name_, ec.message());
      }
      return Finish();
    }
    decoder_.CommitWrite(n);
    last_byte_ = std::chrono::steady_clock::now();
    owner_->stats.bytes_received += n;
    ProcessFrames();
    owner_->receiver.EndOfRun();
    MaybeAck();
    StartRead();
  }

  void ProcessFrames() {
    while (state_ == State::kHandshake || state_ == State::kOpen) {
      if (paused_) return;
      absl::StatusOr<std::optional<Frame>> f = decoder_.Next();
      if (!f.ok()) return ProtocolError(f.status());
      if (!f->has_value()) return;
      HandleFrame(std::move(**f));
    }
  }

  void HandleFrame(Frame f) {
    if (state_ == State::kHandshake) {
      if (f.header.type != FrameType::kHello) {
        return ProtocolError(absl::DataLossError(
            absl::StrCat("expected a hello frame, got frame type ", static_cast<int>(f.header.type))));
      }
      absl::StatusOr<Hello> hello = DecodeHello(f.body);
      if (!hello.ok()) return ProtocolError(hello.status());
      return OnHello(*hello);
    }
    switch (f.header.type) {
      case FrameType::kData: return OnData(f.header.seq, std::move(f.body));
      case FrameType::kClose:
        // The dialer flushed and is done with the session.
        owner_->sessions.erase(session_id_);
        session_ = nullptr;
        return Finish();
      default:
        return ProtocolError(absl::DataLossError(
            absl::StrCat("unexpected frame type ", static_cast<int>(f.header.type), " in an open session")));
    }
  }

  void OnHello(const Hello& hello) {
    handshake_timer_.cancel();
    auto [it, inserted] = owner_->sessions.try_emplace(hello.session_id);
    Session& s = it->second;
    if (auto old = s.conn.lock(); old != nullptr && old.get() != this) {
      base::Log().info("{}: session {:016x} moved to a new connection", name_, hello.session_id);
      old->Abandon();
    }
    s.conn = weak_from_this();
    s.idle_since = absl::InfiniteFuture();
    session_id_ = hello.session_id;
    session_ = &s;
    acked_ = s.delivered;
    QueueFrame(FrameType::kWelcome, 0, EncodeWelcome({owner_->incarnation, s.delivered, !inserted}));
    state_ = State::kOpen;
  }

  void OnData(uint64_t seq, std::string body) {
    Session& s = *session_;
    if (seq <= s.delivered) {
      ++owner_->stats.duplicates_dropped;
      force_ack_ = true;
      return;
    }
    if (seq != s.delivered + 1) {
      return ProtocolError(
          absl::DataLossError(absl::StrCat("out-of-sequence frame: seq ", seq, ", expected ", s.delivered + 1)));
    }
    absl::StatusOr<Message> msg = Message::FromWire(std::move(body));
    if (!msg.ok()) return ProtocolError(msg.status());
    paused_.emplace(seq, std::move(*msg));
    TryDeliverPaused();
  }

  // Offers the held message to the receiver; leaves it held (and reads paused) if full.
  void TryDeliverPaused() {
    if (!owner_->receiver.Deliver(paused_->second, wake_)) {
      ++owner_->stats.deliveries_paused;
      return;
    }
    session_->delivered = paused_->first;
    paused_.reset();
    ++owner_->stats.messages_received;
    if (++unacked_ >= owner_->opts.ack_every) SendAck();
  }

  void Resume() {
    if (state_ != State::kOpen || !paused_) return;
    TryDeliverPaused();
    if (!paused_) ProcessFrames();
    owner_->receiver.EndOfRun();
    if (paused_) return;
    MaybeAck();
    StartRead();
  }

  void MaybeAck() {
    if (state_ != State::kOpen || (unacked_ == 0 && !force_ack_)) return;
    if (owner_->opts.ack_delay <= absl::ZeroDuration()) return SendAck();
    if (ack_timer_armed_) return;
    ack_timer_armed_ = true;
    ack_timer_.expires_after(ToChrono(owner_->opts.ack_delay));
    ack_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      self->ack_timer_armed_ = false;
      if (!ec && self->state_ == State::kOpen) self->SendAck();
    });
  }

  // Acks everything delivered, if that is news to the dialer or a duplicate asked for it again.
  void SendAck() {
    if (session_ == nullptr) return;
    uint64_t d = session_->delivered;
    if (d <= acked_ && !force_ack_) return;
    acked_ = d;
    unacked_ = 0;
    force_ack_ = false;
    ++owner_->stats.acks_sent;
    QueueFrame(FrameType::kAck, d, "");
  }

  void QueueFrame(FrameType type, uint64_t seq, std::string body) {
    EncodedHeader h = EncodeHeader({type, static_cast<uint32_t>(body.size()), seq});
    std::string frame(h.data(), h.size());
    frame += body;
    out_.push_back(std::move(frame));
    Flush();
  }

  void Flush() {
    if (writing_ || out_.empty() || state_ == State::kClosed) return;
    writing_ = true;
    batch_.clear();
    while (!out_.empty()) {
      batch_.push_back(std::move(out_.front()));
      out_.pop_front();
    }
    std::vector<asio::const_buffer> bufs;
    for (const std::string& f : batch_) bufs.push_back(asio::buffer(f));
    asio::async_write(sock_, bufs, [self = shared_from_this()](boost::system::error_code ec, size_t) {
      self->writing_ = false;
      if (ec) return self->Finish();
      self->Flush();
      self->CloseIfDrained();
    });
  }

  // Acknowledges everything delivered, then sends CLOSE with `reason`: the dialer
  // completes what was delivered and returns the rest, at once.
  void SayGoodbye(absl::string_view reason) {
    paused_.reset();  // not delivered, so not acknowledged: the dialer gets it back
    SendAck();
    QueueFrame(FrameType::kClose, 0, std::string(reason));
    state_ = State::kClosing;
    close_timer_.expires_after(ToChrono(kCloseLinger));
    close_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->Finish();
    });
    CloseIfDrained();
    StartRead();
  }

  void CloseIfDrained() {
    if (state_ == State::kClosing && !writing_ && out_.empty()) {
      boost::system::error_code ignored;
      sock_.shutdown(asio::socket_base::shutdown_send, ignored);
      state_ = State::kDraining;
    }
  }

  // One wait per stall window, not one per read: when it fires early (bytes came
  // meanwhile) it waits the rest of the window from the last byte.
  void ArmStall() {
    if (stall_armed_) return;
    stall_armed_ = true;
    stall_timer_.expires_at(last_byte_ + ToChrono(owner_->opts.stall_timeout));
    stall_timer_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      self->stall_armed_ = false;
      if (ec || self->paused_ || !self->decoder_.partial()) return;
      if (std::chrono::steady_clock::now() - self->last_byte_ < ToChrono(self->owner_->opts.stall_timeout)) {
        return self->ArmStall();
      }
      self->ProtocolError(
          absl::DeadlineExceededError(absl::StrCat("a frame stalled: part of it came and then nothing for ",
                                                   absl::FormatDuration(self->owner_->opts.stall_timeout))));
    });
  }

  void ProtocolError(const absl::Status& why) {
    if (state_ != State::kHandshake && state_ != State::kOpen) return;
    ++owner_->stats.protocol_errors;
    base::Log().warn("{}: closing: {}", name_, why.message());
    // The peer is told why (before the handshake too: a bad magic, version, role
    // or session id, or no HELLO in time), so a hostd peer returns its messages
    // instead of retrying them, and any other peer can read the cause.
    SayGoodbye(absl::StrCat("protocol error: ", why.message()));
  }

  void Finish() {
    if (state_ == State::kClosed) return;
    state_ = State::kClosed;
    boost::system::error_code ignored;
    sock_.close(ignored);
    handshake_timer_.cancel();
    ack_timer_.cancel();
    close_timer_.cancel();
    stall_timer_.cancel();
    if (session_ != nullptr && session_->conn.lock().get() == this) session_->idle_since = absl::Now();
    owner_->ConnEnded(shared_from_this());
  }

  std::shared_ptr<Listener::Impl> owner_;
  Socket sock_;
  FrameDecoder decoder_;
  asio::steady_timer handshake_timer_;
  asio::steady_timer ack_timer_;
  asio::steady_timer close_timer_;
  // Armed while part of a frame waits; last_byte_ is when the peer last sent one.
  asio::steady_timer stall_timer_;
  bool stall_armed_ = false;
  std::chrono::steady_clock::time_point last_byte_ = std::chrono::steady_clock::now();
  const std::string name_;
  State state_ = State::kHandshake;
  bool tls_done_ = false;  // the TLS handshake (if any) is over: frames may be read
  Receiver::Wake wake_;
  bool reading_ = false;
  bool writing_ = false;
  bool ack_timer_armed_ = false;
  bool force_ack_ = false;
  uint64_t session_id_ = 0;
  Session* session_ = nullptr;
  uint64_t acked_ = 0;
  uint32_t unacked_ = 0;
  std::optional<std::pair<uint64_t, Message>> paused_;  // seq, message the receiver had no room for
  std::string discard_;                                 // reads after the goodbye land here
  std::deque<std::string> out_;
  std::vector<std::string> batch_;  // frames being written
};

}  // namespace

void Listener::Impl::Start() {
  loop.AssertInLoop("Listener::Impl::Start");
  std::weak_ptr<Impl> weak = weak_from_this();
  acceptor->Start([weak](Socket sock) {
    auto self = weak.lock();
    if (!self || self->closed) return;
    if (self->conns.size() >= self->opts.max_connections) {
      // Closed at once (the Socket goes out of scope): its descriptor is back.
      if (self->stats.connections_refused++ % 1000 == 0) {
        base::Log().warn("{}: refused a connection: {} are open, the limit (max_connections); {} refused so far",
                         self->addr.ToString(), self->conns.size(), self->stats.connections_refused);
      }
      return;
    }
    ++self->stats.connections_accepted;
    auto conn = std::make_shared<ServerConn>(self, std::move(sock), self->next_conn_id++);
    self->conns.insert(conn);
    conn->Start();
  });
  SweepSessions();
}

void Listener::Impl::SweepSessions() {
  loop.AssertInLoop("Listener::Impl::SweepSessions");
  absl::Time now = absl::Now();
  absl::erase_if(sessions, [&](const auto& kv) { return kv.second.idle_since + opts.session_linger < now; });
  sweep_timer.expires_after(ToChrono(std::clamp(opts.session_linger, absl::Seconds(1), absl::Seconds(30))));
  sweep_timer.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
    auto self = weak.lock();
    if (!ec && self && !self->closed) self->SweepSessions();
  });
}

void Listener::Impl::ConnEnded(const std::shared_ptr<ServerConn>& conn) {
  loop.AssertInLoop("Listener::Impl::ConnEnded");
  conns.erase(conn);
  if (closed && conns.empty() && on_all_closed) std::exchange(on_all_closed, nullptr)();
}

void Listener::Impl::Close() {
  loop.AssertInLoop("Listener::Impl::Close");
  if (!closed) {
    closed = true;
    acceptor->Close();
    sweep_timer.cancel();
    // Copy: closing a connection removes it from `conns`.
    std::vector<std::shared_ptr<ServerConn>> open(conns.begin(), conns.end());
    for (auto& c : open) c->CloseGracefully("listener closed");
  }
  // A repeated Close (the destructor after an explicit one) still gets its answer.
  if (conns.empty() && on_all_closed) std::exchange(on_all_closed, nullptr)();
}

absl::StatusOr<std::unique_ptr<Listener>> Listener::Serve(EventLoop& loop, const ChannelAddr& addr, Receiver& receiver,
                                                          ListenerOptions options) {
  auto impl = std::make_shared<Impl>(loop, receiver, options);
  absl::Status status;
  loop.RunSync([&] {
    absl::StatusOr<std::unique_ptr<StreamAcceptor>> acc = StreamAcceptor::Create(loop.context(), addr, options.tls);
    if (!acc.ok()) {
      status = acc.status();
      return;
    }
    impl->acceptor = std::move(*acc);
    impl->addr = impl->acceptor->addr();
    impl->Start();
  });
  HOSTD_RETURN_IF_ERROR(status);
  base::Log().debug("listening on {} (incarnation {:016x})", impl->addr.ToString(), impl->incarnation);
  return std::unique_ptr<Listener>(new Listener(std::move(impl)));
}

Listener::~Listener() { Close(); }

const ChannelAddr& Listener::addr() const { return impl_->addr; }
uint64_t Listener::incarnation() const { return impl_->incarnation; }

ListenerStats Listener::stats() const {
  ListenerStats out;
  impl_->loop.RunSync([&] {
    out = impl_->stats;
    out.connections_open = impl_->conns.size();
    out.sessions = impl_->sessions.size();
  });
  return out;
}

void Listener::Close() {
  if (impl_->loop.InLoopThread()) return impl_->Close();
  // Once Impl::Close has run nothing reaches the Receiver again, so that wait is
  // unbounded. The goodbyes are then given a bounded time to reach the dialers (each
  // connection ends by itself within kCloseLinger), so they learn of the close from
  // the CLOSE frame rather than from a timeout.
  auto done = std::make_shared<absl::Notification>();
  impl_->loop.RunSync([&] {
    impl_->on_all_closed = [done] { done->Notify(); };
    impl_->Close();
  });
  if (!done->WaitForNotificationWithTimeout(kCloseLinger + absl::Seconds(1))) {
    base::Log().warn("listener {}: peers did not take the close in time", impl_->addr.ToString());
  }
}

}  // namespace hostd::channel
