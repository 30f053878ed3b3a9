// forward_bench: the host's data plane against baselines measured in the same run
// (scenarios 4-7 of bench/README.md).
//
//   4. Throughput: client -> proc directly vs client -> host frontend -> proc, on
//      unix and tcp; 64 B posted back to back (the link batches), 64 B one Send
//      (wait for the ack) at a time, 4 KiB, 1 MiB.
//   5. Round trip client -> host -> echo proc -> host -> client vs the same echo
//      proc answering the client directly; all threads pinned to one CPU, then
//      unpinned. p50 and p99.
//   6. Fan-out: one client to 64 procs through the host vs to 1 proc.
//   7. A peer: a ZeroMQ ROUTER/DEALER proxy (zmq_proxy) carrying the same sizes
//      between a DEALER client and a DEALER worker, and its round trip.
//   4t. TLS: the client -> host hop over a tls: frontend (certificates made for the
//      run, mutual TLS) vs the same host's tcp: frontend, 64 B posted and 1 MiB.
// Procs are in-process runtimes (LocalProcManager) serving real unix/tcp sockets,
// so both paths run the same proc code; only the host hop differs.
//
//   build/default/bench/forward_bench [--quick] [--filter=TEXT] [--host-only]
// --host-only runs only the through-the-host side of scenario 4 (no baselines,
// no ratios), for profiling the host hop alone under perf.
#include <zmq.h>

#include <atomic>
#include <map>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/lock_checks.h"
#include "bench/bench_util.h"
#include "bench/raw_forward.h"
#include "channel/listener.h"
#include "channel/sender.h"
#include "daemon/host.h"
#include "manager/local_proc_manager.h"
#include "testing/temp_dir.h"
#include "testing/test_pki.h"

namespace hostd::bench {
namespace {

using channel::ChannelAddr;
using channel::Message;

const absl::Duration kGuard = absl::Seconds(120);

// Counts what the sink procs receive; a run waits for its target. An atomic the
// waiter polls: a mutex with a waiting condition would make the sink evaluate the
// condition on every message, a cost of the bench that the raw references (which
// count in their own loop) do not pay. A poll every 100 us adds at most that to a
// run of a hundred milliseconds or more.
struct Counter {
  std::atomic<int64_t> got{0};
  void Add() { got.fetch_add(1, std::memory_order_relaxed); }
  bool AwaitAtLeast(int64_t n) {
    const absl::Time deadline = absl::Now() + kGuard;
    while (got.load(std::memory_order_relaxed) < n) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Microseconds(100));
    }
    return true;
  }
  int64_t Get() { return got.load(std::memory_order_relaxed); }
};

// Sink and echo procs behind one host, on one transport.
// `tls`: a second frontend-like listener is not possible, so a TLS setup serves its
// frontend on tls:127.0.0.1:0 and everything else on `any`.
struct Setup {
  Setup(const std::string& any, int sinks, std::shared_ptr<channel::TlsContext> tls = nullptr)
      : mgr(*ChannelAddr::Parse(any)) {
    daemon::HostOptions o;
    o.frontend = *ChannelAddr::Parse(tls != nullptr ? "tls:127.0.0.1:0" : any);
    o.backend = *ChannelAddr::Parse(any);
    o.listener.tls = tls;
    host = *daemon::Host::Start(mgr, mgr, o);
    for (int i = 0; i < sinks; ++i) {
      manager::SpawnSpec spec;
      spec.local_setup = [this](proc::ProcRuntime& rt) {
        absl::Status s = rt.Bind("sink", [this](Message) { counter.Add(); });
        if (!s.ok()) return s;
        return rt.Bind("echo", [&rt](Message m) { (void)rt.Reply(m, "echo.reply", m.payload()); });
      };
      auto p = host->Spawn(absl::StrCat("p", i), spec);
      if (!p.ok()) std::fprintf(stderr, "spawn: %s\n", p.status().ToString().c_str());
      procs.push_back(p->handle);
    }
  }
  ~Setup() { host->TerminateChildren(absl::Seconds(5), 64, "bench done"); }
  std::string Dest(int i) { return host->IdOf(absl::StrCat("p", i)).ToString(); }

