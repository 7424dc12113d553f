#pragma once

// The stdout metric collector's pattern (`metric_pattern` in a spec): a regular expression with
// two capture groups, (name) and (value), found anywhere in each line a trial prints.
//
// Matched with RE2, whose time is linear in the line's length whatever the pattern: a user's
// pattern runs on every line of every trial, and a backtracking engine (std::regex) lets one
// pattern such as `(a|aa)*(a|aa)*b` pin an agent's CPU for good. RE2's syntax is Go's (Katib's
// collector uses Go's regexp, so its patterns carry over); back-references and look-arounds,
// which need backtracking, are refused when the spec is checked.
//
// Thread safety: a compiled pattern is immutable and RE2 matching is thread-safe, so one
// shared_ptr serves every reader thread.

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace re2 {
class RE2;
}

namespace sweepd {

// Longest pattern accepted (characters).
inline constexpr size_t kMaxMetricPatternBytes = 512;

// Katib's stdout collector: `name=value` pairs anywhere in the line.
const char* DefaultMetricPattern();

// Compiles `pattern` (empty: the default). Errors say what is wrong, in words a spec author can
// act on (they become `metric_pattern: ...` spec errors).
absl::StatusOr<std::shared_ptr<const re2::RE2>> CompileMetricPattern(absl::string_view pattern);

}  // namespace sweepd
