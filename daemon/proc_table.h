// ProcTable: the procs of a Host and their lifecycle. It spawns (one transaction:
// the route opens, the manager launches, the proc is ready or nothing is left),
// stops, follows each proc's exit monitor, keeps ended procs' names for a while,
// and publishes every change as a HostEvent to subscribers, in order.
//
// Contracts:
//   - Spawn: one deadline (SpawnSpec::ready_timeout) covers launch and readiness;
//     on failure nothing is left registered or running. A live (starting,
//     restarting) name is AlreadyExists. A handshake proc that is ready without an
//     address is killed and the spawn fails.
//   - Events: every status a proc goes through is published, in order, even when
//     it ends the moment it is ready (the table watches each handle from its
//     first status on). Subscribe with a snapshot takes both under one lock.
//   - Names: ended procs stay (their status is reported, messages to them bounce
//     with it) until the name is spawned again, TerminateChildren frees it, or
//     more than `ended_procs_kept` have ended.
//   - Routes: every change the table makes to a proc's route is posted to the
//     Router on the loop while the table's lock is held, so the router applies
//     them in the order the table decided them, and anyone who saw a change (an
//     event, a Get) sends after the router knows of it.
//
// Threading: thread-safe; one mutex (`mu()`) guards the records, the events and
// the Supervisor. Exit-monitor statuses are applied on the Host's loop thread.
// The SupervisionController works on the records under the same lock.
// Subscribers' functions run under the lock: they must not block or call back.
#ifndef HOSTD_DAEMON_PROC_TABLE_H_
#define HOSTD_DAEMON_PROC_TABLE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "channel/event_loop.h"
#include "daemon/host_types.h"
#include "daemon/router.h"
#include "manager/proc_manager.h"

namespace hostd::daemon {

class SupervisionController;

// One proc name as the table knows it. Guarded by ProcTable::mu().
struct ProcRecord {
  // kLive: ready (with or without an address). kRestarting: the last incarnation
  // ended and the next is on the way.
  enum class State { kStarting, kLive, kRestarting, kEnded };
  // What becomes of the live incarnation when it ends, decided before (a group
  // restart or give-up stopping it, a requested restart).
  enum class Fate { kNone, kRestart, kEnd, kRequestedRestart };

  std::string name;
  std::optional<proc::ProcId> id;  // from the name, made once
  uint64_t gen = 0;                // distinguishes successive incarnations of one name
  uint64_t ended_seq = 0;          // its last end's place in the table's ended order
  State state = State::kStarting;
  proc::ProcStatus status;  // the last the table applied; written only through SetStatus
  uint64_t status_rev = 0;  // counts writes of `status`
  Labels labels;
  absl::Time created_at;
  manager::SpawnSpec spec;  // starts each incarnation
  std::shared_ptr<manager::ProcHandle> handle;
  uint64_t watch_id = 0;
  int incarnation = 1;
  absl::Time incarnation_started;

  // Supervision (daemon/supervision_controller.h).
  Fate fate = Fate::kNone;
  bool stop_requested = false;               // Terminate/Kill/TerminateChildren: no restart
  bool restart_requested = false;            // a Restart call is under way
  bool spawning = false;                     // kRestarting: a job is starting the next incarnation
  bool announce_restart = false;             // publish kRestarted once this incarnation's Ready is applied
  std::optional<std::string> handoff_state;  // for the next incarnation, from a requested restart
  std::optional<std::string> saved_state;    // the last ProcRuntime::SaveState
  std::optional<Lease> lease;                // its client lease (daemon/lease_keeper.h)

