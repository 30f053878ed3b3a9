// What an operator sees of a real hostd: its JSON log lines, /metrics scraped over
// HTTP and read by the Prometheus client's own parser (parse_metrics.py), /healthz
// and /readyz, the gRPC health service by name, drain, and the systemd watchdog.
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
// libstdc++ 12's <regex> trips -Wmaybe-uninitialized in its own code when built
// with -O1 and the sanitizers (the asan preset); the warning is not about this file.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/integration/hostd_process.h"

namespace hostd {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;
namespace v1 = ::hostd::v1;

constexpr char kPython[] = HOSTD_TEST_PYTHON;
constexpr char kParseMetrics[] = HOSTD_PARSE_METRICS;
constexpr int kServing = 1;
constexpr int kNotServing = 2;

// hostd's log lines that are JSON objects, in order.
std::vector<Json> LogLines(const Hostd& h) {
  std::ifstream in(h.log_path());
  std::vector<Json> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] != '{') continue;
    Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

// The lines whose msg is `msg` (and whose proc is `proc`, when given).
std::vector<Json> Events(const std::vector<Json>& lines, const std::string& msg, const std::string& proc = "") {
  std::vector<Json> out;
  for (const Json& j : lines) {
    if (j.value("msg", "") == msg && (proc.empty() || j.value("proc", "") == proc)) out.push_back(j);
  }
  return out;
}

// Where hostd serves HTTP: the "hostd ready" line says (it was started on port 0).
std::string HttpAddr(const Hostd& h) {
  for (const Json& j : LogLines(h)) {
    if (j.value("msg", "") == "hostd ready") return j.value("http", "");
  }
  return "";
}

struct HttpResult {
  int status = -1;  // -1: no answer
  std::string body;
};

HttpResult Get(const std::string& addr, const std::string& path) {
  httplib::Client client(absl::StrCat("http://", addr));
  client.set_connection_timeout(30);
  client.set_read_timeout(30);
  httplib::Result r = client.Get(path.c_str());
  if (!r) return {};
  return {r->status, r->body};
}

// /metrics, parsed by the Prometheus client's parser: sample key (name{labels}, labels
// sorted) -> value, and family -> type.
struct Scrape {
  std::map<std::string, double> samples;
  std::map<std::string, std::string> types;
  double Of(const std::string& key) const {
    auto it = samples.find(key);
    return it == samples.end() ? -1 : it->second;
  }
};

Scrape ScrapeMetrics(const Hostd& h, const std::string& addr) {
  HttpResult r = Get(addr, "/metrics");
  EXPECT_EQ(r.status, 200);
  std::string file = h.Path("metrics.txt");
  std::ofstream(file) << r.body;
  auto [rc, out] = RunShell(absl::StrCat(kPython, " ", kParseMetrics, " ", file));
  EXPECT_EQ(rc, 0) << out << "\n" << r.body;
  Scrape s;
  Json j = Json::parse(out, nullptr, false);
  if (j.is_discarded()) return s;
  for (auto& [k, v] : j["samples"].items()) s.samples[k] = v.get<double>();
  for (auto& [k, v] : j["families"].items()) s.types[k] = v.get<std::string>();
  return s;
}

grpc::Status SpawnEcho(Hostd& h, const std::string& name) {
  v1::SpawnProcResponse resp;
  return h.Spawn(h.EchoRequest(name), &resp);
}

v1::ProcState StateOf(Hostd& h, const std::string& name) {
  v1::GetProcRequest req;
  req.set_name(name);
  v1::Proc p;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  grpc::Status s = h.api().GetProc(&ctx, req, &p);
  return s.ok() ? p.status().state() : v1::PROC_STATE_UNSPECIFIED;
}

