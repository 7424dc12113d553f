#pragma once

// Parses sweep specifications (W&B sweep YAML plus sweepd's own keys) into a validated
// sweepd::v1::SweepSpec. Stateless functions; safe to call from any thread.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd {

// Limits that keep hostile input from exhausting memory or stack.
inline constexpr size_t kMaxSpecBytes = 1 << 20;
inline constexpr int kMaxSpecNesting = 64;
inline constexpr size_t kMaxSpecNodes = 100'000;

struct ParsedSpec {
  v1::SweepSpec spec;
  // Notes that do not stop the sweep, e.g. W&B keys sweepd accepts but does not use.
  std::vector<std::string> warnings;
};

// Parses and validates `yaml`. On failure the status is INVALID_ARGUMENT and its message lists
// every error found, one per line, each as `key.path: what is wrong (what is allowed)`.
// `external`: the sweep's trials run elsewhere (ask/tell), so no `program` is needed.
absl::StatusOr<ParsedSpec> ParseSweepSpec(absl::string_view yaml, bool external = false);

// Splits an INVALID_ARGUMENT message of ParseSweepSpec back into its lines.
std::vector<std::string> SpecErrorLines(const absl::Status& status);

// The distribution's name as written in YAML (`log_uniform_values`).
absl::string_view DistributionName(v1::Distribution distribution);
absl::string_view SearchMethodName(v1::SearchMethod method);
absl::string_view PrunerTypeName(v1::Pruner::Type type);

}  // namespace sweepd
