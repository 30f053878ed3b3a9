// Progress: "<verb> k/n" on stderr while a bulk call runs, counted from lifecycle
// events on a side WatchProcs stream. Shown only when stderr is a terminal and
// n > 1; otherwise it does nothing.
//
//   {
//     Progress progress(c, "ready", count, [](const v1::ProcEvent& e) { return ...; });
//     s = c.stub().SpawnProcs(&ctx, req, &resp);
//   }  // the stream is cancelled and the line ended here
//
// The events are read on a thread of its own, joined by the destructor.
#ifndef HOSTD_HOSTCTL_PROGRESS_H_
#define HOSTD_HOSTCTL_PROGRESS_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "grpcpp/client_context.h"
#include "grpcpp/support/sync_stream.h"
#include "hostctl/client.h"

namespace hostd::hostctl {

class Progress {
 public:
  // `counts` says whether an event is one more of the `total`.
  Progress(Client& c, std::string verb, int total, std::function<bool(const v1::ProcEvent&)> counts);
  ~Progress();

  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

 private:
  std::string verb_;
  int total_;
  int done_ = 0;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<v1::ProcEvent>> reader_;
  std::thread thread_;
};

}  // namespace hostd::hostctl

#endif  // HOSTD_HOSTCTL_PROGRESS_H_
