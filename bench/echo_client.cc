// echo_client: the C++ side of bench/python_bench.py. A data-plane client of a
// running hostd: it serves an address of its own, sends to a proc's "echo" port
// through the frontend, and takes the replies ("echo.reply") back on its address.
//
//   build/default/bench/echo_client FRONTEND PROC_NAME MODE COUNT SIZE
//     MODE throughput: COUNT messages posted back to back; prints msgs/s until
//                      the last reply arrived
//     MODE rtt:        COUNT round trips one at a time; prints each in seconds
// Output: one number a line, for the script to read. Exit 1 on any failure.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/lock_checks.h"
#include "channel/listener.h"
#include "channel/sender.h"

namespace hostd::bench {
namespace {

using channel::ChannelAddr;
using channel::Message;

int Run(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: echo_client FRONTEND PROC_NAME throughput|rtt COUNT SIZE\n");
    return 2;
  }
  absl::StatusOr<ChannelAddr> frontend = ChannelAddr::Parse(argv[1]);
  if (!frontend.ok()) {
    std::fprintf(stderr, "echo_client: %s\n", frontend.status().ToString().c_str());
    return 2;
  }
  const std::string dest = absl::StrCat(argv[1], ",", argv[2]);
  const std::string mode = argv[3];
  const int count = std::atoi(argv[4]);
  const std::string payload(static_cast<size_t>(std::atoi(argv[5])), 'x');
  const absl::Duration guard = absl::Seconds(60);

  auto loop = channel::EventLoop::Start("echo-client");
  channel::Inbox inbox(4096);
  auto listener = channel::Listener::Serve(*loop, *ChannelAddr::Parse("unix:"), inbox);
  if (!listener.ok()) {
    std::fprintf(stderr, "echo_client: %s\n", listener.status().ToString().c_str());
    return 1;
  }
  const std::string src = absl::StrCat((*listener)->addr().ToString(), ",bench");
  auto sender = channel::Sender::Dial(*loop, *frontend);
  auto post = [&]() {
    absl::Status s = sender->Post(*Message::Create(dest, "echo", src, payload), nullptr);
    if (!s.ok()) std::fprintf(stderr, "echo_client: %s\n", s.ToString().c_str());
    return s.ok();
  };
  auto receive = [&]() {
    absl::StatusOr<Message> m = inbox.Receive(absl::Now() + guard);
    if (!m.ok() || m->kind() != Message::Kind::kMessage) {
      std::fprintf(stderr, "echo_client: no reply: %s\n", m.ok() ? std::string(m->note()).c_str() : m.status().ToString().c_str());
      return false;
    }
    return true;
  };
  // One round trip first: the links are up before anything is timed.
  if (!post() || !receive()) return 1;
  if (mode == "throughput") {
    absl::Time start = absl::Now();
    // Replies are taken on a thread of their own, so a full inbox never stalls the posts.
    bool replies_ok = true;
    std::thread replies([&] {
      for (int i = 0; i < count && replies_ok; ++i) replies_ok = receive();
    });
    bool posts_ok = true;
    for (int i = 0; i < count && posts_ok; ++i) posts_ok = post();
    replies.join();
    if (!posts_ok || !replies_ok) return 1;
    std::printf("%.1f\n", count / absl::ToDoubleSeconds(absl::Now() - start));
  } else {
    for (int i = 0; i < count; ++i) {
      absl::Time start = absl::Now();
      if (!post() || !receive()) return 1;
      std::printf("%.9f\n", absl::ToDoubleSeconds(absl::Now() - start));
    }
  }
  sender->Close(absl::Now() + absl::Seconds(1));
  return 0;
}

}  // namespace
}  // namespace hostd::bench

int main(int argc, char** argv) {
  hostd::base::SkipLockOrderChecks();
  return hostd::bench::Run(argc, argv);
}
