// UniqueFd owns one file descriptor and closes it when destroyed.
//
// Move-only. Raw descriptors appear only at syscalls (`get()`), and ownership leaves
// explicitly (`release()`), e.g. when a socket object adopts the descriptor.
#ifndef HOSTD_BASE_UNIQUE_FD_H_
#define HOSTD_BASE_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace hostd::base {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  int release() { return std::exchange(fd_, -1); }

  // Closes the owned descriptor (if any) and takes `fd`.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace hostd::base

#endif  // HOSTD_BASE_UNIQUE_FD_H_
