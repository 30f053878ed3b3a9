#include "hostctl/output.h"

#include <string.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/util/json_util.h"

namespace hostd::hostctl {

void PrintJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  std::cout << out << "\n";
}

void PrintJsonObject(const nlohmann::json& object) {
  // Invalid UTF-8 (a proc's raw output) is replaced, not thrown on.
  std::cout << object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
}

std::string StateName(v1::ProcState s) {
  std::string n = v1::ProcState_Name(s);
  return n.size() > 11 ? absl::AsciiStrToLower(n.substr(11)) : n;  // PROC_STATE_
}

std::string Age(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0) return "-";
  absl::Duration d = absl::Now() - absl::FromUnixSeconds(t.seconds());
  return absl::FormatDuration(absl::Trunc(d, absl::Seconds(1)));
}

bool NaturalLess(absl::string_view a, absl::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (absl::ascii_isdigit(a[i]) && absl::ascii_isdigit(b[j])) {
      size_t ei = i, ej = j;
      while (ei < a.size() && absl::ascii_isdigit(a[ei])) ++ei;
      while (ej < b.size() && absl::ascii_isdigit(b[ej])) ++ej;
      absl::string_view na = a.substr(i, ei - i);
      absl::string_view nb = b.substr(j, ej - j);
      while (na.size() > 1 && na[0] == '0') na.remove_prefix(1);
      while (nb.size() > 1 && nb[0] == '0') nb.remove_prefix(1);
      if (na.size() != nb.size()) return na.size() < nb.size();
      if (na != nb) return na < nb;
      i = ei;
      j = ej;
      continue;
    }
    if (a[i] != b[j]) return a[i] < b[j];
    ++i;
    ++j;
  }
  return a.size() - i < b.size() - j;
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      absl::StrAppend(&line, row[c]);
      if (c + 1 < row.size()) line.append(width[c] - row[c].size() + 2, ' ');
    }
    printf("%s\n", line.c_str());
  }
}

std::string LeaseSummary(const v1::Proc& p) {
  if (!p.has_lease()) return "-";
  const v1::Lease& l = p.lease();
  if (l.expired()) return absl::StrCat(l.owner(), " (expired)");
  absl::Time at = absl::FromUnixSeconds(l.expires_at().seconds()) + absl::Nanoseconds(l.expires_at().nanos());
  absl::Duration left = std::max(absl::ZeroDuration(), absl::Trunc(at - absl::Now(), absl::Seconds(1)));
  return absl::StrCat(l.owner(), " (", absl::FormatDuration(left), " left)");
}

void PrintProcTable(const google::protobuf::RepeatedPtrField<v1::Proc>& procs) {
  std::vector<const v1::Proc*> sorted;
  for (const v1::Proc& p : procs) sorted.push_back(&p);
  std::sort(sorted.begin(), sorted.end(),
            [](const v1::Proc* a, const v1::Proc* b) { return NaturalLess(a->name(), b->name()); });
  std::vector<std::vector<std::string>> rows = {{"NAME", "STATE", "PID", "RESTARTS", "AGE", "LEASE", "STATUS"}};
  for (const v1::Proc* p : sorted) {
    rows.push_back({p->name(), StateName(p->status().state()), absl::StrCat(p->status().pid()),
                    absl::StrCat(p->incarnation() > 0 ? p->incarnation() - 1 : 0), Age(p->created_at()),
                    LeaseSummary(*p), p->status().display()});
  }
  PrintTable(rows);
}

std::string LocalTime(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  absl::Time at = absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3S%Ez", at, absl::LocalTimeZone());
}

namespace {

std::string Seconds(const google::protobuf::Duration& d) {
  return absl::FormatDuration(absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos()));
}

// "heartbeat every 200ms, 3 misses, SIGQUIT then 1s before SIGKILL", or for an exec probe its command and timeout.
std::string LivenessText(const v1::LivenessCheck& l) {
  std::string out = l.has_exec() ? absl::StrCat("exec \"", absl::StrJoin(l.exec().command(), " "), "\" every ",
                                                Seconds(l.period()), ", timeout ", Seconds(l.timeout()))
                                 : absl::StrCat("heartbeat every ", Seconds(l.period()));
  absl::StrAppend(&out, ", ", l.failure_threshold(), l.failure_threshold() == 1 ? " miss" : " misses");
  if (l.initial_delay().seconds() != 0 || l.initial_delay().nanos() != 0) {
    absl::StrAppend(&out, ", after ", Seconds(l.initial_delay()));
  }
  if (l.dump_signal() != 0) {
    const char* abbrev = ::sigabbrev_np(l.dump_signal());
    absl::StrAppend(&out, ", ", abbrev != nullptr ? absl::StrCat("SIG", abbrev) : absl::StrCat(l.dump_signal()),
                    " then ", Seconds(l.dump_grace()), " before SIGKILL");
  }
  return out;
}

}  // namespace

