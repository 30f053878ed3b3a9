#include "channel/channel_addr.h"

#include <arpa/inet.h>

#include <cctype>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hostd::channel {
namespace {

absl::Status Invalid(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat("invalid channel address \"%s\": %s", absl::CHexEscape(text), why));
}

// Canonical text of an IP literal, or empty if `ip` is not one.
std::string CanonicalIp(absl::string_view ip, bool v6) {
  std::string in(ip);
  char out[INET6_ADDRSTRLEN];
  unsigned char buf[sizeof(in6_addr)];
  int family = v6 ? AF_INET6 : AF_INET;
  if (inet_pton(family, in.c_str(), buf) != 1) return "";
  if (inet_ntop(family, buf, out, sizeof(out)) == nullptr) return "";
  return out;
}

bool ParsePort(absl::string_view s, uint64_t max, uint64_t& out) {
  if (s.empty() || s.size() > 20) return false;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  }
  return absl::SimpleAtoi(s, &out) && out <= max;
}

// What is wrong with a unix socket path ("" = any, "@name" = abstract), or "" if nothing.
std::string UnixPathProblem(absl::string_view path) {
  if (path.empty()) return "";
  if (path.size() > ChannelAddr::kMaxUnixPathLen) {
    return absl::StrFormat("socket path is %d bytes; a unix socket path holds at most %d", path.size(),
                           ChannelAddr::kMaxUnixPathLen);
  }
  if (path[0] == '@') {
    if (path.size() == 1) return "abstract socket name is empty";
    for (char c : path.substr(1)) {
      if (!std::isgraph(static_cast<unsigned char>(c))) {
        return "abstract socket name must be printable ASCII without spaces";
      }
    }
    return "";
  }
  if (path[0] != '/') return "unix socket path must be absolute (start with '/') or abstract (start with '@')";
  if (path.find('\0') != absl::string_view::npos) return "path contains a NUL byte";
  return "";
}

}  // namespace

absl::string_view TransportName(Transport t) {
  switch (t) {
    case Transport::kTcp: return "tcp";
    case Transport::kUnix: return "unix";
    case Transport::kLocal: return "local";
  }
  return "?";
}

bool ChannelAddr::is_any() const {
  switch (transport_) {
    case Transport::kTcp: return port_ == 0;
    case Transport::kUnix: return host_.empty();
    case Transport::kLocal: return port_ == 0;
  }
  return false;
}

absl::StatusOr<ChannelAddr> ChannelAddr::Tcp(absl::string_view ip, uint16_t port) {
  bool v6 = ip.find(':') != absl::string_view::npos;
  std::string canonical = CanonicalIp(ip, v6);
  if (canonical.empty()) {
    return Invalid(absl::StrCat("tcp:", ip, ":", port), "host must be an IPv4 literal or a bracketed IPv6 literal");
  }
  return ChannelAddr(Transport::kTcp, std::move(canonical), port);
}

absl::StatusOr<ChannelAddr> ChannelAddr::Unix(absl::string_view path) {
  if (std::string problem = UnixPathProblem(path); !problem.empty()) {
    return Invalid(absl::StrCat("unix:", path), problem);
  }
  return ChannelAddr(Transport::kUnix, std::string(path), 0);
}

ChannelAddr ChannelAddr::Local(uint64_t id) { return ChannelAddr(Transport::kLocal, "", id); }

absl::StatusOr<ChannelAddr> ChannelAddr::Parse(absl::string_view text) {
  size_t colon = text.find(':');
  if (colon == absl::string_view::npos) {
    return Invalid(text, "missing scheme; expected tcp:, unix: or local:");
  }
  absl::string_view scheme = text.substr(0, colon);
  absl::string_view rest = text.substr(colon + 1);
  if (scheme == "local") {
    uint64_t id = 0;
    if (!ParsePort(rest, UINT64_MAX, id)) return Invalid(text, "local id must be a decimal number");
    return Local(id);
  }
  if (scheme == "unix") {
    if (std::string problem = UnixPathProblem(rest); !problem.empty()) return Invalid(text, problem);
    return ChannelAddr(Transport::kUnix, std::string(rest), 0);
  }
  if (scheme == "tcp") {
    absl::string_view host, port;
    bool v6 = false;
    if (!rest.empty() && rest[0] == '[') {
      size_t close = rest.find(']');
      if (close == absl::string_view::npos) return Invalid(text, "IPv6 host is missing its closing ']'");
      host = rest.substr(1, close - 1);
      absl::string_view after = rest.substr(close + 1);
      if (after.empty() || after[0] != ':') return Invalid(text, "missing \":PORT\" after the IPv6 host");
      port = after.substr(1);
      v6 = true;
    } else {
      size_t last = rest.rfind(':');
      if (last == absl::string_view::npos) return Invalid(text, "missing \":PORT\"");
      host = rest.substr(0, last);
      port = rest.substr(last + 1);
      if (host.find(':') != absl::string_view::npos) {
        return Invalid(text, "an IPv6 host must be written in brackets, e.g. tcp:[::1]:4000");
      }
    }
    uint64_t p = 0;
    if (!ParsePort(port, 65535, p)) {
      return Invalid(text, absl::StrCat("port \"", port, "\" is not a number from 0 to 65535"));
    }
    std::string canonical = CanonicalIp(host, v6);
    if (canonical.empty()) {
      return Invalid(text, absl::StrCat("host \"", host, "\" is not an ", v6 ? "IPv6" : "IPv4",
                                        " literal (host names are not resolved)"));
    }
    return ChannelAddr(Transport::kTcp, std::move(canonical), p);
  }
  return Invalid(text, absl::StrCat("unknown scheme \"", scheme, "\"; expected tcp, unix or local"));
}

std::string ChannelAddr::ToString() const {
  switch (transport_) {
    case Transport::kTcp:
      return is_ipv6() ? absl::StrCat("tcp:[", host_, "]:", port_) : absl::StrCat("tcp:", host_, ":", port_);
    case Transport::kUnix: return absl::StrCat("unix:", host_);
    case Transport::kLocal: return absl::StrCat("local:", port_);
  }
  return "";
}

}  // namespace hostd::channel
