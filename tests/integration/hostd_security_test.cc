// hostd as a cluster service: TLS frontends and gRPC with real certificates made
// for each test, addresses other hosts dial, plaintext refused off loopback, the
// exec allow-list and procs run as another user.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "base/small_file.h"
#include "channel/event_loop.h"
#include "channel/listener.h"
#include "channel/sender.h"
#include "channel/tls.h"
#include "channel/transport.h"
#include "gmock/gmock.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "testing/temp_dir.h"
#include "testing/test_pki.h"
#include "tests/integration/hostd_process.h"

namespace hostd {
namespace {

using ::hostd::testing::Eventually;
using ::hostd::testing::HangGuard;
using ::hostd::testing::TempDir;
using ::hostd::testing::TestPki;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Runs a command to its end: its exit status and what it wrote (stdout and stderr).
std::pair<int, std::string> RunCommand(const std::string& cmd) {
  std::string out;
  FILE* p = popen(absl::StrCat(cmd, " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

std::string Pem(const std::string& path) { return base::ReadSmallFile(path).value_or(""); }

// One TLS handshake with `addr` from `loop`: its outcome.
absl::Status DialTls(channel::EventLoop& loop, const channel::ChannelAddr& addr,
                     std::shared_ptr<channel::TlsContext> tls) {
  absl::Notification done;
  absl::Status out;
  loop.Post([&] {
    channel::AsyncConnect(loop.context(), addr, tls, [&](absl::Status s, channel::Socket) {
      out = s;
      done.Notify();
    });
  });
  EXPECT_TRUE(done.WaitForNotificationWithDeadline(HangGuard()));
  return out;
}

// A CA, hostd's certificate and a client's, in a temp dir.
class SecureHostdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestPki> ca = TestPki::Create(dir_.path(), "ca1");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_.emplace(*std::move(ca));
    absl::StatusOr<TestPki::Leaf> host = ca_->Issue("host");
    ASSERT_TRUE(host.ok()) << host.status();
    // hostd's files are copies it can be told to reload.
    std::filesystem::copy_file(host->cert, dir_.Join("hostd.crt"));
    std::filesystem::copy_file(host->key, dir_.Join("hostd.key"));
    absl::StatusOr<TestPki::Leaf> client = ca_->Issue("ops");
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *client;
  }

  std::vector<std::string> TlsFlags() {
    return {"--tls-cert",   dir_.Join("hostd.crt"),     "--tls-key", dir_.Join("hostd.key"), "--tls-ca",
            ca_->ca_cert(), "--tls-require-client-cert"};
  }

  std::shared_ptr<grpc::ChannelCredentials> ClientCreds(const std::string& ca, bool with_cert = true) {
    grpc::SslCredentialsOptions o;
    o.pem_root_certs = Pem(ca);
    if (with_cert) {
      o.pem_cert_chain = Pem(client_.cert);
      o.pem_private_key = Pem(client_.key);
    }
    return grpc::SslCredentials(o);
  }

  std::shared_ptr<channel::TlsContext> ClientTls(const std::string& ca) {
    absl::StatusOr<std::shared_ptr<channel::TlsContext>> tls =
        channel::TlsContext::Create({.cert_file = client_.cert, .key_file = client_.key, .ca_file = ca});
    EXPECT_TRUE(tls.ok()) << tls.status();
    return tls.value_or(nullptr);
  }

  std::string Hostctl(const std::string& grpc, const std::string& ca, bool with_cert, const std::string& args) {
    std::string cmd = absl::StrCat(kHostctl, " --grpc ", grpc, " --tls-ca ", ca, " --timeout 20");
    if (with_cert) absl::StrAppend(&cmd, " --tls-cert ", client_.cert, " --tls-key ", client_.key);
    return absl::StrCat(cmd, " ", args);
  }

  TempDir dir_;
  std::optional<TestPki> ca_;
  TestPki::Leaf client_;
};

TEST(HostdAddressTest, PlaintextOffLoopbackIsRefusedNamingInsecureAndALoopbackAdvertiseTooAtStart) {
  TempDir dir;
  std::string base = absl::StrCat(kHostd, " --state-dir ", dir.Join("state"), " --backend unix:", dir.Join("be"));
  auto [code, out] = RunCommand(
      absl::StrCat(base, " --grpc unix:", dir.Join("g"), " --frontend tcp:0.0.0.0:7000 --advertise 10.1.2.3:7000"));
  EXPECT_NE(code, 0);
  EXPECT_THAT(out, AllOf(HasSubstr("--frontend tcp:0.0.0.0:7000 is plaintext"), HasSubstr("--insecure")));
  std::tie(code, out) = RunCommand(absl::StrCat(base, " --grpc tcp:0.0.0.0:7001 --frontend unix:", dir.Join("f")));
  EXPECT_NE(code, 0);
  EXPECT_THAT(out, AllOf(HasSubstr("--grpc tcp:0.0.0.0:7001 is plaintext"), HasSubstr("--insecure")));
  std::tie(code, out) = RunCommand(absl::StrCat(base, " --grpc unix:", dir.Join("g"),
                                                " --frontend tcp:0.0.0.0:7000 --advertise 127.0.0.1:7000 --insecure"));
  EXPECT_NE(code, 0);
  EXPECT_THAT(out, HasSubstr("--advertise 127.0.0.1:7000 is a loopback address"));
}

TEST(HostdAddressTest, WithInsecureAPlaintextFrontendOnEveryInterfaceServesAndProcIdsCarryTheAdvertisedAddress) {
  int port = FreePort();
  Hostd h({"--insecure", "--advertise", absl::StrCat("node-7.example.net:", port)}, "",
          absl::StrCat("tcp:0.0.0.0:", port));
  grpc::ClientContext ctx;
  v1::HostInfo info;
  ASSERT_TRUE(h.api().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &info).ok());
  EXPECT_EQ(info.frontend_addr(), absl::StrCat("tcp:node-7.example.net:", port));
  v1::SpawnProcResponse resp;
  ASSERT_TRUE(h.Spawn(h.EchoRequest("echo"), &resp).ok());
  EXPECT_EQ(resp.proc().proc_id(), absl::StrCat("tcp:node-7.example.net:", port, ",echo"));
}

TEST_F(SecureHostdTest, TlsGrpcAndFrontendWithClientCertificatesCarryMessagesBothWays) {
  std::string grpc = absl::StrCat("tls:127.0.0.1:", FreePort());
  Hostd h(TlsFlags(), grpc, "tls:127.0.0.1:0", ClientCreds(ca_->ca_cert()));
  grpc::ClientContext ctx;
  v1::HostInfo info;
  grpc::Status s = h.api().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_THAT(info.frontend_addr(), HasSubstr("tls:127.0.0.1:"));
  v1::SpawnProcResponse resp;
  ASSERT_TRUE(h.Spawn(h.EchoRequest("echo"), &resp).ok());

  // A client with its own TLS listener: the echo's reply comes back to it over a
  // link the host dials with its own certificate.
  auto loop = channel::EventLoop::Start("client");
  std::shared_ptr<channel::TlsContext> tls = ClientTls(ca_->ca_cert());
  channel::Inbox inbox;
  auto me = channel::Listener::Serve(*loop, *channel::ChannelAddr::Parse("tls:127.0.0.1:0"), inbox, {.tls = tls});
  ASSERT_TRUE(me.ok()) << me.status();
  auto sender = channel::Sender::Dial(*loop, *channel::ChannelAddr::Parse(info.frontend_addr()), {.tls = tls});
  absl::StatusOr<channel::Message> m = channel::Message::Create(
      absl::StrCat(info.frontend_addr(), ",echo"), "echo", absl::StrCat((*me)->addr().ToString(), ",me"), "over tls");
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_TRUE(sender->Send(*std::move(m), HangGuard()).ok());
  absl::StatusOr<channel::Message> reply = inbox.Receive(HangGuard());
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->payload(), "over tls");

