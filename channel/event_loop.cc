#include "channel/event_loop.h"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/notification.h"
#include "boost/asio/post.hpp"

namespace hostd::channel {

EventLoop::EventLoop(std::string name) : name_(std::move(name)), ctx_(1), work_(boost::asio::make_work_guard(ctx_)) {}

std::unique_ptr<EventLoop> EventLoop::Start(std::string name) {
  std::unique_ptr<EventLoop> loop(new EventLoop(std::move(name)));
  EventLoop* raw = loop.get();
  loop->thread_ = std::thread([raw] {
    pthread_setname_np(pthread_self(), raw->name_.substr(0, 15).c_str());
    raw->ctx_.run();
  });
  return loop;
}

EventLoop::~EventLoop() {
  work_.reset();
  ctx_.stop();
  if (thread_.joinable()) thread_.join();
}

void EventLoop::Post(absl::AnyInvocable<void()> fn) {
  // Asio handlers must be copyable in Boost 1.81; the shared_ptr carries the move-only callable.
  auto shared = std::make_shared<absl::AnyInvocable<void()>>(std::move(fn));
  boost::asio::post(ctx_, [shared] { (*shared)(); });
}

void EventLoop::AssertInLoop(const char* where) const {
  if (InLoopThread()) return;
  std::fprintf(stderr, "hostd: %s runs only on loop \"%s\", but was called from another thread\n", where,
               name_.c_str());
  std::abort();
}

void EventLoop::RunSync(absl::AnyInvocable<void()> fn) {
  if (InLoopThread()) {
    fn();
    return;
  }
  absl::Notification done;
  Post([&] {
    fn();
    done.Notify();
  });
  done.WaitForNotification();
}

}  // namespace hostd::channel
