#include "daemon/adoption.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/log.h"
#include "daemon/proc_table.h"

namespace hostd::daemon {
namespace {

constexpr char kEndedWhileDown[] = "ended while hostd was down";

const char* StateName(ProcRecord::State s) {
  switch (s) {
    case ProcRecord::State::kStarting: return "starting";
    case ProcRecord::State::kLive: return "live";
    case ProcRecord::State::kRestarting: return "restarting";
    case ProcRecord::State::kEnded: return "ended";
  }
  return "ended";
}

manager::AdoptRequest RequestOf(const StoredProc& row) {
  manager::AdoptRequest req;
  req.pid = row.pid;
  req.start_time = row.start_time;
  req.cgroup_dir = row.cgroup;
  if (!row.addr.empty()) {
    absl::StatusOr<channel::ChannelAddr> addr = channel::ChannelAddr::Parse(row.addr);
    if (addr.ok()) req.addr = *addr;
  }
  std::vector<std::string> argv = {row.spec.program};
  argv.insert(argv.end(), row.spec.args.begin(), row.spec.args.end());
  req.command = absl::StrJoin(argv, " ");
  req.spec = row.spec;
  return req;
}

}  // namespace

void RecordInto(Host& host, ProcStore& store) {
  host.SetRecorder([&store](const std::string& name, const ProcRecord* r, const proc::ProcStatus& status) {
    if (r == nullptr) return store.Forget(name);
    StoredProc p;
    p.name = name;
    p.spec.program = r->spec.program;
    p.spec.args = r->spec.args;
    p.spec.env = r->spec.env;
    p.spec.inherit_env = r->spec.inherit_env;
    p.spec.cwd = r->spec.cwd;
    p.spec.readiness = r->spec.readiness;
    p.spec.user = r->spec.user;
    p.spec.liveness = r->spec.liveness;
    p.labels = r->labels;
    p.incarnation = r->incarnation;
    p.state = StateName(r->state);
    p.status = status.ToString();
    p.terminal = status.terminal();
    p.pid = status.pid;
    if (status.addr.has_value()) p.addr = status.addr->ToString();
    p.updated_at = absl::Now();
    store.Record(std::move(p));
  });
}

AdoptionSummary AdoptStored(const std::vector<StoredProc>& rows, manager::ProcessProcManager& mgr, Host& host,
                            ProcStore& store) {
  AdoptionSummary sum;
  for (const StoredProc& row : rows) {
    if (row.terminal || row.state == "ended") {
      store.Forget(row.name);
      continue;
    }
    ++sum.rows;
    const bool live = row.state == "live";
    absl::StatusOr<std::shared_ptr<manager::ProcHandle>> h =
        row.pid > 0 ? mgr.Adopt(host.IdOf(row.name), RequestOf(row))
                    : absl::StatusOr<std::shared_ptr<manager::ProcHandle>>(absl::NotFoundError("no pid recorded"));
    std::string why;
    if (h.ok() && live) {
      absl::Status s = host.Adopt(row.name, row.spec, row.labels, row.incarnation, *h);
      if (s.ok()) {
        ++sum.adopted;
        base::Log().info("proc={} pid={} re-adopted (incarnation {})", row.name, row.pid, row.incarnation);
        continue;
      }
      (void)(*h)->Kill();  // known twice: cannot happen with one row per name; never leave it unwatched
      why = absl::StrCat("could not be re-adopted: ", s.message());
    } else if (h.ok()) {
      (void)(*h)->Kill();
      ++sum.killed;
      why = absl::StrCat("was ", row.state, " when hostd went down; killed, since its readiness could not be known");
    } else if (absl::IsFailedPrecondition(h.status())) {
      ++sum.strangers;
      why = absl::StrCat(kEndedWhileDown, " (", h.status().message(), "; not adopted)");
    } else {
      ++sum.ended;
      why = kEndedWhileDown;
    }
    base::Log().info("proc={} pid={} not re-adopted: {}", row.name, row.pid, why);
    host.RestoreEnded(row.name, row.spec, row.labels, row.incarnation, proc::ProcStatus::Failed(why));
  }
  return sum;
}

}  // namespace hostd::daemon
