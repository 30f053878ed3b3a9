// HostMetrics: what a Host has done and holds now, as Prometheus metrics.
//
//   HostMetrics metrics(host);                 // subscribes to the host's events
//   GrpcMetrics grpc_metrics(metrics.registry());
//   ... metrics.SpawnDone(status) for each spawn request's outcome ...
//   std::string text = metrics.Scrape();       // Prometheus text format
//
// Two sources, neither of which adds a lock or an allocation to the message path:
//   - Lifecycle counters and the spawn-to-ready histogram follow the host's events
//     (prometheus-cpp counters: atomics).
//   - At each scrape: procs by state (Host::List), the router's counters (relaxed
//     atomic loads), the links' stats (read on the host's loop thread, one RunSync
//     per scrape, from the counters each link keeps anyway) and hostd's own
//     resident size, descriptors and threads (/proc/self).
// The metric names and meanings are listed in README.md ("Operations").
//
// Thread-safe. The Host must outlive it; it unsubscribes in its destructor.
#ifndef HOSTD_DAEMON_HOST_METRICS_H_
#define HOSTD_DAEMON_HOST_METRICS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "daemon/host.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"

namespace hostd::daemon {

// The `cause` label of hostd_spawn_failures_total for a spawn's error.
std::string SpawnFailureCause(const absl::Status& s);

class HostMetrics {
 public:
  explicit HostMetrics(Host& host);
  ~HostMetrics();
  HostMetrics(const HostMetrics&) = delete;
  HostMetrics& operator=(const HostMetrics&) = delete;

  // One spawn request's outcome (requests refused before they reached the host's
  // table, by validation or a drain, are counted too).
  void SpawnDone(const absl::Status& s);

  // Where other parts of hostd register their own metrics (GrpcMetrics).
  prometheus::Registry& registry() { return *registry_; }

  // Every metric, in the Prometheus text exposition format (version 0.0.4).
  std::string Scrape() const;

 private:
  void OnEvent(const HostEvent& e);
  std::vector<prometheus::MetricFamily> CollectNow() const;

  Host& host_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter& spawns_;
  prometheus::Family<prometheus::Counter>& spawn_failures_;
  prometheus::Histogram& spawn_to_ready_;
  prometheus::Family<prometheus::Counter>& exits_;
  prometheus::Counter& liveness_failures_;
  prometheus::Counter& restarts_;
  prometheus::Family<prometheus::Counter>& gave_up_;

  absl::Mutex mu_;
  // Procs whose first start is under way: when it was requested.
  absl::flat_hash_map<std::string, absl::Time> starting_ ABSL_GUARDED_BY(mu_);
  uint64_t subscription_ = 0;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_HOST_METRICS_H_
