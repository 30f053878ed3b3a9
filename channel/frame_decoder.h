// FrameDecoder turns a byte stream into frames.
//
// Usage, once per read:
//   absl::Span<char> span = decoder.WritableSpan();
//   size_t n = read(fd, span.data(), span.size());
//   decoder.CommitWrite(n);
//   while (true) {
//     absl::StatusOr<std::optional<Frame>> f = decoder.Next();
//     if (!f.ok()) { /* protocol error: close the connection */ }
//     if (!f->has_value()) break;  // need more bytes
//     Handle(**f);
//   }
//   ...on EOF: decoder.Finish() says whether the stream ended at a frame boundary.
//
// The read buffer starts at kFirstChunk bytes and doubles, up to kChunk, whenever
// a read fills all the room it was given: a connection that carries only a few
// small frames (acknowledgements, a stop message) never allocates and zero-fills
// kChunk, and a busy one reaches it within a few reads.
//
// Guarantees: partial and coalesced reads yield the same frames; a header is
// validated (magic, version, type, length <= max_body) before any body memory is
// allocated; a body larger than kInlineBody is read straight into its own buffer.
// That buffer follows the bytes that arrive, not the length the header declares:
// it starts at kBodyStep (or the whole body, if smaller) and grows by doubling, at
// least kBodyStep at a time, so a peer that declares 64 MiB and sends a few bytes
// costs this decoder about kChunk + kBodyStep, and bodies up to kBodyStep are
// never copied twice. All decoders of the process together hold at most the
// partial-body budget (SetPartialBodyBudget; 512 MiB unless set) in large bodies
// still arriving: a decoder whose body would need room past it fails with
// RESOURCE_EXHAUSTED naming the budget (a listener then closes that connection
// with a CLOSE saying so, and the peer may reconnect and resume), so many
// connections that each declare a large body and send a little cannot add up to
// more than the budget. After an error every later call returns the same error.
// Thread-compatible: one reader at a time.
#ifndef HOSTD_CHANNEL_FRAME_DECODER_H_
#define HOSTD_CHANNEL_FRAME_DECODER_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "channel/frame.h"

namespace hostd::channel {

struct Frame {
  FrameHeader header;
  std::string body;
};

class FrameDecoder {
 public:
  static constexpr size_t kFirstChunk = 4 * 1024;
  static constexpr size_t kChunk = 64 * 1024;
  static constexpr size_t kInlineBody = 16 * 1024;
  static constexpr size_t kBodyStep = 1 << 20;

  static constexpr size_t kDefaultPartialBodyBudget = size_t{512} << 20;

  explicit FrameDecoder(uint32_t max_body = kDefaultMaxFrameBody);
  ~FrameDecoder();
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  // The process-wide budget for large bodies still arriving, and its use now.
  static void SetPartialBodyBudget(size_t bytes);
  static size_t partial_body_bytes();

  // Where the next read should put its bytes; never empty.
  absl::Span<char> WritableSpan();
  // Records that the first `n` bytes of the last WritableSpan were filled.
  void CommitWrite(size_t n);
  // The next complete frame, nullopt when more bytes are needed, or the protocol error.
  absl::StatusOr<std::optional<Frame>> Next();
  // Call on EOF: OK at a frame boundary, DataLoss naming how much of a frame was cut off.
  absl::Status Finish() const;

  // Whether part of a frame (header or body) has arrived and the rest has not.
  bool partial() const { return big_header_.has_value() || wpos_ != rpos_; }

  // Bytes of memory this decoder holds, for tests of the allocation bound.
  size_t reserved_bytes() const { return buf_.capacity() + big_.capacity(); }

 private:
  uint32_t max_body_;
  absl::Status error_;
  std::string buf_;
  size_t rpos_ = 0;
  size_t wpos_ = 0;
  // A large body being filled in place: big_ is the room allocated so far
  // (big_filled_ <= big_.size() <= big_header_->length).
  std::optional<FrameHeader> big_header_;
  std::string big_;
  size_t big_filled_ = 0;
  size_t counted_ = 0;  // of big_, in the process-wide budget

  // Counts `room` bytes of big_ against the budget; false (and error_ set) if
  // they do not fit.
  bool Reserve(size_t room);
  void Release();
};

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_FRAME_DECODER_H_
