#include "daemon/lifecycle_log.h"

#include <string.h>

#include "base/log.h"

namespace hostd::daemon {
namespace {

using spdlog::level::info;
using spdlog::level::warn;

// Milliseconds from `from` to `to`; -1 when `from` is unknown.
int64_t Ms(absl::Time from, absl::Time to) {
  return from == absl::InfinitePast() ? -1 : absl::ToInt64Milliseconds(to - from);
}

void WriteTransition(const HostEvent& e) {
  const proc::ProcStatus& s = e.status;
  switch (s.state) {
    case proc::ProcState::kReady:
      base::LogEvent(info, "proc ready",
                     {{"proc", e.name},
                      {"pid", s.pid},
                      {"incarnation", e.incarnation},
                      {"duration_ms", Ms(s.started_at, s.ready_at)}});
      return;
    case proc::ProcState::kStopped:
      base::LogEvent(info, "proc exited",
                     {{"proc", e.name},
                      {"pid", s.pid},
                      {"incarnation", e.incarnation},
                      {"exit_code", s.exit_code},
                      {"duration_ms", Ms(s.started_at, e.at)}});
      return;
    case proc::ProcState::kKilled:
      base::LogEvent(info, "proc killed",
                     {{"proc", e.name},
                      {"pid", s.pid},
                      {"incarnation", e.incarnation},
                      {"signal", s.signal},
                      {"signal_name", sigabbrev_np(s.signal) ? sigabbrev_np(s.signal) : "?"},
                      {"core_dumped", s.core_dumped},
                      {"reason", s.reason},
                      {"duration_ms", Ms(s.started_at, e.at)}});
      return;
    case proc::ProcState::kFailed:
      base::LogEvent(info, "proc failed", {{"proc", e.name}, {"incarnation", e.incarnation}, {"reason", s.reason}});
      return;
    default: return;  // Running and Stopping are steps, not events an operator acts on
  }
}

}  // namespace

LifecycleLog::LifecycleLog(Host& host)
    : host_(host), subscription_(host.Subscribe([](const HostEvent& e) { Write(e); }, /*snapshot=*/false)) {}

LifecycleLog::~LifecycleLog() { host_.Unsubscribe(subscription_); }

void LifecycleLog::Write(const HostEvent& e) {
  switch (e.kind) {
    case HostEvent::Kind::kTransition: WriteTransition(e); return;
    case HostEvent::Kind::kSpawnFailed:
      base::LogEvent(info, "proc spawn failed",
                     {{"proc", e.name}, {"incarnation", e.incarnation}, {"reason", e.detail}});
      return;
    case HostEvent::Kind::kRestarting:
      base::LogEvent(info, "proc restarting",
                     {{"proc", e.name},
                      {"incarnation", e.incarnation},
                      {"attempt", e.attempt},
                      {"delay_ms", absl::ToInt64Milliseconds(e.delay)},
                      {"reason", e.detail},
                      {"start_failed", e.start_failed}});
      return;
    case HostEvent::Kind::kRestarted:
      base::LogEvent(info, "proc restarted", {{"proc", e.name}, {"incarnation", e.incarnation}, {"pid", e.status.pid}});
      return;
    case HostEvent::Kind::kGaveUp:
      base::LogEvent(info, e.is_group ? "group gave up" : "proc gave up",
                     {{e.is_group ? "group" : "proc", e.name}, {"incarnation", e.incarnation}, {"reason", e.detail}});
      return;
    case HostEvent::Kind::kTerminated:
      base::LogEvent(info, "proc terminated",
                     {{"proc", e.name}, {"incarnation", e.incarnation}, {"status", e.status.ToString()}});
      return;
    case HostEvent::Kind::kRestartFailed:
      base::LogEvent(warn, "proc restart failed", {{"proc", e.name}, {"reason", e.detail}});
      return;
    default: return;  // kSpawned: the request was logged; kSnapshot, kRemoved: bookkeeping
  }
}

}  // namespace hostd::daemon
