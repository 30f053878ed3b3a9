// hostd-demo: runs hostd's channel layer on real sockets until the daemon exists.
//
//   hostd-demo                          # a listener and a sender in one process: send
//                                       # N messages, wait for every ack, print counters
//   hostd-demo serve unix:/tmp/a.sock   # print every message that arrives
//   hostd-demo send unix:/tmp/a.sock hello world   # one message per word, acked
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "base/log.h"
#include "channel/event_loop.h"
#include "channel/listener.h"
#include "channel/sender.h"

namespace {

using namespace hostd::channel;

absl::StatusOr<ChannelAddr> ParseOrExplain(const std::string& text) { return ChannelAddr::Parse(text); }

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "hostd-demo: %s\n", std::string(s.message()).c_str());
  return 1;
}

int SelfCheck(const std::string& listen, int messages, int size) {
  absl::StatusOr<ChannelAddr> addr = ParseOrExplain(listen);
  if (!addr.ok()) return Fail(addr.status());
  auto loop = EventLoop::Start("demo");
  Inbox inbox(4096);
  absl::StatusOr<std::unique_ptr<Listener>> listener = Listener::Serve(*loop, *addr, inbox);
  if (!listener.ok()) return Fail(listener.status());
  auto sender = Sender::Dial(*loop, (*listener)->addr());
  std::printf("listening on %s (incarnation %016llx); sending %d messages of %d bytes\n",
              (*listener)->addr().ToString().c_str(), static_cast<unsigned long long>((*listener)->incarnation()),
              messages, size);
  const std::string payload(size, 'x');
  absl::Time start = absl::Now();
  std::thread consumer([&] {
    for (int i = 0; i < messages; ++i) (void)inbox.Receive(absl::Now() + absl::Seconds(60));
  });
  for (int i = 0; i < messages; ++i) {
    absl::StatusOr<Message> m = Message::Create("demo,sink", "in", "demo,source", payload);
    if (!m.ok()) return Fail(m.status());
    if (absl::Status s = sender->Post(*std::move(m), nullptr); !s.ok()) return Fail(s);
  }
  absl::Status flushed = sender->Flush(absl::Now() + absl::Seconds(60));
  consumer.join();
  absl::Duration took = absl::Now() - start;
  if (!flushed.ok()) return Fail(flushed);
  SenderStats ss = sender->stats();
  ListenerStats ls = (*listener)->stats();
  double secs = absl::ToDoubleSeconds(took);
  std::printf("delivered and acknowledged %llu messages in %.3f s: %.0f msg/s, %.1f MB/s\n",
              static_cast<unsigned long long>(ss.messages_acked), secs, messages / secs,
              static_cast<double>(ss.bytes_sent) / secs / 1e6);
  std::printf("%-28s %14s\n", "counter", "value");
  auto row = [](const char* name, uint64_t v) { std::printf("%-28s %14llu\n", name, static_cast<unsigned long long>(v)); };
  row("sender.messages_sent", ss.messages_sent);
  row("sender.bytes_sent", ss.bytes_sent);
  row("sender.messages_acked", ss.messages_acked);
  row("sender.sends_waited", ss.sends_waited);
  row("sender.max_queue_depth", ss.max_queue_depth);
  row("sender.mean_queue_time_us",
      ss.messages_acked ? static_cast<uint64_t>(absl::ToDoubleMicroseconds(ss.queue_time_total) / ss.messages_acked) : 0);
  row("listener.messages_received", ls.messages_received);
  row("listener.bytes_received", ls.bytes_received);
  row("listener.acks_sent", ls.acks_sent);
  row("listener.deliveries_paused", ls.deliveries_paused);
  return ss.messages_acked == static_cast<uint64_t>(messages) ? 0 : 1;
}

volatile std::sig_atomic_t g_stop = 0;

int Serve(const std::string& listen) {
  absl::StatusOr<ChannelAddr> addr = ParseOrExplain(listen);
  if (!addr.ok()) return Fail(addr.status());
  auto loop = EventLoop::Start("demo");
  Inbox inbox;
  absl::StatusOr<std::unique_ptr<Listener>> listener = Listener::Serve(*loop, *addr, inbox);
  if (!listener.ok()) return Fail(listener.status());
  std::signal(SIGINT, [](int) { g_stop = 1; });
  std::signal(SIGTERM, [](int) { g_stop = 1; });
  std::printf("serving %s; Ctrl-C stops\n", (*listener)->addr().ToString().c_str());
  std::fflush(stdout);
  while (!g_stop) {
    absl::StatusOr<Message> m = inbox.Receive(absl::Now() + absl::Milliseconds(200));
    if (!m.ok()) continue;
    std::printf("from %s to %s port %s: %s\n", std::string(m->src()).c_str(), std::string(m->dest()).c_str(),
                std::string(m->port()).c_str(), std::string(m->payload()).c_str());
    std::fflush(stdout);
  }
  return 0;
}

int Send(const std::string& to, const std::vector<std::string>& words, double timeout_s) {
  absl::StatusOr<ChannelAddr> addr = ParseOrExplain(to);
  if (!addr.ok()) return Fail(addr.status());
  auto loop = EventLoop::Start("demo");
  SenderOptions opts;
  opts.delivery_timeout = absl::Seconds(timeout_s);
  auto sender = Sender::Dial(*loop, *addr, opts);
  for (const std::string& w : words) {
    absl::StatusOr<Message> m = Message::Create(addr->ToString() + ",demo", "in", "hostd-demo", w);
    if (!m.ok()) return Fail(m.status());
    if (absl::Status s = sender->Send(*std::move(m)); !s.ok()) return Fail(s);
    std::printf("acknowledged: %s\n", w.c_str());
  }
  sender->Close(absl::Now() + absl::Seconds(5));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hostd-demo: hostd's reliable links on real sockets"};
  std::string listen = "unix:";
  int messages = 200000;
  int size = 64;
  std::string level = "warn";
  app.add_option("--listen", listen, "address to serve in the self-check (tcp:IP:PORT, unix:/path, unix:@name, local:N)");
  app.add_option("--messages", messages, "messages to send in the self-check")->check(CLI::Range(1, 100000000));
  app.add_option("--size", size, "payload bytes per message")->check(CLI::Range(0, 64 << 20));
  app.add_option("--log-level", level, "trace, debug, info, warn, error or off");
  std::string serve_addr;
  CLI::App* serve = app.add_subcommand("serve", "print every message that arrives at ADDR");
  serve->add_option("addr", serve_addr, "address to serve")->required();
  std::string send_addr;
  std::vector<std::string> words;
  double timeout_s = 10;
  CLI::App* send = app.add_subcommand("send", "send each WORD to ADDR and wait for its acknowledgement");
  send->add_option("addr", send_addr, "address to send to")->required();
  send->add_option("words", words, "messages")->required();
  send->add_option("--timeout", timeout_s, "seconds to wait for each acknowledgement");
  CLI11_PARSE(app, argc, argv);
  if (absl::Status s = hostd::base::InitLogging(level); !s.ok()) return Fail(s);
  if (*serve) return Serve(serve_addr);
  if (*send) return Send(send_addr, words, timeout_s);
  return SelfCheck(listen, messages, size);
}
