#include <sys/socket.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "base/unique_fd.h"
#include "base/unix_addr.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"
#include "testing/temp_dir.h"

namespace hostd::base {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(UnixAddrTest, PathBindsThereAndRoundTrips) {
  hostd::testing::TempDir dir;
  std::string path = dir.Join("s.sock");
  absl::StatusOr<UnixAddr> addr = UnixAddr::Create(path);
  ASSERT_THAT(addr, IsOk());
  EXPECT_EQ(addr->name(), path);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::bind(fd.get(), addr->get(), addr->size()), 0);
  sockaddr_un bound{};
  socklen_t len = sizeof(bound);
  ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len), 0);
  EXPECT_EQ(UnixAddr::FromKernel(bound, len).name(), path);
}

TEST(UnixAddrTest, AbstractNameHasNoTerminatorAndRoundTrips) {
  std::string name = absl::StrCat("@hostd-unix-addr-test-", ::getpid());
  absl::StatusOr<UnixAddr> addr = UnixAddr::Create(name);
  ASSERT_THAT(addr, IsOk());
  EXPECT_EQ(addr->size(), offsetof(sockaddr_un, sun_path) + name.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::bind(fd.get(), addr->get(), addr->size()), 0);
  sockaddr_un bound{};
  socklen_t len = sizeof(bound);
  ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len), 0);
  EXPECT_EQ(UnixAddr::FromKernel(bound, len).name(), name);
}

TEST(UnixAddrTest, AutobindPicksAnAbstractName) {
  UnixAddr any = UnixAddr::Autobind();
  EXPECT_EQ(any.name(), "");
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_EQ(::bind(fd.get(), any.get(), any.size()), 0);
  sockaddr_un bound{};
  socklen_t len = sizeof(bound);
  ASSERT_EQ(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &len), 0);
  std::string name = UnixAddr::FromKernel(bound, len).name();
  EXPECT_EQ(name.size(), 6u) << name;  // '@' and five hex digits
  EXPECT_EQ(name[0], '@');
}

TEST(UnixAddrTest, LongestNameFitsAndOneMoreIsRefusedNamingIt) {
  EXPECT_THAT(UnixAddr::Create("/" + std::string(UnixAddr::kMaxNameLen - 1, 'a')), IsOk());
  EXPECT_THAT(UnixAddr::Create("@" + std::string(UnixAddr::kMaxNameLen - 1, 'a')), IsOk());
  std::string too_long = "/" + std::string(UnixAddr::kMaxNameLen, 'a');
  EXPECT_THAT(UnixAddr::Create(too_long),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(too_long), HasSubstr("is 108 bytes; at most 107 fit"))));
}

TEST(UnixAddrTest, EmptyOrNulNamesAreRefused) {
  EXPECT_THAT(UnixAddr::Create(""), StatusIs(absl::StatusCode::kInvalidArgument, "unix socket name is empty"));
  EXPECT_THAT(UnixAddr::Create(std::string("/a\0b", 4)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("contains a NUL byte")));
}

}  // namespace
}  // namespace hostd::base
