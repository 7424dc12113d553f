#pragma once

// RETURN_IF_ERROR and ASSIGN_OR_RETURN, which Abseil 20220623 does not ship.

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SWEEPD_CONCAT_INNER(a, b) a##b
#define SWEEPD_CONCAT(a, b) SWEEPD_CONCAT_INNER(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define RETURN_IF_ERROR(expr)                   \
  do {                                          \
    if (absl::Status _st = (expr); !_st.ok()) { \
      return _st;                               \
    }                                           \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, Foo());` declares x from Foo()'s value or returns its error.
#define ASSIGN_OR_RETURN(lhs, expr) \
  SWEEPD_ASSIGN_OR_RETURN_IMPL(SWEEPD_CONCAT(_statusor_, __LINE__), lhs, expr)

#define SWEEPD_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                 \
  if (!statusor.ok()) {                                   \
    return std::move(statusor).status();                  \
  }                                                       \
  lhs = std::move(statusor).value()
