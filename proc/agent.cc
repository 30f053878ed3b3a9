#include "proc/agent.h"

#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "base/log.h"
#include "proc/proc_runtime.h"

namespace hostd::proc {

void InstallAgent(ProcRuntime& rt) {
  absl::Status bound = rt.Bind(kAgentPort, [&rt](channel::Message m) {
    if (m.kind() == channel::Message::Kind::kReturned) return;  // an answer of ours came back
    absl::string_view cmd = m.payload();
    std::string answer;
    if (cmd == "stop" || absl::StartsWith(cmd, "stop ")) {
      absl::string_view reason = absl::StripAsciiWhitespace(absl::StripPrefix(cmd, "stop"));
      rt.RequestStop(reason.empty() ? "stop requested" : std::string(reason));
      answer = "stopping";
    } else if (cmd == "ping") {
      answer = "pong";
    } else if (cmd == "status") {
      answer = absl::StrCat("running ", rt.id().ToString(), " pid=", getpid(),
                            " uptime_ms=", absl::ToInt64Milliseconds(absl::Now() - rt.started_at()),
                            " ports=", rt.port_count());
    } else if (cmd == "handoff") {
      absl::StatusOr<std::string> state = rt.HandOffState();
      answer = state.ok() ? absl::StrCat("state\n", *state) : absl::StrCat("error: ", state.status().message());
    } else {
      answer = absl::StrCat("error: unknown agent command \"", cmd.substr(0, 64), "\"");
    }
    if (!m.src().empty()) {
      if (absl::Status s = rt.Reply(m, kAgentReplyPort, answer); !s.ok()) {
        base::Log().warn("agent of {}: cannot answer: {}", rt.id().ToString(), s.message());
      }
    }
  });
  if (!bound.ok()) base::Log().error("agent: {}", bound.message());
}

}  // namespace hostd::proc
