// Host: the mux of one machine. It owns a frontend listener (`*`, the one address
// clients and other hosts send to), a backend listener (`#`, where its procs send
// everything not addressed to themselves), and uses a ProcManager to run the
// procs (the process manager in production, the in-process one in tests).
//
//   auto mgr = std::make_unique<manager::LocalProcManager>();
//   auto host = Host::Start(*mgr, *mgr, {});
//   auto a = (*host)->Spawn("a", spec);                 // ProcId "<frontend>,a"
//   ... send to "<frontend>,a" through (*host)->frontend() ...
//   (*host)->TerminateChildren(absl::Seconds(5), 64, "shutdown");
//
// The Host is a facade over three parts, each with its own header and contract:
//   - Router (daemon/router.h): the route table and forwarding, owned by the
//     Host's loop thread; the message path takes no lock.
//   - ProcTable (daemon/proc_table.h): the procs, spawn as one transaction, stop,
//     ended-name retention, and the event stream with its snapshot.
//   - SupervisionController (daemon/supervision_controller.h): restart policies
//     and groups applied (jobs, backoff), requested restarts with state handoff,
//     saved state, broadcast signals.
// The Host validates what callers give it (names, labels, restart policies,
// signal names) once, here; the parts take validated input.
//
// Thread-safe. Destroying the Host closes its listeners and links; it does not
// stop the procs (call TerminateChildren first, or destroy the manager).
#ifndef HOSTD_DAEMON_HOST_H_
#define HOSTD_DAEMON_HOST_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "channel/event_loop.h"
#include "channel/listener.h"
#include "channel/sender.h"
#include "daemon/host_types.h"
#include "daemon/proc_table.h"
#include "daemon/router.h"
#include "manager/proc_manager.h"

namespace hostd::daemon {

struct HostOptions {
  channel::ChannelAddr frontend = channel::ChannelAddr::Local(0);
  // The frontend's address as other hosts dial it and ProcIds carry it, when not
  // the bound one (a tcp:/tls: frontend behind NAT, in a pod, bound to 0.0.0.0).
  // Routing compares a message's address with this text byte for byte.
  std::optional<channel::ChannelAddr> advertise;
  channel::ChannelAddr backend = channel::ChannelAddr::Local(0);
  // Per starting proc: messages held until it is ready.
  size_t starting_buffer_messages = 1024;
  size_t starting_buffer_bytes = 16u << 20;
  // Ended procs remembered (their names then free up oldest first).
  size_t ended_procs_kept = 4096;
  // Live (starting, running, restarting) procs at most; past it Spawn is
  // ResourceExhausted naming the limit. 0: no limit.
  size_t max_live_procs = 0;
  channel::ListenerOptions listener = {};
  channel::SenderOptions proc_link = {};    // to procs (a restarted proc's messages are returned)
  channel::SenderOptions remote_link = {};  // to other hosts' frontends
  // Supervision: the grace each member gets when its group restarts or gives up,
  // how many restarts run at once (more wait their turn), and the bytes of saved
  // state (ProcRuntime::SaveState) kept for all procs together.
  absl::Duration supervisor_stop_grace = absl::Seconds(5);
  int supervisor_threads = 4;
  size_t saved_state_bytes = 64u << 20;
  // The grace of a proc whose lease ran out (daemon/lease_keeper.h).
  absl::Duration lease_grace = absl::Seconds(10);
  // A hostd that re-adopts its procs (--keep-procs): until Adopted(), a message for
  // a proc with no route yet waits in its link instead of coming back "unknown
  // proc" (Router, "Re-adoption").
  bool hold_until_adopted = false;
};

class SupervisionController;
class LeaseKeeper;

class Host {
 public:
  static absl::StatusOr<std::unique_ptr<Host>> Start(manager::ProcManager& manager, manager::BulkTerminate& bulk,
                                                     HostOptions options = {});
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  // The advertised frontend address (HostOptions::advertise), else the bound one.
  const channel::ChannelAddr& frontend() const;
  // Where the frontend listener is bound (the concrete port filled in).
  const channel::ChannelAddr& bound_frontend() const;
  const channel::ChannelAddr& backend() const;
  // The frontend listener's random incarnation id.
  uint64_t incarnation() const;
  absl::Time started_at() const { return started_at_; }
  proc::ProcId IdOf(absl::string_view name) const;