// An operator's afternoon: a proc that runs, one that crashes until its supervisor
// gives up, a message, a spawn that fails, a drain; then what the metrics, the log
// lines, the probes and the health service say of it.
TEST(OperationsTest, MetricsLogsProbesAndHealthTellWhatHappened) {
  Hostd h({"--http", "127.0.0.1:0", "--log-format", "json", "--log-level", "info"}, {}, /*log_to_file=*/true);
  std::string http = HttpAddr(h);
  ASSERT_FALSE(http.empty()) << "no \"hostd ready\" line with the HTTP address";
  EXPECT_EQ(Get(http, "/healthz").status, 200);
  EXPECT_EQ(Get(http, "/readyz").status, 200);

  ASSERT_TRUE(SpawnEcho(h, "echo").ok());
  // Ready, then exits 3 a moment later, twice restarted, then given up.
  v1::SpawnProcRequest crash = h.EchoRequest("crasher", {"--exit-after-ms=100", "--exit-code=3"});
  crash.mutable_restart()->set_mode(v1::RESTART_MODE_ON_FAILURE);
  crash.mutable_restart()->set_max_restarts(2);
  *crash.mutable_restart()->mutable_within() = Secs(600);
  crash.mutable_restart()->mutable_backoff()->mutable_initial()->set_nanos(10'000'000);
  crash.mutable_restart()->mutable_backoff()->mutable_max()->set_nanos(50'000'000);
  v1::SpawnProcResponse spawned;
  ASSERT_TRUE(h.Spawn(crash, &spawned).ok());
  {
    v1::WaitProcRequest wait;
    wait.set_name("crasher");
    wait.set_for_good(true);
    v1::Proc p;
    grpc::ClientContext ctx;
    ctx.set_deadline(In(testing::kHangGuard));
    ASSERT_TRUE(h.api().WaitProc(&ctx, wait, &p).ok());
    ASSERT_EQ(p.incarnation(), 3);
  }
  // One message forwarded to a proc and answered; one to no such proc, returned.
  auto [rc, out] = Hostctl(h, "send echo echo hi --reply-timeout 30");
  ASSERT_EQ(rc, 0) << out;
  std::tie(rc, out) = Hostctl(h, "send ghost echo hi --reply-timeout 30");
  EXPECT_NE(rc, 0) << out;
  // A spawn of a program that is not there fails.
  v1::SpawnProcRequest bad = h.EchoRequest("bad");
  bad.mutable_spec()->set_program(h.Path("no-such-program"));
  v1::SpawnProcResponse bad_resp;
  EXPECT_FALSE(h.Spawn(bad, &bad_resp).ok());

  // Drain: the probes and the health service turn, spawns are refused naming the
  // drain, and the procs already here keep running.
  std::tie(rc, out) = Hostctl(h, "drain");
  ASSERT_EQ(rc, 0) << out;
  HttpResult ready = Get(http, "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_THAT(ready.body, HasSubstr("draining"));
  EXPECT_EQ(Get(http, "/healthz").status, 200) << "a draining hostd is alive";
  for (const char* service : {"", "hostd.v1.HostService"}) {
    EXPECT_EQ(HealthCheck(h.channel(), service).second, kNotServing) << "service \"" << service << "\"";
  }
  grpc::Status refused = SpawnEcho(h, "late");
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(refused.error_message(), HasSubstr("draining"));
  EXPECT_EQ(StateOf(h, "echo"), v1::PROC_STATE_READY);
  std::tie(rc, out) = Hostctl(h, "send echo echo still-here --reply-timeout 30");
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(out, "still-here\n");
  std::tie(rc, out) = Hostctl(h, "drain --off");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(Get(http, "/readyz").status, 200);
  for (const char* service : {"", "hostd.v1.HostService"}) {
    EXPECT_EQ(HealthCheck(h.channel(), service).second, kServing) << "service \"" << service << "\"";
  }

  // A watcher is open while the metrics are scraped.
  grpc::ClientContext watch_ctx;
  std::unique_ptr<grpc::ClientReader<v1::ProcEvent>> watch = h.api().WatchProcs(&watch_ctx, v1::WatchProcsRequest());
  ASSERT_TRUE(testing::Eventually([&] { return ScrapeMetrics(h, http).Of("hostd_grpc_watch_streams") == 1; }));

  Scrape m = ScrapeMetrics(h, http);
  EXPECT_EQ(m.Of("hostd_spawns_total"), 2) << "echo and crasher";
  EXPECT_EQ(m.Of("hostd_spawn_failures_total{cause=\"draining\"}"), 1);
  double failures = 0;
  for (const auto& [k, v] : m.samples) {
    if (absl::StartsWith(k, "hostd_spawn_failures_total{")) failures += v;
  }
  EXPECT_EQ(failures, 2) << "the missing program and the drained spawn";
  EXPECT_EQ(m.Of("hostd_spawn_to_ready_seconds_count"), 2);
  EXPECT_EQ(m.types["hostd_spawn_to_ready_seconds"], "histogram");
  EXPECT_EQ(m.Of("hostd_proc_exits_total{kind=\"exit_nonzero\"}"), 3) << "each of the crasher's incarnations";
  EXPECT_EQ(m.Of("hostd_proc_exits_total{kind=\"killed\"}"), 0);
  EXPECT_EQ(m.Of("hostd_restarts_total"), 2);
  EXPECT_EQ(m.Of("hostd_gave_up_total{what=\"proc\"}"), 1);
  EXPECT_EQ(m.Of("hostd_procs{state=\"ready\"}"), 1);
  EXPECT_EQ(m.Of("hostd_procs{state=\"stopped\"}"), 1);
  EXPECT_EQ(m.Of("hostd_draining"), 0);
  EXPECT_GE(m.Of("hostd_forwarded_messages_total{link=\"proc\"}"), 2) << "the two messages to echo";
  EXPECT_GT(m.Of("hostd_forwarded_bytes_total{link=\"proc\"}"), 0);
  EXPECT_EQ(m.Of("hostd_forwarded_messages_total{link=\"remote\"}"), 0);
  EXPECT_EQ(m.Of("hostd_returned_messages_total{reason=\"unknown_proc\"}"), 1) << "the message to ghost";
  EXPECT_GE(m.Of("hostd_link_queue_time_seconds_count{link=\"proc\"}"), 2) << "acknowledged messages";
  EXPECT_EQ(m.types["hostd_link_queue_time_seconds"], "summary");
  EXPECT_GE(m.Of("hostd_links_open{link=\"proc\"}"), 1);
  EXPECT_EQ(m.Of("hostd_link_queue_depth{link=\"proc\"}"), 0) << "nothing left unacknowledged";
  EXPECT_EQ(m.Of("hostd_link_blocked_sends_total{link=\"proc\"}"), 0);
  EXPECT_EQ(m.Of("hostd_grpc_calls_total{code=\"OK\",method=\"/hostd.v1.HostService/SpawnProc\"}"), 2);
  EXPECT_EQ(m.Of("hostd_grpc_calls_total{code=\"FAILED_PRECONDITION\",method=\"/hostd.v1.HostService/SpawnProc\"}"),
            1 + (m.Of("hostd_spawn_failures_total{cause=\"start_failed\"}") > 0 ? 1 : 0));
  EXPECT_EQ(m.Of("hostd_grpc_calls_total{code=\"OK\",method=\"/hostd.v1.HostService/Drain\"}"), 2);
  EXPECT_EQ(m.Of("hostd_grpc_watch_streams"), 1);
  EXPECT_GT(m.Of("hostd_resident_memory_bytes"), 0);
  EXPECT_GT(m.Of("hostd_open_fds"), 0);
  EXPECT_GT(m.Of("hostd_threads"), 1);
  watch_ctx.TryCancel();

  EXPECT_EQ(h.Signal(SIGTERM), 0);

  // The log: one JSON object per event, with real fields and a time zone.
  std::vector<Json> lines = LogLines(h);
  std::regex ts(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+[+-]\d\d:\d\d)");
  for (const Json& j : lines) EXPECT_TRUE(std::regex_match(j.value("ts", ""), ts)) << j.dump();
  std::vector<Json> requested = Events(lines, "spawn requested", "echo");
  ASSERT_EQ(requested.size(), 1u);
  EXPECT_EQ(requested[0].value("program", ""), kTestProc);
  EXPECT_EQ(requested[0].value("uid", -2), static_cast<int64_t>(getuid())) << requested[0].dump();
  EXPECT_EQ(requested[0].value("caller_pid", -2), static_cast<int64_t>(getpid())) << requested[0].dump();
  std::vector<Json> ready_lines = Events(lines, "proc ready", "echo");
  ASSERT_EQ(ready_lines.size(), 1u);
  EXPECT_GT(ready_lines[0].value("pid", 0), 0);
  EXPECT_EQ(ready_lines[0].value("incarnation", 0), 1);
  EXPECT_GE(ready_lines[0].value("duration_ms", -1), 0);
  std::vector<Json> exits = Events(lines, "proc exited", "crasher");
  ASSERT_EQ(exits.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(exits[i].value("exit_code", -1), 3);
    EXPECT_EQ(exits[i].value("incarnation", 0), i + 1);
    EXPECT_GT(exits[i].value("pid", 0), 0);
  }
  std::vector<Json> restarts = Events(lines, "proc restarting", "crasher");
  ASSERT_EQ(restarts.size(), 2u);
  EXPECT_EQ(restarts[0].value("attempt", 0), 1);
  EXPECT_EQ(restarts[1].value("attempt", 0), 2);
  EXPECT_TRUE(restarts[0]["delay_ms"].is_number_integer()) << restarts[0].dump();
  EXPECT_EQ(Events(lines, "proc gave up", "crasher").size(), 1u);
  EXPECT_EQ(Events(lines, "drain started").size(), 1u);
  EXPECT_EQ(Events(lines, "drain ended").size(), 1u);
  std::vector<Json> summary = Events(lines, "shutdown summary");
  ASSERT_EQ(summary.size(), 1u);
  EXPECT_EQ(summary[0].value("attempted", -1), 1) << "echo was still running";
  EXPECT_EQ(summary[0].value("ok", -1), 1);
  EXPECT_EQ(Events(lines, "proc terminated", "echo").size(), 1u);
}

// From the first stop signal on, hostd is not ready (it still answers /healthz and
// the control API until it exits), and its health service says NOT_SERVING.
TEST(OperationsTest, ReadinessAndHealthTurnNotServingWhileShuttingDown) {
  Hostd h({"--http", "127.0.0.1:0", "--log-format", "json", "--log-level", "info"}, {}, /*log_to_file=*/true);
  std::string http = HttpAddr(h);
  ASSERT_FALSE(http.empty());
  // A proc that ignores both the agent's stop and SIGTERM holds shutdown open for
  // the grace (2 s in the fixture).
  ASSERT_TRUE(SpawnEcho(h, "stubborn").ok());
  v1::SpawnProcRequest req = h.EchoRequest("stubborn2", {"--ignore-sigterm", "--ignore-stop"});
  v1::SpawnProcResponse resp;
  ASSERT_TRUE(h.Spawn(req, &resp).ok());
  ASSERT_EQ(kill(h.pid(), SIGTERM), 0);
  HttpResult ready;
  ASSERT_TRUE(testing::Eventually([&] {
    ready = Get(http, "/readyz");
    return ready.status == 503;
  }));
  EXPECT_THAT(ready.body, HasSubstr("shutting down"));
  for (const char* service : {"", "hostd.v1.HostService"}) {
    auto [s, serving] = HealthCheck(h.channel(), service);
    EXPECT_TRUE(!s.ok() || serving == kNotServing) << "service \"" << service << "\": " << serving;
  }
  EXPECT_EQ(h.Signal(0), 0) << "hostd exits 0 once its procs are stopped";
}

TEST(OperationsTest, UnderASystemdWatchdogHostdPingsIt) {
  Hostd h({}, std::vector<std::string>{"WATCHDOG_USEC=200000"});
  // READY=1 came first (the fixture waited for it); pings follow.
  EXPECT_THAT(h.AwaitNotify(), HasSubstr("WATCHDOG=1"));
  EXPECT_THAT(h.AwaitNotify(), HasSubstr("WATCHDOG=1"));
  EXPECT_EQ(h.Signal(SIGTERM), 0);
}

TEST(OperationsTest, HttpOnANonLoopbackAddressIsRefusedSayingHowToAllowIt) {
  testing::TempDir dir;
  auto [rc, out] = RunShell(absl::StrCat(kHostd, " --grpc unix:", dir.Join("h.sock"), " --state-dir ",
                                         dir.Join("state"), " --http 0.0.0.0:0"));
  EXPECT_EQ(rc, 1) << out;
  EXPECT_THAT(out, HasSubstr("not a loopback address"));
  EXPECT_THAT(out, HasSubstr("--http-allow-remote"));
}

// A proc whose client lease ran out: one "lease expired" line naming it and its
// owner, and the counter moves by one.
TEST(OperationsTest, AnExpiredLeaseIsLoggedOnceAndCounted) {
  Hostd h({"--http", "127.0.0.1:0", "--log-format", "json", "--log-level", "info"}, {}, /*log_to_file=*/true);
  std::string http = HttpAddr(h);
  ASSERT_FALSE(http.empty()) << "no \"hostd ready\" line with the HTTP address";
  EXPECT_EQ(ScrapeMetrics(h, http).Of("hostd_lease_expirations_total"), 0);
  v1::SpawnProcRequest req;
  req.set_name("leased");
  req.mutable_spec()->set_program("/bin/sleep");
  req.mutable_spec()->add_args("600");
  req.mutable_spec()->set_readiness(v1::READINESS_MODE_EXEC);
  req.mutable_lease()->set_owner("gone-client");
  *req.mutable_lease()->mutable_ttl() = Secs(1);
  v1::SpawnProcResponse spawned;
  ASSERT_TRUE(h.Spawn(req, &spawned).ok());
  v1::WaitProcRequest wait;
  wait.set_name("leased");
  wait.set_for_good(true);
  v1::Proc p;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  ASSERT_TRUE(h.api().WaitProc(&ctx, wait, &p).ok());
  EXPECT_EQ(p.status().reason(), "lease expired");
  EXPECT_EQ(ScrapeMetrics(h, http).Of("hostd_lease_expirations_total"), 1);
  int lines = 0;
  for (const Json& j : LogLines(h)) {
    if (j.value("msg", "") != "lease expired") continue;
    ++lines;
    EXPECT_EQ(j.value("proc", ""), "leased");
    EXPECT_EQ(j.value("owner", ""), "gone-client");
    EXPECT_EQ(j.value("ttl_ms", 0), 1000);
  }
  EXPECT_EQ(lines, 1);
}

}  // namespace
}  // namespace hostd
