#include "hostctl/output.h"

#include <cstdio>
#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
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

std::string StateName(v1::ProcState s) {
  std::string n = v1::ProcState_Name(s);
  return n.size() > 11 ? absl::AsciiStrToLower(n.substr(11)) : n;  // PROC_STATE_
}

std::string Age(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0) return "-";
  absl::Duration d = absl::Now() - absl::FromUnixSeconds(t.seconds());
  return absl::FormatDuration(absl::Trunc(d, absl::Seconds(1)));
}

void PrintProcTable(const google::protobuf::RepeatedPtrField<v1::Proc>& procs) {
  printf("%-24s %-9s %-8s %-10s %s\n", "NAME", "STATE", "PID", "AGE", "STATUS");
  for (const v1::Proc& p : procs) {
    printf("%-24s %-9s %-8d %-10s %s\n", p.name().c_str(), StateName(p.status().state()).c_str(), p.status().pid(),
           Age(p.created_at()).c_str(), p.status().display().c_str());
  }
}

void PrintProc(const v1::Proc& p) {
  printf("name:     %s\nproc id:  %s\nstatus:   %s\npid:      %d\n", p.name().c_str(), p.proc_id().c_str(),
         p.status().display().c_str(), p.status().pid());
  if (!p.status().addr().empty()) printf("addr:     %s\n", p.status().addr().c_str());
  printf("command:  %s %s\n", p.program().c_str(), absl::StrJoin(p.args(), " ").c_str());
  for (const auto& [k, v] : p.labels()) printf("label:    %s=%s\n", k.c_str(), v.c_str());
  if (!p.status().note().empty()) printf("note:     %s\n", p.status().note().c_str());
  if (!p.status().stderr_tail().empty()) printf("stderr (end):\n%s\n", p.status().stderr_tail().c_str());
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
  printf("%-6llu %-15s %-24s %s%s%s\n", static_cast<unsigned long long>(e.seq()), kind.c_str(), who.c_str(),
         e.is_group() ? "" : e.status().display().c_str(), extra.empty() ? "" : "  ", extra.c_str());
}

}  // namespace hostd::hostctl
