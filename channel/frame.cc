#include "channel/frame.h"

#include "absl/strings/str_format.h"

namespace hostd::channel {

void PutLe16(char* p, uint16_t v) {
  for (int i = 0; i < 2; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void PutLe32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void PutLe64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint16_t GetLe16(const char* p) {
  uint16_t v = 0;
  for (int i = 1; i >= 0; --i) v = static_cast<uint16_t>((v << 8) | static_cast<uint8_t>(p[i]));
  return v;
}
uint32_t GetLe32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t GetLe64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

EncodedHeader EncodeHeader(const FrameHeader& h) {
  EncodedHeader out{};
  out[0] = static_cast<char>(kMagic0);
  out[1] = static_cast<char>(kMagic1);
  out[2] = static_cast<char>(kProtocolVersion);
  out[3] = static_cast<char>(h.type);
  PutLe32(&out[4], h.length);
  PutLe64(&out[8], h.seq);
  return out;
}

absl::StatusOr<FrameHeader> DecodeHeader(absl::string_view bytes, uint32_t max_body) {
  if (bytes.size() < kFrameHeaderSize) {
    return absl::InternalError(absl::StrFormat("frame header needs %d bytes, got %d", kFrameHeaderSize, bytes.size()));
  }
  const char* p = bytes.data();
  if (static_cast<uint8_t>(p[0]) != kMagic0 || static_cast<uint8_t>(p[1]) != kMagic1) {
    return absl::DataLossError(absl::StrFormat("bad frame magic 0x%02x%02x (want 0x%02x%02x): not a hostd peer",
                                               static_cast<uint8_t>(p[0]), static_cast<uint8_t>(p[1]), kMagic0,
                                               kMagic1));
  }
  if (static_cast<uint8_t>(p[2]) != kProtocolVersion) {
    return absl::DataLossError(absl::StrFormat("unsupported protocol version %d (this build speaks %d)",
                                               static_cast<uint8_t>(p[2]), kProtocolVersion));
  }
  uint8_t type = static_cast<uint8_t>(p[3]);
  if (type < static_cast<uint8_t>(FrameType::kHello) || type > static_cast<uint8_t>(FrameType::kClose)) {
    return absl::DataLossError(absl::StrFormat("unknown frame type %d", type));
  }
  FrameHeader h{static_cast<FrameType>(type), GetLe32(p + 4), GetLe64(p + 8)};
  if (h.length > max_body) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("frame of %d bytes exceeds the limit of %d bytes", h.length, max_body));
  }
  return h;
}

std::string EncodeHello(const Hello& h) {
  std::string out(kHelloSize, '\0');
  PutLe64(out.data(), h.session_id);
  out[8] = static_cast<char>(h.role);
  return out;
}

absl::StatusOr<Hello> DecodeHello(absl::string_view body) {
  if (body.size() != kHelloSize) {
    return absl::DataLossError(absl::StrFormat("hello body is %d bytes, want %d", body.size(), kHelloSize));
  }
  Hello h{GetLe64(body.data()), static_cast<LinkRole>(body[8])};
  if (h.session_id == 0) return absl::DataLossError("hello carries session id 0");
  if (h.role != LinkRole::kMessages) {
    return absl::DataLossError(absl::StrFormat("hello announces unknown role %d", static_cast<uint8_t>(body[8])));
  }
  for (size_t i = 9; i < kHelloSize; ++i) {
    if (body[i] != 0) return absl::DataLossError("hello has non-zero reserved bytes");
  }
  return h;
}

std::string EncodeWelcome(const Welcome& w) {
  std::string out(kWelcomeSize, '\0');
  PutLe64(out.data(), w.incarnation);
  PutLe64(out.data() + 8, w.delivered_seq);
  out[16] = w.resumed ? 1 : 0;
  return out;
}

absl::StatusOr<Welcome> DecodeWelcome(absl::string_view body) {
  if (body.size() != kWelcomeSize) {
    return absl::DataLossError(absl::StrFormat("welcome body is %d bytes, want %d", body.size(), kWelcomeSize));
  }
  uint8_t resumed = static_cast<uint8_t>(body[16]);
  if (resumed > 1) return absl::DataLossError(absl::StrFormat("welcome has bad resumed flag %d", resumed));
  for (size_t i = 17; i < kWelcomeSize; ++i) {
    if (body[i] != 0) return absl::DataLossError("welcome has non-zero reserved bytes");
  }
  Welcome w{GetLe64(body.data()), GetLe64(body.data() + 8), resumed == 1};
  if (w.incarnation == 0) return absl::DataLossError("welcome carries incarnation 0");
  if (!w.resumed && w.delivered_seq != 0) {
    return absl::DataLossError("welcome for a new session reports delivered messages");
  }
  return w;
}

}  // namespace hostd::channel
