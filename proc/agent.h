// The agent: a port ("agent") that every proc runtime binds, through which a proc
// manager controls the proc. Requests are short text payloads; answers go back to
// the request's `src` on port "agent.reply".
//
//   "stop" | "stop <reason>"  -> RequestStop(reason); answers "stopping"
//   "ping"                    -> answers "pong"
//   "status"                  -> answers "running <proc id> pid=<pid> uptime_ms=<n> ports=<n>"
//   "handoff"                 -> answers "state\n" followed by the blob the proc's
//                                StateProvider returned (ProcRuntime::SetStateProvider),
//                                for its next incarnation; or "error: <why>" when the
//                                proc has none ("error: proc has no state provider"),
//                                the provider failed (its message), or the blob is
//                                over kMaxStateBytes
//   anything else             -> answers "error: unknown agent command \"...\""
#ifndef HOSTD_PROC_AGENT_H_
#define HOSTD_PROC_AGENT_H_

#include "absl/strings/string_view.h"

namespace hostd::proc {

class ProcRuntime;

inline constexpr absl::string_view kAgentPort = "agent";
inline constexpr absl::string_view kAgentReplyPort = "agent.reply";

// Binds the agent on `runtime` (ProcRuntime::Start does this).
void InstallAgent(ProcRuntime& runtime);

}  // namespace hostd::proc

#endif  // HOSTD_PROC_AGENT_H_
