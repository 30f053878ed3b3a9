// Host: the mux of one machine (DESIGN.md "The picture"). It owns a frontend
// listener (`*`, the one address clients and other hosts send to), a backend
// listener (`#`, where its procs send everything not addressed to themselves), a
// route table from proc name to the proc's backend link, and uses a ProcManager to
// run the procs (the process manager in production, the in-process one in tests).
//
//   auto mgr = std::make_unique<manager::LocalProcManager>();
//   auto host = Host::Start(*mgr, *mgr, {});
//   auto a = (*host)->Spawn("a", spec);                 // ProcId "<frontend>,a"
//   ... send to "<frontend>,a" through (*host)->frontend() ...
//   (*host)->TerminateChildren(absl::Seconds(5), 64, "shutdown");
//
// Routing. A message is routed by its `dest`, `<addr>,<name>`, read from the
// envelope; the frame body is forwarded as it arrived, never re-encoded.
//   - `<addr>` is this host's frontend (compared as text with frontend().ToString()):
//     to the proc `<name>`. Ready: forwarded on the proc's backend link. Starting:
//     held in a bounded per-proc buffer and flushed in order once it is ready, or
//     returned (kProcExited) if the spawn fails, or (kBufferFull) when the buffer is
//     full. Ended: returned at once with its terminal status (the route follows the
//     exit monitor). Ready without an address (exec/notify readiness): kUnroutable.
//     No such proc: kUnknownProc at once.
//   - Any other `<addr>`, arriving on the backend: forwarded to that host's frontend
//     over a cached dialed link. Arriving on the frontend: kUnroutable (a frontend
//     serves only its own procs, so messages cannot circle between hosts).
// Undeliverable messages go back to their `src` with the reason; a returned message
// that cannot be delivered is dropped and counted, never returned again.
// Backpressure: a proc link with a full queue stops the host reading from the link
// the message came on until it has room (channel/receiver.h).
//
// Spawn is transactional: one deadline (SpawnSpec::ready_timeout) covers launch and
// readiness; on failure nothing is left registered or running. Ended procs stay in
// the table (so messages to them bounce with their status, and Get reports it)
// until the name is spawned again, TerminateChildren frees it, or more than
// `ended_procs_kept` have ended.
//
// Every change is published as a HostEvent to subscribers, in order. Thread-safe.
// Destroying the Host closes its listeners and links; it does not stop the procs
// (call TerminateChildren first, or destroy the manager).
#ifndef HOSTD_DAEMON_HOST_H_
#define HOSTD_DAEMON_HOST_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "channel/event_loop.h"
#include "channel/listener.h"
#include "channel/sender.h"
#include "daemon/supervisor.h"
#include "manager/proc_manager.h"

