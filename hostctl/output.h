// How hostctl prints results: JSON for --json (one object per line, proto field
// names, defaults included), and the tables and lines people read otherwise.
// Everything goes to stdout.
#ifndef HOSTD_HOSTCTL_OUTPUT_H_
#define HOSTD_HOSTCTL_OUTPUT_H_

#include <string>

#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "hostd/v1/host.pb.h"

namespace hostd::hostctl {

void PrintJson(const google::protobuf::Message& m);

// "ready", "stopped", ...: the state without its PROC_STATE_ prefix, lower case.
std::string StateName(v1::ProcState s);
// Whole seconds since `t` ("1h2m3s"), or "-" when unset.
std::string Age(const google::protobuf::Timestamp& t);

// NAME STATE PID AGE STATUS, one proc a row.
void PrintProcTable(const google::protobuf::RepeatedPtrField<v1::Proc>& procs);
// One proc, a field a line.
void PrintProc(const v1::Proc& p);
// One line per event: seq, kind, name, status and what the kind adds.
void PrintEvent(const v1::ProcEvent& e);

}  // namespace hostd::hostctl

#endif  // HOSTD_HOSTCTL_OUTPUT_H_
