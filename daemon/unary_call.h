// Unary calls of the gRPC callback API answered later, from another thread (a
// worker, a proc's event, a timer), for HostService (daemon/host_service.h).
//
//   auto* call = new UnaryCall<v1::Proc>(resp);              // the reactor to return
//   auto st = call->state();                                 // keep this, not `call`
//   ... later, on any thread: UnaryCall<v1::Proc>::Complete(st, status, fill);
//
// Complete fills the response and finishes exactly once, never after OnDone (so
// never into a freed response); a cancelled call is answered CANCELLED at once and
// later completions are ignored. OnPool runs blocking work on a WorkerPool and
// completes with its result; Answer finishes a call that needs no waiting.
#ifndef HOSTD_DAEMON_UNARY_CALL_H_
#define HOSTD_DAEMON_UNARY_CALL_H_

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "daemon/proto_convert.h"
#include "daemon/worker_pool.h"
#include "grpcpp/support/server_callback.h"

namespace hostd::daemon {

// A unary call finished from another thread: the response is filled and Finish
// runs exactly once, never after OnDone (so never into a freed response).
template <typename Resp>
class UnaryCall final : public grpc::ServerUnaryReactor {
 public:
  struct State {
    absl::Mutex mu;
    UnaryCall* call ABSL_GUARDED_BY(mu);
    Resp* resp ABSL_GUARDED_BY(mu);
    bool finished ABSL_GUARDED_BY(mu) = false;
    std::vector<std::function<void()>> on_done ABSL_GUARDED_BY(mu);
  };
  using StatePtr = std::shared_ptr<State>;

  explicit UnaryCall(Resp* resp) : state_(std::make_shared<State>()) {
    absl::MutexLock lock(&state_->mu);
    state_->call = this;
    state_->resp = resp;
  }
  const StatePtr& state() const { return state_; }

  // Fills the response with `fill` (when `s` is OK) and finishes; a no-op if the
  // call has finished already.
  static void Complete(const StatePtr& st, const grpc::Status& s, const std::function<void(Resp&)>& fill = nullptr) {
    UnaryCall* call;
    {
      absl::MutexLock lock(&st->mu);
      if (st->finished || st->call == nullptr) return;
      st->finished = true;
      if (s.ok() && fill) fill(*st->resp);
      call = st->call;
    }
    call->Finish(s);
  }
  static void Complete(const StatePtr& st, const absl::Status& s, const std::function<void(Resp&)>& fill = nullptr) {
    Complete(st, ToGrpc(s), fill);
  }
  // Runs `fn` once the call is over (at once if it is).
  static void OnDoneRun(const StatePtr& st, std::function<void()> fn) {
    {
      absl::MutexLock lock(&st->mu);
      if (st->call != nullptr) {
        st->on_done.push_back(std::move(fn));
        return;
      }
    }
    fn();
  }

  void OnCancel() override { Complete(state_, grpc::Status::CANCELLED); }
  void OnDone() override {
    std::vector<std::function<void()>> cleanups;
    {
      absl::MutexLock lock(&state_->mu);
      state_->call = nullptr;
      state_->resp = nullptr;
      cleanups.swap(state_->on_done);
    }
    for (auto& fn : cleanups) fn();
    delete this;
  }

 private:
  StatePtr state_;
};

// A unary call answered right away.
template <typename Resp>
inline grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const absl::Status& s) {
  grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(ToGrpc(s));
  return r;
}

// Runs `work` on the pool, then completes the call with its status (and fill).
template <typename Resp>
inline grpc::ServerUnaryReactor* OnPool(WorkerPool& pool, Resp* resp, std::function<absl::Status(Resp&)> work) {
  auto* call = new UnaryCall<Resp>(resp);
  auto st = call->state();
  absl::Status queued = pool.Submit([st, work = std::move(work)] {
    Resp out;
    absl::Status s = work(out);
    UnaryCall<Resp>::Complete(st, s, [&out](Resp& r) { r = std::move(out); });
  });
  if (!queued.ok()) UnaryCall<Resp>::Complete(st, queued);
  return call;
}

}  // namespace hostd::daemon

#endif  // HOSTD_DAEMON_UNARY_CALL_H_