  auto [code, out] = RunCommand(Hostctl(grpc, ca_->ca_cert(), true, "list"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("echo"));
}

TEST_F(SecureHostdTest, AClientTrustingAnotherCaOrWithoutACertificateIsRefusedWithAClearError) {
  absl::StatusOr<TestPki> other = TestPki::Create(dir_.path(), "ca2");
  ASSERT_TRUE(other.ok()) << other.status();
  std::string grpc = absl::StrCat("tls:127.0.0.1:", FreePort());
  Hostd h(TlsFlags(), grpc, "tls:127.0.0.1:0", ClientCreds(ca_->ca_cert()));
  auto [code, out] = RunCommand(Hostctl(grpc, other->ca_cert(), true, "list"));
  EXPECT_EQ(code, 6) << out;
  EXPECT_THAT(out, AllOf(HasSubstr("TLS handshake with hostd"), HasSubstr("--tls-ca")));
  std::tie(code, out) = RunCommand(Hostctl(grpc, ca_->ca_cert(), false, "list"));
  EXPECT_NE(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("TLS handshake with hostd"));
}

// hostd ends the control API's TLS itself, so tls: has what unix: and tcp: have:
// a cap on connections (silent ones that never finish a handshake count) and a
// listener that serves again after hostd ran out of descriptors.
TEST_F(SecureHostdTest, TheTlsControlApiCapsConnectionsAndServesAgainAfterRunningOutOfDescriptors) {
  std::vector<std::string> flags = TlsFlags();
  flags.insert(flags.end(), {"--max-grpc-connections", "4"});
  std::string grpc = absl::StrCat("tls:127.0.0.1:", FreePort());
  Hostd h(flags, grpc, "tls:127.0.0.1:0", ClientCreds(ca_->ca_cert()));
  grpc::ClientContext ctx;
  v1::HostInfo info;
  ASSERT_TRUE(h.api().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &info).ok());  // one connection, kept open
  std::vector<base::UniqueFd> silent;
  for (int i = 0; i < 3; ++i) silent.push_back(Connect(grpc));
  grpc::Status capped = FreshCall(h, absl::Seconds(2));
  EXPECT_EQ(capped.error_code(), grpc::StatusCode::UNAVAILABLE) << "a fifth connection past the cap of 4";
  silent.clear();
  EXPECT_TRUE(Eventually([&] { return FreshCall(h, absl::Seconds(2)).ok(); })) << "served again once they left";

#if !defined(__SANITIZE_ADDRESS__)  // the sanitizers' runtime itself needs descriptors
  Hostd wide(TlsFlags(), absl::StrCat("tls:127.0.0.1:", FreePort()), "tls:127.0.0.1:0", ClientCreds(ca_->ca_cert()));
  ASSERT_TRUE(FreshCall(wide, absl::Seconds(20)).ok());
  DescriptorFlood flood = FloodDescriptors(wide);
  EXPECT_TRUE(Eventually([&] { return OpenDescriptors(wide.pid()) >= flood.limit - 1; }))
      << "hostd did not run out of descriptors: " << OpenDescriptors(wide.pid()) << " of " << flood.limit;
  flood.connections.clear();
  EXPECT_TRUE(Eventually([&] { return FreshCall(wide, absl::Seconds(2)).ok(); }))
      << "the TLS control API did not come back after the descriptors were free";
#endif
}

TEST_F(SecureHostdTest, SighupReloadsTheFrontendCertificate) {
  absl::StatusOr<TestPki> next = TestPki::Create(dir_.path(), "ca2");
  ASSERT_TRUE(next.ok()) << next.status();
  absl::StatusOr<TestPki::Leaf> renewed = next->Issue("renewed");
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  Hostd h(TlsFlags(), "", "tls:127.0.0.1:0");
  grpc::ClientContext ctx;
  v1::HostInfo info;
  ASSERT_TRUE(h.api().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &info).ok());
  channel::ChannelAddr frontend = *channel::ChannelAddr::Parse(info.frontend_addr());

