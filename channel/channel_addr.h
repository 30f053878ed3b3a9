// ChannelAddr: where a channel listens or dials, in a text form that round-trips.
//
//   tcp:127.0.0.1:4000   tcp:[::1]:4000      IPv4 or bracketed IPv6 literal, port 0-65535
//   tcp:host-3.example.net:4000               a DNS name (dial only; resolved when dialled)
//   tls:10.0.0.7:4000    tls:host-3:4000      the same over TLS (channel/tls.h)
//   unix:/run/hostd/fe.sock                   absolute socket path, at most 107 bytes
//   unix:@hostd-fe                            Linux abstract socket name
//   local:7                                   in-process transport, id > 0
//
// "Any" forms bind to something free and the listener reports the real address:
// `tcp:<ip>:0` (kernel-chosen port), `unix:` (kernel-chosen abstract name) and
// `local:0` (next free id). `Format(Parse(s)) == s` for every canonical `s`.
//
// A DNS name is kept exactly as written, and only one spelling is accepted (lower
// case letters, digits, '-' and '.'; labels of 1-63 bytes; at most 253 bytes; not
// all digits and dots, which must be an IPv4 literal): hosts compare addresses as
// text, byte for byte, so two spellings of one host would be two hosts. Names are
// resolved when dialled, never when parsed, and a listener binds IP literals only.
// A value type; thread-compatible.
#ifndef HOSTD_CHANNEL_CHANNEL_ADDR_H_
#define HOSTD_CHANNEL_CHANNEL_ADDR_H_

#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hostd::channel {

enum class Transport { kTcp, kTls, kUnix, kLocal };

absl::string_view TransportName(Transport t);

class ChannelAddr {
 public:
  // Longest unix socket path or abstract name (sun_path is 108 bytes with its NUL).
  static constexpr size_t kMaxUnixPathLen = 107;

  // Parses the text form above. Errors are InvalidArgument and quote the input.
  static absl::StatusOr<ChannelAddr> Parse(absl::string_view text);

  // `host` is an IPv4 or IPv6 literal without brackets, or a DNS name as above.
  static absl::StatusOr<ChannelAddr> Tcp(absl::string_view host, uint16_t port);
  static absl::StatusOr<ChannelAddr> Tls(absl::string_view host, uint16_t port);
  // An absolute path, or "@name" for an abstract name, or "" for any.
  static absl::StatusOr<ChannelAddr> Unix(absl::string_view path);
  static ChannelAddr Local(uint64_t id);

  Transport transport() const { return transport_; }
  // kTcp, kTls: the IP literal (no brackets) or DNS name. kUnix: the path, "@name", or "" (any).
  const std::string& host() const { return host_; }
  // kTcp, kTls: the port. kLocal: the id.
  uint64_t port() const { return port_; }

  // TCP underneath: tcp: or tls:.
  bool is_inet() const { return transport_ == Transport::kTcp || transport_ == Transport::kTls; }
  bool is_ipv6() const { return is_inet() && host_.find(':') != std::string::npos; }
  // An inet address whose host is an IP literal (not a DNS name).
  bool is_ip() const;
  // 127.0.0.0/8, ::1, ::ffff:127.x.y.z or the name "localhost".
  bool is_loopback() const;
  // 0.0.0.0 or :: (bind to every interface).
  bool is_unspecified() const;
  bool is_abstract() const { return transport_ == Transport::kUnix && !host_.empty() && host_[0] == '@'; }
  // True when binding must pick the concrete address (port 0, "unix:", "local:0").
  bool is_any() const;

  std::string ToString() const;

  friend bool operator==(const ChannelAddr&, const ChannelAddr&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const ChannelAddr& a) {
    return H::combine(std::move(h), a.transport_, a.host_, a.port_);
  }
  friend std::ostream& operator<<(std::ostream& os, const ChannelAddr& a) { return os << a.ToString(); }

 private:
  ChannelAddr(Transport t, std::string host, uint64_t port) : transport_(t), host_(std::move(host)), port_(port) {}

  Transport transport_ = Transport::kLocal;
  std::string host_;
  uint64_t port_ = 0;
};

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_CHANNEL_ADDR_H_
