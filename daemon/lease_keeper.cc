#include "daemon/lease_keeper.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "base/log.h"

namespace hostd::daemon {
namespace {

// Expired procs terminated at once; more wait their turn. The queue holds at most
// one entry per proc, and a host's procs are bounded (--max-procs).
constexpr int kTerminationThreads = 4;
constexpr size_t kMaxQueuedTerminations = 1 << 20;

}  // namespace

LeaseKeeper::LeaseKeeper(ProcTable& table, absl::Duration grace)
    : table_(table), grace_(grace), terminations_(kTerminationThreads, kMaxQueuedTerminations) {
  thread_ = std::thread([this] { Run(); });
}

LeaseKeeper::~LeaseKeeper() { Shutdown(); }

void LeaseKeeper::Shutdown() {
  stopping_.store(true);
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<ProcTable::Renewal> LeaseKeeper::Renew(const std::string& owner) {
  ProcTable::Renewal r = table_.RenewLease(owner, absl::Now());
  if (r.procs == 0) {
    return absl::NotFoundError(absl::StrCat("lease owner \"", owner, "\" holds no live proc on this host"));
  }
  return r;
}

uint64_t LeaseKeeper::Hold(const std::string& owner) {
  table_.RenewLease(owner, absl::Now());
  absl::MutexLock lock(&mu_);
  uint64_t id = next_hold_++;
  holds_[id] = owner;
  woken_ = true;
  return id;
}

void LeaseKeeper::Release(uint64_t id) {
  std::string owner;
  {
    absl::MutexLock lock(&mu_);
    auto it = holds_.find(id);
    if (it == holds_.end()) return;
    owner = std::move(it->second);
    holds_.erase(it);
  }
  // The owner was there until now: its procs get one more TTL.
  table_.RenewLease(owner, absl::Now());
}

void LeaseKeeper::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void LeaseKeeper::Run() {
  while (true) {
    std::vector<std::string> held;
    {
      absl::MutexLock lock(&mu_);
      for (const auto& [id, owner] : holds_) held.push_back(owner);
    }
    // A held owner's deadlines move one TTL on each time the earliest comes.
    for (const std::string& owner : held) table_.RenewLease(owner, absl::Now());
    for (auto& [name, lease] : table_.ExpireLeases(absl::Now())) {
      expirations_.fetch_add(1, std::memory_order_relaxed);
      base::LogEvent(spdlog::level::info, "lease expired",
                     {{"proc", name},
                      {"owner", lease.owner},
                      {"ttl_ms", absl::ToInt64Milliseconds(lease.ttl)},
                      {"grace_ms", absl::ToInt64Milliseconds(grace_)}});
      absl::Status queued = terminations_.Submit([this, name = name] {
        if (stopping_.load()) return;
        absl::StatusOr<proc::ProcStatus> s = table_.Stop(name, grace_, kReasonLeaseExpired, /*kill=*/false);
        if (!s.ok()) base::Log().warn("proc={} lease expired, but it could not be terminated: {}", name, s.status().ToString());
      });
      if (!queued.ok()) base::Log().error("proc={} lease expired, but its termination was not queued: {}", name, queued.ToString());
    }
    absl::Time next = table_.NextLeaseExpiry();
    absl::MutexLock lock(&mu_);
    auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return woken_ || stop_; };
    mu_.AwaitWithDeadline(absl::Condition(&woken), next);
    if (stop_) return;
    woken_ = false;
  }
}

}  // namespace hostd::daemon