namespace hostd::daemon {

struct HostOptions {
  channel::ChannelAddr frontend = channel::ChannelAddr::Local(0);
  channel::ChannelAddr backend = channel::ChannelAddr::Local(0);
  // Per starting proc: messages held until it is ready.
  size_t starting_buffer_messages = 1024;
  size_t starting_buffer_bytes = 16u << 20;
  // Ended procs remembered (their names then free up oldest first).
  size_t ended_procs_kept = 4096;
  channel::ListenerOptions listener = {};
  channel::SenderOptions proc_link = {};    // to procs (a restarted proc's messages are returned)
  channel::SenderOptions remote_link = {};  // to other hosts' frontends
  // Supervision: the grace each member gets when its group restarts or gives up,
  // how many restarts run at once (more wait their turn), and the bytes of saved
  // state (ProcRuntime::SaveState) kept for all procs together.
  absl::Duration supervisor_stop_grace = absl::Seconds(5);
  int supervisor_threads = 4;
  size_t saved_state_bytes = 64u << 20;
};

using Labels = std::map<std::string, std::string>;

// One proc as the host knows it.
struct ProcInfo {
  std::string name{};
  proc::ProcId id;
  proc::ProcStatus status{};
  Labels labels{};
  std::string program{};
  std::vector<std::string> args{};
  absl::Time created_at{};
  std::shared_ptr<manager::ProcHandle> handle{};  // null while starting or restarting
  int incarnation = 1;               // 1, then +1 for each start after the first
  absl::Time incarnation_started{};    // when the current incarnation began to start
  Supervision supervision{};
  std::vector<std::string> groups{};   // from the top-level group down to its own
  bool restarting = false;           // ended; its next incarnation is on the way
  // The Host has applied its end and will not start it again. (`status` may be
  // terminal a moment before: a live handle's status is read directly.)
  bool ended = false;
  size_t saved_state_bytes = 0;      // what its next incarnation would start with
};

// What happened. A proc's life: kSpawned, kTransition (Running, Ready, Stopping, and
// its end, with the status), then either kTerminated (it was asked to stop), or
// kRestarting (its supervisor starts it again: attempt, delay, why;
// `start_failed` when the end was a start that never became ready), a
// kSpawnFailed for a start that failed, kRestarted once the new incarnation is
// ready, or kGaveUp (it stays ended). kGaveUp with `is_group` names a group that
// went past its restart intensity. kRestartFailed: a requested restart could not
// get the proc's state; the proc keeps running. kRemoved: the name was forgotten.
struct HostEvent {
  enum class Kind {
    kSnapshot, kSpawned, kTransition, kSpawnFailed, kRemoved,
    kRestarting, kRestarted, kGaveUp, kRestartFailed, kTerminated,
  };
  uint64_t seq = 0;
  Kind kind = Kind::kTransition;
  std::string name{};  // the proc, or the group for a group's kGaveUp
  proc::ProcStatus status{};
  absl::Time at{};
  int incarnation = 0;
  std::vector<std::string> groups{};  // the proc's (or group's) groups, top-level first
  bool is_group = false;
  int attempt = 0;                  // kRestarting
  absl::Duration delay{};           // kRestarting
  bool start_failed = false;        // kRestarting, kSpawnFailed (of a restart)
  std::string detail{};             // why, for kRestarting, kGaveUp, kRestartFailed, kSpawnFailed
};

// The supervision tree now (Host::Tree): groups and procs in start order.
struct TreeNode {
  bool is_group = false;
  std::string name;
  GroupInfo group;  // is_group
  std::optional<ProcInfo> proc;  // !is_group
  manager::ProcUsage usage;  // !is_group: its processes' (ProcHandle::Usage)
  std::vector<TreeNode> children;
};

struct RestartRequest {
  bool handoff = true;  // ask the proc for its state and start the next incarnation with it
  absl::Duration handoff_timeout = absl::Seconds(10);
  absl::Duration grace = absl::Seconds(5);  // for stopping the running incarnation
};

struct BroadcastResult {
  int targeted = 0;   // procs the signal was sent to (live or starting)
  int delivered = 0;  // acknowledged by the proc's runtime
  int queued = 0;     // waiting in the buffer of a starting or restarting proc
  int failed = 0;     // came back (the proc ended, ...)
};

struct HostCounters {
  uint64_t forwarded = 0;  // messages handed to a proc link or a remote host link
  uint64_t returned = 0;   // messages sent back to their src
  uint64_t dropped = 0;    // returned messages that could not be delivered either
  uint64_t spawned = 0;    // successful spawns
};

class Host {
 public:
  static absl::StatusOr<std::unique_ptr<Host>> Start(manager::ProcManager& manager, manager::BulkTerminate& bulk,
                                                     HostOptions options = {});
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  const channel::ChannelAddr& frontend() const;
  const channel::ChannelAddr& backend() const;
  // The frontend listener's random incarnation id.
  uint64_t incarnation() const;
  absl::Time started_at() const { return started_at_; }
  proc::ProcId IdOf(absl::string_view name) const;