  manager::LocalProcManager mgr;
  std::unique_ptr<daemon::Host> host;
  std::vector<std::shared_ptr<manager::ProcHandle>> procs;
  Counter counter;
};

// Messages per second from one client link to `dests` (round robin).
double Throughput(channel::EventLoop& loop, Setup& s, const ChannelAddr& to, const std::vector<std::string>& dests,
                  size_t payload, int n, bool one_per_send, std::shared_ptr<channel::TlsContext> tls = nullptr) {
  auto link = channel::Sender::Dial(loop, to, {.tls = std::move(tls)});
  std::vector<Message> msgs;
  for (const std::string& d : dests) msgs.push_back(*Message::Create(d, "sink", "", std::string(payload, 'x')));
  // Warm the connection and the route. The host acks once it has taken the
  // message, before the sink has it: wait for the sink too, or the count below
  // would include it and end the run one message early.
  const int64_t base = s.counter.Get() + 1;
  if (!link->Send(msgs[0], absl::Now() + kGuard).ok() || !s.counter.AwaitAtLeast(base)) return 0;
  absl::Time t0 = absl::Now();
  for (int i = 0; i < n; ++i) {
    Message m = msgs[i % msgs.size()];
    absl::Status st = one_per_send ? link->Send(std::move(m), absl::Now() + kGuard) : link->Post(std::move(m), nullptr);
    if (!st.ok()) return 0;
  }
  if (!s.counter.AwaitAtLeast(base + n)) return 0;
  const double rate = n / absl::ToDoubleSeconds(absl::Now() - t0);
  // Everything has arrived: close once the acks are in, with a goodbye.
  link->Close(absl::Now() + kGuard);
  return rate;
}

// A client with a return address: replies land in its inbox.
struct EchoClient {
  explicit EchoClient(channel::EventLoop& loop, const std::string& any)
      : listener(*channel::Listener::Serve(loop, *ChannelAddr::Parse(any), inbox)) {}
  channel::Inbox inbox;
  std::unique_ptr<channel::Listener> listener;
  std::string me() const { return listener->addr().ToString() + ",client"; }
};

// Round trips (seconds) of `n` 64-byte messages, one at a time.
Samples RoundTrips(channel::Sender& link, EchoClient& c, const std::string& dest, int n) {
  Message m = *Message::Create(dest, "echo", c.me(), std::string(64, 'r'));
  Samples out;
  for (int i = 0; i < n + 20; ++i) {
    absl::Time t0 = absl::Now();
    Message copy = m;
    if (!link.Post(std::move(copy), nullptr).ok()) break;
    if (!c.inbox.Receive(absl::Now() + kGuard).ok()) break;
    if (i >= 20) out.Add(absl::ToDoubleSeconds(absl::Now() - t0));  // the first 20 warm up
  }
  return out;
}

struct Rtt {
  Samples direct;
  Samples host;
};

// Via the host, and directly: an identical echo proc whose "host backend" is the
// client itself, so its replies skip the host too.
Rtt MeasureRtt(const std::string& any, int n, bool pinned) {
  auto loop = channel::EventLoop::Start("rtt-client");
  auto proc_loop = channel::EventLoop::Start("rtt-proc");
  Setup s(any, 1);
  EchoClient c(*loop, any);
  auto direct_rt = *proc::ProcRuntime::Start(
      *proc_loop, {*proc::ProcId::Parse(s.Dest(0)), *ChannelAddr::Parse(any), c.listener->addr()});
  (void)direct_rt->Bind("echo", [rt = direct_rt.get()](Message m) { (void)rt->Reply(m, "echo.reply", m.payload()); });
  auto via_host = channel::Sender::Dial(*loop, s.host->frontend());
  auto direct = channel::Sender::Dial(*loop, direct_rt->addr());
  if (pinned) PinProcess(0);
  Rtt r;
  for (int round = 0; round < 2; ++round) {  // interleaved, so drift hits both
    Samples d = RoundTrips(*direct, c, s.Dest(0), n / 2);
    Samples h = RoundTrips(*via_host, c, s.Dest(0), n / 2);
    r.direct.Merge(d);
    r.host.Merge(h);
  }
  if (pinned) PinProcess(-1);
  return r;
}

// ---- ZeroMQ peer -------------------------------------------------------------

