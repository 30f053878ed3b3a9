// Fuzzes the frame header and handshake codecs in channel/frame.h.
//
// DecodeHeader sees the first 16 bytes (bytes 16..19, when present, give max_body);
// DecodeHello and DecodeWelcome see the whole input and the part after the header.
// Whatever decodes must encode back to exactly the same bytes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "channel/frame.h"
#include "fuzz/fuzz_check.h"

namespace {

using namespace hostd::channel;  // NOLINT: a fuzz target uses most of frame.h

void CheckHeader(absl::string_view in) {
  const uint32_t max_body =
      in.size() >= kFrameHeaderSize + 4 ? GetLe32(in.data() + kFrameHeaderSize) : kDefaultMaxFrameBody;
  if (in.size() < kFrameHeaderSize) {
    FUZZ_CHECK(!DecodeHeader(in, max_body).ok());
    return;
  }
  absl::string_view bytes = in.substr(0, kFrameHeaderSize);
  absl::StatusOr<FrameHeader> h = DecodeHeader(bytes, max_body);
  // What frame.h promises: magic, version, type and length <= max_body are checked.
  const auto* u = reinterpret_cast<const uint8_t*>(bytes.data());
  const bool well_formed = u[0] == kMagic0 && u[1] == kMagic1 && u[2] == kProtocolVersion &&
                           u[3] >= static_cast<uint8_t>(FrameType::kHello) &&
                           u[3] <= static_cast<uint8_t>(FrameType::kClose);
  const bool fits = GetLe32(bytes.data() + 4) <= max_body;
  if (!h.ok()) {
    FUZZ_CHECK(!(well_formed && fits));
    FUZZ_CHECK(h.status().code() == (well_formed ? absl::StatusCode::kResourceExhausted : absl::StatusCode::kDataLoss));
    return;
  }
  FUZZ_CHECK(well_formed && fits);
  FUZZ_CHECK(h->length <= max_body);
  EncodedHeader e = EncodeHeader(*h);
  FUZZ_CHECK(absl::string_view(e.data(), e.size()) == bytes);
}

void CheckHello(absl::string_view body) {
  absl::StatusOr<Hello> h = DecodeHello(body);
  if (!h.ok()) {
    FUZZ_CHECK(h.status().code() == absl::StatusCode::kDataLoss);
    return;
  }
  FUZZ_CHECK(body.size() == kHelloSize);
  FUZZ_CHECK(h->session_id != 0);
  FUZZ_CHECK(h->role == LinkRole::kMessages);
  FUZZ_CHECK(EncodeHello(*h) == body);
}

void CheckWelcome(absl::string_view body) {
  absl::StatusOr<Welcome> w = DecodeWelcome(body);
  if (!w.ok()) {
    FUZZ_CHECK(w.status().code() == absl::StatusCode::kDataLoss);
    return;
  }
  FUZZ_CHECK(body.size() == kWelcomeSize);
  FUZZ_CHECK(w->incarnation != 0);
  FUZZ_CHECK(w->resumed || w->delivered_seq == 0);
  FUZZ_CHECK(EncodeWelcome(*w) == body);
}

// The other direction: a valid value built from the input survives encode + decode.
void CheckEncodeFirst(absl::string_view in) {
  if (in.size() < 17) return;
  Hello hello{GetLe64(in.data()), LinkRole::kMessages};
  if (hello.session_id != 0) {
    absl::StatusOr<Hello> back = DecodeHello(EncodeHello(hello));
    FUZZ_CHECK(back.ok());
    FUZZ_CHECK(back->session_id == hello.session_id && back->role == hello.role);
  }
  Welcome welcome{GetLe64(in.data()), GetLe64(in.data() + 8), (in[16] & 1) != 0};
  if (!welcome.resumed) welcome.delivered_seq = 0;
  if (welcome.incarnation != 0) {
    absl::StatusOr<Welcome> back = DecodeWelcome(EncodeWelcome(welcome));
    FUZZ_CHECK(back.ok());
    FUZZ_CHECK(back->incarnation == welcome.incarnation && back->delivered_seq == welcome.delivered_seq &&
               back->resumed == welcome.resumed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view in(reinterpret_cast<const char*>(data), size);
  CheckHeader(in);
  CheckHello(in);
  CheckWelcome(in);
  if (in.size() >= kFrameHeaderSize) {
    CheckHello(in.substr(kFrameHeaderSize));
    CheckWelcome(in.substr(kFrameHeaderSize));
  }
  CheckEncodeFirst(in);
  return 0;
}
