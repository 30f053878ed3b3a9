// Fuzzes ChannelAddr::Parse. Whatever parses must format to a string that parses
// back to an equal address and formats identically (Format(Parse(Format(x))) ==
// Format(x)), and the typed constructors must agree with the parser.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "channel/channel_addr.h"
#include "fuzz/fuzz_check.h"

using hostd::channel::ChannelAddr;
using hostd::channel::Transport;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view in(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ChannelAddr> a = ChannelAddr::Parse(in);
  if (!a.ok()) {
    FUZZ_CHECK(a.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }

  const std::string text = a->ToString();
  absl::StatusOr<ChannelAddr> b = ChannelAddr::Parse(text);
  FUZZ_CHECK(b.ok());
  FUZZ_CHECK(*b == *a);
  FUZZ_CHECK(b->ToString() == text);
  FUZZ_CHECK(absl::Hash<ChannelAddr>{}(*a) == absl::Hash<ChannelAddr>{}(*b));
  std::ostringstream os;
  os << *a;
  FUZZ_CHECK(os.str() == text);
  FUZZ_CHECK(absl::StartsWith(text, absl::StrCat(hostd::channel::TransportName(a->transport()), ":")));

  switch (a->transport()) {
    case Transport::kTcp:
    case Transport::kTls: {
      FUZZ_CHECK(a->port() <= 65535);
      FUZZ_CHECK(!a->host().empty());
      FUZZ_CHECK(a->is_ipv6() == absl::StrContains(text, '['));
      FUZZ_CHECK(!a->is_abstract());
      FUZZ_CHECK(a->is_any() == (a->port() == 0));
      uint16_t port = static_cast<uint16_t>(a->port());
      absl::StatusOr<ChannelAddr> t = a->transport() == Transport::kTls ? ChannelAddr::Tls(a->host(), port)
                                                                         : ChannelAddr::Tcp(a->host(), port);
      FUZZ_CHECK(t.ok());
      FUZZ_CHECK(*t == *a);
      break;
    }
    case Transport::kUnix: {
      FUZZ_CHECK(a->port() == 0);
      FUZZ_CHECK(a->host().size() <= ChannelAddr::kMaxUnixPathLen);
      FUZZ_CHECK(a->is_any() == a->host().empty());
      FUZZ_CHECK(!a->is_ipv6());
      absl::StatusOr<ChannelAddr> u = ChannelAddr::Unix(a->host());
      FUZZ_CHECK(u.ok());
      FUZZ_CHECK(*u == *a);
      break;
    }
    case Transport::kLocal: {
      FUZZ_CHECK(a->host().empty());
      FUZZ_CHECK(a->is_any() == (a->port() == 0));
      FUZZ_CHECK(ChannelAddr::Local(a->port()) == *a);
      break;
    }
  }
  return 0;
}
