#include "daemon/death_history.h"

#include <algorithm>
#include <utility>

namespace hostd::daemon {

DeathHistory::DeathHistory(Host& host, DeathHistoryOptions opts) : host_(host), opts_(std::move(opts)) {
  subscription_ = host_.Subscribe([this](const HostEvent& e) { Record(e); }, /*snapshot=*/false);
}

DeathHistory::~DeathHistory() { host_.Unsubscribe(subscription_); }

void DeathHistory::Record(const HostEvent& e) {
  bool ended = (e.kind == HostEvent::Kind::kTransition && e.status.terminal()) ||
               e.kind == HostEvent::Kind::kSpawnFailed;
  if (!ended || opts_.per_name == 0) return;
  ProcEnd end{.at = e.at, .status = e.status, .incarnation = e.incarnation};
  absl::MutexLock lock(&mu_);
  if (!ends_.contains(e.name) && ends_.size() >= opts_.max_names) {
    // The name whose newest end is the oldest makes room.
    auto oldest = std::min_element(ends_.begin(), ends_.end(), [](const auto& a, const auto& b) {
      return a.second.front().at < b.second.front().at;
    });
    ends_.erase(oldest);
  }
  std::deque<ProcEnd>& list = ends_[e.name];
  list.push_front(std::move(end));
  while (list.size() > opts_.per_name) list.pop_back();
}

std::vector<ProcEnd> DeathHistory::Of(const std::string& name) const {
  absl::MutexLock lock(&mu_);
  auto it = ends_.find(name);
  if (it == ends_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

}  // namespace hostd::daemon