// A ROUTER/DEALER proxy (zmq_proxy_steerable) on fresh endpoints: `base` is
// "tcp://127.0.0.1" (ports chosen by the kernel) or "ipc://<dir>/z" (a new name).
struct ZmqProxy {
  ZmqProxy(void* ctx, const std::string& base) {
    static std::atomic<int> serial{0};
    void* f = zmq_socket(ctx, ZMQ_ROUTER);
    void* b = zmq_socket(ctx, ZMQ_DEALER);
    int n = serial++;
    bool tcp = base.rfind("tcp", 0) == 0;
    front = Bind(f, tcp ? base + ":*" : absl::StrCat(base, n, "f"));
    back = Bind(b, tcp ? base + ":*" : absl::StrCat(base, n, "b"));
    void* ctl = zmq_socket(ctx, ZMQ_PAIR);
    std::string ctl_addr = absl::StrCat("inproc://proxy-control-", n);
    zmq_bind(ctl, ctl_addr.c_str());
    control_ = zmq_socket(ctx, ZMQ_PAIR);
    zmq_connect(control_, ctl_addr.c_str());
    thread_ = std::thread([f, b, ctl] {
      zmq_proxy_steerable(f, b, nullptr, ctl);
      int zero = 0;
      zmq_setsockopt(f, ZMQ_LINGER, &zero, sizeof(zero));
      zmq_setsockopt(b, ZMQ_LINGER, &zero, sizeof(zero));
      zmq_close(f);
      zmq_close(b);
      zmq_close(ctl);
    });
  }
  ~ZmqProxy() {
    zmq_send(control_, "TERMINATE", 9, 0);
    thread_.join();
    zmq_close(control_);
  }
  static std::string Bind(void* s, const std::string& addr) {
    if (zmq_bind(s, addr.c_str()) != 0) {
      std::fprintf(stderr, "zmq_bind %s: %s\n", addr.c_str(), zmq_strerror(zmq_errno()));
      std::abort();
    }
    char buf[256];
    size_t len = sizeof(buf);
    zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, buf, &len);
    return std::string(buf);
  }
  std::string front;
  std::string back;
  void* control_;
  std::thread thread_;
};

// Messages per second client -> proxy -> worker.
double ZmqThroughput(void* ctx, const std::string& base, size_t payload, int n) {
  ZmqProxy proxy(ctx, base);
  const std::string& front = proxy.front;
  const std::string& back = proxy.back;
  void* worker = zmq_socket(ctx, ZMQ_DEALER);
  zmq_connect(worker, back.c_str());
  void* client = zmq_socket(ctx, ZMQ_DEALER);
  zmq_connect(client, front.c_str());
  std::string data(payload, 'z');
  zmq_send(client, data.data(), data.size(), 0);  // warm
  zmq_msg_t m;
  zmq_msg_init(&m);
  auto recv_one = [&] {
    // [client identity][payload]
    zmq_msg_recv(&m, worker, 0);
    while (zmq_msg_more(&m)) zmq_msg_recv(&m, worker, 0);
  };
  recv_one();
  absl::Time t0 = absl::Now();
  std::thread rx([&] {
    for (int i = 0; i < n; ++i) recv_one();
  });
  for (int i = 0; i < n; ++i) zmq_send(client, data.data(), data.size(), 0);
  rx.join();
  double rate = n / absl::ToDoubleSeconds(absl::Now() - t0);
  zmq_msg_close(&m);
  int zero = 0;
  zmq_setsockopt(client, ZMQ_LINGER, &zero, sizeof(zero));
  zmq_setsockopt(worker, ZMQ_LINGER, &zero, sizeof(zero));
  zmq_close(client);
  zmq_close(worker);
  return rate;
}

