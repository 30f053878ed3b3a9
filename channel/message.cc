#include "channel/message.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "channel/frame.h"

namespace hostd::channel {
namespace {
constexpr size_t kFieldLenOffset = 2;  // four u16 lengths: dest, port, src, note
constexpr size_t kNumFields = 4;
}  // namespace

absl::string_view ReturnReasonName(ReturnReason r) {
  switch (r) {
    case ReturnReason::kNone: return "none";
    case ReturnReason::kUnknownProc: return "unknown proc";
    case ReturnReason::kProcExited: return "proc exited";
    case ReturnReason::kTimeout: return "delivery timeout";
    case ReturnReason::kTooLarge: return "too large";
    case ReturnReason::kPeerClosed: return "peer closed";
    case ReturnReason::kPeerRestarted: return "peer restarted";
    case ReturnReason::kSenderClosed: return "sender closed";
    case ReturnReason::kUnroutable: return "unroutable";
    case ReturnReason::kUnknownPort: return "unknown port";
    case ReturnReason::kBufferFull: return "buffer full";
  }
  return "unknown reason";
}

absl::StatusOr<Message> Message::Build(Kind kind, ReturnReason reason, absl::string_view dest, absl::string_view port,
                                       absl::string_view src, absl::string_view note, absl::string_view payload) {
  const absl::string_view fields[kNumFields] = {dest, port, src, note};
  static constexpr const char* kNames[kNumFields] = {"destination", "port", "source", "note"};
  size_t total = kEnvelopeSize + payload.size();
  for (size_t i = 0; i < kNumFields; ++i) {
    if (fields[i].size() > UINT16_MAX) {
      return absl::InvalidArgumentError(
          absl::StrFormat("message %s is %d bytes; at most %d allowed", kNames[i], fields[i].size(), UINT16_MAX));
    }
    total += fields[i].size();
  }
  std::string wire(total, '\0');
  wire[0] = static_cast<char>(kind);
  wire[1] = static_cast<char>(reason);
  char* out = wire.data() + kEnvelopeSize;
  for (size_t i = 0; i < kNumFields; ++i) {
    PutLe16(wire.data() + kFieldLenOffset + 2 * i, static_cast<uint16_t>(fields[i].size()));
    if (!fields[i].empty()) std::memcpy(out, fields[i].data(), fields[i].size());
    out += fields[i].size();
  }
  if (!payload.empty()) std::memcpy(out, payload.data(), payload.size());
  return Message(std::move(wire));
}

absl::StatusOr<Message> Message::Create(absl::string_view dest, absl::string_view port, absl::string_view src,
                                        absl::string_view payload) {
  return Build(Kind::kMessage, ReturnReason::kNone, dest, port, src, "", payload);
}

absl::StatusOr<Message> Message::FromWire(std::string body) {
  if (body.size() < kEnvelopeSize) {
    return absl::DataLossError(
        absl::StrFormat("message body is %d bytes, shorter than its %d-byte envelope", body.size(), kEnvelopeSize));
  }
  uint8_t kind = static_cast<uint8_t>(body[0]);
  uint8_t reason = static_cast<uint8_t>(body[1]);
  if (kind > static_cast<uint8_t>(Kind::kReturned)) {
    return absl::DataLossError(absl::StrFormat("message has unknown kind %d", kind));
  }
  if (reason > static_cast<uint8_t>(ReturnReason::kLast)) {
    return absl::DataLossError(absl::StrFormat("message has unknown return reason %d", reason));
  }
  if ((kind == static_cast<uint8_t>(Kind::kReturned)) != (reason != 0)) {
    return absl::DataLossError("message kind and return reason disagree");
  }
  size_t strings = 0;
  for (size_t i = 0; i < kNumFields; ++i) strings += GetLe16(body.data() + kFieldLenOffset + 2 * i);
  if (kind == static_cast<uint8_t>(Kind::kMessage) && GetLe16(body.data() + kFieldLenOffset + 6) != 0) {
    return absl::DataLossError("a plain message carries a note; only returned messages have one");
  }
  if (GetLe16(body.data() + kFieldLenOffset + 2 * kNumFields) != 0) {
    return absl::DataLossError("message envelope has non-zero reserved bytes");
  }
  if (kEnvelopeSize + strings > body.size()) {
    return absl::DataLossError(absl::StrFormat("message routing strings need %d bytes but the body has %d", strings,
                                               body.size() - kEnvelopeSize));
  }
  return Message(std::move(body));
}

Message Message::ToReturned(ReturnReason reason, absl::string_view note) const {
  // The fields already fit in 16 bits, and a note is capped to fit, so Build cannot fail.
  note = note.substr(0, UINT16_MAX);
  return *Build(Kind::kReturned, reason, src(), port(), dest(), note, payload());
}

absl::string_view Message::Field(int index) const {
  size_t offset = kEnvelopeSize;
  for (int i = 0; i < index; ++i) offset += GetLe16(wire_.data() + kFieldLenOffset + 2 * i);
  return absl::string_view(wire_.data() + offset, GetLe16(wire_.data() + kFieldLenOffset + 2 * index));
}

absl::string_view Message::payload() const {
  size_t offset = kEnvelopeSize;
  for (size_t i = 0; i < kNumFields; ++i) offset += GetLe16(wire_.data() + kFieldLenOffset + 2 * i);
  return absl::string_view(wire_).substr(offset);
}

}  // namespace hostd::channel