  // Spawns `name` and waits until it is ready. InvalidArgument for a bad name,
  // labels or restart policy; ResourceExhausted at max_live_procs; AlreadyExists if a live (starting, restarting) proc
  // has the name; NotFound or FailedPrecondition for its group (Supervisor::
  // CheckJoin); Unavailable after StopSpawns; otherwise the manager's error
  // (nothing is left of the proc). A first start that fails is not retried.
  // With a lease: InvalidArgument naming lease.owner (a name like a proc's) or
  // lease.ttl (kMinLeaseTtl to kMaxLeaseTtl); its deadline is one TTL from now.
  absl::StatusOr<ProcInfo> Spawn(const std::string& name, const manager::SpawnSpec& spec, Labels labels = {},
                                 Supervision supervision = {}, std::optional<Lease> lease = std::nullopt);

  // Client leases (daemon/lease_keeper.h). RenewLease: every live proc of `owner`
  // expires one TTL from now; NotFound when it holds none, InvalidArgument for a
  // bad owner name. HoldLease keeps the owner's leases renewed until
  // ReleaseLease(id), which renews them once more.
  absl::StatusOr<ProcTable::Renewal> RenewLease(const std::string& owner);
  absl::StatusOr<uint64_t> HoldLease(const std::string& owner);
  void ReleaseLease(uint64_t id);
  // Groups (daemon/supervisor.h). RemoveGroup: FailedPrecondition while it has members.
  absl::Status CreateGroup(const std::string& name, const GroupSpec& spec);
  absl::Status RemoveGroup(const std::string& name);

  // Stops a proc for good: its supervisor does not restart it. A restarting proc
  // ends at once (its waiting messages come back). NotFound; Unavailable while its
  // first start is under way. Returns the terminal status.
  absl::StatusOr<proc::ProcStatus> Terminate(absl::string_view name, absl::Duration grace, absl::string_view reason);
  absl::StatusOr<proc::ProcStatus> Kill(absl::string_view name);

  // Restarts a ready proc as its next incarnation, keeping name and address;
  // messages sent meanwhile wait and go to the new incarnation. With handoff, the
  // proc is first asked for its state (agent "handoff"); if it cannot give it, it
  // keeps running, a kRestartFailed event says why and so does the error
  // (FailedPrecondition). Without, the new incarnation starts with the last state
  // the proc saved, if any. Returns once the new incarnation is ready (or why not).
  // Not counted against the restart intensity.
  absl::StatusOr<ProcInfo> Restart(absl::string_view name, const RestartRequest& request);

  // Sends signal `name` (payload "<name>" or "<name>\n<data>", port "signal") to
  // every live proc, or those in `group` and its subgroups, on each link's control
  // lane: it overtakes data still queued for the proc, and whatever the host
  // forwards to the proc after this call reaches it after the signal. Starting
  // and restarting procs get it first when they are ready. `done` runs once, on
  // the loop thread, when every signal is acknowledged or came back.
  // InvalidArgument (to `done`) for a bad name (1-64 of [A-Za-z0-9_.-]) or data
  // over 64 KiB; NotFound for an unknown group.
  void Broadcast(const std::string& name, std::string data, const std::string& group,
                 absl::AnyInvocable<void(absl::StatusOr<BroadcastResult>)> done);

  // The supervision tree: top-level groups and procs, in the order they joined.
  std::vector<TreeNode> Tree() const;
  // NotFound naming the proc when the host does not know it.
  absl::StatusOr<ProcInfo> Get(absl::string_view name) const;
  std::vector<ProcInfo> List() const;
  // Each proc in name order, without copying the list: `fn` runs under the proc
  // table's lock, so it must be quick and must not call into this Host.
  void Visit(absl::FunctionRef<void(const ProcView&)> fn) const;
  // The handle of a spawned proc: NotFound, or Unavailable while it is starting.
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> Handle(absl::string_view name) const;

  // Terminates every live proc (BulkTerminate::TerminateAll) and frees the names
  // of all ended ones. Restarts under way are cancelled: a restarting proc ends.
  manager::TerminateSummary TerminateChildren(absl::Duration grace, int max_in_flight, absl::string_view reason);
  // Draining: new spawns fail with FailedPrecondition naming the drain, while the
  // procs already here keep running (and restarting under their policies).
  // SetDraining(false) takes spawns again. Returns whether it was draining.
  bool SetDraining(bool draining);
  bool draining() const { return draining_.load(std::memory_order_relaxed); }
  // Later spawns, and restarts, fail with Unavailable carrying `why`, and no lease
  // expires any more; returns once no spawn or restart is in flight or at
  // `deadline` (false then). With `hand_over` (the procs are left to the next
  // hostd) a proc whose restart is called off stays restarting, for the next hostd
  // to restart; otherwise it ends.
  bool StopSpawns(std::string why, absl::Time deadline, bool hand_over = false);

