// EventLoop: one Asio io_context and the thread that runs it.
//
// Each piece of link state belongs to one loop and is touched only on its thread;
// other threads hand work over with `Post`. Listeners and senders take the loop
// they run on; the loop must outlive them.
//
//   auto loop = EventLoop::Start("links");
//   auto listener = Serve(*loop, addr, receiver);
//
// Destroying the loop stops it and joins its thread; handlers still queued are
// destroyed without running. Thread-safe.
#ifndef HOSTD_CHANNEL_EVENT_LOOP_H_
#define HOSTD_CHANNEL_EVENT_LOOP_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"

namespace hostd::channel {

class EventLoop {
 public:
  static std::unique_ptr<EventLoop> Start(std::string name);
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  boost::asio::io_context& context() { return ctx_; }
  const std::string& name() const { return name_; }
  bool InLoopThread() const { return std::this_thread::get_id() == thread_.get_id(); }
  // For methods that may run only on this loop: aborts with `where` named when
  // called from another thread (a programmer error, so also in release builds).
  void AssertInLoop(const char* where) const;

  void Post(absl::AnyInvocable<void()> fn);
  // Runs `fn` on the loop and waits for it; runs it inline when already on the loop.
  void RunSync(absl::AnyInvocable<void()> fn);

 private:
  explicit EventLoop(std::string name);

  std::string name_;
  boost::asio::io_context ctx_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  std::thread thread_;
};

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_EVENT_LOOP_H_