  // Spawns `name` and waits until it is ready. InvalidArgument for a bad name,
  // labels or restart policy; AlreadyExists if a live (starting, restarting) proc
  // has the name; NotFound or FailedPrecondition for its group (Supervisor::
  // CheckJoin); Unavailable after StopSpawns; otherwise the manager's error
  // (nothing is left of the proc). A first start that fails is not retried.
  absl::StatusOr<ProcInfo> Spawn(const std::string& name, const manager::SpawnSpec& spec, Labels labels = {},
                                 Supervision supervision = {});
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
  // The handle of a spawned proc: NotFound, or Unavailable while it is starting.
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> Handle(absl::string_view name) const;

  // Terminates every live proc (BulkTerminate::TerminateAll) and frees the names
  // of all ended ones. Restarts under way are cancelled: a restarting proc ends.
  manager::TerminateSummary TerminateChildren(absl::Duration grace, int max_in_flight, absl::string_view reason);
  // Later spawns, and restarts, fail with Unavailable carrying `why`; returns once
  // no spawn or restart is in flight or at `deadline` (false then).
  bool StopSpawns(std::string why, absl::Time deadline);

  // Sends `payload` to `name`'s port from a mailbox of the host itself. `done` runs
  // once (on the host's loop thread): OK with no reply when the proc's link
  // acknowledged it and `reply_timeout` is zero; OK with the reply when one came
  // back within `reply_timeout`; otherwise why not (the return reason in the text).
  // The whole exchange is bounded by `timeout` (+ reply_timeout).
  struct Reply {
    bool replied = false;
    std::string port;
    std::string payload;
  };
  void SendToProc(const std::string& name, const std::string& port, std::string payload, absl::Duration timeout,
                  absl::Duration reply_timeout, absl::AnyInvocable<void(absl::StatusOr<Reply>)> done);

  // `fn` gets every event after this call, in order; with `snapshot`, first one
  // kSnapshot event per known proc (nothing can happen in between). `fn` runs
  // under the host's locks: it must not block or call into the Host.
  using EventFn = std::function<void(const HostEvent&)>;
  uint64_t Subscribe(EventFn fn, bool snapshot);
  void Unsubscribe(uint64_t id);

  HostCounters counters() const;
  int live_procs() const;

  class Router;
  struct Route;
  struct Gate;

 private:
  Host(manager::ProcManager& manager, manager::BulkTerminate& bulk, HostOptions options);