Samples ZmqRoundTrips(void* ctx, const std::string& base, int n) {
  ZmqProxy proxy(ctx, base);
  const std::string& front = proxy.front;
  const std::string& back = proxy.back;
  void* worker = zmq_socket(ctx, ZMQ_DEALER);
  zmq_connect(worker, back.c_str());
  std::thread echo([worker] {
    while (true) {
      zmq_msg_t id, body;
      zmq_msg_init(&id);
      zmq_msg_init(&body);
      if (zmq_msg_recv(&id, worker, 0) < 0) break;
      zmq_msg_recv(&body, worker, 0);
      bool stop = zmq_msg_size(&body) == 0;
      zmq_msg_send(&id, worker, ZMQ_SNDMORE);
      zmq_msg_send(&body, worker, 0);
      zmq_msg_close(&id);
      zmq_msg_close(&body);
      if (stop) break;
    }
  });
  void* client = zmq_socket(ctx, ZMQ_DEALER);
  zmq_connect(client, front.c_str());
  std::string data(64, 'r');
  char buf[128];
  Samples out;
  for (int i = 0; i < n + 20; ++i) {
    absl::Time t0 = absl::Now();
    zmq_send(client, data.data(), data.size(), 0);
    zmq_recv(client, buf, sizeof(buf), 0);
    if (i >= 20) out.Add(absl::ToDoubleSeconds(absl::Now() - t0));
  }
  zmq_send(client, "", 0, 0);  // stops the echo thread
  zmq_recv(client, buf, sizeof(buf), 0);
  echo.join();
  int zero = 0;
  zmq_setsockopt(client, ZMQ_LINGER, &zero, sizeof(zero));
  zmq_setsockopt(worker, ZMQ_LINGER, &zero, sizeof(zero));
  zmq_close(client);
  zmq_close(worker);
  return out;
}

// A ratio goal; ratio 0: none ("-").
struct Goal {
  double ratio;
  const char* text;
};

struct Size {
  const char* name;
  size_t bytes;
  int n;
  bool one_per_send;
  int raw_n;            // messages per run of the raw references
  Goal vs_reference;    // through the host against the reference forwarder
  Goal vs_raw_direct;   // through the host against the raw direct path
  Goal vs_zmq;          // through the host against ZeroMQ's proxy
};

// One DATA frame as hostd's links carry it to a sink proc: the raw references move
// exactly these bytes.
std::string RawFrame(const std::string& dest, size_t payload) {
  Message m = *Message::Create(dest, "sink", "", std::string(payload, 'x'));
  channel::EncodedHeader h =
      channel::EncodeHeader({channel::FrameType::kData, static_cast<uint32_t>(m.wire_size()), 1});
  return std::string(h.data(), h.size()) + m.wire();
}

}  // namespace
}  // namespace hostd::bench

