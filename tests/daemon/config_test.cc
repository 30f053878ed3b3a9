#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/default_paths.h"
#include "CLI/CLI.hpp"
#include "daemon/config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace hostd::daemon {
namespace {

using ::hostd::base::DefaultGrpcAddr;
using ::hostd::base::DefaultRuntimeDir;
using ::hostd::base::DefaultStateDir;
using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::hostd::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Sets an environment variable for one scope, then puts the old value back.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name); old != nullptr) old_ = old;
    if (value == nullptr) {
      ::unsetenv(name);
    } else {
      ::setenv(name, value, 1);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// hostd's command line, parsed and finished as hostd_main does; CLI11's refusals
// come back as InvalidArgument with its message.
absl::StatusOr<DaemonConfig> Parse(const std::vector<std::string>& args) {
  CLI::App app("hostd");
  DaemonConfig cfg;
  AddDaemonFlags(app, cfg);
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 takes them last first
  try {
    app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  absl::Status s = FinishConfig(cfg);
  if (!s.ok()) return s;
  return cfg;
}

TEST(DaemonConfigTest, NoArgumentsGiveTheDefaultsUnderTheRuntimeDir) {
  TempDir dir;
  ScopedEnv run("HOSTD_RUNTIME_DIR", dir.Join("run").c_str());
  ScopedEnv state("HOSTD_STATE_DIR", dir.Join("state").c_str());
  absl::StatusOr<DaemonConfig> cfg = Parse({});
  ASSERT_THAT(cfg, IsOk());
  EXPECT_EQ(cfg->grpc, "unix:" + dir.Join("run/hostd.sock"));
  EXPECT_EQ(cfg->frontend, "unix:" + dir.Join("run/frontend.sock"));
  EXPECT_EQ(cfg->backend, "unix:" + dir.Join("run/backend.sock"));
  EXPECT_EQ(cfg->state_dir, dir.Join("state"));
  EXPECT_EQ(cfg->manager, "process");
  EXPECT_TRUE(cfg->cgroups);
  EXPECT_EQ(cfg->shutdown_grace_s, 10);
  EXPECT_EQ(cfg->shutdown_max_in_flight, 256);
  EXPECT_EQ(cfg->log_level, "info");
  EXPECT_EQ(cfg->log_format, "text");
  EXPECT_EQ(DefaultGrpcAddr(), cfg->grpc);
}

TEST(DaemonConfigTest, DefaultDirsFollowTheEnvironment) {
  ScopedEnv run("HOSTD_RUNTIME_DIR", nullptr);
  ScopedEnv state("HOSTD_STATE_DIR", nullptr);
  {
    ScopedEnv xdg_run("XDG_RUNTIME_DIR", "/run/user/1000");
    ScopedEnv xdg_state("XDG_STATE_HOME", "/home/u/.local/state");
    EXPECT_EQ(DefaultRuntimeDir(), "/run/user/1000/hostd");
    EXPECT_EQ(DefaultStateDir(), "/home/u/.local/state/hostd");
  }
  ScopedEnv xdg_run("XDG_RUNTIME_DIR", nullptr);
  ScopedEnv xdg_state("XDG_STATE_HOME", nullptr);
  if (geteuid() == 0) {
    EXPECT_EQ(DefaultRuntimeDir(), "/run/hostd");
    EXPECT_EQ(DefaultStateDir(), "/var/lib/hostd");
  } else {
    EXPECT_EQ(DefaultRuntimeDir(), absl::StrCat("/tmp/hostd-", geteuid()));
  }
  ScopedEnv explicit_run("HOSTD_RUNTIME_DIR", "/x/run");
  EXPECT_EQ(DefaultRuntimeDir(), "/x/run");
}

TEST(DaemonConfigTest, FlagsOverrideTheDefaults) {
  absl::StatusOr<DaemonConfig> cfg = Parse({"--grpc",
                                            "tcp:127.0.0.1:7000",
                                            "--frontend",
                                            "unix:@fe",
                                            "--backend",
                                            "tcp:[::1]:7001",
                                            "--state-dir",
                                            "/var/x",
                                            "--manager",
                                            "local",
                                            "--cgroups",
                                            "false",
                                            "--shutdown-grace",
                                            "2.5",
                                            "--shutdown-max-in-flight",
                                            "8",
                                            "--log-level",
                                            "debug",
                                            "--log-format",
                                            "json"});
  ASSERT_THAT(cfg, IsOk());
  EXPECT_EQ(cfg->grpc, "tcp:127.0.0.1:7000");
  EXPECT_EQ(cfg->frontend, "unix:@fe");
  EXPECT_EQ(cfg->backend, "tcp:[::1]:7001");
  EXPECT_EQ(cfg->state_dir, "/var/x");
  EXPECT_EQ(cfg->manager, "local");
  EXPECT_FALSE(cfg->cgroups);
  EXPECT_EQ(cfg->shutdown_grace_s, 2.5);
  EXPECT_EQ(cfg->shutdown_max_in_flight, 8);
  EXPECT_EQ(cfg->log_level, "debug");
  EXPECT_EQ(cfg->log_format, "json");
}

TEST(DaemonConfigTest, ConfigFileSetsOptionsAndFlagsWinOverIt) {
  TempDir dir;
  std::string path = dir.Join("hostd.toml");
  std::ofstream(path) << "# hostd\n"
                         "frontend = \"unix:@from-file\"\n"
                         "manager = \"local\"\n"
                         "shutdown-grace = 3\n"
                         "log-level = \"warn\"\n";
  absl::StatusOr<DaemonConfig> cfg = Parse({"--config", path, "--log-level", "error"});
  ASSERT_THAT(cfg, IsOk());
  EXPECT_EQ(cfg->frontend, "unix:@from-file");
  EXPECT_EQ(cfg->manager, "local");
  EXPECT_EQ(cfg->shutdown_grace_s, 3);
  EXPECT_EQ(cfg->log_level, "error") << "the flag wins over the file";
}

TEST(DaemonConfigTest, IniConfigFileIsReadToo) {
  TempDir dir;
  std::string path = dir.Join("hostd.ini");
  std::ofstream(path) << "; hostd\nbackend=unix:@be-ini\nshutdown-max-in-flight=3\n";
  absl::StatusOr<DaemonConfig> cfg = Parse({"--config", path});
  ASSERT_THAT(cfg, IsOk());
  EXPECT_EQ(cfg->backend, "unix:@be-ini");
  EXPECT_EQ(cfg->shutdown_max_in_flight, 3);
}

TEST(DaemonConfigTest, AnUnknownKeyInTheConfigFileIsRefusedNamingIt) {
  TempDir dir;
  std::string path = dir.Join("hostd.toml");
  std::ofstream(path) << "max-procs = 5\nmax-prcs = 5\n";
  EXPECT_THAT(Parse({"--config", path}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max-prcs")));
}

TEST(DaemonConfigTest, LimitsAndLogBoundsAreSetByFlagOrFile) {
  TempDir dir;
  std::string path = dir.Join("hostd.toml");
  std::ofstream(path) << "max-spawn-batch = 50\nlog-keep-ended = 7\n";
  absl::StatusOr<DaemonConfig> cfg =
      Parse({"--config", path, "--max-procs", "9", "--log-max-bytes", "65536", "--log-rotations", "4"});
  ASSERT_THAT(cfg, IsOk());
  EXPECT_EQ(cfg->max_procs, 9u);
  EXPECT_EQ(cfg->max_spawn_batch, 50u);
  EXPECT_EQ(cfg->log_max_bytes, 65536u);
  EXPECT_EQ(cfg->log_rotations, 4);
  EXPECT_EQ(cfg->log_keep_ended, 7u);
  EXPECT_THAT(Parse({"--log-max-bytes", "10"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--log-max-bytes")));
}

TEST(DaemonConfigTest, MissingConfigFileIsRefused) {
  EXPECT_THAT(Parse({"--config", "/nonexistent/hostd.toml"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("/nonexistent/hostd.toml")));
}

TEST(DaemonConfigTest, OutOfRangeOrUnknownValuesAreRefusedNamingTheOption) {
  EXPECT_THAT(Parse({"--manager", "docker"}),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("--manager"), HasSubstr("docker"))));
  EXPECT_THAT(Parse({"--log-format", "xml"}),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("--log-format"), HasSubstr("xml"))));
  EXPECT_THAT(Parse({"--shutdown-grace", "-1"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--shutdown-grace")));
  EXPECT_THAT(Parse({"--shutdown-max-in-flight", "0"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--shutdown-max-in-flight")));
  EXPECT_THAT(Parse({"--shutdown-grace", "soon"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--shutdown-grace")));
  EXPECT_THAT(Parse({"--no-such-flag"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--no-such-flag")));
}

TEST(DaemonConfigTest, BadAddressesAreRefusedNamingTheOption) {
  EXPECT_THAT(Parse({"--frontend", "http://x"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--frontend: ")));
  EXPECT_THAT(Parse({"--backend", "unix:relative.sock"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--backend: ")));
  EXPECT_THAT(Parse({"--grpc", "local:3"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "gRPC address \"local:3\" is not unix:/path, unix:@name, tcp:host:port or tls:host:port"));
  EXPECT_THAT(Parse({"--grpc", "tcp:127.0.0.1:0"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gRPC address \"tcp:127.0.0.1:0\"")));
}

TEST(DaemonConfigTest, HttpIsOffByDefaultAndLoopbackOnlyUnlessAllowed) {
  absl::StatusOr<DaemonConfig> cfg = Parse({});
  ASSERT_THAT(cfg.status(), IsOk());
  EXPECT_EQ(cfg->http, "");
  for (const char* addr : {"127.0.0.1:9464", "localhost:0", "[::1]:9464"}) {
    EXPECT_THAT(Parse({"--http", addr}).status(), IsOk()) << addr;
  }
  EXPECT_THAT(Parse({"--http", "0.0.0.0:9464"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("--http \"0.0.0.0:9464\""), HasSubstr("--http-allow-remote"))));
  EXPECT_THAT(Parse({"--http", "0.0.0.0:9464", "--http-allow-remote"}).status(), IsOk());
  EXPECT_THAT(Parse({"--http", "127.0.0.1"}), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("HOST:PORT")));
  EXPECT_THAT(Parse({"--http", "127.0.0.1:99999"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0 to 65535")));
}

TEST(DaemonConfigTest, AdvertiseIsWrittenInFullWithTheFrontendsScheme) {
  absl::StatusOr<DaemonConfig> cfg =
      Parse({"--frontend", "tls:0.0.0.0:7000", "--advertise", "node-3.example.net:7000", "--tls-cert", "c",
             "--tls-key", "k", "--tls-ca", "ca"});
  ASSERT_THAT(cfg, IsOk());
  EXPECT_EQ(cfg->advertise, "tls:node-3.example.net:7000");
  EXPECT_THAT(Parse({"--frontend", "tls:10.0.0.5:7000", "--advertise", "tcp:10.0.0.5:7000", "--tls-cert", "c",
                     "--tls-key", "k", "--tls-ca", "ca"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("must use the frontend's scheme (tls:)")));
  EXPECT_THAT(Parse({"--advertise", "10.0.0.5:7000"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("applies to a tcp: or tls: frontend")));
}

TEST(DaemonConfigTest, AFrontendOnEveryInterfaceNeedsAnAdvertiseThatIsNotLoopback) {
  EXPECT_THAT(Parse({"--frontend", "tcp:0.0.0.0:7000", "--insecure"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("say with --advertise HOST:PORT")));
  EXPECT_THAT(Parse({"--frontend", "tcp:0.0.0.0:7000", "--insecure", "--advertise", "127.0.0.1:7000"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is a loopback address")));
  EXPECT_THAT(Parse({"--frontend", "tcp:127.0.0.1:7000", "--advertise", "127.0.0.1:7000"}), IsOk());
}

TEST(DaemonConfigTest, PlaintextOffLoopbackNeedsInsecureAndTlsNeedsItsFiles) {
  EXPECT_THAT(Parse({"--frontend", "tcp:10.0.0.5:7000"}),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("plaintext"), HasSubstr("--insecure"))));
  EXPECT_THAT(Parse({"--grpc", "tcp:10.0.0.5:7001"}),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("--grpc"), HasSubstr("--insecure"))));
  EXPECT_THAT(Parse({"--grpc", "tcp:10.0.0.5:7001", "--insecure"}), IsOk());
  EXPECT_THAT(Parse({"--grpc", "tcp:127.0.0.1:7001"}), IsOk());
  EXPECT_THAT(Parse({"--grpc", "tls:10.0.0.5:7001"}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs --tls-cert, --tls-key and --tls-ca")));
}

}  // namespace
}  // namespace hostd::daemon
