#include "daemon/host_metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <array>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "base/small_file.h"
#include "channel/message.h"
#include "prometheus/gauge.h"
#include "prometheus/text_serializer.h"

namespace hostd::daemon {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr const char* kLinkKindNames[Router::kLinkKinds] = {"proc", "remote"};

MetricFamily Family(const char* name, const char* help, MetricType type) {
  return MetricFamily{.name = name, .help = help, .type = type, .metric = {}};
}

void AddValue(MetricFamily& f, double v, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter) {
    m.counter.value = v;
  } else {
    m.gauge.value = v;
  }
  f.metric.push_back(std::move(m));
}

// From /proc/self/status: "VmRSS:  1234 kB", "Threads:  7".
int64_t StatusField(const std::string& status, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, key)) continue;
    line = absl::StripAsciiWhitespace(line);
    line = line.substr(0, line.find(' '));
    int64_t v = 0;
    return absl::SimpleAtoi(line, &v) ? v : -1;
  }
  return -1;
}

int64_t OpenDescriptors() {
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  int64_t n = 0;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the directory's own descriptor
}

std::string StateLabel(const ProcInfo& p) {
  if (p.restarting) return "restarting";
  return absl::AsciiStrToLower(proc::ProcStateName(p.status.state));
}

std::string ExitKind(const proc::ProcStatus& s) {
  switch (s.state) {
    case proc::ProcState::kStopped: return s.exit_code == 0 ? "exit_zero" : "exit_nonzero";
    case proc::ProcState::kKilled:
      if (s.reason == proc::kReasonOom) return "oom";
      return absl::StartsWith(s.reason, proc::kReasonLiveness) ? "liveness" : "killed";
    default: return "failed";
  }
}

}  // namespace

std::string SpawnFailureCause(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument: return "invalid_request";
    case absl::StatusCode::kAlreadyExists: return "name_taken";
    case absl::StatusCode::kNotFound: return "no_such_group";
    case absl::StatusCode::kDeadlineExceeded: return "not_ready_in_time";
    case absl::StatusCode::kResourceExhausted: return "busy";
    case absl::StatusCode::kUnavailable: return "shutting_down";
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kAborted: return "stopped_while_starting";
    case absl::StatusCode::kUnimplemented: return "unsupported";
    case absl::StatusCode::kFailedPrecondition:
      return absl::StartsWith(s.message(), "host is draining") ? "draining" : "start_failed";
    default: return "other";
  }
}

HostMetrics::HostMetrics(Host& host)
    : host_(host),
      registry_(std::make_shared<prometheus::Registry>()),
      spawns_(prometheus::BuildCounter()
                  .Name("hostd_spawns_total")
                  .Help("Spawn requests that succeeded: the proc is ready (restarts are hostd_restarts_total)")
                  .Register(*registry_)
                  .Add({})),
      spawn_failures_(prometheus::BuildCounter()
                          .Name("hostd_spawn_failures_total")
                          .Help("Spawn requests that failed, by cause")
                          .Register(*registry_)),
      spawn_to_ready_(prometheus::BuildHistogram()
                          .Name("hostd_spawn_to_ready_seconds")
                          .Help("From a spawn request reaching the host to the proc being ready (first starts)")
                          .Register(*registry_)
                          .Add({}, prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                                           2.5, 5, 10, 30})),
      exits_(prometheus::BuildCounter()
                 .Name("hostd_proc_exits_total")
                 .Help("Proc incarnations that ended, by kind: exit_zero, exit_nonzero, killed (by a signal), oom (killed "
                       "past its memory.max), liveness (killed for failing its liveness check), failed")
                 .Register(*registry_)),
      liveness_failures_(prometheus::BuildCounter()
                             .Name("hostd_liveness_failures_total")
                             .Help("Proc incarnations that failed their liveness check and ended for it")
                             .Register(*registry_)
                             .Add({})),
      restarts_(prometheus::BuildCounter()
                    .Name("hostd_restarts_total")
                    .Help("Restarts begun by supervision or requested (RestartProc)")
                    .Register(*registry_)
                    .Add({})),
      gave_up_(prometheus::BuildCounter()
                   .Name("hostd_gave_up_total")
                   .Help("Procs and groups that went past their restart intensity and stay ended, by what")
                   .Register(*registry_)) {
  // Create the label sets a dashboard expects to see at zero.
  for (const char* k : {"exit_zero", "exit_nonzero", "killed", "oom", "liveness", "failed"}) exits_.Add({{"kind", k}});
  for (const char* w : {"proc", "group"}) gave_up_.Add({{"what", w}});
  subscription_ = host_.Subscribe([this](const HostEvent& e) { OnEvent(e); }, /*snapshot=*/false);
}

