#include "daemon/adoption.h"

#include <algorithm>

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

manager::AdoptRequest RequestOf(const StoredProc& row, const manager::SpawnSpec& spec) {
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
  req.mark_serial = row.mark_serial;
  req.spec = spec;
  return req;
}

}  // namespace

void RecordInto(Host& host, ProcStore& store, std::function<std::string(const std::string&, bool)> log_path) {
  host.SetRecorder(
      [&store, log_path = std::move(log_path)](const std::string& name, const ProcRecord* r,
                                                const Supervision* supervision, const proc::ProcStatus& status) {
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
        p.spec.limits = r->spec.limits;
        p.spec.client_identity = r->spec.client_identity;
        p.labels = r->labels;
        if (supervision != nullptr) p.supervision = *supervision;
        p.incarnation = r->incarnation;
        p.state = StateName(r->state);
        p.status = status.ToString();
        p.terminal = status.terminal();
        p.pid = status.pid;
        if (r->handle != nullptr) p.mark_serial = r->handle->mark_serial();
        if (status.addr.has_value()) p.addr = status.addr->ToString();
        p.stdout_log = log_path(name, false);
        p.stderr_log = log_path(name, true);
        p.updated_at = absl::Now();
        if (r->lease) {
          p.lease_owner = r->lease->owner;
          p.lease_ttl = r->lease->ttl;
        }
        store.Record(std::move(p));
      },
      [&store](const std::string& name, const GroupSpec* spec) {
        store.RecordGroup(name, spec != nullptr ? std::optional<GroupSpec>(*spec) : std::nullopt);
      });
}

AdoptionSummary AdoptStored(const std::vector<StoredProc>& rows, const std::vector<StoredGroup>& groups,
                            manager::ProcessProcManager& mgr, Host& host, ProcStore& store,
                            const ExecPolicy& policy) {
  for (const StoredGroup& g : groups) {
    absl::Status s = host.CreateGroup(g.name, g.spec);
    if (!s.ok()) base::Log().warn("group {} not restored: {}", g.name, s.message());
  }
  uint64_t last_serial = 0;
  for (const StoredProc& row : rows) last_serial = std::max(last_serial, row.mark_serial);
  // A launch the previous hostd began but never recorded (a new incarnation, a
  // first start) carries a serial no row has: this hostd's launches stay above it.
  const uint64_t first_own = mgr.ReserveMarkSerialsInUse(last_serial);
  AdoptionSummary sum;
  // Procs whose end no hostd saw: applied once every row is back, so that a group's
  // strategy finds all of its members, in their order.
  std::vector<std::string> missed;
  std::vector<uint64_t> left_alone_serials;  // their families are not swept either
  for (const StoredProc& row : rows) {
    // A restarting row carries its last incarnation's end: it is still restarted.
    if (row.state == "ended" || (row.terminal && row.state != "restarting")) {
      store.Forget(row.name);
      continue;
    }
    ++sum.rows;
    const bool live = row.state == "live";
    // What the proc launches from now on (restarts, exec probes) is checked against
    // this hostd's policy, for the client that asked for it.
    manager::SpawnSpec spec = row.spec;
    policy.Arm(row.spec.client_identity, spec);
    spec.skip_refused_probe = true;  // it runs already: a probe refused now is not run, and does not stop a restart
    if (!row.spec.client_identity.has_value()) {
      base::Log().warn("proc={} was recorded without its client: its launches pass where any --allow-exec rule "
                       "allows the program",
                       row.name);
    }
    std::optional<Lease> lease;
    if (!row.lease_owner.empty()) lease = Lease{.owner = row.lease_owner, .ttl = row.lease_ttl};
    absl::StatusOr<std::shared_ptr<manager::ProcHandle>> h =
        row.pid > 0 ? mgr.Adopt(host.IdOf(row.name), RequestOf(row, spec))
                    : absl::StatusOr<std::shared_ptr<manager::ProcHandle>>(absl::NotFoundError("no pid recorded"));
    std::string why;
    bool apply_policy = false;  // its end is applied under its restart policy and group
    bool left_alone = false;    // it may still run, unmanaged
    if (h.ok() && live) {
      absl::Status s = host.Adopt(row.name, spec, row.labels, row.supervision, row.incarnation, *h, lease);
      if (s.ok()) {
        ++sum.adopted;
        base::Log().info("proc={} pid={} re-adopted (incarnation {})", row.name, row.pid, row.incarnation);
        continue;
      }
      (void)(*h)->Kill();  // known twice: cannot happen with one row per name; never leave it unwatched
      why = absl::StrCat("could not be re-adopted: ", s.message());
    } else if (row.state == "restarting") {
      // The old hostd's launch of the next incarnation, if any, never reported
      // ready to this one: it goes, and the restart begins again.
      if (h.ok()) (void)(*h)->Kill();
      absl::Status s = host.RestoreRestarting(
          row.name, spec, row.labels, row.supervision, row.incarnation,
          proc::ProcStatus::Failed(absl::StrCat("incarnation ", row.incarnation, " ended; hostd restarted meanwhile")),
          lease);
      if (s.ok()) {
        ++sum.restarted;
        base::Log().info("proc={} restarting again (after incarnation {})", row.name, row.incarnation);
        continue;
      }
      why = absl::StrCat("was restarting when hostd went down; not restarted: ", s.message());
    } else if (!h.ok() && !absl::IsNotFound(h.status()) && !absl::IsFailedPrecondition(h.status())) {
      // It may still run (moved out of its cgroup, or not checkable): not
      // adopted, left alone, and never started a second time.
      ++sum.not_adopted;
      left_alone = true;
      left_alone_serials.push_back(row.mark_serial);
      why = absl::StrCat(h.status().message(), "; pid ", row.pid, " left as it is");
    } else if (!live) {
      // Its first launch, as last recorded (a commit may lag a SIGKILLed hostd's
      // last readiness): its spawn may have failed for its client, so it is not
      // restarted either.
      if (h.ok()) {
        (void)(*h)->Kill();
        ++sum.killed;
        why = absl::StrCat("was ", row.state, " when hostd went down; killed, since its readiness could not be known");
      } else {
        ++sum.ended;
        why = kEndedWhileDown;
      }
    } else if (absl::IsNotFound(h.status())) {
      ++sum.ended;
      why = kEndedWhileDown;
      apply_policy = true;
    } else {
      // Its pid is another process's now: the proc itself has ended.
      ++sum.strangers;
      why = absl::StrCat(kEndedWhileDown, " (", h.status().message(), "; not adopted)");
      apply_policy = true;
    }
    base::Log().log(left_alone ? spdlog::level::warn : spdlog::level::info,
                    "proc={} pid={} not re-adopted: {}", row.name, row.pid, why);
    if (apply_policy) {
      if (host.RestoreMissedEnd(row.name, spec, row.labels, row.supervision, row.incarnation,
                                proc::ProcStatus::Failed(why), lease)) {
        missed.push_back(row.name);
      }
    } else {
      host.RestoreEnded(row.name, spec, row.labels, row.incarnation, proc::ProcStatus::Failed(why));
      // The row stays as it was (live, its pid and mark): the next hostd looks at
      // the proc again, and spares its family meanwhile.
      if (left_alone) store.Record(row);
    }
  }
  host.ApplyMissedEnds(missed);
  // What no row accounts for runs unmanaged otherwise; restarts launched above are
  // this hostd's own (serials from first_own on) and are left alone.
  sum.unrecorded = mgr.KillUnadoptedMarked(first_own, left_alone_serials);
  return sum;
}

}  // namespace hostd::daemon
