// LogSpace: notices when the file system that holds the procs' logs is full.
//
// A proc writes its stdout and stderr straight into its log files (launcher.h), so
// when that file system is full its output is lost and neither the proc's exit nor
// anything hostd reads says so. LogSpace looks instead: statvfs of the log
// directory, every kInterval while procs run and at each proc's end. The file
// system counts as full below kFullBelow bytes free (to hostd's user: root may
// also use the blocks reserved for it). Becoming full is logged as an error once
// per episode, and having room again at info; an ended proc whose life overlapped
// an episode gets a note in its terminal status (ProcessHandle).
//
// Loop thread only: construct, call and destroy it on the manager's loop thread.
#ifndef HOSTD_MANAGER_LOG_SPACE_H_
#define HOSTD_MANAGER_LOG_SPACE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/steady_timer.hpp"

namespace hostd::manager {

class LogSpace {
 public:
  static constexpr absl::Duration kInterval = absl::Seconds(1);
  static constexpr uint64_t kFullBelow = 64 << 10;

  LogSpace(boost::asio::io_context& context, std::string dir);
  ~LogSpace();
  LogSpace(const LogSpace&) = delete;
  LogSpace& operator=(const LogSpace&) = delete;

  // A proc started: look every kInterval while any runs. Returns episodes().
  uint64_t ProcStarted();
  // A proc ended after starting when episodes() was `episodes_at_start`: whether
  // its output may have been lost (looks now, too).
  bool ProcEnded(uint64_t episodes_at_start);

  // Looks now; whether the file system is full.
  bool Check();
  // Times the file system was found full (an episode counts once, at its start).
  uint64_t episodes() const { return episodes_; }
  const std::string& dir() const { return dir_; }

 private:
  void Arm();

  const std::string dir_;
  boost::asio::steady_timer timer_;
  bool armed_ = false;
  int running_ = 0;
  bool full_ = false;
  uint64_t episodes_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_LOG_SPACE_H_
