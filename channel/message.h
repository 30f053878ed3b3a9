// Message: one routed message, stored exactly as it travels in a DATA frame body.
//
// The body is a 12-byte envelope, the routing strings, then the opaque payload
// (layout in channel/PROTOCOL.md). A host reads `dest()` to route a message and
// forwards the same buffer on another link: nothing is decoded or re-encoded.
//
//   absl::StatusOr<Message> m = Message::Create("unix:@fe,trainer-3", "inbox", my_addr, bytes);
//
// A *returned* message is one that could not be delivered: it travels back to its
// sender's `src` with the reason, and carries the original payload.
// A value type (move is cheap, copy duplicates the buffer); thread-compatible.
#ifndef HOSTD_CHANNEL_MESSAGE_H_
#define HOSTD_CHANNEL_MESSAGE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace hostd::channel {

// Why a message came back undelivered. Values are on the wire; never renumber.
enum class ReturnReason : uint8_t {
  kNone = 0,
  kUnknownProc = 1,    // no proc of that name on the destination host
  kProcExited = 2,     // the destination proc has ended
  kTimeout = 3,        // not acknowledged within the delivery timeout
  kTooLarge = 4,       // over the frame limit of a link on the way
  kPeerClosed = 5,     // the receiving end closed the link
  kPeerRestarted = 6,  // the receiving end restarted; the link was told to return
  kSenderClosed = 7,   // the sending link was closed with the message still queued
  kUnroutable = 8,     // no route to the destination address
  kUnknownPort = 9,    // the destination proc has no such port
  kBufferFull = 10,    // the destination proc is starting and its host's buffer for it is full
  kLast = kBufferFull,
};

absl::string_view ReturnReasonName(ReturnReason r);

class Message {
 public:
  enum class Kind : uint8_t { kMessage = 0, kReturned = 1 };
  static constexpr size_t kEnvelopeSize = 12;

  // Builds a message. Each routing string must be shorter than 64 KiB.
  static absl::StatusOr<Message> Create(absl::string_view dest, absl::string_view port, absl::string_view src,
                                        absl::string_view payload);
  // Adopts a received DATA body after checking the envelope (DataLoss if malformed).
  static absl::StatusOr<Message> FromWire(std::string body);

  // The undeliverable copy of this message: addressed back to src(), carrying the reason.
  Message ToReturned(ReturnReason reason, absl::string_view note) const;

  Kind kind() const { return static_cast<Kind>(wire_[0]); }
  ReturnReason reason() const { return static_cast<ReturnReason>(wire_[1]); }
  absl::string_view dest() const { return Field(0); }
  absl::string_view port() const { return Field(1); }
  absl::string_view src() const { return Field(2); }
  absl::string_view note() const { return Field(3); }
  absl::string_view payload() const;

  // The DATA frame body.
  const std::string& wire() const { return wire_; }
  size_t wire_size() const { return wire_.size(); }

 private:
  explicit Message(std::string wire) : wire_(std::move(wire)) {}
  static absl::StatusOr<Message> Build(Kind kind, ReturnReason reason, absl::string_view dest, absl::string_view port,
                                       absl::string_view src, absl::string_view note, absl::string_view payload);
  absl::string_view Field(int index) const;

  std::string wire_;
};

}  // namespace hostd::channel

#endif  // HOSTD_CHANNEL_MESSAGE_H_
