// The hostd wire format: frame header, handshake bodies and their codecs.
//
// Every frame is a fixed 16-byte header followed by `length` body bytes; see
// channel/PROTOCOL.md for the full description and the delivery rules. These
// functions are pure (no I/O), so the decoder and the fuzzers exercise exactly the
// code the links run.
#ifndef HOSTD_CHANNEL_FRAME_H_
#define HOSTD_CHANNEL_FRAME_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hostd::channel {

inline constexpr uint8_t kMagic0 = 'h';
inline constexpr uint8_t kMagic1 = 'd';
inline constexpr uint8_t kProtocolVersion = 1;
inline constexpr size_t kFrameHeaderSize = 16;
// Default cap on a frame body; links make it configurable.
inline constexpr uint32_t kDefaultMaxFrameBody = 64u << 20;

enum class FrameType : uint8_t {
  kHello = 1,    // dialer -> listener, first frame of a connection
  kWelcome = 2,  // listener -> dialer, answer to kHello
  kData = 3,     // a message; seq numbers it within the session
  kAck = 4,      // cumulative: every DATA with seq <= header.seq was delivered
  kClose = 5,    // graceful close; body is a human-readable reason
};

struct FrameHeader {
  FrameType type = FrameType::kData;
  uint32_t length = 0;  // body bytes after the header
  uint64_t seq = 0;
};

using EncodedHeader = std::array<char, kFrameHeaderSize>;

EncodedHeader EncodeHeader(const FrameHeader& h);

// Checks magic, version, type and `length <= max_body` before anything is allocated.
// `bytes` must hold at least kFrameHeaderSize bytes. Errors are DataLoss (garbage) or
// ResourceExhausted (oversized) and say which field is wrong.
absl::StatusOr<FrameHeader> DecodeHeader(absl::string_view bytes, uint32_t max_body);

// Roles a dialer may announce in its Hello. Only message links exist today; the byte
// leaves room for a control lane without a version change.
enum class LinkRole : uint8_t { kMessages = 1 };

struct Hello {
  uint64_t session_id = 0;  // chosen by the dialer, never 0
  LinkRole role = LinkRole::kMessages;
};
inline constexpr size_t kHelloSize = 16;

struct Welcome {
  uint64_t incarnation = 0;    // the listener's, random per listener instance
  uint64_t delivered_seq = 0;  // highest seq the listener delivered in this session
  bool resumed = false;        // false: the listener did not know the session
};
inline constexpr size_t kWelcomeSize = 24;

std::string EncodeHello(const Hello& h);
absl::StatusOr<Hello> DecodeHello(absl::string_view body);
std::string EncodeWelcome(const Welcome& w);
absl::StatusOr<Welcome> DecodeWelcome(absl::string_view body);

// Little-endian helpers shared by the codecs in this folder.
void PutLe16(char* p, uint16_t v);
void PutLe32(char* p, uint32_t v);
void PutLe64(char* p, uint64_t v);
uint16_t GetLe16(const char* p);
uint32_t GetLe32(const char* p);
uint64_t GetLe64(const char* p);

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_FRAME_H_
