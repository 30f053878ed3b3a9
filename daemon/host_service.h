// HostService: hostd.v1.HostService (proto/hostd/v1/host.proto) over a Host.
//
// Built on gRPC's callback API so that no gRPC thread ever waits on a proc: calls
// that block in the manager (spawn, terminate, kill, terminate-all) run on the
// service's own bounded worker pool; WaitProc, WatchProcs and SendMessage finish
// from the proc's or the host's events; StreamLogs reads the log file in chunks
// and, following, polls it on the service's timer loop.
//
// A cancelled call is answered CANCELLED at once; work it already started (a
// spawn, say) still completes, and its result is visible through GetProc.
// Thread-safe. The Host must outlive the service, and the gRPC server must be shut
// down before the service is destroyed.
#ifndef HOSTD_DAEMON_HOST_SERVICE_H_
#define HOSTD_DAEMON_HOST_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "channel/event_loop.h"
#include "daemon/death_history.h"
#include "daemon/exec_policy.h"
#include "daemon/host.h"
#include "daemon/proc_listing.h"
#include "daemon/worker_pool.h"
// The generated raw ListProcs hides the typed one it replaces; that is its purpose.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Woverloaded-virtual"
#include "hostd/v1/host.grpc.pb.h"
#pragma GCC diagnostic pop

namespace hostd::daemon {

// Who made a control call: the peer's credentials (SO_PEERCRED) when it came over
// hostd's unix control socket, -1 otherwise; its address (gRPC's peer string, or
// the socket's peer address); and over TLS the identity of its client certificate
// (its subject common name, else its first subject alternative name), "" without
// one.
struct Caller {
  int64_t uid = -1;
  int64_t pid = -1;
  std::string peer;
  std::string identity{};
};

struct HostServiceOptions {
  std::string version = "dev";
  std::string manager_kind = "local";  // "process" or "local", for GetHostInfo
  std::string cgroup_fallback;         // why procs have no cgroups (empty: they do)
  // Where a proc's stdout (false) or stderr (true) log is, and its rotated files
  // (rotation 1 the newest); unset: StreamLogs is UNIMPLEMENTED (in-process procs
  // have no logs).
  std::function<std::string(const std::string& name, bool stderr_log, int rotation)> log_path;
  // Each spawn request's outcome, OK or why not (HostMetrics::SpawnDone).
  std::function<void(const absl::Status&)> on_spawn_done;
  // After a Drain call, with the state now (the daemon turns its health with it).
  std::function<void(bool draining)> on_drain;
  // Who a call comes from, for the request log lines (daemon/control_socket.h);
  // unset: gRPC's peer string alone.
  std::function<Caller(const std::string& grpc_peer)> caller_of;
  int workers = 32;                  // threads for blocking manager calls
  size_t max_queued_calls = 10000;   // beyond this, RESOURCE_EXHAUSTED
  size_t max_watch_backlog = 65536;  // events a slow WatchProcs client may lag behind
  // Entries one SpawnProcs may carry; more is RESOURCE_EXHAUSTED naming the limit.
  size_t max_spawn_batch = 1000;
  // Bulk replies (SpawnProcs, TerminateAll, ListProcs) stop adding detail at this
  // size, under gRPC's default 4 MiB client limit (see each reply's fields).
  size_t reply_budget_bytes = 3u << 20;
  // WatchProcs streams open at once; one more is refused with RESOURCE_EXHAUSTED.
  size_t max_watch_streams = 1024;
  // Bytes of events queued for all WatchProcs streams together. Past it, a stream
  // holding more than its fair share (this / open streams) is ended with
  // RESOURCE_EXHAUSTED at its next event, while one within its share keeps
  // receiving: the total stays under twice this, plus one event per stream.
  size_t max_watch_bytes = 64 << 20;
  // Who may run what (checked on the resolved program, per client certificate identity).
  ExecPolicy exec_policy;
  // Upgrade: starts the hand-over to the binary at the path and returns at once
  // (the daemon re-executes once the reply is out); unset: UNIMPLEMENTED.
  std::function<absl::Status(const std::string& path)> upgrade;
  // Each name's recent ends for GetProc (daemon/death_history.h); unset: none.
  const DeathHistory* deaths = nullptr;
};

// What every WatchProcs stream of one service shares: its count and queued bytes.
struct WatchBudget {
  WatchBudget(size_t max_streams, size_t max_bytes) : max_streams(max_streams), max_bytes(max_bytes) {}
  const size_t max_streams;
  const size_t max_bytes;
  std::atomic<size_t> streams{0};
  std::atomic<size_t> bytes{0};
};

// The open WatchProcs and StreamLogs streams of one service, so that shutdown can
// end them all (a stream that never ends would hold the gRPC server's Shutdown
// until its deadline and then be cut off as CANCELLED). Thread-safe.
class OpenStreams {
 public:
  class Endable {
   public:
    // Finishes the stream with `s` once what it holds is written; it takes nothing more.
    virtual void EndWhenDrained(const grpc::Status& s) = 0;

   protected:
    ~Endable() = default;
  };
  // A stream's entry: it clears `stream` (under `mu`) before it is deleted.
  struct Slot {
    absl::Mutex mu;
    Endable* stream ABSL_GUARDED_BY(mu) = nullptr;
  };

  // Registers a stream; after EndAll, ends it at once with EndAll's status.
  void Add(const std::shared_ptr<Slot>& slot);
  // Ends every registered stream, and every later one, with `s`.
  void EndAll(const absl::Status& s);
  // The status EndAll gave, if it has run.
  std::optional<absl::Status> ended() const;

 private:
  static void End(const std::shared_ptr<Slot>& slot, const absl::Status& s);

