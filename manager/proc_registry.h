// ProcRegistry: a manager's live procs by name, shared by every ProcManager.
// A name is taken from Add until Remove (the proc ended); Remove only removes the
// handle it is given, so a late Remove cannot drop a newer proc of the same name.
// Thread-safe.
#ifndef HOSTD_MANAGER_PROC_REGISTRY_H_
#define HOSTD_MANAGER_PROC_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "manager/proc_manager.h"

namespace hostd::manager {

class ProcRegistry {
 public:
  // AlreadyExists, naming the live proc's status, if `name` is taken.
  absl::Status Add(const std::string& name, std::shared_ptr<ProcHandle> handle) {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = procs_.try_emplace(name, std::move(handle));
    if (inserted) return absl::OkStatus();
    return absl::AlreadyExistsError(
        absl::StrCat("proc \"", name, "\" already exists (it is ", it->second->status().ToString(), ")"));
  }

  void Remove(const std::string& name, const ProcHandle* handle) {
    absl::MutexLock lock(&mu_);
    auto it = procs_.find(name);
    if (it != procs_.end() && it->second.get() == handle) procs_.erase(it);
  }

  std::vector<std::shared_ptr<ProcHandle>> All() const {
    absl::MutexLock lock(&mu_);
    std::vector<std::shared_ptr<ProcHandle>> out;
    out.reserve(procs_.size());
    for (const auto& [name, h] : procs_) out.push_back(h);
    return out;
  }

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<ProcHandle>> procs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hostd::manager

#endif  // HOSTD_MANAGER_PROC_REGISTRY_H_
