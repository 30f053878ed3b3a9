// Counters of one link end, for the daemon to export. Snapshots are plain values.
#ifndef HOSTD_CHANNEL_LINK_STATS_H_
#define HOSTD_CHANNEL_LINK_STATS_H_

#include <cstdint>

#include "absl/time/time.h"

namespace hostd::channel {

// The dialing end of a link (Sender).
struct SenderStats {
  uint64_t messages_sent = 0;      // DATA frames written, retransmissions included
  uint64_t bytes_sent = 0;         // bytes of those frames, headers included
  uint64_t messages_acked = 0;     // delivered, as confirmed by the peer
  uint64_t messages_returned = 0;  // handed back to the caller undelivered
  uint64_t retransmits = 0;        // DATA frames written again after a reconnect
  uint64_t sends_waited = 0;       // Post calls that found the queue full and waited
  uint64_t sends_rejected = 0;     // Post calls refused (queue full, too large, closed)
  uint64_t queue_depth = 0;        // messages queued or awaiting their ack, now
  uint64_t queue_bytes = 0;
  uint64_t max_queue_depth = 0;
  absl::Duration queue_time_total;  // sum over acked messages of enqueue -> ack
  absl::Duration queue_time_max;
  uint64_t connects = 0;  // handshakes completed
  uint64_t connect_failures = 0;
  uint64_t session_resets = 0;  // sessions abandoned (peer restart, close, timeout)
};

// The serving end (Listener), summed over its sessions.
struct ListenerStats {
  uint64_t connections_accepted = 0;
  uint64_t connections_open = 0;
  uint64_t connections_refused = 0;  // over ListenerOptions::max_connections
  uint64_t protocol_errors = 0;      // connections closed for a malformed stream
  uint64_t tls_handshake_failures = 0;  // tls: connections refused (peer not verified, or it refused us)
  uint64_t sessions = 0;             // sessions known now
  uint64_t messages_received = 0;    // delivered to the Receiver
  uint64_t bytes_received = 0;       // frame bytes, headers included
  uint64_t duplicates_dropped = 0;
  uint64_t deliveries_paused = 0;  // times a full Receiver stopped a peer's reads
  uint64_t acks_sent = 0;
};

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_LINK_STATS_H_
