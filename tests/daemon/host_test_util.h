// Shared by the Host's tests: a client outside the host, an echo proc, waiting
// for events.
#ifndef HOSTD_TESTS_DAEMON_HOST_TEST_UTIL_H_
#define HOSTD_TESTS_DAEMON_HOST_TEST_UTIL_H_

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "channel/listener.h"
#include "daemon/host.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "manager/local_proc_manager.h"
#include "testing/eventually.h"
#include "testing/status_matchers.h"

namespace hostd::daemon {

using channel::ChannelAddr;
using channel::Inbox;
using channel::Message;
using ::hostd::testing::Eventually;
using ::hostd::testing::HangGuard;
using ::hostd::testing::IsOk;
using ::hostd::testing::kHangGuard;
using manager::SpawnSpec;

inline  // A proc that answers every message on "echo" with the same payload on "echo.reply".
    SpawnSpec
    EchoSpec() {
  SpawnSpec spec;
  spec.local_setup = [](proc::ProcRuntime& rt) {
    return rt.Bind("echo", [&rt](Message m) { (void)rt.Reply(m, "echo.reply", m.payload()); });
  };
  return spec;
}

// A client outside the host: its own listener (the return address) and a link to
// the host's frontend.
struct Client {
  explicit Client(const ChannelAddr& host_frontend) : to_host(channel::Sender::Dial(*loop, host_frontend)) {}
  std::unique_ptr<channel::EventLoop> loop = channel::EventLoop::Start("client");
  Inbox inbox;
  std::unique_ptr<channel::Listener> listener = *channel::Listener::Serve(*loop, ChannelAddr::Local(0), inbox);
  std::string me = listener->addr().ToString() + ",client";
  std::unique_ptr<channel::Sender> to_host;

  absl::Status Tell(absl::string_view dest, absl::string_view port, absl::string_view payload) {
    return to_host->Send(*Message::Create(dest, port, me, payload), HangGuard());
  }
  Message Next() {
    absl::StatusOr<Message> m = inbox.Receive(HangGuard());
    EXPECT_THAT(m, IsOk());
    return m.ok() ? *std::move(m) : *Message::Create("x,y", "none", "", "");
  }
};

// Returns once `host` knows `name` (its spawn is in flight), from its events.
inline void AwaitKnown(Host& host, const std::string& name) {
  absl::Notification known;
  uint64_t id = host.Subscribe(
      [&](const HostEvent& e) {
        if (e.name == name && !known.HasBeenNotified()) known.Notify();
      },
      /*snapshot=*/true);
  EXPECT_TRUE(known.WaitForNotificationWithTimeout(kHangGuard));
  host.Unsubscribe(id);
}

struct LocalHost {
  manager::LocalProcManager mgr;
  std::unique_ptr<Host> host = *Host::Start(mgr, mgr, {});
  std::string Dest(absl::string_view name) { return host->IdOf(name).ToString(); }
};

// Every event of a host from construction on, and waiting for one.
class EventLog {
 public:
  explicit EventLog(Host& host) : host_(host) {
    id_ = host.Subscribe(
        [this](const HostEvent& e) {
          absl::MutexLock lock(&mu_);
          events_.push_back(e);
        },
        /*snapshot=*/false);
  }
  ~EventLog() { host_.Unsubscribe(id_); }

  // The first event that satisfies `pred` (waits up to 60 s; a test failure then).
  HostEvent Await(const std::function<bool(const HostEvent&)>& pred) {
    absl::MutexLock lock(&mu_);
    std::optional<HostEvent> found;
    auto check = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (const HostEvent& e : events_) {
        if (pred(e)) {
          found = e;
          return true;
        }
      }
      return false;
    };
    mu_.AwaitWithTimeout(absl::Condition(&check), kHangGuard);
    EXPECT_TRUE(found.has_value()) << "no such event in 60 s";
    return found.value_or(HostEvent{});
  }
  HostEvent Await(HostEvent::Kind kind, const std::string& name) {
    return Await([&](const HostEvent& e) { return e.kind == kind && e.name == name; });
  }
  std::vector<HostEvent> All() {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  int Count(HostEvent::Kind kind, const std::string& name) {
    int n = 0;
    for (const HostEvent& e : All()) n += e.kind == kind && e.name == name;
    return n;
  }

 private:
  Host& host_;
  uint64_t id_ = 0;
  absl::Mutex mu_;
  std::vector<HostEvent> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace hostd::daemon

#endif  // HOSTD_TESTS_DAEMON_HOST_TEST_UTIL_H_
