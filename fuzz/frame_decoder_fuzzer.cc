// Fuzzes FrameDecoder with arbitrary streams cut into arbitrary reads, and
// Message::FromWire on every DATA body it yields.
//
// Input layout:
//   byte 0  max_body mode (low 2 bits): 0 -> 0..255, 1 -> 0..4096, 2 -> around kInlineBody, 3 -> default
//   byte 1  max_body parameter
//   byte 2  chunking: low 3 bits pick the largest read, bit 7 set -> random read sizes up to it;
//           bit 6 set -> the stream is the rest repeated to kRepeatedSize bytes, which lets small
//           inputs complete bodies over kInlineBody and fill more than one kChunk buffer
//   byte 3  seed for the random read sizes, and the return reason used for ToReturned
//   rest    the byte stream
//
// The frames, the error and Finish() are compared against a one-pass reference parse of
// the whole stream, so partial and coalesced reads must give the same result.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "channel/frame.h"
#include "channel/frame_decoder.h"
#include "channel/message.h"
#include "fuzz/fuzz_check.h"

namespace {

using hostd::channel::DecodeHeader;
using hostd::channel::Frame;
using hostd::channel::FrameDecoder;
using hostd::channel::FrameHeader;
using hostd::channel::FrameType;
using hostd::channel::kDefaultMaxFrameBody;
using hostd::channel::kFrameHeaderSize;
using hostd::channel::Message;
using hostd::channel::ReturnReason;

uint32_t PickMaxBody(uint8_t mode, uint8_t param) {
  switch (mode & 3) {
    case 0: return param;
    case 1: return static_cast<uint32_t>(param) * 4096 / 255;
    case 2: return static_cast<uint32_t>(FrameDecoder::kInlineBody) - 128 + param;
    default: return kDefaultMaxFrameBody;
  }
}

constexpr size_t kReadCaps[8] = {1, 2, 3, 15, 17, 255, 4096, SIZE_MAX};
constexpr size_t kRepeatedSize = 2 * FrameDecoder::kChunk + 1000;

struct Reference {
  std::vector<Frame> frames;
  absl::Status error;
  size_t leftover = 0;  // bytes after the last complete frame (when no error)
};

Reference ParseWhole(absl::string_view s, uint32_t max_body) {
  Reference r;
  size_t pos = 0;
  while (s.size() - pos >= kFrameHeaderSize) {
    absl::StatusOr<FrameHeader> h = DecodeHeader(s.substr(pos, kFrameHeaderSize), max_body);
    if (!h.ok()) {
      r.error = h.status();
      return r;
    }
    if (s.size() - pos - kFrameHeaderSize < h->length) break;
    r.frames.push_back(Frame{*h, std::string(s.substr(pos + kFrameHeaderSize, h->length))});
    pos += kFrameHeaderSize + h->length;
  }
  r.leftover = s.size() - pos;
  return r;
}

bool Inside(absl::string_view v, const std::string& w) {
  return v.data() >= w.data() && v.size() <= w.size() &&
         v.data() - w.data() <= static_cast<ptrdiff_t>(w.size() - v.size());
}

void CheckMessage(const std::string& body, uint8_t salt) {
  absl::StatusOr<Message> m = Message::FromWire(body);
  if (!m.ok()) {
    FUZZ_CHECK(m.status().code() == absl::StatusCode::kDataLoss);
    return;
  }
  const std::string& w = m->wire();
  FUZZ_CHECK(w == body);
  absl::string_view dest = m->dest(), port = m->port(), src = m->src(), note = m->note(), payload = m->payload();
  FUZZ_CHECK(Inside(dest, w));
  FUZZ_CHECK(Inside(port, w));
  FUZZ_CHECK(Inside(src, w));
  FUZZ_CHECK(Inside(note, w));
  FUZZ_CHECK(Inside(payload, w));
  // The fields follow the envelope back to back and the payload runs to the end.
  FUZZ_CHECK(dest.data() == w.data() + Message::kEnvelopeSize);
  FUZZ_CHECK(port.data() == dest.data() + dest.size());
  FUZZ_CHECK(src.data() == port.data() + port.size());
  FUZZ_CHECK(note.data() == src.data() + src.size());
  FUZZ_CHECK(payload.data() == note.data() + note.size());
  FUZZ_CHECK(payload.data() + payload.size() == w.data() + w.size());

  if (m->kind() == Message::Kind::kMessage) {
    FUZZ_CHECK(m->reason() == ReturnReason::kNone);
    absl::StatusOr<Message> again = Message::Create(dest, port, src, payload);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK(again->wire() == w);
  } else {
    FUZZ_CHECK(m->kind() == Message::Kind::kReturned);
    FUZZ_CHECK(m->reason() != ReturnReason::kNone);
  }

  // Returning it must give a well-formed message addressed back to the sender.
  auto reason = static_cast<ReturnReason>(1 + salt % static_cast<uint8_t>(ReturnReason::kLast));
  absl::string_view why = payload.substr(0, 64);
  Message back = m->ToReturned(reason, why);
  FUZZ_CHECK(back.kind() == Message::Kind::kReturned);
  FUZZ_CHECK(back.reason() == reason);
  FUZZ_CHECK(back.dest() == src);
  FUZZ_CHECK(back.port() == port);
  FUZZ_CHECK(back.src() == dest);
  FUZZ_CHECK(back.note() == why);
  FUZZ_CHECK(back.payload() == payload);
  absl::StatusOr<Message> reparsed = Message::FromWire(back.wire());
  FUZZ_CHECK(reparsed.ok());
  FUZZ_CHECK(reparsed->wire() == back.wire());
}

bool SameFrame(const Frame& a, const Frame& b) {
  return a.header.type == b.header.type && a.header.length == b.header.length && a.header.seq == b.header.seq &&
         a.body == b.body;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint32_t max_body = PickMaxBody(data[0], data[1]);
  const size_t cap = kReadCaps[data[2] & 7];
  const bool random_reads = (data[2] & 0x80) != 0;
  uint32_t rng = 0x9e3779b9u ^ (static_cast<uint32_t>(data[3]) * 0x01000193u);
  const uint8_t salt = data[3];
  absl::string_view stream(reinterpret_cast<const char*>(data) + 4, size - 4);
  std::string repeated;
  if ((data[2] & 0x40) != 0 && !stream.empty()) {
    repeated.reserve(kRepeatedSize + stream.size());
    while (repeated.size() < kRepeatedSize) repeated.append(stream.data(), stream.size());
    stream = repeated;
  }

  const Reference ref = ParseWhole(stream, max_body);

  FrameDecoder decoder(max_body);
  std::vector<Frame> frames;
  absl::Status error;
  size_t pos = 0;
  while (pos < stream.size() && error.ok()) {
    absl::Span<char> span = decoder.WritableSpan();
    FUZZ_CHECK(!span.empty());
    size_t want = cap;
    if (random_reads && cap != 1) {
      rng ^= rng << 13;
      rng ^= rng >> 17;
      rng ^= rng << 5;
      want = 1 + rng % std::min<size_t>(cap, stream.size());
    }
    size_t n = std::min({want, span.size(), stream.size() - pos});
    std::memcpy(span.data(), stream.data() + pos, n);
    decoder.CommitWrite(n);
    pos += n;
    while (true) {
      absl::StatusOr<std::optional<Frame>> f = decoder.Next();
      if (!f.ok()) {
        error = f.status();
        FUZZ_CHECK(!error.ok());
        break;
      }
      if (!f->has_value()) break;
      Frame& frame = **f;
      FUZZ_CHECK(frame.body.size() == frame.header.length);
      FUZZ_CHECK(frame.body.size() <= max_body);
      if (frame.header.type == FrameType::kData) CheckMessage(frame.body, salt);
      frames.push_back(std::move(frame));
    }
    // The header is checked before any body memory is allocated, and the body's
    // room follows the bytes that arrived: never more than the read buffer plus
    // twice what came, plus one step, and never more than one accepted body.
    FUZZ_CHECK(decoder.reserved_bytes() <=
               FrameDecoder::kChunk + std::min<size_t>(max_body, 2 * pos + FrameDecoder::kBodyStep) + 64);
  }

  if (!error.ok()) {
    // Sticky: every later call reports the same error.
    for (int i = 0; i < 2; ++i) {
      absl::StatusOr<std::optional<Frame>> f = decoder.Next();
      FUZZ_CHECK(!f.ok());
      FUZZ_CHECK(f.status() == error);
    }
    FUZZ_CHECK(decoder.Finish() == error);
    FUZZ_CHECK(error.code() == absl::StatusCode::kDataLoss || error.code() == absl::StatusCode::kResourceExhausted);
  } else {
    FUZZ_CHECK(!decoder.Next().value().has_value());
    absl::Status fin = decoder.Finish();
    if (ref.error.ok()) {
      FUZZ_CHECK(fin.ok() == (ref.leftover == 0));
      if (!fin.ok()) FUZZ_CHECK(fin.code() == absl::StatusCode::kDataLoss);
    }
  }

  // Same outcome as parsing the stream in one go.
  FUZZ_CHECK(error == ref.error);
  FUZZ_CHECK(frames.size() == ref.frames.size());
  for (size_t i = 0; i < frames.size(); ++i) FUZZ_CHECK(SameFrame(frames[i], ref.frames[i]));
  return 0;
}
