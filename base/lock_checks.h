// Lock-order checking of absl::Mutex, for the binaries that do hostd's work.
#ifndef HOSTD_BASE_LOCK_CHECKS_H_
#define HOSTD_BASE_LOCK_CHECKS_H_

#include "absl/synchronization/mutex.h"

namespace hostd::base {

// An absl built without NDEBUG (Debian's is) records every lock taken in one
// process-wide graph, to report lock-order cycles: each Lock() then costs 30-60 ns
// more and takes that graph's own global lock, which every thread contends for.
// Tests keep the check (a cycle is a bug to catch there); hostd and the
// benchmarks, which measure what hostd does, turn it off. Call it first in main,
// before any thread starts. The proc runtime, a library in the user's program,
// leaves the choice to that program.
inline void SkipLockOrderChecks() { absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore); }

}  // namespace hostd::base

#endif  // HOSTD_BASE_LOCK_CHECKS_H_
