#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/unique_fd.h"
#include "base/unix_addr.h"
#include "daemon/sd_notify.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/eventually.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace hostd::daemon {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::hostd::testing::TempDir;
using ::testing::AllOf;
using ::testing::HasSubstr;

// NOTIFY_SOCKET for one test; restored afterwards.
class NotifySocketEnv {
 public:
  explicit NotifySocketEnv(const char* value) {
    if (const char* old = std::getenv("NOTIFY_SOCKET"); old != nullptr) old_ = old;
    if (value == nullptr) {
      ::unsetenv("NOTIFY_SOCKET");
    } else {
      ::setenv("NOTIFY_SOCKET", value, 1);
    }
  }
  ~NotifySocketEnv() {
    if (old_) {
      ::setenv("NOTIFY_SOCKET", old_->c_str(), 1);
    } else {
      ::unsetenv("NOTIFY_SOCKET");
    }
  }

 private:
  std::optional<std::string> old_;
};

// A datagram socket bound to `name`, playing systemd.
base::UniqueFd BoundDatagramSocket(const std::string& name) {
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  absl::StatusOr<base::UnixAddr> addr = base::UnixAddr::Create(name);
  EXPECT_THAT(addr, IsOk());
  if (addr.ok()) {
    EXPECT_EQ(::bind(fd.get(), addr->get(), addr->size()), 0) << name;
  }
  timeval tv{60, 0};  // hang guard for the read
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

std::string ReceiveDatagram(const base::UniqueFd& fd) {
  char buf[512];
  ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
  return n < 0 ? std::string("<nothing received>") : std::string(buf, static_cast<size_t>(n));
}

TEST(SdNotifyTest, ReadyReachesASocketAtAPath) {
  TempDir dir;
  std::string path = dir.Join("notify");
  base::UniqueFd systemd = BoundDatagramSocket(path);
  NotifySocketEnv env(path.c_str());
  ASSERT_THAT(SdNotify("READY=1"), IsOk());
  EXPECT_EQ(ReceiveDatagram(systemd), "READY=1");
}

TEST(SdNotifyTest, ReadyReachesAnAbstractSocket) {
  std::string name = absl::StrCat("@hostd-sd-notify-test-", ::getpid());
  base::UniqueFd systemd = BoundDatagramSocket(name);
  NotifySocketEnv env(name.c_str());
  ASSERT_THAT(SdNotify("READY=1\nSTATUS=serving"), IsOk());
  EXPECT_EQ(ReceiveDatagram(systemd), "READY=1\nSTATUS=serving");
}

TEST(SdNotifyTest, WithoutNotifySocketItDoesNothing) {
  {
    NotifySocketEnv env(nullptr);
    EXPECT_THAT(SdNotify("READY=1"), IsOk());
  }
  NotifySocketEnv empty("");
  EXPECT_THAT(SdNotify("READY=1"), IsOk());
}

TEST(SdNotifyTest, RelativePathIsInvalidArgument) {
  NotifySocketEnv env("relative/notify");
  EXPECT_THAT(SdNotify("READY=1"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            "NOTIFY_SOCKET \"relative/notify\" is not a unix socket path"));
}

TEST(SdNotifyTest, OverlongPathIsInvalidArgumentNamingIt) {
  std::string path = "/" + std::string(200, 'n');
  NotifySocketEnv env(path.c_str());
  EXPECT_THAT(SdNotify("READY=1"),
              StatusIs(absl::StatusCode::kInvalidArgument, AllOf(HasSubstr("NOTIFY_SOCKET"), HasSubstr(path))));
}

TEST(SdNotifyTest, NobodyListeningIsUnavailable) {
  TempDir dir;
  std::string path = dir.Join("nobody");
  NotifySocketEnv env(path.c_str());
  EXPECT_THAT(SdNotify("READY=1"), StatusIs(absl::StatusCode::kUnavailable,
                                            AllOf(HasSubstr("sending to NOTIFY_SOCKET " + path), HasSubstr(": "))));
}

// WATCHDOG_USEC and WATCHDOG_PID for one test; unset afterwards.
class WatchdogEnv {
 public:
  WatchdogEnv(const char* usec, const char* pid) {
    if (usec) ::setenv("WATCHDOG_USEC", usec, 1);
    if (pid) ::setenv("WATCHDOG_PID", pid, 1);
  }
  ~WatchdogEnv() {
    ::unsetenv("WATCHDOG_USEC");
    ::unsetenv("WATCHDOG_PID");
  }
};

TEST(SdWatchdogTest, ThePeriodIsWatchdogUsecWhenItIsMeantForThisProcess) {
  {
    WatchdogEnv env(nullptr, nullptr);
    EXPECT_EQ(WatchdogPeriod(), absl::ZeroDuration());
  }
  {
    WatchdogEnv env("3000000", nullptr);
    EXPECT_EQ(WatchdogPeriod(), absl::Seconds(3));
  }
  {
    std::string me = std::to_string(getpid());
    WatchdogEnv env("3000000", me.c_str());
    EXPECT_EQ(WatchdogPeriod(), absl::Seconds(3));
  }
  {
    WatchdogEnv env("3000000", "1");  // another process's watchdog
    EXPECT_EQ(WatchdogPeriod(), absl::ZeroDuration());
  }
  {
    WatchdogEnv env("soon", nullptr);
    EXPECT_EQ(WatchdogPeriod(), absl::ZeroDuration());
  }
}

TEST(SdWatchdogTest, PingsWhileHealthyAndStopsWhenNot) {
  TempDir dir;
  std::string path = dir.Join("notify");
  base::UniqueFd sock(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  absl::StatusOr<base::UnixAddr> sa = base::UnixAddr::Create(path);
  ASSERT_THAT(sa.status(), IsOk());
  ASSERT_EQ(bind(sock.get(), sa->get(), sa->size()), 0);
  NotifySocketEnv env(path.c_str());
  std::atomic<bool> healthy{true};
  std::atomic<int> asked{0};
  {
    SdWatchdog watchdog(absl::Milliseconds(20), [&] {
      ++asked;
      return healthy.load();
    });
    char buf[64] = {};
    ASSERT_EQ(recv(sock.get(), buf, sizeof(buf) - 1, 0), 10);
    EXPECT_STREQ(buf, "WATCHDOG=1");
    healthy = false;
    int before = asked.load();
    ASSERT_TRUE(hostd::testing::Eventually([&] { return asked.load() > before + 1; }));
    // Drain what was sent before it turned unhealthy; nothing follows.
    while (recv(sock.get(), buf, sizeof(buf), MSG_DONTWAIT) > 0) {
    }
    int now = asked.load();
    ASSERT_TRUE(hostd::testing::Eventually([&] { return asked.load() > now + 1; }));
    EXPECT_LT(recv(sock.get(), buf, sizeof(buf), MSG_DONTWAIT), 0) << "a ping while unhealthy";
  }
}

}  // namespace
}  // namespace hostd::daemon