HostMetrics::~HostMetrics() { host_.Unsubscribe(subscription_); }

void HostMetrics::SpawnDone(const absl::Status& s) {
  if (s.ok()) {
    spawns_.Increment();
  } else {
    spawn_failures_.Add({{"cause", SpawnFailureCause(s)}}).Increment();
  }
}

// Runs under the host's locks: counters and one small map, nothing that blocks.
void HostMetrics::OnEvent(const HostEvent& e) {
  switch (e.kind) {
    case HostEvent::Kind::kSpawned: {
      absl::MutexLock lock(&mu_);
      starting_[e.name] = e.at;
      return;
    }
    case HostEvent::Kind::kSpawnFailed: {
      absl::MutexLock lock(&mu_);
      starting_.erase(e.name);
      return;
    }
    case HostEvent::Kind::kTransition: {
      if (e.status.state == proc::ProcState::kReady) {
        absl::MutexLock lock(&mu_);
        auto it = starting_.find(e.name);
        if (it != starting_.end()) {
          spawn_to_ready_.Observe(absl::ToDoubleSeconds(e.at - it->second));
          starting_.erase(it);
        }
      } else if (e.status.terminal()) {
        exits_.Add({{"kind", ExitKind(e.status)}}).Increment();
        if (absl::StartsWith(e.status.reason, proc::kReasonLiveness) ||
            absl::StartsWith(e.status.note, proc::kReasonLiveness)) {
          liveness_failures_.Increment();
        }
        absl::MutexLock lock(&mu_);
        starting_.erase(e.name);
      }
      return;
    }
    case HostEvent::Kind::kRestarting: restarts_.Increment(); return;
    case HostEvent::Kind::kGaveUp: gave_up_.Add({{"what", e.is_group ? "group" : "proc"}}).Increment(); return;
    default: return;
  }
}

