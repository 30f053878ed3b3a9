// link_bench: throughput of a hostd link (Sender -> Listener -> Inbox, with
// sequence numbers, acks and bounded queues) against a raw unix stream socket
// carrying the same frames (a writer thread, a reader thread decoding them with the
// same FrameDecoder), measured in the same run and reported as a ratio.
//
//   build/default/bench/link_bench [--quick] [--filter=TEXT]
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/lock_checks.h"
#include "bench/bench_util.h"
#include "channel/event_loop.h"
#include "channel/frame_decoder.h"
#include "channel/listener.h"
#include "channel/sender.h"

namespace {

using namespace hostd::channel;

using hostd::bench::Spread;

struct Case {
  const char* name;
  size_t payload;
  int messages;
  std::string goal;  // "" for none
  double goal_ratio;
  int batch;  // messages per PostBatch and ReceiveBatch; 1: Post and Receive
};

// Raw baseline: the same DATA frames over a socketpair, written in batches.
double RawSeconds(const Message& m, int messages) {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) return -1;
  absl::Time start = absl::Now();
  std::thread reader([&] {
    FrameDecoder decoder;
    int got = 0;
    while (got < messages) {
      absl::Span<char> span = decoder.WritableSpan();
      ssize_t n = ::read(fds[1], span.data(), span.size());
      if (n <= 0) break;
      decoder.CommitWrite(static_cast<size_t>(n));
      while (true) {
        auto f = decoder.Next();
        if (!f.ok() || !f->has_value()) break;
        auto msg = Message::FromWire(std::move((**f).body));
        if (msg.ok()) ++got;
      }
    }
  });
  std::string batch;
  const size_t frame = kFrameHeaderSize + m.wire_size();
  const int per_batch = static_cast<int>(std::max<size_t>(1, (256 * 1024) / frame));
  for (int sent = 0, seq = 1; sent < messages;) {
    batch.clear();
    int n = std::min(per_batch, messages - sent);
    for (int i = 0; i < n; ++i, ++seq) {
      EncodedHeader h =
          EncodeHeader({FrameType::kData, static_cast<uint32_t>(m.wire_size()), static_cast<uint64_t>(seq)});
      batch.append(h.data(), h.size());
      batch += m.wire();
    }
    for (size_t off = 0; off < batch.size();) {
      ssize_t w = ::write(fds[0], batch.data() + off, batch.size() - off);
      if (w <= 0) break;
      off += static_cast<size_t>(w);
    }
    sent += n;
  }
  reader.join();
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  ::close(fds[0]);
  ::close(fds[1]);
  return secs;
}

// `batch` 1: Post and Receive one message at a time; more: PostBatch and
// ReceiveBatch of up to `batch` messages, each batch built from fresh copies.
double LinkSeconds(EventLoop& loop, const Message& m, int messages, int batch) {
  Inbox inbox(4096);
  auto listener = Listener::Serve(loop, *ChannelAddr::Parse("unix:"), inbox);
  if (!listener.ok()) return -1;
  auto sender = Sender::Dial(loop, (*listener)->addr());
  absl::Time start = absl::Now();
  std::thread consumer([&] {
    std::vector<Message> got;
    for (int i = 0; i < messages;) {
      if (batch == 1) {
        if (!inbox.Receive(absl::Now() + absl::Seconds(60)).ok()) break;
        ++i;
        continue;
      }
      got.clear();
      absl::StatusOr<size_t> n = inbox.ReceiveBatch(got, batch, absl::Now() + absl::Seconds(60));
      if (!n.ok()) break;
      i += static_cast<int>(*n);
    }
  });
  std::vector<Message> out;
  for (int i = 0; i < messages;) {
    if (batch == 1) {
      Message copy = m;
      if (!sender->Post(std::move(copy), nullptr).ok()) break;
      ++i;
      continue;
    }
    out.assign(std::min(batch, messages - i), m);
    if (sender->PostBatch(absl::MakeSpan(out)).posted != out.size()) break;
    i += static_cast<int>(out.size());
  }
  consumer.join();
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  return sender->Flush(absl::Now() + absl::Seconds(60)).ok() ? secs : -1;
}

}  // namespace

int main(int argc, char** argv) {
  hostd::base::SkipLockOrderChecks();
  using hostd::bench::Samples;
  bool quick = hostd::bench::QuickMode(argc, argv);
  const std::string filter = hostd::bench::FilterArg(argc, argv);
  const int reps = quick ? 1 : 5;
  const double scale = quick ? 0.01 : 1.0;
  // The goal row posts and receives one message at a time; its batched twin shows
  // what PostBatch and ReceiveBatch (256 at a time) take off the per-message cost.
  std::vector<Case> cases = {{"64 B", 64, 400000, ">= 0.3x", 0.3, 1},
                              {"64 B, in batches of 256", 64, 400000, ">= 0.3x", 0.3, 256},
                              {"4 KiB", 4096, 100000, "", 0, 1},
                              {"1 MiB", 1 << 20, 600, "", 0, 1}};
  auto loop = EventLoop::Start("bench-link");
  for (const Case& c : cases) {
    const std::string name = absl::StrCat("0. one link, thread to thread, ", c.name);
    if (name.find(filter) == std::string::npos) continue;
    int n = std::max(1, static_cast<int>(c.messages * scale));
    Message m = *Message::Create("unix:@fe,bench", "in", "unix:@src,bench", std::string(c.payload, 'b'));
    Samples raw, link;
    for (int r = 0; r < reps; ++r) {
      raw.Add(n / RawSeconds(m, n));
      link.Add(n / LinkSeconds(*loop, m, n, c.batch));
    }
    double ratio = link.Median() / raw.Median();
    hostd::bench::Row(name, Spread(raw, "msg/s"), Spread(link, "msg/s"), ratio, c.goal.empty() ? "-" : c.goal,
                      ratio >= c.goal_ratio);
  }
  return 0;
}