int main(int argc, char** argv) {
  hostd::base::SkipLockOrderChecks();
  using namespace hostd::bench;
  const bool quick = QuickMode(argc, argv);
  const std::string filter = FilterArg(argc, argv);
  auto want = [&](const std::string& scenario) { return scenario.find(filter) != std::string::npos; };
  const int reps = quick ? 1 : 5;
  const bool host_only = HasFlag(argc, argv, "--host-only");
  const double scale = quick ? 0.01 : 1.0;
  auto n_of = [&](int n) { return std::max(2, static_cast<int>(n * scale)); };
  hostd::testing::TempDir dir;
  auto loop = hostd::channel::EventLoop::Start("bench-client");

  // The raw references run 10x the messages of the host (they are that much faster),
  // so their runs last long enough to measure.
  const std::vector<Size> sizes = {
      {"64 B posted", 64, 200000, false, 2000000, {0.2, ">= 0.2x"}, {0, "-"}, {5.0, ">= 5x"}},
      {"64 B one Send at a time", 64, 10000, true, 0, {0, "-"}, {0, "-"}, {0, "-"}},
      {"4 KiB", 4096, 50000, false, 500000, {0.6, ">= 0.6x"}, {0, "-"}, {1.0, ">= 1.0x"}},
      {"1 MiB", 1 << 20, 300, false, 3000, {0, "-"}, {0.8, ">= 0.8x"}, {1.0, ">= 1.0x"}}};
  const std::vector<std::pair<const char*, const char*>> transports = {{"unix", "unix:"}, {"tcp", "tcp:127.0.0.1:0"}};
  const Goal goals[] = {{0.5, ">= 0.5x"}, {0.9, ">= 0.9x"}, {0.5, ">= 0.5x"}, {0.7, ">= 0.7x"}};
  std::map<std::pair<std::string, std::string>, double> via_host;  // (transport, size) -> msg/s
  double one_proc_rate = 0;

  // 4. Throughput, direct vs through the host; 4r. the host against the raw
  // references carrying the same frames, measured alternately with it.
  for (const auto& [tname, any] : transports) {
    Setup s(any, 1);
    const RawTransport raw_t = std::string(tname) == "unix" ? RawTransport::kUnix : RawTransport::kTcp;
    for (size_t k = 0; k < sizes.size(); ++k) {
      const Size& z = sizes[k];
      const std::string name = absl::StrCat(tname, ", ", z.name);
      if (!want(absl::StrCat("4. forward ", name))) continue;
      const bool raw = !z.one_per_send;  // the references have no acknowledged send
      const std::string frame = RawFrame(s.Dest(0), z.bytes);
      Samples direct, host, raw_direct, reference;
      for (int r = 0; r < reps; ++r) {
        host.Add(Throughput(*loop, s, s.host->frontend(), {s.Dest(0)}, z.bytes, n_of(z.n), z.one_per_send));
        if (host_only) continue;
        direct.Add(Throughput(*loop, s, *s.procs[0]->addr(), {s.Dest(0)}, z.bytes, n_of(z.n), z.one_per_send));
        if (!raw) continue;
        raw_direct.Add(DirectRate(raw_t, frame, n_of(z.raw_n)));
        reference.Add(ForwarderRate(raw_t, frame, n_of(z.raw_n)));
      }
      if (host_only) {
        std::printf("| 4. forward %s, through the host only | %s |\n", name.c_str(), Spread(host, "msg/s").c_str());
        continue;
      }
      double ratio = host.Median() / direct.Median();
      Row(absl::StrCat("4. forward ", name), Spread(direct, "msg/s"), Spread(host, "msg/s"), ratio, goals[k].text,
          ratio >= goals[k].ratio);
      via_host[{tname, z.name}] = host.Median();
      if (k == 0 && std::string(tname) == "unix") one_proc_rate = host.Median();
      if (!raw) continue;
      const std::string ours = absl::StrCat(Si(host.Median()), " msg/s");
      ratio = reference.Median() / raw_direct.Median();
      Row(absl::StrCat("4r. reference forwarder vs raw direct, ", name), Spread(raw_direct, "msg/s"),
          Spread(reference, "msg/s"), ratio, "-", true);
      ratio = host.Median() / reference.Median();
      Row(absl::StrCat("4r. forward vs reference forwarder, ", name), Spread(reference, "msg/s"), ours, ratio,
          z.vs_reference.text, z.vs_reference.ratio == 0 || ratio >= z.vs_reference.ratio);
      if (z.vs_raw_direct.ratio > 0) {
        ratio = host.Median() / raw_direct.Median();
        Row(absl::StrCat("4r. forward vs raw direct, ", name), Spread(raw_direct, "msg/s"), ours, ratio,
            z.vs_raw_direct.text, ratio >= z.vs_raw_direct.ratio);
      }
    }
  }

  // 4t. TLS against TCP: two hosts alike but for the frontend's transport, measured
  // alternately so drift hits both.
  if (want("4t. forward tls")) {
    absl::StatusOr<hostd::testing::TestPki> pki = hostd::testing::TestPki::Create(dir.path(), "bench-ca");
    absl::StatusOr<hostd::testing::TestPki::Leaf> host_cert, client_cert;
    if (pki.ok()) host_cert = pki->Issue("bench-host");
    if (pki.ok()) client_cert = pki->Issue("bench-client");
    if (!pki.ok() || !host_cert.ok() || !client_cert.ok()) {
      std::fprintf(stderr, "4t: cannot make certificates (is the openssl command installed?)\n");
      return 1;
    }
    auto server_tls = *hostd::channel::TlsContext::Create(
        {.cert_file = host_cert->cert, .key_file = host_cert->key, .ca_file = pki->ca_cert(), .require_client_cert = true});
    auto client_tls = *hostd::channel::TlsContext::Create(
        {.cert_file = client_cert->cert, .key_file = client_cert->key, .ca_file = pki->ca_cert()});
    Setup tcp("tcp:127.0.0.1:0", 1);
    Setup tls("tcp:127.0.0.1:0", 1, server_tls);
    for (size_t k : {size_t{0}, size_t{3}}) {
      const Size& z = sizes[k];
      Samples plain, secure;
      for (int r = 0; r < reps; ++r) {
        plain.Add(Throughput(*loop, tcp, tcp.host->frontend(), {tcp.Dest(0)}, z.bytes, n_of(z.n), false));
        secure.Add(
            Throughput(*loop, tls, tls.host->frontend(), {tls.Dest(0)}, z.bytes, n_of(z.n), false, client_tls));
      }
      double ratio = secure.Median() / plain.Median();
      Row(absl::StrCat("4t. forward tls vs tcp frontend, ", z.name), Spread(plain, "msg/s"), Spread(secure, "msg/s"),
          ratio, k == 0 ? ">= 0.5x" : ">= 0.3x", ratio >= (k == 0 ? 0.5 : 0.3));
    }
  }

  // 5. Round trips.
  const int rtts = quick ? 100 : 4000;
  for (bool pinned : {true, false}) {
    if (!want("5. round trip")) break;
    Rtt r = MeasureRtt("unix:", rtts, pinned);
    const char* how = pinned ? "pinned to 1 CPU" : "unpinned";
    double p50 = r.host.Median() / r.direct.Median();
    Row(absl::StrCat("5. round trip unix 64 B, ", how, ": p50"), Us(r.direct.Median()), Us(r.host.Median()), p50,
        pinned ? "<= 2.5x" : "<= 1.3x", p50 <= (pinned ? 2.5 : 1.3));
    if (pinned) {
      double p99 = r.host.Quantile(0.99) / r.direct.Quantile(0.99);
      Row("5. round trip unix 64 B, pinned to 1 CPU: p99", Us(r.direct.Quantile(0.99)), Us(r.host.Quantile(0.99)), p99,
          "<= 3x", p99 <= 3);
    }
  }

  // 6. Fan-out to 64 procs.
  if (want("6. fan-out")) {
    const int fan = quick ? 4 : 64;
    Setup s("unix:", fan);
    std::vector<std::string> dests;
    for (int i = 0; i < fan; ++i) dests.push_back(s.Dest(i));
    Samples agg;
    for (int r = 0; r < reps; ++r) {
      agg.Add(Throughput(*loop, s, s.host->frontend(), dests, 64, n_of(200000), false));
    }
    double ratio = agg.Median() / one_proc_rate;
    Row(absl::StrFormat("6. fan-out to %d procs vs 1 proc (unix, 64 B posted)", fan),
        absl::StrCat(Si(one_proc_rate), " msg/s"), Spread(agg, "msg/s"), ratio, ">= 0.8x", ratio >= 0.8);
  }

  // 7. ZeroMQ ROUTER/DEALER proxy, same sizes and transports.
  if (!want("7. vs ZeroMQ")) return 0;
  void* ctx = zmq_ctx_new();
  const std::vector<std::pair<const char*, std::string>> zaddrs = {{"unix", "ipc://" + dir.Join("z")},
                                                                   {"tcp", "tcp://127.0.0.1"}};
  for (const auto& [tname, base] : zaddrs) {
    for (const Size& z : sizes) {
      if (z.one_per_send) continue;  // ZeroMQ has no acknowledged send to compare with
      Samples zr;
      for (int r = 0; r < reps; ++r) zr.Add(ZmqThroughput(ctx, base, z.bytes, n_of(z.n)));
      double ours = via_host[{tname, z.name}];
      double ratio = ours / zr.Median();
      Row(absl::StrCat("7. vs ZeroMQ proxy, ", tname, ", ", z.name), Spread(zr, "msg/s"),
          absl::StrCat(Si(ours), " msg/s"), ratio, z.vs_zmq.text, ratio >= z.vs_zmq.ratio);
    }
  }
  {
    Samples zr = ZmqRoundTrips(ctx, zaddrs[0].second, rtts);
    Rtt r = MeasureRtt("unix:", rtts, false);
    double ratio = r.host.Median() / zr.Median();
    Row("7. vs ZeroMQ proxy: round trip unix 64 B p50 (lower is better)", Us(zr.Median()), Us(r.host.Median()), ratio,
        "<= 1.0x", ratio <= 1.0);
  }
  zmq_ctx_term(ctx);
  return 0;
}