std::vector<MetricFamily> HostMetrics::CollectNow() const {
  std::vector<MetricFamily> out;

  MetricFamily procs =
      Family("hostd_procs", "Procs the host knows, by state (ended ones until their name is freed)", MetricType::Gauge);
  std::map<std::string, int> by_state;
  for (const char* s : {"starting", "running", "ready", "stopping", "stopped", "killed", "failed", "restarting"}) {
    by_state[s] = 0;
  }
  host_.Visit([&](const ProcView& p) { ++by_state[StateLabel(p.info())]; });
  for (const auto& [state, n] : by_state) AddValue(procs, n, {{"state", state}});
  out.push_back(std::move(procs));

  MetricFamily leases = Family("hostd_lease_expirations_total",
                               "Procs terminated because their client lease ran out", MetricType::Counter);
  AddValue(leases, static_cast<double>(host_.counters().lease_expirations));
  out.push_back(std::move(leases));

  MetricFamily draining =
      Family("hostd_draining", "1 while the host is draining (refusing new spawns)", MetricType::Gauge);
  AddValue(draining, host_.draining() ? 1 : 0);
  out.push_back(std::move(draining));

  // The message path: router counters, then the links' own stats.
  Router::Counters c = host_.router_counters();
  MetricFamily fwd = Family("hostd_forwarded_messages_total",
                            "Messages the host forwarded, by link kind (proc, remote)", MetricType::Counter);
  MetricFamily fwd_bytes =
      Family("hostd_forwarded_bytes_total", "Wire bytes of the forwarded messages, by link kind", MetricType::Counter);
  MetricFamily blocked =
      Family("hostd_link_blocked_sends_total",
             "Forwards that found the link's queue full and paused the sender (backpressure)", MetricType::Counter);
  std::array<Router::LinkTotals, Router::kLinkKinds> links = host_.link_stats();
  MetricFamily depth =
      Family("hostd_link_queue_depth", "Messages queued or awaiting their ack on open links, now", MetricType::Gauge);
  MetricFamily queue_bytes = Family("hostd_link_queue_bytes", "Bytes of those messages, now", MetricType::Gauge);
  MetricFamily open = Family("hostd_links_open", "Links the host has open, by kind", MetricType::Gauge);
  MetricFamily retransmits =
      Family("hostd_link_retransmits_total", "Messages written again after a reconnect", MetricType::Counter);
  MetricFamily queue_time = Family("hostd_link_queue_time_seconds",
                                   "Time from queueing to acknowledgement of delivered messages", MetricType::Summary);
  MetricFamily queue_max =
      Family("hostd_link_queue_time_max_seconds", "Longest queue-to-ack time seen", MetricType::Gauge);
  for (size_t k = 0; k < Router::kLinkKinds; ++k) {
    std::vector<ClientMetric::Label> l = {{"link", kLinkKindNames[k]}};
    const channel::SenderStats& st = links[k].stats;
    AddValue(fwd, static_cast<double>(c.forwarded_by_kind[k]), l);
    AddValue(fwd_bytes, static_cast<double>(c.forwarded_bytes_by_kind[k]), l);
    AddValue(blocked, static_cast<double>(c.blocked_by_kind[k] + st.sends_waited), l);
    AddValue(depth, static_cast<double>(st.queue_depth), l);
    AddValue(queue_bytes, static_cast<double>(st.queue_bytes), l);
    AddValue(open, static_cast<double>(links[k].open_links), l);
    AddValue(retransmits, static_cast<double>(st.retransmits), l);
    AddValue(queue_max, absl::ToDoubleSeconds(st.queue_time_max), l);
    ClientMetric m;
    m.label = l;
    m.summary.sample_count = st.messages_acked;
    m.summary.sample_sum = absl::ToDoubleSeconds(st.queue_time_total);
    queue_time.metric.push_back(std::move(m));
  }
  for (MetricFamily* f :
       {&fwd, &fwd_bytes, &blocked, &depth, &queue_bytes, &open, &retransmits, &queue_time, &queue_max}) {
    out.push_back(std::move(*f));
  }

  MetricFamily returned = Family("hostd_returned_messages_total",
                                 "Undeliverable messages sent back to their sender, by reason", MetricType::Counter);
  for (size_t r = 1; r < Router::kReturnReasons; ++r) {
    AddValue(returned, static_cast<double>(c.returned_by_reason[r]),
             {{"reason",
               absl::StrReplaceAll(channel::ReturnReasonName(static_cast<channel::ReturnReason>(r)), {{" ", "_"}})}});
  }
  out.push_back(std::move(returned));
  MetricFamily dropped = Family("hostd_dropped_messages_total",
                                "Undeliverable messages that could not be returned either", MetricType::Counter);
  AddValue(dropped, static_cast<double>(c.dropped));
  out.push_back(std::move(dropped));

  // hostd itself.
  absl::StatusOr<std::string> status = base::ReadSmallFile("/proc/self/status");
  MetricFamily rss = Family("hostd_resident_memory_bytes", "hostd's resident set size", MetricType::Gauge);
  AddValue(rss, status.ok() ? static_cast<double>(StatusField(*status, "VmRSS:")) * 1024 : -1);
  MetricFamily threads = Family("hostd_threads", "hostd's threads", MetricType::Gauge);
  AddValue(threads, status.ok() ? static_cast<double>(StatusField(*status, "Threads:")) : -1);
  MetricFamily fds = Family("hostd_open_fds", "hostd's open file descriptors", MetricType::Gauge);
  AddValue(fds, static_cast<double>(OpenDescriptors()));
  out.push_back(std::move(rss));
  out.push_back(std::move(threads));
  out.push_back(std::move(fds));
  return out;
}

std::string HostMetrics::Scrape() const {
  std::vector<MetricFamily> families = registry_->Collect();
  std::vector<MetricFamily> now = CollectNow();
  families.insert(families.end(), std::make_move_iterator(now.begin()), std::make_move_iterator(now.end()));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace hostd::daemon