  bool live() const { return state == State::kLive; }
  void SetStatus(proc::ProcStatus s) {
    status = std::move(s);
    ++status_rev;
  }
};

// What a listing of one record shows can only have changed when this has: the
// inputs of ProcTable's ProcInfo of it that change over a record's life (the
// rest, name, spec, labels, supervision, are fixed while the record lives, and a
// new record or incarnation has a new `gen`). Kept by readers that derive
// something costly from a ProcInfo (daemon/proc_listing.h), to reuse it.
struct ProcVersion {
  uint64_t gen = 0;
  ProcRecord::State state = ProcRecord::State::kStarting;
  uint64_t handle_status = 0;  // the live handle's status_seq() (a handle comes and goes with a new state or gen)
  uint64_t status_rev = 0;  // of the applied status
  bool stop_requested = false;
  size_t saved_state_bytes = 0;
  absl::Time lease_expires = absl::InfinitePast();
  bool lease_expired = false;
  friend bool operator==(const ProcVersion&, const ProcVersion&) = default;
};

class ProcTable;

// One proc as a walk of the table finds it: its name, labels and version at
// once, its ProcInfo filled only when asked for. Valid inside the walk only.
class ProcView {
 public:
  const std::string& name() const { return r_.name; }
  const Labels& labels() const { return r_.labels; }
  // Read on first use (walks that want only the info do not pay for it) and
  // always before info(), so an entry derived from info() and kept under this
  // version is never older than the version says.
  const ProcVersion& version() const;
  // The version now: a live handle's status may have moved on since the walk
  // found it (the handle is not under the table's lock).
  ProcVersion current_version() const;
  const ProcInfo& info() const;

 private:
  friend class ProcTable;
  ProcView(const ProcTable& table, const ProcRecord& r, std::optional<ProcInfo>& info)
      : table_(table), r_(r), info_(info) {}
  const ProcTable& table_;
  const ProcRecord& r_;
  mutable std::optional<ProcVersion> version_;  // read on first use, and always before info()
  std::optional<ProcInfo>& info_;
  mutable bool filled_ = false;
};

class ProcTable {
 public:
  struct Options {
    size_t ended_procs_kept = 4096;
    size_t max_live_procs = 0;  // 0: no limit
  };
  // `router` and `loop` belong to the Host and outlive the table.
  ProcTable(manager::ProcManager& manager, manager::BulkTerminate& bulk, channel::EventLoop& loop, Router& router,
            Options options);
  ~ProcTable();
  ProcTable(const ProcTable&) = delete;
  ProcTable& operator=(const ProcTable&) = delete;

  // `recorder` is told of every proc's lifecycle event and `group_recorder` of
  // every group created or removed, under the table's lock (so in order; they must
  // only queue). The durable table (daemon/proc_store.h) is fed this way. Set
  // once, before the first Spawn, Adopt or CreateGroup.
  void SetRecorder(ProcRecorder recorder, GroupRecorder group_recorder) {
    recorder_ = std::move(recorder);
    group_recorder_ = std::move(group_recorder);
  }

  // A proc a previous hostd ran, taken over by the manager (its handle is Ready):
  // it becomes live under `name` with its route, as if spawned, with `incarnation`
  // and `supervision` (its restart policy and group, which must exist; none if it
  // does not: the group is dropped, saying so). AlreadyExists if the name is known.
  // A lease is re-armed: it expires one TTL from now.
  absl::Status Adopt(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                     const Supervision& supervision, int incarnation, std::shared_ptr<manager::ProcHandle> handle,
                     std::optional<Lease> lease);
  // A proc a previous hostd ran that is not running now: known as ended with
  // `status` (messages to it bounce with it) until its name is taken again.
  void RestoreEnded(const std::string& name, const manager::SpawnSpec& spec, Labels labels, int incarnation,
                    const proc::ProcStatus& status);
  // A proc a previous hostd ran whose end (`status`) no hostd saw. Supervised
  // (`supervision` has a restart policy or a known group): known with its place in
  // its group and `lease`, its end pending until ApplyMissedEnds (messages to it
  // wait as for a starting proc; nothing is recorded, so a hostd that dies first
  // leaves its row as it was); returns true. Otherwise: as RestoreEnded, false.
  // Nothing (false) if the name is known.
  bool RestoreMissedEnd(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                        const Supervision& supervision, int incarnation, const proc::ProcStatus& status,
                        std::optional<Lease> lease);
  // Applies the pending ends of `names` (RestoreMissedEnd), in order, as if just
  // seen: each is restarted or given up under its policy and its group's
  // strategy, like any end; one that a sibling's plan already took is not applied
  // again; one with no plan ends. Then drops the oldest ended procs past the retention.
  void ApplyMissedEnds(const std::vector<std::string>& names);
  // A supervised proc a previous hostd was restarting when it went down (`status`:
  // why its last incarnation, `incarnation`, ended): restarting again, under
  // `supervision`, its next incarnation started by the supervision controller at
  // once (a kRestarting event says so). AlreadyExists if the name is known.
  absl::Status RestoreRestarting(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                                 const Supervision& supervision, int incarnation, const proc::ProcStatus& status,
                                 std::optional<Lease> lease);