  // A client that trusts only the new CA: refused until hostd serves the new certificate.
  auto loop = channel::EventLoop::Start("client");
  std::shared_ptr<channel::TlsContext> trusts_next = ClientTls(next->ca_cert());
  auto dial = [&] { return DialTls(*loop, frontend, trusts_next); };
  EXPECT_THAT(dial().message(), HasSubstr("certificate verify failed"));
  std::filesystem::copy_file(renewed->cert, dir_.Join("hostd.crt"), std::filesystem::copy_options::overwrite_existing);
  std::filesystem::copy_file(renewed->key, dir_.Join("hostd.key"), std::filesystem::copy_options::overwrite_existing);
  kill(h.pid(), SIGHUP);
  EXPECT_TRUE(Eventually([&] { return dial().ok(); }));
}

// Replaces a file the way a renewal should: a new file renamed over the old one.
void ReplaceFile(const std::string& from, const std::string& to) {
  std::filesystem::copy_file(from, to + ".new", std::filesystem::copy_options::overwrite_existing);
  std::filesystem::rename(to + ".new", to);
}

TEST_F(SecureHostdTest, TheGrpcServerServesReplacedCertificateFilesToNewConnectionsAndSoDoesTheFrontend) {
  absl::StatusOr<TestPki> next = TestPki::Create(dir_.path(), "ca2");
  ASSERT_TRUE(next.ok()) << next.status();
  absl::StatusOr<TestPki::Leaf> renewed = next->Issue("renewed");
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  std::vector<std::string> flags = TlsFlags();
  flags.insert(flags.end(), {"--tls-refresh", "1"});
  std::string grpc = absl::StrCat("tls:127.0.0.1:", FreePort());
  Hostd h(flags, grpc, "tls:127.0.0.1:0", ClientCreds(ca_->ca_cert()));
  grpc::ClientContext info_ctx;
  v1::HostInfo info;
  ASSERT_TRUE(h.api().GetHostInfo(&info_ctx, v1::GetHostInfoRequest(), &info).ok());

  // Each call on a channel of its own, so each is a new connection and handshake.
  auto call_trusting = [&](const std::string& ca) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto stub =
        v1::HostService::NewStub(grpc::CreateCustomChannel(*channel::GrpcTarget(grpc), ClientCreds(ca), args));
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(5)));
    v1::HostInfo out;
    return stub->GetHostInfo(&ctx, v1::GetHostInfoRequest(), &out);
  };
  grpc::Status before = call_trusting(next->ca_cert());
  EXPECT_EQ(before.error_code(), grpc::StatusCode::UNAVAILABLE) << before.error_message();
  ASSERT_TRUE(call_trusting(ca_->ca_cert()).ok());

  // No signal: hostd notices the files changed.
  ReplaceFile(renewed->key, dir_.Join("hostd.key"));
  ReplaceFile(renewed->cert, dir_.Join("hostd.crt"));
  EXPECT_TRUE(Eventually([&] { return call_trusting(next->ca_cert()).ok(); }));
  EXPECT_EQ(call_trusting(ca_->ca_cert()).error_code(), grpc::StatusCode::UNAVAILABLE);
  // The old connection's calls go on: it keeps the certificate it began with.
  grpc::ClientContext again;
  EXPECT_TRUE(h.api().GetHostInfo(&again, v1::GetHostInfoRequest(), &info).ok());

  // The frontend too, for a dialer trusting only the new CA.
  auto loop = channel::EventLoop::Start("client");
  std::shared_ptr<channel::TlsContext> trusts_next = ClientTls(next->ca_cert());
  channel::ChannelAddr frontend = *channel::ChannelAddr::Parse(info.frontend_addr());
  EXPECT_TRUE(Eventually([&] { return DialTls(*loop, frontend, trusts_next).ok(); }));
}

