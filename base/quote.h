// Quote: how an error message shows what a user sent. A name, a path or an
// argument may be megabytes long or hold control bytes; a message that echoes it
// must stay short and printable. Every error that quotes request input uses this.
//
//   Quote("a\nb")            -> "\"a\\nb\""
//   Quote(ten_kib_string)    -> "\"aaaa...aaaa\"... (10240 bytes)"
//
// The input is C-escaped, cut at kQuoteMaxBytes input bytes, and a cut one says
// how long it was. Thread-safe (a pure function).
#ifndef HOSTD_BASE_QUOTE_H_
#define HOSTD_BASE_QUOTE_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace hostd::base {

inline constexpr size_t kQuoteMaxBytes = 96;

std::string Quote(absl::string_view input, size_t max_bytes = kQuoteMaxBytes);

}  // namespace hostd::base

#endif  // HOSTD_BASE_QUOTE_H_