void PrintProc(const v1::Proc& p) {
  printf("name:     %s\nproc id:  %s\nstatus:   %s\npid:      %d\n", p.name().c_str(), p.proc_id().c_str(),
         p.status().display().c_str(), p.status().pid());
  if (!p.status().addr().empty()) printf("addr:     %s\n", p.status().addr().c_str());
  printf("command:  %s %s\n", p.program().c_str(), absl::StrJoin(p.args(), " ").c_str());
  for (const auto& [k, v] : p.labels()) printf("label:    %s=%s\n", k.c_str(), v.c_str());
  if (p.has_lease()) {
    printf("lease:    %s, ttl %s, expires %s\n", LeaseSummary(p).c_str(),
           absl::FormatDuration(absl::Seconds(p.lease().ttl().seconds())).c_str(),
           LocalTime(p.lease().expires_at()).c_str());
  }
  if (p.has_limits()) {
    std::vector<std::string> limits;
    if (p.limits().memory_max_bytes() > 0) limits.push_back(absl::StrCat("memory.max ", p.limits().memory_max_bytes()));
    if (p.limits().cpus() > 0) limits.push_back(absl::StrCat("cpus ", p.limits().cpus()));
    if (p.limits().pids_max() > 0) limits.push_back(absl::StrCat("pids.max ", p.limits().pids_max()));
    if (!p.limits().cpuset_cpus().empty()) limits.push_back(absl::StrCat("cpuset.cpus ", p.limits().cpuset_cpus()));
    printf("limits:   %s\n", absl::StrJoin(limits, ", ").c_str());
  }
  if (p.has_liveness()) printf("liveness: %s\n", LivenessText(p.liveness()).c_str());
  if (!p.status().note().empty()) printf("note:     %s\n", p.status().note().c_str());
  if (!p.status().stderr_tail().empty()) printf("stderr (end):\n%s\n", p.status().stderr_tail().c_str());
  if (p.recent_ends_size() > 0) printf("recent ends (newest first):\n");
  for (const v1::ProcEnd& e : p.recent_ends()) {
    printf("  %s  incarnation %d  %s\n", LocalTime(e.at()).c_str(), e.incarnation(), e.status().display().c_str());
    // Each tail line indented under its end; the last lines are what tell why.
    for (absl::string_view line : absl::StrSplit(e.status().stderr_tail(), '\n', absl::SkipEmpty())) {
      printf("    | %.*s\n", static_cast<int>(line.size()), line.data());
    }
  }
}

void PrintEvent(const v1::ProcEvent& e) {
  std::string kind = absl::AsciiStrToLower(v1::ProcEvent::Kind_Name(e.kind()).substr(5));  // KIND_
  std::string extra;
  switch (e.kind()) {
    case v1::ProcEvent::KIND_RESTARTING:
      extra = absl::StrFormat("attempt %d in %dms%s: %s", e.attempt(),
                              e.delay().seconds() * 1000 + e.delay().nanos() / 1000000,
                              e.start_failed() ? " (start failed)" : "", e.detail());
      break;
    case v1::ProcEvent::KIND_RESTARTED: extra = absl::StrCat("incarnation ", e.incarnation()); break;
    case v1::ProcEvent::KIND_GAVE_UP:
    case v1::ProcEvent::KIND_RESTART_FAILED:
    case v1::ProcEvent::KIND_SPAWN_FAILED: extra = e.detail(); break;
    default: break;
  }
  std::string who = e.is_group() ? absl::StrCat("group ", e.name()) : e.name();
  printf("%s %-6llu %-15s %-24s %s%s%s\n", LocalTime(e.at()).c_str(), static_cast<unsigned long long>(e.seq()),
         kind.c_str(), who.c_str(), e.is_group() ? "" : e.status().display().c_str(), extra.empty() ? "" : "  ",
         extra.c_str());
}

}  // namespace hostd::hostctl
