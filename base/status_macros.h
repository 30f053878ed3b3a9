// Status propagation macros. Abseil 20220623 ships none, so hostd defines its own.
//
//   HOSTD_RETURN_IF_ERROR(DoThing());
//   HOSTD_ASSIGN_OR_RETURN(auto fd, OpenThing());
//
// Both evaluate their argument once and return the error status unchanged.
#ifndef HOSTD_BASE_STATUS_MACROS_H_
#define HOSTD_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define HOSTD_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status hostd_status_ = (expr);         \
    if (!hostd_status_.ok()) return hostd_status_; \
  } while (0)

#define HOSTD_STATUS_CONCAT_INNER_(a, b) a##b
#define HOSTD_STATUS_CONCAT_(a, b) HOSTD_STATUS_CONCAT_INNER_(a, b)

#define HOSTD_ASSIGN_OR_RETURN(lhs, expr) \
  HOSTD_ASSIGN_OR_RETURN_IMPL_(HOSTD_STATUS_CONCAT_(hostd_statusor_, __LINE__), lhs, expr)

#define HOSTD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)  \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // HOSTD_BASE_STATUS_MACROS_H_
