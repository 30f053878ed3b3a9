#include "base/unix_addr.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace hostd::base {

UnixAddr::UnixAddr() : sa_{}, len_(offsetof(sockaddr_un, sun_path)) { sa_.sun_family = AF_UNIX; }

absl::StatusOr<UnixAddr> UnixAddr::Create(absl::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("unix socket name is empty");
  if (name.size() > kMaxNameLen) {
    return absl::InvalidArgumentError(
        absl::StrFormat("unix socket name \"%s\" is %d bytes; at most %d fit", name, name.size(), kMaxNameLen));
  }
  if (name.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("unix socket name \"", absl::CHexEscape(name), "\" contains a NUL byte"));
  }
  UnixAddr out;
  std::memcpy(out.sa_.sun_path, name.data(), name.size());
  if (name[0] == '@') {
    out.sa_.sun_path[0] = '\0';  // abstract: the name is exactly the bytes given, no terminator
    out.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  } else {
    out.len_ = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size() + 1);
  }
  return out;
}

UnixAddr UnixAddr::Autobind() { return UnixAddr(); }

UnixAddr UnixAddr::FromKernel(const sockaddr_un& sa, socklen_t len) {
  UnixAddr out;
  out.sa_ = sa;
  out.len_ = std::min<socklen_t>(len, sizeof(sockaddr_un));
  return out;
}

std::string UnixAddr::name() const {
  size_t n = len_ > offsetof(sockaddr_un, sun_path) ? len_ - offsetof(sockaddr_un, sun_path) : 0;
  if (n == 0) return "";
  if (sa_.sun_path[0] == '\0') return absl::StrCat("@", absl::string_view(sa_.sun_path + 1, n - 1));
  return std::string(sa_.sun_path, strnlen(sa_.sun_path, n));
}

}  // namespace hostd::base