TEST_F(SecureHostdTest, AnIdentityRuleAllowsItsClientCertificateOnly) {
  absl::StatusOr<TestPki::Leaf> dev = ca_->Issue("dev");
  ASSERT_TRUE(dev.ok()) << dev.status();
  std::vector<std::string> flags = TlsFlags();
  std::string proc_dir = std::filesystem::path(kTestProc).parent_path();
  flags.insert(flags.end(), {"--allow-exec", absl::StrCat("ops=", proc_dir, "/*")});
  Hostd h(flags, absl::StrCat("tls:127.0.0.1:", FreePort()), "tls:127.0.0.1:0", ClientCreds(ca_->ca_cert()));
  v1::SpawnProcResponse resp;
  grpc::Status s = h.Spawn(h.EchoRequest("as-ops"), &resp);  // client "ops"
  EXPECT_TRUE(s.ok()) << s.error_message();

  grpc::SslCredentialsOptions o{
      .pem_root_certs = Pem(ca_->ca_cert()), .pem_private_key = Pem(dev->key), .pem_cert_chain = Pem(dev->cert)};
  auto as_dev =
      v1::HostService::NewStub(grpc::CreateChannel(*channel::GrpcTarget(h.grpc_addr()), grpc::SslCredentials(o)));
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  s = as_dev->SpawnProc(&ctx, h.EchoRequest("as-dev"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), AllOf(HasSubstr("for client \"dev\""), HasSubstr(absl::StrCat("ops=", proc_dir))));
}