  // Sends `payload` to `name`'s port from a mailbox of the host itself. `done` runs
  // once (on the host's loop thread): OK with no reply when the proc's link
  // acknowledged it and `reply_timeout` is zero; OK with the reply when one came
  // back within `reply_timeout`; otherwise why not (the return reason in the text).
  // The whole exchange is bounded by `timeout` (+ reply_timeout).
  using Reply = Router::Reply;
  void SendToProc(const std::string& name, const std::string& port, std::string payload, absl::Duration timeout,
                  absl::Duration reply_timeout, absl::AnyInvocable<void(absl::StatusOr<Reply>)> done);

  // `fn` gets every event after this call, in order; with `snapshot`, first one
  // kSnapshot event per known proc (nothing can happen in between). `fn` runs
  // under the host's locks: it must not block or call into the Host.
  using EventFn = std::function<void(const HostEvent&)>;
  uint64_t Subscribe(EventFn fn, bool snapshot);
  void Unsubscribe(uint64_t id);

  // The durable proc table's feed and hostd's re-adoption after a restart
  // (daemon/adoption.h); see ProcTable::SetRecorder, Adopt, RestoreEnded,
  // RestoreMissedEnd, ApplyMissedEnds and RestoreRestarting.
  void SetRecorder(ProcRecorder recorder, GroupRecorder group_recorder);
  absl::Status Adopt(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                     const Supervision& supervision, int incarnation, std::shared_ptr<manager::ProcHandle> handle,
                     std::optional<Lease> lease = std::nullopt);
  void RestoreEnded(const std::string& name, const manager::SpawnSpec& spec, Labels labels, int incarnation,
                    const proc::ProcStatus& status);
  bool RestoreMissedEnd(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                        const Supervision& supervision, int incarnation, const proc::ProcStatus& status,
                        std::optional<Lease> lease);
  void ApplyMissedEnds(const std::vector<std::string>& names);
  absl::Status RestoreRestarting(const std::string& name, const manager::SpawnSpec& spec, Labels labels,
                                 const Supervision& supervision, int incarnation, const proc::ProcStatus& status,
                                 std::optional<Lease> lease);
  // Re-adoption is over (with hold_until_adopted): messages for names still
  // unknown come back "unknown proc" from now on. Returns once the router knows.
  void Adopted();

  // A hand-over to the next hostd (hostd --keep-procs): closes the frontend and
  // backend listeners (gracefully: every dialer is told, so what it has not had
  // acknowledged goes back to its sender or is sent again to the next hostd), then
  // waits until every message already taken has been acknowledged by its proc or
  // remote host, or `deadline`. Returns how many were still unacknowledged then
  // (0: nothing taken is lost). The procs keep running.
  size_t Quiesce(absl::Time deadline);

  HostCounters counters() const;
  int live_procs() const;
  // The message path's counters (any thread, lock-free reads).
  Router::Counters router_counters() const;
  // Link stats by Router::LinkKind, read on the loop thread (waits for it).
  std::array<Router::LinkTotals, Router::kLinkKinds> link_stats() const;
  // True once the loop thread has run a no-op posted now, within `timeout`: the
  // message path is not stuck. Any thread but the loop's.
  bool Responsive(absl::Duration timeout) const;

 private:
  Host(manager::ProcManager& manager, manager::BulkTerminate& bulk, HostOptions options);
  // Loop thread: a heartbeat (kLivenessMailbox) from one of this host's procs goes
  // to its handle; one from anyone else, or for a proc not running, is dropped (its
  // sender's link acknowledged it all the same: a heartbeat expects no answer).
  void OnHeartbeat(const channel::Message& msg);

  const HostOptions opts_;
  const absl::Time started_at_;
  std::atomic<bool> draining_{false};
  // Declared in the order they are built; ~Host takes them down in its own order.
  std::unique_ptr<channel::EventLoop> loop_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<ProcTable> table_;
  std::unique_ptr<SupervisionController> controller_;
  std::unique_ptr<LeaseKeeper> leases_;
  std::unique_ptr<channel::Listener> frontend_;
  std::unique_ptr<channel::Listener> backend_;
  channel::ChannelAddr advertised_ = channel::ChannelAddr::Local(0);
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_HOST_H_
