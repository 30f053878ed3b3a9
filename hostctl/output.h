// How hostctl prints results: JSON for --json (one object per line, proto field
// names, defaults included), and the tables and lines people read otherwise.
// Everything goes to stdout.
#ifndef HOSTD_HOSTCTL_OUTPUT_H_
#define HOSTD_HOSTCTL_OUTPUT_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "hostd/v1/host.pb.h"
#include "nlohmann/json.hpp"

namespace hostd::hostctl {

void PrintJson(const google::protobuf::Message& m);
// An object that is no API message (a log line, an error), on one line.
void PrintJsonObject(const nlohmann::json& object);

// "ready", "stopped", ...: the state without its PROC_STATE_ prefix, lower case.
std::string StateName(v1::ProcState s);
// Whole seconds since `t` ("1h2m3s"), or "-" when unset.
std::string Age(const google::protobuf::Timestamp& t);

// Names in natural order: digit runs compare as numbers (proc-2 before proc-10).
bool NaturalLess(absl::string_view a, absl::string_view b);
// Rows (the first a header) with each column as wide as its widest cell.
void PrintTable(const std::vector<std::vector<std::string>>& rows);
// A proc's lease: "trainer (25s left)", "trainer (expired)", or "-" without one.
std::string LeaseSummary(const v1::Proc& p);
// NAME STATE PID RESTARTS AGE LEASE STATUS, one proc a row, names in natural order.
void PrintProcTable(const google::protobuf::RepeatedPtrField<v1::Proc>& procs);
// "2026-12-01T16:05:02.123+00:00": local time with its offset ("-" when unset).
std::string LocalTime(const google::protobuf::Timestamp& t);
// One proc, a field a line.
void PrintProc(const v1::Proc& p);
// One line per event: time, seq, kind, name, status and what the kind adds.
void PrintEvent(const v1::ProcEvent& e);

}  // namespace hostd::hostctl

#endif  // HOSTD_HOSTCTL_OUTPUT_H_