  // Set once by the Host, before the first Spawn.
  void SetController(SupervisionController* controller) { controller_ = controller; }
  // How ProcIds are made, where procs send (the backend), and the host's name in
  // messages (its frontend address).
  void SetIdentity(std::function<proc::ProcId(absl::string_view)> id_of, channel::ChannelAddr backend,
                   std::string host_name);

  // Validated input (the Host facade checks name, labels, policy and lease). A
  // lease's deadline starts now: one TTL after the spawn was accepted.
  absl::StatusOr<ProcInfo> Spawn(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                                 Supervision supervision, std::optional<Lease> lease);
  absl::StatusOr<proc::ProcStatus> Stop(absl::string_view name, absl::Duration grace, absl::string_view reason,
                                        bool kill);
  absl::StatusOr<ProcInfo> Get(absl::string_view name) const;
  std::vector<ProcInfo> List() const;
  // Calls `fn` with each proc in name order, under the table's lock: `fn` must not
  // call back into the table, the Host or its controller, and must not keep the
  // view or its ProcInfo past its return (the next call reuses it).
  void Visit(absl::FunctionRef<void(const ProcView&)> fn) const;
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> Handle(absl::string_view name) const;
  manager::TerminateSummary TerminateChildren(absl::Duration grace, int max_in_flight, absl::string_view reason);
  bool StopSpawns(std::string why, absl::Time deadline, bool hand_over);
  int live_procs() const;
  uint64_t spawned() const { return spawned_.load(std::memory_order_relaxed); }

  // Leases (daemon/lease_keeper.h). RenewLease: every live (or restarting) proc of
  // `owner` whose lease has not run out expires one TTL after `now`; returns how
  // many and the earliest new deadline (InfiniteFuture for none).
  struct Renewal {
    int procs = 0;
    absl::Time expires_at = absl::InfiniteFuture();
  };
  Renewal RenewLease(absl::string_view owner, absl::Time now);
  // The earliest deadline of a lease not yet run out (InfiniteFuture: none).
  absl::Time NextLeaseExpiry() const;
  // Marks every lease past its deadline at `now` as run out and its proc as
  // stopped for good (no restart policy applies from here); returns them, for
  // the caller to terminate. A starting proc's lease is left for when it is live.
  std::vector<std::pair<std::string, Lease>> ExpireLeases(absl::Time now);

  using EventFn = std::function<void(const HostEvent&)>;
  uint64_t Subscribe(EventFn fn, bool snapshot);
  void Unsubscribe(uint64_t id);

  // Before the Host goes: no more statuses are applied, watches end, restarts stop.
  void Shutdown();

  absl::Mutex& mu() const ABSL_LOCK_RETURNED(mu_) { return mu_; }

 private:
  friend class SupervisionController;
  friend class ProcView;
  struct Gate;

