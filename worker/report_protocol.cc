#include "worker/report_protocol.h"

#include <re2/re2.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/metric_name.h"
#include "common/metric_pattern.h"

namespace sweepd::worker {
namespace {

absl::StatusOr<double> MetricValue(const nlohmann::json& v, const std::string& name) {
  if (v.is_number()) return v.get<double>();
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s == "NaN" || s == "nan") return std::numeric_limits<double>::quiet_NaN();
    if (s == "Infinity" || s == "inf") return std::numeric_limits<double>::infinity();
    if (s == "-Infinity" || s == "-inf") return -std::numeric_limits<double>::infinity();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "metrics.", name, ": must be a number (or \"NaN\", \"Infinity\", \"-Infinity\"); got ",
      v.dump().substr(0, 60)));
}

}  // namespace

absl::StatusOr<ReportRequest> ParseReportRequest(absl::string_view line) {
  // The reader may hand over only the first kMaxRequestBytes + 1 bytes of a longer line, so
  // the line's size here is not the request's: say the limit.
  if (line.size() > kMaxRequestBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request is over the limit of ", kMaxRequestBytes / 1024,
                     " KiB; send one report per line, with fewer or shorter metrics"));
  }
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(line.begin(), line.end());
  } catch (const nlohmann::json::out_of_range&) {
    // nlohmann refuses 1e999 as out of range (error 406), not as malformed JSON.
    return absl::InvalidArgumentError(
        "request has a number out of range (beyond +-1.8e308); send \"Infinity\" or "
        "\"-Infinity\" for an infinite value");
  } catch (const nlohmann::json::exception&) {
    return absl::InvalidArgumentError("request is not a JSON object; send one object per line");
  }
  if (!doc.is_object()) {
    return absl::InvalidArgumentError("request is not a JSON object; send one object per line");
  }
  ReportRequest req;
  auto op = doc.find("op");
  if (op == doc.end() || !op->is_string()) {
    return absl::InvalidArgumentError(
        "op: required; one of report, finish, should_stop, checkpoint");
  }
  const auto& name = op->get_ref<const std::string&>();
  if (name == "report") {
    req.op = ReportRequest::Op::kReport;
  } else if (name == "finish") {
    req.op = ReportRequest::Op::kFinish;
  } else if (name == "should_stop") {
    req.op = ReportRequest::Op::kShouldStop;
  } else if (name == "checkpoint") {
    req.op = ReportRequest::Op::kCheckpoint;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("op: '", name.substr(0, 40),
                     "' is unknown; one of report, finish, should_stop, checkpoint"));
  }
  if (auto trial = doc.find("trial"); trial != doc.end()) {
    if (!trial->is_string()) return absl::InvalidArgumentError("trial: must be a string");
    req.trial_id = trial->get<std::string>();
  }
  if (auto step = doc.find("step"); step != doc.end() && !step->is_null()) {
    if (!step->is_number_integer() || step->get<int64_t>() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("step: must be a whole number >= 0; got ", step->dump().substr(0, 40)));
    }
    req.step = step->get<int64_t>();
  }
  if (auto metrics = doc.find("metrics"); metrics != doc.end()) {
    if (!metrics->is_object()) {
      return absl::InvalidArgumentError("metrics: must be an object of name to number");
    }
    if (metrics->size() > kMaxMetricsPerReport) {
      return absl::InvalidArgumentError(absl::StrCat(
          "metrics: ", metrics->size(), " in one report; the limit is ", kMaxMetricsPerReport));
    }
    for (const auto& [key, value] : metrics->items()) {
      if (auto st = CheckMetricName(key); !st.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("metrics: ", st.message()));
      }
      auto v = MetricValue(value, key);
      if (!v.ok()) return v.status();
      req.metrics.emplace_back(key, *v);
    }
  }
  if (req.op == ReportRequest::Op::kReport && req.metrics.empty()) {
    return absl::InvalidArgumentError("metrics: a report needs at least one metric");
  }
  if (req.op == ReportRequest::Op::kCheckpoint && !req.step) {
    return absl::InvalidArgumentError(
        "step: a checkpoint needs the step it was saved at (the retry resumes after it)");
  }
  return req;
}

