#include <string>

#include "channel/message.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace hostd::channel {
namespace {

using ::hostd::testing::StatusIs;
using ::testing::HasSubstr;

TEST(MessageTest, CreateThenFromWireKeepsEveryField) {
  std::string payload("bin\0ary", 7);
  Message m = *Message::Create("unix:@fe,trainer-3", "inbox", "tcp:10.0.0.1:5,client", payload);
  Message back = *Message::FromWire(m.wire());
  EXPECT_EQ(back.kind(), Message::Kind::kMessage);
  EXPECT_EQ(back.dest(), "unix:@fe,trainer-3");
  EXPECT_EQ(back.port(), "inbox");
  EXPECT_EQ(back.src(), "tcp:10.0.0.1:5,client");
  EXPECT_EQ(back.payload(), payload);
  EXPECT_EQ(back.note(), "");
}

TEST(MessageTest, ReturnedMessageGoesBackToSourceWithReason) {
  Message m = *Message::Create("fe,a", "p", "fe,b", "hello");
  Message r = m.ToReturned(ReturnReason::kUnknownProc, "no proc named a");
  EXPECT_EQ(r.kind(), Message::Kind::kReturned);
  EXPECT_EQ(r.reason(), ReturnReason::kUnknownProc);
  EXPECT_EQ(r.dest(), "fe,b");
  EXPECT_EQ(r.src(), "fe,a");
  EXPECT_EQ(r.note(), "no proc named a");
  EXPECT_EQ(r.payload(), "hello");
  EXPECT_TRUE(Message::FromWire(r.wire()).ok());
  EXPECT_EQ(ReturnReasonName(r.reason()), "unknown proc");
}

TEST(MessageTest, RoutingStringOver64KiBIsRejected) {
  EXPECT_THAT(Message::Create(std::string(70000, 'd'), "", "", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("destination is 70000 bytes")));
}

TEST(MessageTest, MalformedEnvelopesAreDataLoss) {
  EXPECT_THAT(Message::FromWire("short"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("shorter")));
  std::string wire = Message::Create("d", "p", "s", "x")->wire();
  std::string bad_kind = wire;
  bad_kind[0] = 9;
  EXPECT_THAT(Message::FromWire(bad_kind), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("kind")));
  std::string bad_len = wire;
  bad_len[2] = 100;  // dest length beyond the body
  EXPECT_THAT(Message::FromWire(bad_len), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("routing strings")));
  std::string mismatch = wire;
  mismatch[1] = 1;  // a reason on a plain message
  EXPECT_THAT(Message::FromWire(mismatch), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("disagree")));
  // Found by the frame decoder fuzzer: a note belongs only on a returned message.
  Message returned = Message::Create("d", "p", "s", "x")->ToReturned(ReturnReason::kTimeout, "late");
  std::string noted = returned.wire();
  noted[0] = 0;
  noted[1] = 0;
  EXPECT_THAT(Message::FromWire(noted), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("carries a note")));
}

}  // namespace
}  // namespace hostd::channel