  // Everything below runs on the loop thread.
  bool RouteMessage(channel::Message& msg, const channel::Receiver::Wake& wake, bool from_frontend);
  // `hook`, when given, replaces the default ack callback (and is consumed if the
  // message is taken).
  bool RouteLocal(channel::Message& msg, absl::string_view name, const channel::Receiver::Wake& wake,
                  channel::Sender::Done* hook = nullptr);
  bool RouteRemote(channel::Message& msg, absl::string_view addr, const channel::Receiver::Wake& wake);
  // Posts on `link`; false (and `wake` armed) when its queue is full.
  bool Forward(channel::Sender& link, channel::Message& msg, const channel::Receiver::Wake& wake,
               std::string route_name, uint64_t gen, channel::Sender::Done* hook = nullptr);
  void ForwardFailed(const std::string& name, uint64_t gen, const absl::Status& status, channel::Message msg);
  void Return(channel::Message msg, channel::ReturnReason reason, absl::string_view note);
  void Activate(const std::string& name, uint64_t gen, std::shared_ptr<manager::ProcHandle> handle);
  std::shared_ptr<channel::Sender> LinkOf(Route& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnStatus(const std::string& name, uint64_t gen, const proc::ProcStatus& status);
  void Abandon(const std::string& name, uint64_t gen, const absl::Status& why);

  void Publish(HostEvent::Kind kind, const std::string& name, const proc::ProcStatus& status)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Publish(HostEvent e) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Live(const Route& r) const;

  // Supervision (host_supervision.cc). The loop thread decides, a job thread acts.
  struct Job;
  using Bounce = std::deque<std::pair<std::string, std::deque<std::pair<channel::Message, channel::Sender::Done>>>>;
  // The incarnation of `r` ended on its own (loop thread).
  void OnEnd(Route& r, Bounce* bounce) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyPlan(const std::string& failed, const Supervisor::Plan& plan, bool start_failed, Bounce* bounce)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Ends `r` for good; what waited for it comes back (via `bounce`).
  void EndRoute(Route& r, Bounce* bounce) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BounceAll(Bounce bounce);
  // EndRoute, with the bounce posted to the loop (for callers off the loop).
  void EndSoon(Route& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Keeps saved_state_total_ in step.
  void SetSavedState(Route& r, std::optional<std::string> state) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t WatchRoute(const std::string& name, uint64_t gen, manager::ProcHandle& h);
  void Submit(Job job) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RunJob(const Job& job);
  void StartIncarnation(const std::string& name, uint64_t epoch);
  void OnStartFailed(const std::string& name, uint64_t gen, const absl::Status& why);
  void OnSavedState(channel::Message msg);
  bool Requeue(const std::string& name, channel::Message& msg);
  bool Cancelled(uint64_t epoch) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // manager_.Spawn, and a handshake proc ready without an address is killed.
  absl::StatusOr<std::shared_ptr<manager::ProcHandle>> SpawnChecked(const std::string& name,
                                                                    const manager::SpawnSpec& spec);
  absl::StatusOr<proc::ProcStatus> Stop(absl::string_view name, absl::Duration grace, absl::string_view reason,
                                        bool kill);
  void ForgetEnded(size_t keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  ProcInfo InfoOf(const Route& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  manager::ProcManager& manager_;
  manager::BulkTerminate& bulk_;
  const HostOptions opts_;
  const absl::Time started_at_;
  std::unique_ptr<channel::EventLoop> loop_;
  std::unique_ptr<Router> front_router_;
  std::unique_ptr<Router> back_router_;
  std::unique_ptr<channel::Listener> frontend_;
  std::unique_ptr<channel::Listener> backend_;
  std::string frontend_text_;
  std::string backend_text_;
  std::shared_ptr<Gate> gate_;  // lets handle watchers reach the loop while the Host lives

  // Loop thread only.
  bool closing_ = false;
  absl::flat_hash_map<std::string, std::unique_ptr<channel::Sender>> remotes_;
  absl::flat_hash_map<std::string, std::function<void(channel::Message)>> mailboxes_;
  uint64_t next_mailbox_ = 1;

  mutable absl::Mutex mu_;  // before events_mu_
  absl::flat_hash_map<std::string, std::unique_ptr<Route>> routes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> ended_order_ ABSL_GUARDED_BY(mu_);  // oldest first (may hold stale names)
  uint64_t next_gen_ ABSL_GUARDED_BY(mu_) = 1;
  int spawns_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  std::string stopped_why_ ABSL_GUARDED_BY(mu_);
  uint64_t event_seq_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_subscriber_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<std::pair<uint64_t, EventFn>> subscribers_ ABSL_GUARDED_BY(mu_);
  Supervisor supervisor_ ABSL_GUARDED_BY(mu_);
  uint64_t restart_epoch_ ABSL_GUARDED_BY(mu_) = 1;  // TerminateChildren cancels the jobs of earlier epochs
  bool restarts_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool destroying_ ABSL_GUARDED_BY(mu_) = false;
  int restarts_in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  size_t saved_state_total_ ABSL_GUARDED_BY(mu_) = 0;
  std::unique_ptr<class WorkerPool> jobs_;  // declared last but destroyed first (~Host)

  std::atomic<uint64_t> forwarded_{0};
  std::atomic<uint64_t> returned_{0};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> spawned_{0};
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_HOST_H_