  // manager_.Spawn, and a handshake proc ready without an address is killed.
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> SpawnChecked(const std::string& name,
                                                                    const manager::SpawnSpec& spec);
  // `r`'s incarnation is ready: the route activates. False when the record is not
  // starting or restarting any more (the caller then kills the handle). The
  // caller then follows the handle (Follow), outside the lock.
  bool Activate(ProcRecord& r, std::shared_ptr<manager::ProcHandle> handle) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Loop thread: a status from the exit monitor.
  void OnStatus(const std::string& name, uint64_t gen, const proc::ProcStatus& status);
  // Ends `r` for good: its route bounces what waits and what comes.
  void EndRecord(ProcRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ForgetEnded(size_t keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sets what `r`'s next incarnation starts with, keeping saved_state_total_ in step.
  void SetSavedState(ProcRecord& r, std::optional<std::string> state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Watches a handle the table just activated (`Activate`), from its first status,
  // and returns once the loop has applied the statuses so far: the spawn's result,
  // Get and an event snapshot then agree. Not under mu_ (Watch calls back at once).
  void Follow(const std::string& name, uint64_t gen, const std::shared_ptr<manager::ProcHandle>& h)
      ABSL_LOCKS_EXCLUDED(mu_);
  ProcInfo InfoOf(const ProcRecord& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The same into `out`, whose strings, maps and vectors keep their storage: one
  // ProcInfo filled again for every record of a walk allocates little after the first.
  void FillInfo(const ProcRecord& r, ProcInfo& out) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every input of FillInfo that can change while `r` lives; keep the two in step.
  ProcVersion VersionOf(const ProcRecord& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  ProcRecord* Find(absl::string_view name, uint64_t gen) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status NotFound(absl::string_view name) const;
  void Publish(HostEvent::Kind kind, const std::string& name, const proc::ProcStatus& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(HostEvent e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records `r` as it stands now in the durable table, for a change no event
  // reports (Publish records with every event).
  void Persist(const ProcRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs `fn` on the loop after what the table posted before (under mu_: in order).
  void ToRouter(absl::AnyInvocable<void(Router&)> fn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  manager::ProcManager& manager_;
  manager::BulkTerminate& bulk_;
  channel::EventLoop& loop_;
  Router& router_;
  const Options opts_;
  SupervisionController* controller_ = nullptr;
  ProcRecorder recorder_;
  GroupRecorder group_recorder_;
  std::function<proc::ProcId(absl::string_view)> id_of_;
  channel::ChannelAddr backend_ = channel::ChannelAddr::Local(0);
  std::string host_name_;
  std::shared_ptr<Gate> gate_;  // lets handle watchers reach the loop while the table lives

  // A record for a new name: its generation, labels, spec, and times of now.
  // A lease given is armed: it expires one TTL from now.
  std::unique_ptr<ProcRecord> NewRecord(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                                        std::optional<Lease> lease = std::nullopt) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `supervision` without its group if the proc cannot join it (logged).
  Supervision KnownGroupOnly(const std::string& name, Supervision supervision) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A proc a previous hostd ran, known again under a name not known here: its
  // record (NewRecord, with `incarnation` and `status`), its supervision and route.
  ProcRecord& Restore(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                      const Supervision& supervision, int incarnation, const proc::ProcStatus& status,
                      std::optional<Lease> lease) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A restored record that stays ended with its status (no restart).
  void EndRestored(ProcRecord& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  // In name order, so that listing walks it as it is, with no sort per call.
  absl::btree_map<std::string, std::unique_ptr<ProcRecord>> records_ ABSL_GUARDED_BY(mu_);
  // Ends, oldest first, as {name, ended_seq}: an entry whose record has since
  // been restarted, ended again or replaced is stale. ForgetEnded keeps stale
  // entries to at most as many as the ended records (a name spawned, ended and
  // spawned again forever must not grow it).
  std::vector<std::pair<std::string, uint64_t>> ended_order_ ABSL_GUARDED_BY(mu_);
  uint64_t next_ended_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t next_gen_ ABSL_GUARDED_BY(mu_) = 1;
  size_t saved_state_total_ ABSL_GUARDED_BY(mu_) = 0;  // of every record's saved_state
  int spawns_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::string stopped_why_ ABSL_GUARDED_BY(mu_);
  bool handing_over_ ABSL_GUARDED_BY(mu_) = false;  // StopSpawns for a hand-over
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t event_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_subscriber_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<std::pair<uint64_t, EventFn>> subscribers_ ABSL_GUARDED_BY(mu_);
  Supervisor supervisor_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> spawned_{0};
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_PROC_TABLE_H_
