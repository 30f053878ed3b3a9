// The raw references of forward_bench: the same frames hostd's links carry (its
// 16-byte header, whose length field says how many body bytes follow, and a
// message body) moved with nothing but sockets and no guarantees at all: no
// sequence numbers checked, no acknowledgements, no queues, no routing table.
//
//   DirectRate     a writer thread writes the frames, in batches of about 256 KiB,
//                  straight to the sink's socket; the sink thread reads into one
//                  1 MiB buffer and finds the frame boundaries in place.
//   ForwarderRate  the same writer and sink with a forwarder between them: one
//                  thread, epoll, non-blocking sockets, reads of up to 1 MiB into
//                  one buffer, each frame's header parsed where it lies (its
//                  length is the one routing decision there is to make) and the
//                  bytes written on from that same buffer, cut-through: a large
//                  body goes on before its end has arrived.
//
// Both return messages per second from the first write to the sink holding all
// `n` frames (0 if a socket call failed, which they print). Fresh sockets per call:
// a unix stream socketpair, or a TCP connection on 127.0.0.1 with TCP_NODELAY, as
// hostd's links use.
#ifndef HOSTD_BENCH_RAW_FORWARD_H_
#define HOSTD_BENCH_RAW_FORWARD_H_

#include <string>

namespace hostd::bench {

enum class RawTransport { kUnix, kTcp };

double DirectRate(RawTransport t, const std::string& frame, int n);
double ForwarderRate(RawTransport t, const std::string& frame, int n);

}  // namespace hostd::bench

#endif  // HOSTD_BENCH_RAW_FORWARD_H_