std::string ContinueReply(int64_t checkpoint_recorded, int64_t checkpoint_keep) {
  if (checkpoint_recorded < 0) return "{\"action\":\"continue\"}\n";
  if (checkpoint_keep < 0) {
    return absl::StrCat("{\"action\":\"continue\",\"checkpoint_recorded\":", checkpoint_recorded,
                        "}\n");
  }
  return absl::StrCat("{\"action\":\"continue\",\"checkpoint_recorded\":", checkpoint_recorded,
                      ",\"checkpoint_keep\":", checkpoint_keep, "}\n");
}

std::string StopReply(absl::string_view reason, bool preempted, int64_t checkpoint_recorded,
                      int64_t checkpoint_keep) {
  nlohmann::json reply{{"action", "stop"}, {"reason", std::string(reason)}};
  if (preempted) reply["preempted"] = true;
  if (checkpoint_recorded >= 0) reply["checkpoint_recorded"] = checkpoint_recorded;
  if (checkpoint_recorded >= 0 && checkpoint_keep >= 0) reply["checkpoint_keep"] = checkpoint_keep;
  return reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string ErrorReply(absl::string_view message) {
  return nlohmann::json{{"error", std::string(message)}}.dump(
             -1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";
}

const char* MetricLineParser::DefaultPattern() { return DefaultMetricPattern(); }

MetricLineParser::MetricLineParser(const std::string& pattern) {
  auto compiled = CompileMetricPattern(pattern);
  if (!compiled.ok()) {
    pattern_error_ =
        absl::StrCat("metric_pattern ", compiled.status().message(), "; using the default");
    compiled = CompileMetricPattern("");
  }
  regex_ = *std::move(compiled);
}

std::optional<MetricLineParser::Parsed> MetricLineParser::Parse(absl::string_view line) const {
  Parsed parsed;
  const re2::RE2& re = *regex_;
  const re2::StringPiece text(line.data(), std::min(line.size(), kMaxParsedLineBytes));
  re2::StringPiece groups[3];
  size_t pos = 0;
  // Each search starts where the last match ended; an empty match moves on by one character,
  // so the loop ends within the line's length.
  while (pos <= text.size() && re.Match(text, pos, text.size(), re2::RE2::UNANCHORED, groups, 3)) {
    const size_t end = static_cast<size_t>(groups[0].data() - text.data()) + groups[0].size();
    pos = groups[0].empty() ? end + 1 : end;
    if (groups[1].data() == nullptr || groups[2].data() == nullptr) continue;
    double value = 0;
    if (!absl::SimpleAtod(absl::string_view(groups[2].data(), groups[2].size()), &value)) {
      continue;  // "x=" with no number
    }
    std::string name(groups[1].data(), groups[1].size());
    // What the socket and sweepd refuse (control characters, empty or overlong names) a custom
    // pattern could capture: skipped here, so no batch carries a name sweepd would refuse.
    if (!CheckMetricName(name).ok()) continue;
    if (name == "step" || name == "epoch" || name == "iteration") {
      // Below 2^62: larger values would not fit the int64 step (found by fuzz_report_line).
      if (!parsed.step && value >= 0 && value < 4.6e18 && value == std::floor(value)) {
        parsed.step = static_cast<int64_t>(value);
      }
      if (name == "step") continue;  // the step is not a metric; epoch and iteration are
    }
    parsed.metrics.emplace_back(std::move(name), value);
    if (parsed.metrics.size() >= kMaxMetricsPerReport) break;
  }
  if (parsed.metrics.empty()) return std::nullopt;
  return parsed;
}

}  // namespace sweepd::worker
