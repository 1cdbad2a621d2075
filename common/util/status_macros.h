// Status propagation macros used across cellflux.
//
//   CF_RETURN_IF_ERROR(expr);            // returns the absl::Status if !ok()
//   CF_ASSIGN_OR_RETURN(auto x, expr);   // expr is absl::StatusOr<T>; returns its status on error
#ifndef CELLFLUX_COMMON_UTIL_STATUS_MACROS_H_
#define CELLFLUX_COMMON_UTIL_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CF_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::absl::Status cf_status_ = (expr);      \
    if (!cf_status_.ok()) return cf_status_; \
  } while (0)

#define CF_CONCAT_INNER_(a, b) a##b
#define CF_CONCAT_(a, b) CF_CONCAT_INNER_(a, b)

#define CF_ASSIGN_OR_RETURN(lhs, expr) \
  CF_ASSIGN_OR_RETURN_IMPL_(CF_CONCAT_(cf_statusor_, __LINE__), lhs, expr)

#define CF_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                              \
  if (!statusor.ok()) return statusor.status();        \
  lhs = std::move(statusor).value()

#endif  // CELLFLUX_COMMON_UTIL_STATUS_MACROS_H_