// The identity of the client that spawned a proc is recorded with it: the hostd
// that adopts the proc after a restart authorises its restarts for that client,
// so a rule for that identity alone still allows them, and a rule for another
// client only does not.
TEST_F(SecureHostdTest, AnAdoptedProcIsRestartedUnderTheRuleOfTheClientThatSpawnedIt) {
  TempDir state;
  std::string proc_dir = std::filesystem::path(kTestProc).parent_path();
  std::vector<std::string> flags = TlsFlags();
  flags.insert(flags.end(), {"--allow-exec", absl::StrCat("ops=", proc_dir, "/*"), "--keep-procs",
                             "--reattach-timeout", "5", "--state-dir", state.Join("state")});
  auto start = [&] {
    return std::make_unique<Hostd>(flags, absl::StrCat("tls:127.0.0.1:", FreePort()), "tls:127.0.0.1:0",
                                   ClientCreds(ca_->ca_cert()));
  };
  const size_t rule = std::find(flags.begin(), flags.end(), "--allow-exec") - flags.begin() + 1;
  std::unique_ptr<Hostd> h = start();
  v1::SpawnProcRequest req = h->EchoRequest("sup");  // as client "ops"
  req.mutable_restart()->set_mode(v1::RESTART_MODE_ON_FAILURE);
  v1::SpawnProcResponse resp;
  grpc::Status s = h->Spawn(req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(h->Signal(SIGTERM), 0);
  h = start();
  v1::Proc p = ListByName(*h)["sup"];
  ASSERT_EQ(p.status().pid(), resp.proc().status().pid()) << "not adopted: " << p.DebugString();
  kill(resp.proc().status().pid(), SIGKILL);
  EXPECT_TRUE(Eventually([&] {
    p = ListByName(*h)["sup"];
    return p.incarnation() == 2 && p.status().state() == v1::PROC_STATE_READY;
  })) << "the restart was not authorised for the client that spawned the proc: " << p.DebugString();

  EXPECT_EQ(h->Signal(SIGTERM), 0);
  flags[rule] = absl::StrCat("dev=", proc_dir, "/*");
  h = start();
  p = ListByName(*h)["sup"];
  ASSERT_EQ(p.status().state(), v1::PROC_STATE_READY) << "not adopted: " << p.DebugString();
  kill(p.status().pid(), SIGKILL);
  EXPECT_TRUE(Eventually([&] {
    p = ListByName(*h)["sup"];
    return p.status().state() == v1::PROC_STATE_FAILED && !p.restarting();
  })) << p.DebugString();
  EXPECT_THAT(p.status().reason(), HasSubstr("is not allowed for client \"ops\""));
}

TEST_F(SecureHostdTest, AHostRestartedOnTheSameAddressIsRecognisedAndItsPeersSendItWhatItNeverAcknowledged) {
  std::string b_addr = absl::StrCat("tls:127.0.0.1:", FreePort());
  auto incarnation = [](Hostd& h) {
    grpc::ClientContext ctx;
    v1::HostInfo info;
    EXPECT_TRUE(h.api().GetHostInfo(&ctx, v1::GetHostInfoRequest(), &info).ok());
    return info.incarnation();
  };
  auto spawn = [](Hostd& h, const std::string& name, std::vector<std::string> args) {
    v1::SpawnProcRequest req;
    req.set_name(name);
    req.mutable_spec()->set_program(kTestProc);
    for (const std::string& a : args) req.mutable_spec()->add_args(a);
    v1::SpawnProcResponse resp;
    grpc::Status s = h.Spawn(req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
  };
  std::optional<Hostd> b;
  b.emplace(TlsFlags(), "", b_addr);
  uint64_t first = incarnation(*b);
  spawn(*b, "sink", {"--sink"});
  Hostd a(TlsFlags(), "", "tls:127.0.0.1:0");
  constexpr int kCount = 400;
  spawn(a, "streamer",
        {"--sink", absl::StrCat("--stream-to=", b_addr, ",sink"), "--stream-tag=t",
         absl::StrCat("--stream-count=", kCount), "--stream-gap-ms=5"});

  // b dies mid-stream and comes back on its address, with a sink of the same name.
  ASSERT_TRUE(Eventually([&] { return LinesWith(b->Path("state/logs/sink.stdout"), "got").size() >= 50; }));
  b->Signal(SIGKILL);
  std::vector<std::string> before = LinesWith(b->Path("state/logs/sink.stdout"), "got");
  b.emplace(TlsFlags(), "", b_addr);
  EXPECT_NE(incarnation(*b), first);
  spawn(*b, "sink", {"--sink"});

  // Every message is delivered (to either incarnation's sink) or returned, except
  // those the killed hostd had acknowledged and not yet handed to its sink: the
  // seqs right after the last the old sink printed, before the first that reached
  // the new one or came back (channel/PROTOCOL.md, hop-by-hop acknowledgement).
  int last_before = 0;
  for (const std::string& p : before) last_before = std::max(last_before, SeqOf(p, kCount));
  std::vector<int> unaccounted;
  int died_in_host = 0;
  size_t reached_new = 0;
  bool settled = Eventually([&] {
    std::vector<bool> seen(kCount + 1, false);
    int first_after = 0;  // none yet: nothing is excused
    for (const std::string& p : before) seen[SeqOf(p, kCount)] = true;
    std::vector<std::string> after = LinesWith(b->Path("state/logs/sink.stdout"), "got");
    reached_new = after.size();
    for (const std::string& line : LinesWith(a.Path("state/logs/streamer.stdout"), "ret")) {
      after.push_back(line.substr(0, line.find(' ')));
    }
    for (const std::string& p : after) {
      int seq = SeqOf(p, kCount);
      seen[seq] = true;
      if (seq > last_before && (first_after == 0 || seq < first_after)) first_after = seq;
    }
    unaccounted.clear();
    died_in_host = 0;
    for (int seq = 1; seq <= kCount; ++seq) {
      if (seen[seq]) continue;
      if (seq > last_before && seq < first_after) {
        ++died_in_host;
      } else {
        unaccounted.push_back(seq);
      }
    }
    std::vector<std::string> lines =
        absl::StrSplit(base::ReadSmallFile(a.Path("state/logs/streamer.stdout")).value_or(""), '\n');
    return unaccounted.empty() && std::find(lines.begin(), lines.end(), "done") != lines.end();
  });
  EXPECT_TRUE(settled) << "unaccounted seqs, e.g. " << (unaccounted.empty() ? 0 : unaccounted.front()) << " of "
                       << unaccounted.size();
  EXPECT_GT(reached_new, 0u) << "nothing reached the restarted host";
  RecordProperty("died_in_host", died_in_host);
}

// Over TLS, a request's lifecycle line says whose certificate asked: its identity
// beside the peer's address.
TEST_F(SecureHostdTest, LifecycleLogsNameTheClientCertificateIdentity) {
  std::vector<std::string> flags = TlsFlags();
  flags.insert(flags.end(), {"--log-level", "info", "--log-format", "json"});
  Hostd h(flags, absl::StrCat("tls:127.0.0.1:", FreePort()), "tls:127.0.0.1:0", ClientCreds(ca_->ca_cert()),
          /*log_to_file=*/true);
  v1::SpawnProcResponse resp;
  ASSERT_TRUE(h.Spawn(h.EchoRequest("by-ops"), &resp).ok());
  auto [code, out] = RunCommand(Hostctl(h.grpc_addr(), ca_->ca_cert(), true, "kill by-ops"));
  EXPECT_EQ(code, 0) << out;
  EXPECT_EQ(h.Signal(SIGTERM), 0);
  std::string log = Pem(h.log_path());
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    if (absl::StrContains(line, "\"proc\":\"by-ops\"") && absl::StrContains(line, "requested")) {
      lines.emplace_back(line);
    }
  }
  ASSERT_EQ(lines.size(), 2u) << log;
  EXPECT_THAT(lines[0], AllOf(HasSubstr("\"msg\":\"spawn requested\""), HasSubstr("\"identity\":\"ops\""),
                              HasSubstr("\"peer\":\"ipv4:127.0.0.1:")));
  EXPECT_THAT(lines[1], AllOf(HasSubstr("\"msg\":\"kill requested\""), HasSubstr("\"identity\":\"ops\"")));
}

TEST(HostdPolicyTest, ASpawnOutsideTheAllowListIsPermissionDeniedNamingProgramAndRule) {
  Hostd h({"--allow-exec", "/usr/bin/*", "--allow-exec", "admin=/opt/*"});
  v1::SpawnProcResponse resp;
  grpc::Status s = h.Spawn(h.EchoRequest("echo"), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), AllOf(HasSubstr(absl::StrCat("program \"", kTestProc, "\" is not allowed")),
                                       HasSubstr("rules: /usr/bin/*, admin=/opt/*")));
  v1::SpawnProcRequest allowed;
  allowed.set_name("sleeper");
  allowed.mutable_spec()->set_program("sleep");  // found in PATH as /usr/bin/sleep
  allowed.mutable_spec()->add_args("30");
  allowed.mutable_spec()->set_readiness(v1::READINESS_MODE_EXEC);
  s = h.Spawn(allowed, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST(HostdPolicyTest, AProcRunsAsTheUserItsSpecNamesWhenTheConfigAllowsIt) {
  if (geteuid() != 0) GTEST_SKIP() << "running procs as another user needs root";
  passwd* nobody = getpwnam("nobody");
  if (nobody == nullptr) GTEST_SKIP() << "no user \"nobody\" here";
  Hostd h({"--allow-user", "nobody"});
  v1::SpawnProcRequest req;
  req.set_name("who");
  req.mutable_spec()->set_program("/usr/bin/id");
  req.mutable_spec()->add_args("-u");
  req.mutable_spec()->set_readiness(v1::READINESS_MODE_EXEC);
  req.mutable_spec()->set_user("nobody");
  v1::SpawnProcResponse resp;
  grpc::Status s = h.Spawn(req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  grpc::ClientContext ctx;
  ctx.set_deadline(In(testing::kHangGuard));
  v1::WaitProcRequest wait;
  wait.set_name("who");
  v1::Proc ended;
  ASSERT_TRUE(h.api().WaitProc(&ctx, wait, &ended).ok());
  EXPECT_EQ(base::ReadSmallFile(h.Path("state/logs/who.stdout")).value_or(""), absl::StrCat(nobody->pw_uid, "\n"));

  req.set_name("root-shell");
  req.mutable_spec()->set_user("root");
  s = h.Spawn(req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), AllOf(HasSubstr("may not run as user \"root\""), HasSubstr("rules: nobody")));
}

}  // namespace
}  // namespace hostd
