// Liveness: whether a ready proc is still making progress, apart from whether it
// became ready. A proc whose check fails is killed by its manager (after an
// optional "dump your stacks" signal and a grace), and its terminal status says
// so (proc::kReasonLiveness); a restart policy then treats it as any other kill.
//
// Two kinds:
//   - heartbeat: the proc's runtime sends heartbeats (ProcRuntime::Heartbeat, the
//     Python runtime's heartbeat()) which the host hands to the proc's handle
//     (ProcHandle::Heartbeat). The runtime never beats by itself: the application
//     calls it from the code whose progress matters, since a beat from a thread of
//     the runtime's own would prove only that the thread runs. Each `period`
//     without a beat is a miss.
//   - exec: `command` runs every `period` (as the proc's user, in its working
//     directory, with its environment, in a process group of its own, its output
//     discarded); an exit other than 0, a launch failure or running past `timeout`
//     (the probe's group is then SIGKILLed) is a miss. Probes run one at a time:
//     the next starts `period` after the previous one started, or when it ends if
//     it ran longer.
// `failure_threshold` misses in a row fail the proc; a beat or a passing probe
// starts the count afresh. The first period starts `initial_delay` after the proc
// became ready (or was re-adopted).
#ifndef HOSTD_MANAGER_LIVENESS_H_
#define HOSTD_MANAGER_LIVENESS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "boost/asio/posix/stream_descriptor.hpp"
#include "boost/asio/steady_timer.hpp"
#include "channel/event_loop.h"
#include "manager/launcher.h"

namespace hostd::manager {

enum class LivenessKind : uint8_t { kNone = 0, kHeartbeat = 1, kExec = 2 };

struct LivenessSpec {
  LivenessKind kind = LivenessKind::kNone;
  std::vector<std::string> command;  // kExec: argv, command[0] a path or a name looked up in the proc's PATH
  absl::Duration period = absl::Seconds(10);
  absl::Duration timeout = absl::ZeroDuration();  // kExec: each probe's; zero: the period. kHeartbeat: must be zero
  int failure_threshold = 3;                      // misses in a row that fail the proc
  absl::Duration initial_delay = absl::ZeroDuration();
  int dump_signal = 0;  // sent to the proc's leader first (e.g. SIGQUIT); 0: none
  absl::Duration dump_grace = absl::Seconds(2);  // between the dump signal and SIGKILL

  bool enabled() const { return kind != LivenessKind::kNone; }
  // "heartbeat every 200ms, 3 misses" or "exec \"/bin/check\" every 1s, timeout 1s, 3 misses"; dump signal included.
  std::string ToString() const;
  friend bool operator==(const LivenessSpec&, const LivenessSpec&) = default;
};

// Bounds, each checked with InvalidArgument naming `prefix` + the field:
inline constexpr absl::Duration kMinLivenessPeriod = absl::Milliseconds(10);
inline constexpr absl::Duration kMaxLivenessPeriod = absl::Hours(1);
inline constexpr int kMaxLivenessFailures = 100;
inline constexpr absl::Duration kMaxLivenessInitialDelay = absl::Hours(24);
inline constexpr absl::Duration kMaxLivenessDumpGrace = absl::Seconds(60);
inline constexpr size_t kMaxLivenessArgs = 256;
inline constexpr size_t kMaxLivenessCommandBytes = 64 * 1024;
// A disabled spec is valid whatever its other fields hold.
absl::Status ValidateLiveness(const LivenessSpec& spec, absl::string_view prefix);

// The spec as one string and back, for the durable proc table (fields separated
// by NUL, so a command's arguments may hold any other byte). Decoding "" gives a
// disabled spec; anything malformed is InvalidArgument.
std::string EncodeLiveness(const LivenessSpec& spec);
absl::StatusOr<LivenessSpec> DecodeLiveness(absl::string_view encoded);

// One proc's running check, on its manager's loop. Start, Stop and the failure
// callback are loop-thread only; Beat is any thread.
class LivenessCheck : public std::enable_shared_from_this<LivenessCheck> {
 public:
  // Called once, on the loop, with why the proc failed its check; the check has
  // stopped by then.
  using Failed = std::function<void(std::string why)>;

  // Starts checking (loop thread). `probe` (kExec) is what each probe launches,
  // its path already resolved and authorised.
  static std::shared_ptr<LivenessCheck> Start(channel::EventLoop& loop, LivenessSpec spec, LaunchRequest probe,
                                              Failed failed);
  ~LivenessCheck();

  void Beat() { beats_.fetch_add(1, std::memory_order_relaxed); }
  // Loop thread: no more checks; a probe still running is SIGKILLed and reaped.
  void Stop();
  uint64_t beats() const { return beats_.load(std::memory_order_relaxed); }

 private:
  LivenessCheck(channel::EventLoop& loop, LivenessSpec spec, LaunchRequest probe, Failed failed);
  void Schedule(absl::Duration after);
  void Tick();
  void RunProbe();
  void ProbeEnded(bool timed_out);
  // A miss (`why`) or a pass (empty): counts, and fails the proc at the threshold.
  void Result(std::string why);
  void KillProbe();

  channel::EventLoop& loop_;
  const LivenessSpec spec_;
  const LaunchRequest probe_;
  Failed failed_;
  std::atomic<uint64_t> beats_{0};
  // Loop thread only.
  bool stopped_ = false;
  uint64_t seen_beats_ = 0;
  int misses_ = 0;
  boost::asio::steady_timer timer_;
  boost::asio::steady_timer probe_timer_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> probe_exit_;  // the running probe's pidfd
  pid_t probe_pid_ = 0;
  uint64_t probe_serial_ = 0;  // of the probe running now
  absl::Time probe_started_;
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_LIVENESS_H_