  mutable absl::Mutex mu_;
  std::vector<std::weak_ptr<Slot>> slots_ ABSL_GUARDED_BY(mu_);
  size_t prune_at_ ABSL_GUARDED_BY(mu_) = 64;
  std::optional<absl::Status> ended_ ABSL_GUARDED_BY(mu_);
};

// ListProcs is served raw: its reply is assembled from bytes (daemon/proc_listing.h).
class HostService final : public v1::HostService::WithRawCallbackMethod_ListProcs<v1::HostService::CallbackService> {
 public:
  HostService(Host& host, HostServiceOptions options);
  ~HostService() override;

  grpc::ServerUnaryReactor* SpawnProc(grpc::CallbackServerContext* ctx, const v1::SpawnProcRequest* req,
                                      v1::SpawnProcResponse* resp) override;
  grpc::ServerUnaryReactor* SpawnProcs(grpc::CallbackServerContext* ctx, const v1::SpawnProcsRequest* req,
                                       v1::SpawnProcsResponse* resp) override;
  grpc::ServerUnaryReactor* GetProc(grpc::CallbackServerContext* ctx, const v1::GetProcRequest* req,
                                    v1::Proc* resp) override;
  grpc::ServerUnaryReactor* ListProcs(grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* req,
                                      grpc::ByteBuffer* resp) override;
  grpc::ServerUnaryReactor* WaitProc(grpc::CallbackServerContext* ctx, const v1::WaitProcRequest* req,
                                     v1::Proc* resp) override;
  grpc::ServerUnaryReactor* TerminateProc(grpc::CallbackServerContext* ctx, const v1::TerminateProcRequest* req,
                                          v1::Proc* resp) override;
  grpc::ServerUnaryReactor* KillProc(grpc::CallbackServerContext* ctx, const v1::KillProcRequest* req,
                                     v1::Proc* resp) override;
  grpc::ServerUnaryReactor* TerminateAll(grpc::CallbackServerContext* ctx, const v1::TerminateAllRequest* req,
                                         v1::TerminateAllResponse* resp) override;
  grpc::ServerWriteReactor<v1::ProcEvent>* WatchProcs(grpc::CallbackServerContext* ctx,
                                                      const v1::WatchProcsRequest* req) override;
  grpc::ServerWriteReactor<v1::LogChunk>* StreamLogs(grpc::CallbackServerContext* ctx,
                                                     const v1::StreamLogsRequest* req) override;
  grpc::ServerUnaryReactor* SendMessage(grpc::CallbackServerContext* ctx, const v1::SendMessageRequest* req,
                                        v1::SendMessageResponse* resp) override;
  grpc::ServerUnaryReactor* CreateGroup(grpc::CallbackServerContext* ctx, const v1::CreateGroupRequest* req,
                                        v1::Group* resp) override;
  grpc::ServerUnaryReactor* DeleteGroup(grpc::CallbackServerContext* ctx, const v1::DeleteGroupRequest* req,
                                        v1::DeleteGroupResponse* resp) override;
  grpc::ServerUnaryReactor* RestartProc(grpc::CallbackServerContext* ctx, const v1::RestartProcRequest* req,
                                        v1::Proc* resp) override;
  grpc::ServerUnaryReactor* BroadcastSignal(grpc::CallbackServerContext* ctx, const v1::BroadcastSignalRequest* req,
                                            v1::BroadcastSignalResponse* resp) override;
  grpc::ServerUnaryReactor* GetTree(grpc::CallbackServerContext* ctx, const v1::GetTreeRequest* req,
                                    v1::Tree* resp) override;
  grpc::ServerUnaryReactor* Upgrade(grpc::CallbackServerContext* ctx, const v1::UpgradeRequest* req,
                                    v1::UpgradeResponse* resp) override;
  grpc::ServerUnaryReactor* GetHostInfo(grpc::CallbackServerContext* ctx, const v1::GetHostInfoRequest* req,
                                        v1::HostInfo* resp) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* ctx, const v1::DrainRequest* req,
                                  v1::DrainResponse* resp) override;
  grpc::ServerUnaryReactor* RenewLease(grpc::CallbackServerContext* ctx, const v1::RenewLeaseRequest* req,
                                       v1::RenewLeaseResponse* resp) override;

  // Ends every open WatchProcs stream with `why` once it has written the events it
  // holds, and refuses later ones with it; with `logs`, the StreamLogs streams too.
  // Called at shutdown before the gRPC server's, which then need not wait them
  // out. (When every proc has ended, the followers of logs end by themselves, each
  // with the whole log: leave `logs` off.)
  void EndStreams(const absl::Status& why, bool logs);

  // WatchProcs streams open now, and the bytes of events queued for them.
  size_t watch_streams() const { return watch_budget_->streams.load(); }
  size_t watch_bytes() const { return watch_budget_->bytes.load(); }

 private:
  Caller CallerOf(grpc::CallbackServerContext& ctx) const;
  // Arms spec.authorize with the exec policy for this call's client identity: the
  // manager asks it with the resolved program before each launch.
  void Authorize(grpc::CallbackServerContext& ctx, manager::SpawnSpec& spec) const;

  Host& host_;
  const HostServiceOptions opts_;
  // Gives freed heap back to the system soon after a large call (malloc_trim),
  // once per burst of them; on timers_.
  void TrimSoon();

  ProcListing listing_;
  std::shared_ptr<WatchBudget> watch_budget_;
  OpenStreams open_watches_;
  OpenStreams open_logs_;
  std::unique_ptr<channel::EventLoop> timers_;  // deadlines, log polling, heap trims
  WorkerPool pool_;
  std::atomic<bool> trim_armed_{false};
};

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_HOST_SERVICE_H_
