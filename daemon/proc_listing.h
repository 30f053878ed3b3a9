// ProcListing: the bytes of a ListProcs reply, assembled from each proc's
// encoded entry.
//
// Encoding a proc (its ProcInfo filled, turned into a v1::Proc, serialized) is
// most of what a listing costs, and a proc's entry can only change when its
// ProcVersion does. So each entry is kept, encoded, from the listing that last
// made it, and a listing of unchanged procs copies bytes: entries are made again
// only for procs that changed since.
//
// Contracts:
//   - The reply is a serialized v1::ListProcsResponse, byte for byte what the
//     typed reply would serialize to with deterministic serialization (labels in
//     key order): the procs that pass the request's filters, in name order,
//     after its page_token; next_page_token set when the procs would exceed
//     `budget` bytes (at least one proc is always included).
//   - Memory: one entry per proc the table held at the last listing (its
//     encoding, a few hundred bytes), none for a name gone since.
//   - Debug builds encode every reused entry again and abort if the two differ
//     while the proc's version still holds: a ProcVersion that misses a change
//     is a bug the test suites catch.
//
// Thread-safe: listings run one at a time, under this listing's own mutex; each
// takes the proc table's lock inside it (listing, then table, then a proc's status).
#ifndef HOSTD_DAEMON_PROC_LISTING_H_
#define HOSTD_DAEMON_PROC_LISTING_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "daemon/host.h"
#include "hostd/v1/host.pb.h"

namespace hostd::daemon {

class ProcListing {
 public:
  explicit ProcListing(const Host& host) : host_(host) {}

  struct Reply {
    std::string bytes;  // a serialized v1::ListProcsResponse
    size_t walked = 0;  // procs the table held
    size_t encoded = 0;  // entries made for this reply (the rest were reused)
  };
  Reply List(const v1::ListProcsRequest& req, size_t budget);
  // Entries kept now.
  size_t entries() const {
    absl::MutexLock lock(&mu_);
    return entries_.size();
  }

 private:
  struct Entry {
    ProcVersion version;
    proc::ProcState state = proc::ProcState::kStarting;  // the state the entry shows
    std::string field;  // the proc as ListProcsResponse field 1: tag, length, v1::Proc
    uint64_t listing = 0;  // the last listing that walked it
  };
  // `view`'s entry, made again when its version changed.
  const Entry& EntryOf(const ProcView& view, bool* encoded) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Host& host_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  uint64_t listings_ ABSL_GUARDED_BY(mu_) = 0;
  size_t last_size_ ABSL_GUARDED_BY(mu_) = 0;  // of the last reply
  v1::Proc scratch_ ABSL_GUARDED_BY(mu_);  // each entry is built here, keeping its storage
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_PROC_LISTING_H_
