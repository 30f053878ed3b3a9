#include "daemon/exec_policy.h"

#include <fnmatch.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace hostd::daemon {

absl::StatusOr<ExecPolicy> ExecPolicy::Create(const std::vector<std::string>& exec_rules,
                                              const std::vector<std::string>& users) {
  ExecPolicy p;
  for (const std::string& text : exec_rules) {
    Rule r{.identity = "", .glob = text, .text = text};
    // An identity never starts with '/', a glob always does.
    if (size_t eq = text.find('='); eq != std::string::npos && (text.empty() || text[0] != '/')) {
      r.identity = text.substr(0, eq);
      r.glob = text.substr(eq + 1);
      if (r.identity.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("--allow-exec \"", text, "\": the identity before '=' is empty"));
      }
    }
    if (r.glob.empty() || r.glob[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat("--allow-exec \"", text, "\": the program glob must be an absolute path (e.g. /usr/bin/*)"));
    }
    p.rules_.push_back(std::move(r));
  }
  for (const std::string& u : users) {
    if (u.empty() || u[0] == ':' || u.back() == ':') {
      return absl::InvalidArgumentError(absl::StrCat("--allow-user \"", u, "\": expected NAME or NAME:GROUP"));
    }
    p.users_.push_back(u);
  }
  return p;
}

void ExecPolicy::Arm(const std::optional<std::string>& identity, manager::SpawnSpec& spec) const {
  spec.client_identity = identity;
  spec.authorize = [policy = *this, identity, user = spec.user](const std::string& program) {
    return policy.Check(program, identity, user);
  };
}

absl::Status ExecPolicy::Check(const std::string& program, const std::optional<std::string>& identity,
                               const std::string& user) const {
  if (!rules_.empty() && (program.empty() || program[0] != '/')) {
    return absl::PermissionDeniedError(absl::StrCat("program \"", program,
                                                    "\" is not an absolute path; the --allow-exec rules match "
                                                    "absolute paths only"));
  }
  if (!rules_.empty()) {
    bool allowed = std::any_of(rules_.begin(), rules_.end(), [&](const Rule& r) {
      return (r.identity.empty() || !identity.has_value() || r.identity == *identity) &&
             ::fnmatch(r.glob.c_str(), program.c_str(), FNM_PATHNAME) == 0;
    });
    if (!allowed) {
      std::vector<std::string> texts;
      for (const Rule& r : rules_) texts.push_back(r.text);
      return absl::PermissionDeniedError(absl::StrCat(
          "program \"", program, "\" is not allowed",
          !identity.has_value() ? " for any client"
          : identity->empty()   ? ""
                                : absl::StrCat(" for client \"", *identity, "\""),
          ": no --allow-exec rule matches it (rules: ", absl::StrJoin(texts, ", "), ")"));
    }
  }
  if (!user.empty()) {
    // As written: "NAME" allows NAME with its own groups, "NAME:GROUP" that pair only.
    bool allowed = std::find(users_.begin(), users_.end(), user) != users_.end();
    if (!allowed) {
      return absl::PermissionDeniedError(absl::StrCat(
          "program \"", program, "\" may not run as user \"", user, "\": no --allow-user rule allows it (rules: ",
          users_.empty() ? "none" : absl::StrJoin(users_, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace hostd::daemon
