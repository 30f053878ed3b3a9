#include "proc/proc_id.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"

namespace hostd::proc {
namespace {
bool NameChar(char c, bool first) {
  bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  return alnum || (!first && (c == '_' || c == '.' || c == '-'));
}
}  // namespace

absl::Status ProcId::ValidateName(absl::string_view name) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrFormat("invalid proc name \"%s\": %s", absl::CHexEscape(name), why));
  };
  if (name.empty()) return bad("it is empty");
  if (name.size() > kMaxNameLen)
    return bad(absl::StrFormat("it is %d characters; at most %d", name.size(), kMaxNameLen));
  if (!NameChar(name[0], true)) return bad("it must start with a letter or digit");
  for (char c : name) {
    if (!NameChar(c, false)) {
      return bad(absl::StrFormat("'%s' is not allowed; use letters, digits, '_', '.' and '-'",
                                 absl::CHexEscape(absl::string_view(&c, 1))));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ProcId> ProcId::Create(channel::ChannelAddr frontend, absl::string_view name) {
  HOSTD_RETURN_IF_ERROR(ValidateName(name));
  return ProcId(std::move(frontend), std::string(name));
}

absl::StatusOr<ProcId> ProcId::Parse(absl::string_view text) {
  size_t comma = text.rfind(',');
  if (comma == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "invalid proc id \"%s\": expected <address>,<name>, e.g. unix:@fe,trainer-3", absl::CHexEscape(text)));
  }
  absl::StatusOr<channel::ChannelAddr> addr = channel::ChannelAddr::Parse(text.substr(0, comma));
  if (!addr.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid proc id \"", absl::CHexEscape(text), "\": ", addr.status().message()));
  }
  return Create(*std::move(addr), text.substr(comma + 1));
}

ProcId::ProcId(channel::ChannelAddr frontend, std::string name)
    : frontend_(std::move(frontend)), name_(std::move(name)), text_(absl::StrCat(frontend_.ToString(), ",", name_)) {}

}  // namespace hostd::proc
