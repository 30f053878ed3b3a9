#include "hostctl/progress.h"

#include <unistd.h>

#include <cstdio>

namespace hostd::hostctl {

Progress::Progress(Client& c, std::string verb, int total, std::function<bool(const v1::ProcEvent&)> counts)
    : verb_(std::move(verb)), total_(total) {
  if (!isatty(STDERR_FILENO) || total <= 1) return;
  c.Prepare(ctx_, absl::InfiniteDuration());
  reader_ = c.stub().WatchProcs(&ctx_, v1::WatchProcsRequest());
  thread_ = std::thread([this, counts] {
    v1::ProcEvent e;
    while (reader_->Read(&e)) {
      if (!counts(e)) continue;
      fprintf(stderr, "\r%s %d/%d", verb_.c_str(), ++done_, total_);
    }
  });
}

Progress::~Progress() {
  if (!reader_) return;
  ctx_.TryCancel();
  thread_.join();
  fprintf(stderr, "\n");
}

}  // namespace hostd::hostctl
