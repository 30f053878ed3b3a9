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

// What is wrong with a DNS name, or "" if nothing (see the header for the rule).
std::string HostNameProblem(absl::string_view name) {
  if (name.empty()) return "host is empty";
  if (name.size() > 253) return "a host name is at most 253 bytes";
  bool only_digits_and_dots = true;
  size_t label = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    char c = i < name.size() ? name[i] : '.';
    if (c == '.') {
      if (label == 0) return "a host name has an empty label";
      if (label > 63) return "a host name label is at most 63 bytes";
      if (name[i - 1] == '-' || name[i - label] == '-') return "a host name label cannot start or end with '-'";
      label = 0;
      continue;
    }
    ++label;
    if (c >= 'A' && c <= 'Z') {
      return "host names are written in lower case (addresses are compared byte for byte)";
    }
    if (!(c >= 'a' && c <= 'z') && !std::isdigit(static_cast<unsigned char>(c)) && c != '-') {
      return "a host name holds only letters, digits, '-' and '.'";
    }
    if (!std::isdigit(static_cast<unsigned char>(c))) only_digits_and_dots = false;
  }
  if (only_digits_and_dots) return "is not an IPv4 literal";
  return "";
}

// The canonical host of an inet address (IP literal or name), or why it is none.
absl::StatusOr<std::string> InetHost(absl::string_view host, bool bracketed) {
  if (bracketed) {
    std::string ip = CanonicalIp(host, true);
    if (ip.empty()) return absl::InvalidArgumentError(absl::StrCat("host \"", host, "\" is not an IPv6 literal"));
    return ip;
  }
  if (std::string ip = CanonicalIp(host, false); !ip.empty()) return ip;
  if (std::string problem = HostNameProblem(host); !problem.empty()) {
    bool ipv4_like = problem == "is not an IPv4 literal";
    return absl::InvalidArgumentError(absl::StrCat("host \"", host, ipv4_like ? "\" " : "\": ", problem));
  }
  return std::string(host);
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
    case Transport::kTls: return "tls";
    case Transport::kUnix: return "unix";
    case Transport::kLocal: return "local";
  }
  return "?";
}

bool ChannelAddr::is_ip() const {
  if (!is_inet()) return false;
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(is_ipv6() ? AF_INET6 : AF_INET, host_.c_str(), buf) == 1;
}

bool ChannelAddr::is_loopback() const {
  if (!is_inet()) return false;
  if (host_ == "localhost") return true;
  if (!is_ip()) return false;
  if (is_ipv6()) return host_ == "::1" || host_.rfind("::ffff:127.", 0) == 0;
  return host_.rfind("127.", 0) == 0;
}

bool ChannelAddr::is_unspecified() const { return is_inet() && (host_ == "0.0.0.0" || host_ == "::"); }

bool ChannelAddr::is_any() const {
  switch (transport_) {
    case Transport::kTcp:
    case Transport::kTls: return port_ == 0;
    case Transport::kUnix: return host_.empty();
    case Transport::kLocal: return port_ == 0;
  }
  return false;
}

absl::StatusOr<ChannelAddr> ChannelAddr::Tcp(absl::string_view host, uint16_t port) {
  bool v6 = host.find(':') != absl::string_view::npos;
  return Parse(v6 ? absl::StrCat("tcp:[", host, "]:", port) : absl::StrCat("tcp:", host, ":", port));
}

absl::StatusOr<ChannelAddr> ChannelAddr::Tls(absl::string_view host, uint16_t port) {
  bool v6 = host.find(':') != absl::string_view::npos;
  return Parse(v6 ? absl::StrCat("tls:[", host, "]:", port) : absl::StrCat("tls:", host, ":", port));
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
    return Invalid(text, "missing scheme; expected tcp:, tls:, unix: or local:");
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
  if (scheme == "tcp" || scheme == "tls") {
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
    absl::StatusOr<std::string> canonical = InetHost(host, v6);
    if (!canonical.ok()) return Invalid(text, canonical.status().message());
    return ChannelAddr(scheme == "tls" ? Transport::kTls : Transport::kTcp, *std::move(canonical), p);
  }
  return Invalid(text, absl::StrCat("unknown scheme \"", scheme, "\"; expected tcp, tls, unix or local"));
}

std::string ChannelAddr::ToString() const {
  switch (transport_) {
    case Transport::kTcp:
    case Transport::kTls: {
      absl::string_view scheme = TransportName(transport_);
      return is_ipv6() ? absl::StrCat(scheme, ":[", host_, "]:", port_) : absl::StrCat(scheme, ":", host_, ":", port_);
    }
    case Transport::kUnix: return absl::StrCat("unix:", host_);
    case Transport::kLocal: return absl::StrCat("local:", port_);
  }
  return "";
}

}  // namespace hostd::channel
