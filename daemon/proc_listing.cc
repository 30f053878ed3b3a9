#include "daemon/proc_listing.h"

#include <algorithm>
#include <cstdlib>

#include "base/log.h"
#include "daemon/proto_convert.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/wire_format_lite.h"

namespace hostd::daemon {
namespace {

using google::protobuf::internal::WireFormatLite;

// `m` as field `number` of its parent: tag, length, then `m` serialized
// deterministically (map entries in key order), appended to `out`.
void AppendField(int number, const google::protobuf::MessageLite& m, std::string& out) {
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  coded.WriteTag(WireFormatLite::MakeTag(number, WireFormatLite::WIRETYPE_LENGTH_DELIMITED));
  coded.WriteVarint32(static_cast<uint32_t>(m.ByteSizeLong()));
  m.SerializeWithCachedSizes(&coded);
}

void AppendField(int number, const std::string& s, std::string& out) {
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  WireFormatLite::WriteString(number, s, &coded);
}

}  // namespace

const ProcListing::Entry& ProcListing::EntryOf(const ProcView& view, bool* encoded) {
  auto [it, fresh] = entries_.try_emplace(view.name());
  Entry& e = it->second;
  e.listing = listings_;
  *encoded = fresh || !(e.version == view.version());
  if (!*encoded) {
#ifndef NDEBUG
    scratch_.Clear();
    ToProto(view.info(), &scratch_);
    std::string again;
    AppendField(v1::ListProcsResponse::kProcsFieldNumber, scratch_, again);
    // A live handle's status may move on between the version and the info; only
    // a difference under a version that still holds is a missed change.
    if (again != e.field && view.current_version() == e.version) {
      base::Log().critical("proc={}: its listing entry was reused but the proc changed; ProcVersion misses a change",
                           view.name());
      std::abort();
    }
#endif
    return e;
  }
  const ProcInfo& info = view.info();
  scratch_.Clear();
  ToProto(info, &scratch_);
  e.version = view.version();
  e.state = info.status.state;
  e.field.clear();
  AppendField(v1::ListProcsResponse::kProcsFieldNumber, scratch_, e.field);
  return e;
}

ProcListing::Reply ProcListing::List(const v1::ListProcsRequest& req, size_t budget) {
  Reply out;
  absl::MutexLock lock(&mu_);
  ++listings_;
  const bool filtered = req.live_only() || req.states_size() > 0 || req.labels_size() > 0 || !req.page_token().empty();
  // One allocation, not a dozen doublings; only for a reply like the last full one.
  if (!filtered) out.bytes.reserve(std::min(last_size_, budget + (64 << 10)));
  // The states asked for, as a set of v1::ProcState values, made once (a client
  // may send many; values past the enum match nothing).
  uint32_t states = 0;
  for (int s : req.states()) {
    if (s >= 0 && s < 32) states |= 1u << s;
  }
  size_t touched = 0;  // entries this listing walked
  std::string last;  // the name of the last proc included
  bool full = false;
  host_.Visit([&](const ProcView& p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ++out.walked;
    bool labels_match = std::all_of(req.labels().begin(), req.labels().end(), [&](const auto& kv) {
      auto it = p.labels().find(kv.first);
      return it != p.labels().end() && it->second == kv.second;
    });
    if (full || (!req.page_token().empty() && p.name() <= req.page_token()) || !labels_match) {
      // Not encoded now; its entry, if any, is still the proc's.
      if (auto it = entries_.find(p.name()); it != entries_.end()) {
        it->second.listing = listings_;
        ++touched;
      }
      return;
    }
    bool encoded = false;
    const Entry& e = EntryOf(p, &encoded);
    out.encoded += encoded;
    ++touched;
    if (req.live_only() && proc::IsTerminal(e.state)) return;
    if (req.states_size() > 0 && (states & (1u << static_cast<int>(ToProto(e.state)))) == 0) return;
    if (e.field.size() > budget && !last.empty()) {
      full = true;
      return;
    }
    budget -= std::min(budget, e.field.size());
    out.bytes += e.field;
    last = p.name();
  });
  if (full) AppendField(v1::ListProcsResponse::kNextPageTokenFieldNumber, last, out.bytes);
  // Names the table no longer holds.
  if (entries_.size() > touched) {
    absl::erase_if(entries_, [&](const auto& kv) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return kv.second.listing != listings_;
    });
  }
  if (!filtered) last_size_ = out.bytes.size();
  return out;
}

}  // namespace hostd::daemon
