// ProcId: the identity of a proc, `<frontend ChannelAddr>,<name>`.
//
// The frontend address is the host's one public address; the name is unique on
// that host and matches [A-Za-z0-9][A-Za-z0-9_.-]{0,63}. Text form round-trips;
// Parse splits at the last ',' (an address may contain ',' in a unix path, a name
// never does). A value type; thread-compatible. The text form is formatted once, when
// the id is made: ToString costs nothing.
#ifndef HOSTD_PROC_PROC_ID_H_
#define HOSTD_PROC_PROC_ID_H_

#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "channel/channel_addr.h"

namespace hostd::proc {

class ProcId {
 public:
  static constexpr size_t kMaxNameLen = 64;

  // InvalidArgument naming the name and the rule it breaks.
  static absl::Status ValidateName(absl::string_view name);
  static absl::StatusOr<ProcId> Create(channel::ChannelAddr frontend, absl::string_view name);
  static absl::StatusOr<ProcId> Parse(absl::string_view text);

  const channel::ChannelAddr& frontend() const { return frontend_; }
  const std::string& name() const { return name_; }
  const std::string& ToString() const { return text_; }

  friend bool operator==(const ProcId&, const ProcId&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const ProcId& p) {
    return H::combine(std::move(h), p.frontend_, p.name_);
  }
  friend std::ostream& operator<<(std::ostream& os, const ProcId& p) { return os << p.ToString(); }

 private:
  ProcId(channel::ChannelAddr frontend, std::string name);
  channel::ChannelAddr frontend_;
  std::string name_;
  std::string text_;  // "<frontend>,<name>"
};

}  // namespace hostd::proc

#endif  // HOSTD_PROC_PROC_ID_H_
