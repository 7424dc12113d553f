#include "common/metric_pattern.h"

#include <re2/re2.h>

#include "absl/strings/str_cat.h"

namespace sweepd {

const char* DefaultMetricPattern() {
  return R"(([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?))";
}

absl::StatusOr<std::shared_ptr<const re2::RE2>> CompileMetricPattern(absl::string_view pattern) {
  if (pattern.empty()) pattern = DefaultMetricPattern();
  if (pattern.size() > kMaxMetricPatternBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("has ", pattern.size(), " characters; at most ", kMaxMetricPatternBytes));
  }
  re2::RE2::Options options;
  options.set_log_errors(false);
  // Bounds the compiled program and the DFA's cache: a pattern too big for it is refused here,
  // not slow later. (RE2 falls back to its NFA, still linear, when the DFA cache fills.)
  options.set_max_mem(8 << 20);
  auto re =
      std::make_shared<const re2::RE2>(re2::StringPiece(pattern.data(), pattern.size()), options);
  if (!re->ok()) {
    std::string why = re->error();
    if (re->error_code() == re2::RE2::ErrorBadPerlOp ||
        re->error_code() == re2::RE2::ErrorBadEscape) {
      absl::StrAppend(&why, " (RE2/Go syntax: back-references and look-arounds are not supported)");
    }
    return absl::InvalidArgumentError(absl::StrCat("is not a valid regular expression: ", why));
  }
  if (re->NumberOfCapturingGroups() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "needs two capture groups, (name) and (value); has ", re->NumberOfCapturingGroups()));
  }
  return re;
}

}  // namespace sweepd
