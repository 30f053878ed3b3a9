#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "channel/frame_decoder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/status_matchers.h"

namespace hostd::channel {
namespace {

using ::hostd::testing::IsOk;
using ::hostd::testing::StatusIs;
using ::testing::HasSubstr;

std::string EncodeFrame(FrameType type, uint64_t seq, const std::string& body) {
  EncodedHeader h = EncodeHeader({type, static_cast<uint32_t>(body.size()), seq});
  return std::string(h.data(), h.size()) + body;
}

// Feeds `bytes` in pieces of at most `piece` bytes and collects every frame.
absl::StatusOr<std::vector<Frame>> Decode(FrameDecoder& d, const std::string& bytes, size_t piece) {
  std::vector<Frame> out;
  size_t pos = 0;
  while (pos < bytes.size()) {
    absl::Span<char> span = d.WritableSpan();
    size_t n = std::min({piece, span.size(), bytes.size() - pos});
    std::memcpy(span.data(), bytes.data() + pos, n);
    d.CommitWrite(n);
    pos += n;
    while (true) {
      absl::StatusOr<std::optional<Frame>> f = d.Next();
      if (!f.ok()) return f.status();
      if (!f->has_value()) break;
      out.push_back(std::move(**f));
    }
  }
  return out;
}

std::string Stream(std::vector<std::string>& bodies) {
  std::mt19937 rng(7);
  std::string all;
  std::vector<size_t> sizes = {0, 1, 100, FrameDecoder::kInlineBody, FrameDecoder::kInlineBody + 1, 200000, 5};
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::string body(sizes[i], '\0');
    for (char& c : body) c = static_cast<char>(rng());
    bodies.push_back(body);
    all += EncodeFrame(FrameType::kData, i + 1, body);
  }
  return all;
}

class FrameDecoderPieceTest : public ::testing::TestWithParam<size_t> {};

TEST_P(FrameDecoderPieceTest, PartialAndCoalescedReadsYieldTheSameFrames) {
  std::vector<std::string> bodies;
  std::string all = Stream(bodies);
  FrameDecoder d;
  absl::StatusOr<std::vector<Frame>> frames = Decode(d, all, GetParam());
  ASSERT_THAT(frames, IsOk());
  ASSERT_EQ(frames->size(), bodies.size());
  for (size_t i = 0; i < bodies.size(); ++i) {
    EXPECT_EQ((*frames)[i].header.seq, i + 1);
    EXPECT_EQ((*frames)[i].header.type, FrameType::kData);
    EXPECT_EQ((*frames)[i].body, bodies[i]) << "frame " << i;
  }
  EXPECT_THAT(d.Finish(), IsOk());
}

INSTANTIATE_TEST_SUITE_P(Pieces, FrameDecoderPieceTest, ::testing::Values(1, 3, 16, 17, 4096, 1 << 20));

TEST(FrameDecoderTest, ZeroLengthFrame) {
  FrameDecoder d;
  auto frames = Decode(d, EncodeFrame(FrameType::kAck, 42, ""), 100);
  ASSERT_THAT(frames, IsOk());
  ASSERT_EQ(frames->size(), 1u);
  EXPECT_EQ((*frames)[0].header.type, FrameType::kAck);
  EXPECT_EQ((*frames)[0].header.seq, 42u);
  EXPECT_TRUE((*frames)[0].body.empty());
}

TEST(FrameDecoderTest, EofAtFrameBoundaryIsClean) {
  FrameDecoder d;
  ASSERT_THAT(Decode(d, EncodeFrame(FrameType::kData, 1, "abc"), 2), IsOk());
  EXPECT_THAT(d.Finish(), IsOk());
}

TEST(FrameDecoderTest, EofMidHeaderIsDataLoss) {
  FrameDecoder d;
  std::string f = EncodeFrame(FrameType::kData, 1, "abc");
  ASSERT_THAT(Decode(d, f.substr(0, 10), 100), IsOk());
  EXPECT_THAT(d.Finish(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("mid-frame: 10 bytes")));
}

TEST(FrameDecoderTest, EofMidLargeBodyIsDataLoss) {
  FrameDecoder d;
  std::string f = EncodeFrame(FrameType::kData, 1, std::string(100000, 'x'));
  ASSERT_THAT(Decode(d, f.substr(0, 50016), 4096), IsOk());
  EXPECT_THAT(d.Finish(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("50000 of 100000 body bytes")));
}

TEST(FrameDecoderTest, ExactlyMaxIsAccepted) {
  constexpr uint32_t kMax = 100000;
  FrameDecoder d(kMax);
  auto frames = Decode(d, EncodeFrame(FrameType::kData, 1, std::string(kMax, 'm')), 65536);
  ASSERT_THAT(frames, IsOk());
  ASSERT_EQ(frames->size(), 1u);
  EXPECT_EQ((*frames)[0].body.size(), kMax);
}

// A connection carrying a few small frames (acknowledgements) keeps the first,
// small read buffer; one whose reads fill the room they are given grows it to
// kChunk and no further, and every frame still arrives whole.
TEST(FrameDecoderTest, TheReadBufferStartsSmallAndGrowsOnlyWhileReadsFillIt) {
  FrameDecoder small;
  for (uint64_t i = 1; i <= 100; ++i) {
    auto frames = Decode(small, EncodeFrame(FrameType::kAck, i, std::string(8, 'a')), 1 << 20);
    ASSERT_THAT(frames, IsOk());
    ASSERT_EQ(frames->size(), 1u);
  }
  EXPECT_LE(small.reserved_bytes(), FrameDecoder::kFirstChunk + 64);

  FrameDecoder busy;
  std::string stream;
  constexpr uint64_t kFrames = 5000;
  for (uint64_t i = 1; i <= kFrames; ++i) stream += EncodeFrame(FrameType::kData, i, std::string(100, 'd'));
  auto frames = Decode(busy, stream, 1 << 20);  // every read fills its span
  ASSERT_THAT(frames, IsOk());
  ASSERT_EQ(frames->size(), kFrames);
  EXPECT_EQ((*frames)[kFrames - 1].header.seq, kFrames);
  EXPECT_GE(busy.reserved_bytes(), FrameDecoder::kChunk);
  EXPECT_LE(busy.reserved_bytes(), FrameDecoder::kChunk + 64);
}

TEST(FrameDecoderTest, OverMaxIsRejectedBeforeAllocating) {
  FrameDecoder d(1000);
  // Only the header arrives: the claim of 2 GiB must be refused on the header alone.
  EncodedHeader h = EncodeHeader({FrameType::kData, 0x80000000u, 1});
  auto frames = Decode(d, std::string(h.data(), h.size()), 100);
  EXPECT_THAT(frames, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("exceeds the limit of 1000")));
  // Only the fixed read buffer exists; nothing was reserved for the claimed body.
  EXPECT_LE(d.reserved_bytes(), FrameDecoder::kChunk + 64);
  // One past the limit is refused too, and the error sticks.
  FrameDecoder d2(1000);
  EncodedHeader h2 = EncodeHeader({FrameType::kData, 1001, 1});
  EXPECT_THAT(Decode(d2, std::string(h2.data(), h2.size()), 100), StatusIs(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(d2.Next(), StatusIs(absl::StatusCode::kResourceExhausted));
}

TEST(FrameDecoderTest, MemoryFollowsTheBytesThatArriveNotTheDeclaredLength) {
  constexpr uint32_t kDeclared = 60u << 20;
  FrameDecoder d(64u << 20);
  EncodedHeader h = EncodeHeader({FrameType::kData, kDeclared, 1});
  // The header and a few bytes: the decoder holds its read buffer and one step.
  ASSERT_THAT(Decode(d, std::string(h.data(), h.size()) + "abc", 4096), IsOk());
  EXPECT_LE(d.reserved_bytes(), FrameDecoder::kChunk + FrameDecoder::kBodyStep + 64);
  // The rest arrives: the frame is whole and intact, and the room grew only with it.
  std::string rest(kDeclared - 3, 'z');
  rest[rest.size() - 1] = 'E';
  auto frames = Decode(d, rest, 1 << 20);
  ASSERT_THAT(frames, IsOk());
  ASSERT_EQ(frames->size(), 1u);
  EXPECT_EQ((*frames)[0].body.size(), kDeclared);
  EXPECT_EQ((*frames)[0].body.substr(0, 4), "abcz");
  EXPECT_EQ((*frames)[0].body.back(), 'E');
  EXPECT_THAT(d.Finish(), IsOk());
}

// Many decoders that each hold part of a large body cannot add up past the
// process-wide budget; what a decoder holds comes back when its frame is whole or
// it goes.
TEST(FrameDecoderTest, LargeBodiesStillArrivingStayWithinTheProcessWideBudget) {
  // A body of which 3 bytes arrived gets room for them and one step more.
  constexpr size_t kStep = FrameDecoder::kBodyStep + 3;
  FrameDecoder::SetPartialBodyBudget(3 * kStep);
  EncodedHeader h = EncodeHeader({FrameType::kData, 60u << 20, 1});
  const std::string start = std::string(h.data(), h.size()) + "abc";
  auto a = std::make_unique<FrameDecoder>(64u << 20);
  FrameDecoder b(64u << 20), c(64u << 20), d(64u << 20);
  ASSERT_THAT(Decode(*a, start, 4096), IsOk());
  ASSERT_THAT(Decode(b, start, 4096), IsOk());
  ASSERT_THAT(Decode(c, start, 4096), IsOk());
  EXPECT_EQ(FrameDecoder::partial_body_bytes(), 3 * kStep);
  EXPECT_THAT(Decode(d, start, 4096),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("--max-partial-frame-bytes")));
  EXPECT_THAT(d.Finish(), StatusIs(absl::StatusCode::kResourceExhausted)) << "the error sticks";
  EXPECT_LE(d.reserved_bytes(), FrameDecoder::kChunk + 64) << "nothing of the body was allocated";
  a.reset();
  EXPECT_EQ(FrameDecoder::partial_body_bytes(), 2 * kStep);
  // A whole frame gives its room back as it is delivered.
  FrameDecoder e(64u << 20);
  EncodedHeader small = EncodeHeader({FrameType::kData, 100000, 2});
  auto frames = Decode(e, std::string(small.data(), small.size()) + std::string(100000, 'q'), 4096);
  ASSERT_THAT(frames, IsOk());
  ASSERT_EQ(frames->size(), 1u);
  EXPECT_EQ(FrameDecoder::partial_body_bytes(), 2 * kStep);
  FrameDecoder::SetPartialBodyBudget(FrameDecoder::kDefaultPartialBodyBudget);
}

TEST(FrameDecoderTest, BadMagicVersionAndTypeAreRejected) {
  std::string good = EncodeFrame(FrameType::kData, 1, "x");
  std::string magic = good;
  magic[0] = 'X';
  FrameDecoder d1;
  EXPECT_THAT(Decode(d1, magic, 100), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("magic")));
  std::string version = good;
  version[2] = 9;
  FrameDecoder d2;
  EXPECT_THAT(Decode(d2, version, 100), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("version 9")));
  std::string type = good;
  type[3] = 77;
  FrameDecoder d3;
  EXPECT_THAT(Decode(d3, type, 100), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("frame type 77")));
}

TEST(HandshakeCodecTest, HelloAndWelcomeRoundTrip) {
  Hello h = *DecodeHello(EncodeHello({0x1234, LinkRole::kMessages}));
  EXPECT_EQ(h.session_id, 0x1234u);
  Welcome w = *DecodeWelcome(EncodeWelcome({77, 9, true}));
  EXPECT_EQ(w.incarnation, 77u);
  EXPECT_EQ(w.delivered_seq, 9u);
  EXPECT_TRUE(w.resumed);
}

TEST(HandshakeCodecTest, InvalidHandshakesAreRejected) {
  EXPECT_THAT(DecodeHello("short"), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("hello body is 5 bytes")));
  EXPECT_THAT(DecodeHello(EncodeHello({0, LinkRole::kMessages})),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("session id 0")));
  std::string role = EncodeHello({1, LinkRole::kMessages});
  role[8] = 42;
  EXPECT_THAT(DecodeHello(role), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("unknown role 42")));
  EXPECT_THAT(DecodeWelcome(EncodeWelcome({0, 0, false})),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("incarnation 0")));
  EXPECT_THAT(DecodeWelcome(EncodeWelcome({1, 5, false})),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("new session")));
}

}  // namespace
}  // namespace hostd::channel
