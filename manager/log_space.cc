#include "manager/log_space.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"

namespace hostd::manager {

LogSpace::LogSpace(boost::asio::io_context& context, std::string dir)
    : dir_(std::move(dir)), timer_(context) {}

LogSpace::~LogSpace() { timer_.cancel(); }

uint64_t LogSpace::ProcStarted() {
  ++running_;
  Arm();
  return episodes_;
}

bool LogSpace::ProcEnded(uint64_t episodes_at_start) {
  if (running_ > 0) --running_;
  return Check() || episodes_ != episodes_at_start;
}

bool LogSpace::Check() {
  struct statvfs st {};
  if (::statvfs(dir_.c_str(), &st) != 0) return full_;  // cannot tell: as before
  const uint64_t blocks = ::geteuid() == 0 ? st.f_bfree : st.f_bavail;
  const uint64_t free_bytes = blocks * st.f_frsize;
  const bool full = free_bytes < kFullBelow;
  if (full && !full_) {
    ++episodes_;
    base::Log().error(
        "the file system of {} is full ({} bytes free): procs' output written there is being lost until space is "
        "freed",
        dir_, free_bytes);
  } else if (!full && full_) {
    base::Log().info("the file system of {} has room again ({} bytes free)", dir_, free_bytes);
  }
  full_ = full;
  return full_;
}

void LogSpace::Arm() {
  if (armed_) return;
  armed_ = true;
  timer_.expires_after(absl::ToChronoNanoseconds(kInterval));
  timer_.async_wait([this, alive = std::weak_ptr<bool>(alive_)](boost::system::error_code ec) {
    if (ec || alive.expired()) return;
    armed_ = false;
    Check();
    if (running_ > 0) Arm();
  });
}

}  // namespace hostd::manager
