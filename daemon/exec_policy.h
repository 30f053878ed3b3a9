// ExecPolicy: who may run what. The operator's allow-list of programs (globs on the
// program's absolute path, each for every client or for one client certificate
// identity) and of the users procs may run as.
//
//   HOSTD_ASSIGN_OR_RETURN(ExecPolicy p, ExecPolicy::Create({"/usr/bin/*", "ops=/opt/tools/*"}, {"nobody"}));
//   HOSTD_RETURN_IF_ERROR(p.Check("/usr/bin/python3", "ops", "nobody"));
//
// Rules:
//   - GLOB matches the resolved program path with fnmatch(FNM_PATHNAME): `*` and
//     `?` do not cross '/', so /opt/app/* allows /opt/app/x, not /opt/app/sub/x. The
//     path is matched as resolved (PATH lookup), without following symlinks: allow
//     directories whose contents you control.
//   - IDENTITY=GLOB applies to a client whose certificate identity (its subject
//     common name, else its first subject alternative name, as read by
//     TlsTerminator in daemon/tls_terminator.h) is IDENTITY, only.
//   - No program rule at all: every program is allowed (hostd's behaviour without
//     a config); one rule or more: only what a rule allows.
//   - A proc runs as hostd's own user unless its spec names one; a named user must
//     be one of the allowed users (NAME, or NAME:GROUP for that group only).
// Refusals are PermissionDenied naming the program (or user) and the rules.
// A value type; Check is const and thread-safe.
#ifndef HOSTD_DAEMON_EXEC_POLICY_H_
#define HOSTD_DAEMON_EXEC_POLICY_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "manager/proc_manager.h"

namespace hostd::daemon {

class ExecPolicy {
 public:
  // InvalidArgument naming a malformed rule (a glob that is not absolute, an empty identity or user).
  static absl::StatusOr<ExecPolicy> Create(const std::vector<std::string>& exec_rules,
                                           const std::vector<std::string>& users);
  ExecPolicy() = default;

  // `program` is the resolved absolute path; `identity` the client certificate's
  // ("" for none; unset: unknown, and a rule for any identity allows the program);
  // `user` the spec's ("" for hostd's own user).
  absl::Status Check(const std::string& program, const std::optional<std::string>& identity,
                     const std::string& user) const;

  // Arms spec.authorize with this policy (a copy) for `identity` and spec.user,
  // and records the identity in spec.client_identity: every launch of the proc
  // (restarts, exec probes) is checked as its first was, for the same client.
  // An unknown identity (a proc recorded before identities were) passes where
  // some rule, for whichever client, allows the program.
  void Arm(const std::optional<std::string>& identity, manager::SpawnSpec& spec) const;

  bool restricts_programs() const { return !rules_.empty(); }

 private:
  struct Rule {
    std::string identity;  // "" = any client
    std::string glob;
    std::string text;  // as the operator wrote it
  };
  std::vector<Rule> rules_;
  std::vector<std::string> users_;
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_EXEC_POLICY_H_
