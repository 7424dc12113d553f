#include "worker/report_protocol.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

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
  if (line.size() > kMaxRequestBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request is ", line.size(), " bytes; the limit is ", kMaxRequestBytes));
  }
  auto doc = nlohmann::json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return absl::InvalidArgumentError("request is not a JSON object; send one object per line");
  }
  ReportRequest req;
  auto op = doc.find("op");
  if (op == doc.end() || !op->is_string()) {
    return absl::InvalidArgumentError("op: required; one of report, finish, should_stop");
  }
  const auto& name = op->get_ref<const std::string&>();
  if (name == "report") {
    req.op = ReportRequest::Op::kReport;
  } else if (name == "finish") {
    req.op = ReportRequest::Op::kFinish;
  } else if (name == "should_stop") {
    req.op = ReportRequest::Op::kShouldStop;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "op: '", name.substr(0, 40), "' is unknown; one of report, finish, should_stop"));
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
      if (key.empty() || key.size() > kMaxMetricNameBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("metrics: a name must have 1 to ", kMaxMetricNameBytes, " bytes"));
      }
      auto v = MetricValue(value, key);
      if (!v.ok()) return v.status();
      req.metrics.emplace_back(key, *v);
    }
  }
  if (req.op == ReportRequest::Op::kReport && req.metrics.empty()) {
    return absl::InvalidArgumentError("metrics: a report needs at least one metric");
  }
  return req;
}

std::string ContinueReply() { return "{\"action\":\"continue\"}\n"; }

std::string StopReply(absl::string_view reason) {
  return nlohmann::json{{"action", "stop"}, {"reason", std::string(reason)}}.dump() + "\n";
}

std::string ErrorReply(absl::string_view message) {
  return nlohmann::json{{"error", std::string(message)}}.dump(
             -1, ' ', false, nlohmann::json::error_handler_t::replace) +
         "\n";
}

const char* MetricLineParser::DefaultPattern() {
  // Katib's stdout collector: name=value pairs anywhere in the line.
  return R"(([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?))";
}

MetricLineParser::MetricLineParser(const std::string& pattern)
    : regex_(pattern.empty() ? DefaultPattern() : pattern, std::regex::ECMAScript) {}

std::optional<MetricLineParser::Parsed> MetricLineParser::Parse(absl::string_view line) const {
  Parsed parsed;
  const std::string text(line.substr(0, 4096));
  for (auto it = std::sregex_iterator(text.begin(), text.end(), regex_);
       it != std::sregex_iterator(); ++it) {
    const auto& m = *it;
    if (m.size() < 3 || !m[1].matched || !m[2].matched) continue;
    double value = 0;
    if (!absl::SimpleAtod(m[2].str(), &value)) continue;  // "x=" with no number
    const std::string name = m[1].str();
    if (name == "step" || name == "epoch" || name == "iteration") {
      // Below 2^62: larger values would not fit the int64 step (found by fuzz_report_line).
      if (!parsed.step && value >= 0 && value < 4.6e18 && value == std::floor(value)) {
        parsed.step = static_cast<int64_t>(value);
      }
      if (name == "step") continue;  // the step is not a metric; epoch and iteration are
    }
    parsed.metrics.emplace_back(name, value);
    if (parsed.metrics.size() >= kMaxMetricsPerReport) break;
  }
  if (parsed.metrics.empty()) return std::nullopt;
  return parsed;
}

}  // namespace sweepd::worker
