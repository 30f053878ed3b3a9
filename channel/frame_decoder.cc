#include "channel/frame_decoder.h"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "absl/strings/str_format.h"

namespace hostd::channel {

namespace {

std::atomic<size_t> partial_budget{FrameDecoder::kDefaultPartialBodyBudget};
std::atomic<size_t> partial_used{0};

// Room for a large body of `length` bytes of which `filled` arrived: doubling,
// at least FrameDecoder::kBodyStep more, never past the body.
size_t BodyRoom(size_t filled, size_t length) {
  return std::min(length, std::max(filled + FrameDecoder::kBodyStep, 2 * filled));
}

// `body` with room for exactly `room` bytes, its first `filled` kept. A fresh
// string, not resize: std::string may double its capacity past the body's length.
void Regrow(std::string& body, size_t filled, size_t room) {
  std::string bigger(room, '\0');
  std::memcpy(bigger.data(), body.data(), filled);
  body.swap(bigger);
}

}  // namespace

FrameDecoder::FrameDecoder(uint32_t max_body) : max_body_(max_body) {}

FrameDecoder::~FrameDecoder() { Release(); }

void FrameDecoder::SetPartialBodyBudget(size_t bytes) { partial_budget.store(bytes); }

size_t FrameDecoder::partial_body_bytes() { return partial_used.load(); }

bool FrameDecoder::Reserve(size_t room) {
  const size_t more = room > counted_ ? room - counted_ : 0;
  const size_t budget = partial_budget.load(std::memory_order_relaxed);
  size_t used = partial_used.load(std::memory_order_relaxed);
  do {
    if (used + more > budget) {
      error_ = absl::ResourceExhaustedError(absl::StrFormat(
          "large frames still arriving on all connections together hold %d bytes; this one needs %d more, past the "
          "budget of %d (--max-partial-frame-bytes); send it again later",
          used, more, budget));
      return false;
    }
  } while (!partial_used.compare_exchange_weak(used, used + more, std::memory_order_relaxed));
  counted_ += more;
  return true;
}

void FrameDecoder::Release() {
  partial_used.fetch_sub(counted_, std::memory_order_relaxed);
  counted_ = 0;
}

absl::Span<char> FrameDecoder::WritableSpan() {
  if (big_header_.has_value() && error_.ok()) {
    if (big_filled_ == big_.size()) {
      const size_t room = BodyRoom(big_filled_, big_header_->length);
      if (Reserve(room)) Regrow(big_, big_filled_, room);
    }
    if (error_.ok()) return absl::MakeSpan(big_.data() + big_filled_, big_.size() - big_filled_);
  }
  // Full (or not yet allocated): the last read filled all the room it was given.
  if (wpos_ == buf_.size() && buf_.size() < kChunk) {
    buf_.resize(std::min(kChunk, std::max(kFirstChunk, 2 * buf_.size())));
  }
  if (!error_.ok()) {  // what is read now is thrown away: Next() reports the error
    return absl::MakeSpan(buf_.data(), buf_.size());
  }
  if (rpos_ == wpos_) {
    rpos_ = wpos_ = 0;
  } else if (buf_.size() - wpos_ < buf_.size() / 4) {
    // What is left is part of one frame: to the front, so the next read has room
    // (if it does not fit, a read fills what room there is and the buffer grows).
    std::memmove(buf_.data(), buf_.data() + rpos_, wpos_ - rpos_);
    wpos_ -= rpos_;
    rpos_ = 0;
  }
  return absl::MakeSpan(buf_.data() + wpos_, buf_.size() - wpos_);
}

void FrameDecoder::CommitWrite(size_t n) {
  if (!error_.ok()) return;
  if (big_header_.has_value()) {
    big_filled_ += n;
  } else {
    wpos_ += n;
  }
}

absl::StatusOr<std::optional<Frame>> FrameDecoder::Next() {
  if (!error_.ok()) return error_;
  if (big_header_.has_value()) {
    if (big_filled_ < big_header_->length) return std::nullopt;
    Release();  // delivered: no longer a partial body
    Frame f{*big_header_, std::move(big_)};
    big_header_.reset();
    big_ = std::string();
    big_filled_ = 0;
    return f;
  }
  size_t avail = wpos_ - rpos_;
  if (avail < kFrameHeaderSize) return std::nullopt;
  absl::StatusOr<FrameHeader> h = DecodeHeader(absl::string_view(buf_.data() + rpos_, kFrameHeaderSize), max_body_);
  if (!h.ok()) {
    error_ = h.status();
    return error_;
  }
  size_t body_avail = avail - kFrameHeaderSize;
  const char* body = buf_.data() + rpos_ + kFrameHeaderSize;
  if (h->length <= kInlineBody) {
    if (body_avail < h->length) return std::nullopt;
    Frame f{*h, std::string(body, h->length)};
    rpos_ += kFrameHeaderSize + h->length;
    return f;
  }
  // Large body: give it its own buffer and let the following reads fill it directly.
  size_t have = std::min<size_t>(body_avail, h->length);
  if (!Reserve(BodyRoom(have, h->length))) return error_;
  big_.assign(BodyRoom(have, h->length), '\0');
  std::memcpy(big_.data(), body, have);
  big_filled_ = have;
  big_header_ = *h;
  rpos_ += kFrameHeaderSize + have;
  return Next();
}

absl::Status FrameDecoder::Finish() const {
  if (!error_.ok()) return error_;
  if (big_header_.has_value()) {
    return absl::DataLossError(
        absl::StrFormat("stream ended mid-frame: %d of %d body bytes received", big_filled_, big_header_->length));
  }
  if (wpos_ != rpos_) {
    return absl::DataLossError(
        absl::StrFormat("stream ended mid-frame: %d bytes of an incomplete frame", wpos_ - rpos_));
  }
  return absl::OkStatus();
}

}  // namespace hostd::channel
