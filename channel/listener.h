// Listener: the serving end of links. Accepts any number of dialers on one address
// and delivers their messages, each session exactly once and in order, to a Receiver.
//
//   Inbox inbox;
//   HOSTD_ASSIGN_OR_RETURN(auto listener, Listener::Serve(*loop, addr, inbox));
//   ... listener->addr() is the concrete address to hand out ...
//   absl::StatusOr<Message> m = inbox.Receive(deadline);
//
// Sessions outlive connections: a dialer that reconnects with its session id resumes
// where the listener's delivery stopped (duplicates dropped, out-of-sequence frames
// are a protocol error). Each listener instance has a random incarnation id, so
// dialers recognise a restarted listener at the same address.
//
// A malformed stream (garbage, wrong handshake, oversized frame, bad envelope)
// closes that one connection with a logged reason; everyone else is unaffected.
//
// Close() (also run by the destructor) is graceful: it stops accepting, acknowledges
// everything delivered, tells every connected dialer it is closed (so their callers
// learn at once), then closes. The Receiver must outlive the Listener. Thread-safe;
// runs on the loop given to Serve, which must outlive it.
#ifndef HOSTD_CHANNEL_LISTENER_H_
#define HOSTD_CHANNEL_LISTENER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "channel/channel_addr.h"
#include "channel/event_loop.h"
#include "channel/frame.h"
#include "channel/link_stats.h"
#include "channel/receiver.h"
#include "channel/tls.h"

namespace hostd::channel {

struct ListenerOptions {
  uint32_t max_frame_body = kDefaultMaxFrameBody;
  // An ack goes out after this many deliveries, or when the read that delivered them
  // is processed (ack_delay == 0), or ack_delay after the first unacked delivery.
  uint32_t ack_every = 256;
  absl::Duration ack_delay = absl::ZeroDuration();
  // Connections served at once; one more is accepted and closed at once (counted
  // in ListenerStats::connections_refused), so local peers cannot take every
  // descriptor of the process through one listener.
  size_t max_connections = 4096;
  // A connection that has not sent a valid Hello by then is closed.
  absl::Duration handshake_timeout = absl::Seconds(10);
  // A connection that sent part of a frame and then nothing more for this long is
  // closed (CLOSE "protocol error: ... stalled"): a half-sent frame holds memory.
  // Time the listener itself stops reading (backpressure) does not count.
  absl::Duration stall_timeout = absl::Seconds(60);
  // State of a session whose dialer vanished without closing is kept this long.
  absl::Duration session_linger = absl::Minutes(5);
  // Required for a tls: address: the certificates (channel/tls.h). The TLS
  // handshake runs under handshake_timeout, before the HELLO.
  std::shared_ptr<TlsContext> tls;
  // tcp:/tls: connections whose dialer stops answering are aborted within about
  // this (Socket::SetDeadPeerTimeout); zero leaves the kernel's defaults (hours).
  absl::Duration dead_peer_timeout = absl::ZeroDuration();
  // 0: random. Tests set it to check restart detection deterministically.
  uint64_t incarnation = 0;
};

class Listener {
 public:
  static absl::StatusOr<std::unique_ptr<Listener>> Serve(EventLoop& loop, const ChannelAddr& addr, Receiver& receiver,
                                                         ListenerOptions options = {});
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The concrete address (port, abstract name or local id filled in).
  const ChannelAddr& addr() const;
  uint64_t incarnation() const;
  ListenerStats stats() const;
  void Close();

  class Impl;

 private:
  explicit Listener(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  // Shared with in-flight Asio handlers, which may run after the Listener is gone.
  std::shared_ptr<Impl> impl_;
};

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_LISTENER_H_
