// UnixAddr: a unix socket address ready for bind, connect and sendto.
//
// The one place hostd turns a name into a sockaddr_un and back. A name is either
// a filesystem path ("/run/hostd/fe.sock") or a Linux abstract name written with a
// leading '@' ("@hostd-fe"; the kernel sees a leading NUL and no terminator).
//
//   HOSTD_ASSIGN_OR_RETURN(base::UnixAddr addr, base::UnixAddr::Create(path));
//   ::connect(fd.get(), addr.get(), addr.size());
//
// Create refuses, as InvalidArgument naming the name: the empty name, a name
// longer than kMaxNameLen bytes (sun_path holds 108 bytes with the terminating NUL
// of a path), and a name with a NUL byte. It does not require paths to be
// absolute; callers with stricter rules (ChannelAddr) check them first. A value
// type; thread-compatible.
#ifndef HOSTD_BASE_UNIX_ADDR_H_
#define HOSTD_BASE_UNIX_ADDR_H_

#include <sys/socket.h>
#include <sys/un.h>

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hostd::base {

class UnixAddr {
 public:
  // Longest path or '@'-prefixed abstract name.
  static constexpr size_t kMaxNameLen = sizeof(sockaddr_un::sun_path) - 1;

  static absl::StatusOr<UnixAddr> Create(absl::string_view name);
  // The address that makes bind(2) pick a free abstract name (Linux autobind).
  static UnixAddr Autobind();
  // The address getsockname(2) or accept(2) filled in, `len` bytes of it.
  static UnixAddr FromKernel(const sockaddr_un& sa, socklen_t len);

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&sa_); }
  socklen_t size() const { return len_; }
  // The name in Create's form: the path, "@name", or "" for an unnamed socket.
  std::string name() const;

 private:
  UnixAddr();

  sockaddr_un sa_;
  socklen_t len_;
};

}  // namespace hostd::base

#endif  // HOSTD_BASE_UNIX_ADDR_H_
