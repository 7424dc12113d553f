#include "common/spec_parser.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/command_template.h"
#include "common/metric_pattern.h"
#include "common/param_space.h"

namespace sweepd {
namespace {

// yaml-cpp's emitter writes these code points back as U+FFFD, so a spec holding them would not
// survive its own normal form (found by fuzz_spec_parser and fuzz_spec_numbers): Unicode's
// noncharacters (U+FDD0..U+FDEF and the last two of every plane), and what is not a Unicode
// scalar at all (UTF-16 surrogates, past U+10FFFF), which a `\u` escape can still spell.
bool IsNotText(uint32_t code_point) {
  return (code_point >= 0xFDD0 && code_point <= 0xFDEF) || (code_point & 0xFFFE) == 0xFFFE ||
         (code_point >= 0xD800 && code_point <= 0xDFFF) || code_point > 0x10FFFF;
}

// The first code point of UTF-8 `text` that IsNotText, if any. Bytes that are not UTF-8 are
// skipped: the prescan has refused them in the spec's text already.
std::optional<uint32_t> FirstNonText(absl::string_view text) {
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const int extra = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 0;
    if (extra == 0 || i + extra >= text.size()) {  // ASCII, or not UTF-8
      ++i;
      continue;
    }
    uint32_t code_point = c & (0x3F >> extra);
    for (int k = 1; k <= extra; ++k) {
      code_point = (code_point << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    }
    if (IsNotText(code_point)) return code_point;
    i += extra + 1;
  }
  return std::nullopt;
}

std::string CodePointName(uint32_t code_point) {
  return absl::StrCat("U+",
                      absl::AsciiStrToUpper(absl::StrCat(absl::Hex(code_point, absl::kZeroPad4))));
}

}  // namespace

namespace {

using v1::Distribution;
using v1::Parameter;
using v1::SweepSpec;

struct DistributionInfo {
  Distribution distribution;
  absl::string_view name;
  // Keys (besides `distribution`) the distribution takes.
  std::vector<absl::string_view> keys;
};

const std::vector<DistributionInfo>& Distributions() {
  static const auto* const kInfo = new std::vector<DistributionInfo>{
      {v1::CONSTANT, "constant", {"value"}},
      {v1::CATEGORICAL, "categorical", {"values", "probabilities"}},
      {v1::INT_UNIFORM, "int_uniform", {"min", "max"}},
      {v1::UNIFORM, "uniform", {"min", "max"}},
      {v1::Q_UNIFORM, "q_uniform", {"min", "max", "q"}},
      {v1::LOG_UNIFORM, "log_uniform", {"min", "max"}},
      {v1::LOG_UNIFORM_VALUES, "log_uniform_values", {"min", "max"}},
      {v1::Q_LOG_UNIFORM, "q_log_uniform", {"min", "max", "q"}},
      {v1::Q_LOG_UNIFORM_VALUES, "q_log_uniform_values", {"min", "max", "q"}},
      {v1::INV_LOG_UNIFORM, "inv_log_uniform", {"min", "max"}},
      {v1::INV_LOG_UNIFORM_VALUES, "inv_log_uniform_values", {"min", "max"}},
      {v1::NORMAL, "normal", {"mu", "sigma"}},
      {v1::Q_NORMAL, "q_normal", {"mu", "sigma", "q"}},
      {v1::LOG_NORMAL, "log_normal", {"mu", "sigma"}},
      {v1::Q_LOG_NORMAL, "q_log_normal", {"mu", "sigma", "q"}},
      {v1::BETA, "beta", {"a", "b"}},
      {v1::Q_BETA, "q_beta", {"a", "b", "q"}},
  };
  return *kInfo;
}

const DistributionInfo* FindDistribution(absl::string_view name) {
  // W&B's schema also names this form; it is categorical with probabilities.
  if (name == "categorical_w_probabilities") name = "categorical";
  for (const auto& info : Distributions()) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

const DistributionInfo& InfoOf(Distribution d) {
  for (const auto& info : Distributions()) {
    if (info.distribution == d) return info;
  }
  return Distributions().front();
}

bool UsesMinMax(Distribution d) {
  const auto& keys = InfoOf(d).keys;
  return std::find(keys.begin(), keys.end(), "min") != keys.end();
}

bool IsValuesForm(Distribution d) {
  return d == v1::LOG_UNIFORM_VALUES || d == v1::Q_LOG_UNIFORM_VALUES ||
         d == v1::INV_LOG_UNIFORM_VALUES;
}

// A YAML scalar typed by the YAML 1.2 core schema (quoted scalars are always strings).
struct Scalar {
  // kBigInt: an integer literal outside int64; refused wherever a number is read (as a double
  // it would silently lose digits).
  enum Kind { kNull, kBool, kInt, kBigInt, kFloat, kString } kind = kNull;
  bool b = false;
  int64_t i = 0;
  double d = 0;
  std::string text;
};

Scalar Classify(const YAML::Node& node) {
  Scalar s;
  s.text = node.Scalar();
  if (node.Tag() == "!") {  // quoted
    s.kind = Scalar::kString;
    return s;
  }
  const std::string& t = s.text;
  static const std::regex kInt(R"([-+]?[0-9]+)");
  static const std::regex kFloat(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (t.empty() || t == "~" || t == "null" || t == "Null" || t == "NULL") {
    s.kind = Scalar::kNull;
  } else if (t == "true" || t == "True" || t == "TRUE") {
    s.kind = Scalar::kBool;
    s.b = true;
  } else if (t == "false" || t == "False" || t == "FALSE") {
    s.kind = Scalar::kBool;
  } else if (t.size() < 32 && std::regex_match(t, kInt) && absl::SimpleAtoi(t, &s.i)) {
    s.kind = Scalar::kInt;
    s.d = static_cast<double>(s.i);
  } else if (t.find_first_not_of("+-0123456789") == std::string::npos &&
             t.find_first_of("0123456789") != std::string::npos && std::regex_match(t, kInt)) {
    s.kind = Scalar::kBigInt;
  } else if (t.size() < 64 && std::regex_match(t, kFloat) && absl::SimpleAtod(t, &s.d)) {
    s.kind = Scalar::kFloat;
  } else if (t == ".inf" || t == ".Inf" || t == ".INF" || t == "+.inf" || t == "+.Inf") {
    s.kind = Scalar::kFloat;
    s.d = INFINITY;
  } else if (t == "-.inf" || t == "-.Inf" || t == "-.INF") {
    s.kind = Scalar::kFloat;
    s.d = -INFINITY;
  } else if (t == ".nan" || t == ".NaN" || t == ".NAN") {
    s.kind = Scalar::kFloat;
    s.d = NAN;
  } else {
    s.kind = Scalar::kString;
  }
  return s;
}

// Integers are kept exact as int64; an integer literal beyond it is refused, not rounded.
constexpr absl::string_view kBigIntError =
    "is an integer outside the 64-bit range [-9223372036854775808, 9223372036854775807]; "
    "write it with an exponent (e.g. 1e20) if a float is meant";

// Bounds of int_uniform (and of integer samples) travel as doubles: integers beyond 2^53 would
// come back as other integers.
constexpr double kMaxExactInteger = 9007199254740992.0;  // 2^53

// A node that is not there (a default-constructed YAML::Node is a defined null).
YAML::Node Undefined() { return YAML::Node(YAML::NodeType::Undefined); }

std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar: {
      std::string text = node.Scalar();
      if (text.size() > 60) text = text.substr(0, 57) + "...";
      return absl::StrCat("'", text, "'");
    }
    default:
      return "an undefined value";
  }
}

std::string Join(const std::vector<absl::string_view>& items) { return absl::StrJoin(items, ", "); }

// Checks input before yaml-cpp sees it: size, text-ness, and nesting depth, so a deep document
// gets an error naming the line. (yaml-cpp 0.7 also stops at its own depth limit, with the message
// "bad file".) Brackets inside quoted or plain scalars and comments are text, not nesting: sweepd's
// own normalised YAML writes such strings, and must parse again (found by fuzz_spec_parser). The
// quote detection is lexical, not YAML's grammar; a mistake only changes which error a deep
// document gets.
absl::Status PrescanInput(absl::string_view text) {
  if (text.size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("spec: is ", text.size(), " bytes; the limit is ", kMaxSpecBytes));
  }
  size_t i = 0;
  if (text.substr(0, 3) == "\xEF\xBB\xBF") i = 3;  // UTF-8 byte-order mark
  int flow_depth = 0;
  int line = 1;
  size_t line_start = i;
  bool at_line_start = true;
  int indent = 0;
  char quote = 0;              // the quote character of the scalar being read, 0 outside one
  bool in_comment = false;     // from a `#` that starts a comment to the line's end
  unsigned char previous = 0;  // the last character that is not a space or tab, this line
  for (; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      ++line;
      line_start = i + 1;
      at_line_start = quote == 0;
      indent = 0;
      in_comment = false;
      previous = 0;
      continue;
    }
    if (c == '\r' && (i + 1 >= text.size() || text[i + 1] != '\n')) {
      // CRLF line ends are fine; a lone carriage return would end up inside a value.
      return absl::InvalidArgumentError(
          absl::StrCat("spec: line ", line, " column ", i - line_start + 1,
                       ": a carriage return not followed by a newline is not allowed"));
    }
    if (c < 0x20 && c != '\t' && c != '\r') {
      return absl::InvalidArgumentError(absl::StrCat(
          "spec: line ", line, " column ", i - line_start + 1, ": control character 0x",
          absl::Hex(c, absl::kZeroPad2), " is not allowed; a spec is YAML text"));
    }
    if (c == 0xEF && text.substr(i, 3) == "\xEF\xBB\xBF") {
      // U+FEFF inside the text: yaml-cpp and its emitter disagree on it (found by
      // fuzz_spec_parser), and it is invisible to whoever reads the spec.
      return absl::InvalidArgumentError(
          absl::StrCat("spec: line ", line, " column ", i - line_start + 1,
                       ": a byte-order mark (U+FEFF) is only allowed at the very start"));
    }
    if (c >= 0x80) {  // validate one UTF-8 sequence
      int extra = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : -1;
      bool ok = extra > 0 && c >= 0xC2 && c <= 0xF4 && i + extra < text.size() + 0;
      // RFC 3629: no overlong forms, no UTF-16 surrogates (U+D800..DFFF), nothing past U+10FFFF.
      const auto c1 = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
      ok = ok && !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 > 0x9F) &&
           !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 > 0x8F);
      for (int k = 1; ok && k <= extra; ++k) {
        ok = i + k < text.size() && (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
      }
      if (!ok) {
        return absl::InvalidArgumentError(absl::StrCat(
            "spec: line ", line, " column ", i - line_start + 1, ": byte 0x",
            absl::Hex(c, absl::kZeroPad2), " is not valid UTF-8; a spec is YAML text"));
      }
      if (auto bad = FirstNonText(text.substr(i, extra + 1))) {
        return absl::InvalidArgumentError(
            absl::StrCat("spec: line ", line, " column ", i - line_start + 1, ": ",
                         CodePointName(*bad), " is a Unicode noncharacter, not text"));
      }
      i += extra;
      at_line_start = false;
      if (quote == 0 && !in_comment) previous = c;
      continue;
    }
    if (quote != 0) {
      if (quote == '"' && c == '\\' && i + 1 < text.size() && text[i + 1] != '\n' &&
          static_cast<unsigned char>(text[i + 1]) < 0x80) {
        ++i;  // an escaped character, `\"` included
      } else if (c == static_cast<unsigned char>(quote)) {
        if (quote == '\'' && i + 1 < text.size() && text[i + 1] == '\'') {
          ++i;  // '' is a quote inside a single-quoted scalar
        } else {
          quote = 0;
          previous = c;
        }
      }
      continue;
    }
    if (in_comment) continue;
    if (at_line_start) {
      if (c == ' ' || c == '\t' || c == '-' || c == '?' || c == ':') {
        ++indent;
        if (indent > 4 * kMaxSpecNesting) {
          return absl::InvalidArgumentError(
              absl::StrCat("spec: line ", line, ": nested more than ", 4 * kMaxSpecNesting,
                           " columns deep; the limit keeps the parser's stack bounded"));
        }
        continue;
      }
      at_line_start = false;
    }
    const bool after_blank = i > line_start && (text[i - 1] == ' ' || text[i - 1] == '\t');
    if (c == '#' && (previous == 0 || after_blank)) {
      in_comment = true;
      continue;
    }
    // Where a node may begin: a quote there opens a quoted scalar, a bracket a collection.
    // Elsewhere in block context both are characters of a plain scalar (`lr: x{y`).
    const bool node_start =
        previous == 0 ||
        (flow_depth > 0 && (previous == '[' || previous == '{' || previous == ',')) ||
        ((previous == ':' || previous == '-' || previous == '?') && after_blank);
    if ((c == '"' || c == '\'') && node_start) {
      quote = static_cast<char>(c);
      continue;
    }
    if (c != ' ' && c != '\t') previous = c;
    if ((c == '[' || c == '{') && (node_start || flow_depth > 0)) {
      if (++flow_depth > kMaxSpecNesting) {
        return absl::InvalidArgumentError(absl::StrCat("spec: line ", line, ": more than ",
                                                       kMaxSpecNesting, " nested [ or { brackets"));
      }
    } else if (c == ']' || c == '}') {
      if (flow_depth > 0) --flow_depth;
    }
  }
  return absl::OkStatus();
}

class SpecReader {
 public:
  explicit SpecReader(bool external) : external_(external) {}

  ParsedSpec Read(const YAML::Node& root) {
    ParsedSpec out;
    if (!root.IsMap()) {
      Error("spec", absl::StrCat("must be a map with method, metric, parameters, ...; got ",
                                 Describe(root)));
      return out;
    }
    SweepSpec& spec = out.spec;
    static const std::set<std::string, std::less<>> kWandbIgnored = {
        "apiVersion", "kind", "controller", "job", "image_uri", "imageuri"};
    static const std::set<std::string, std::less<>> kUnsupported = {"metrics", "scheduler"};
    static const std::vector<absl::string_view> kKnown = {"program",
                                                          "method",
                                                          "metric",
                                                          "parameters",
                                                          "early_terminate",
                                                          "command",
                                                          "run_cap",
                                                          "name",
                                                          "description",
                                                          "project",
                                                          "entity",
                                                          "parallelism",
                                                          "resources",
                                                          "pruner",
                                                          "seed",
                                                          "max_failures",
                                                          "max_retries",
                                                          "budget",
                                                          "metric_pattern",
                                                          "search",
                                                          "launcher",
                                                          "working_dir",
                                                          "checkpoint",
                                                          "early_terminate_period",
                                                          "pbt"};
    std::map<std::string, YAML::Node, std::less<>> keys;
    if (!CollectMap(root, "", &keys)) return out;
    for (const auto& [key, value] : keys) {
      if (key == "controller") {
        // W&B's schema: {type: local | cloud}; anything else is refused there too.
        const YAML::Node type = value.IsMap() ? value["type"] : YAML::Node();
        if (!value.IsMap() || !type.IsDefined() || !type.IsScalar() ||
            (type.Scalar() != "local" && type.Scalar() != "cloud")) {
          Error("controller.type", "must be local or cloud (W&B's controller; sweepd ignores it)");
        } else {
          warnings_.push_back("controller: W&B key accepted and ignored by sweepd");
        }
      } else if (kWandbIgnored.contains(key)) {
        warnings_.push_back(absl::StrCat(key, ": W&B key accepted and ignored by sweepd"));
      } else if (kUnsupported.contains(key)) {
        Error(key, key == "metrics" ? "multi-objective sweeps are not supported; give one `metric`"
                                    : "custom W&B schedulers are not supported; use `method` "
                                      "and `pruner`");
      } else if (std::find(kKnown.begin(), kKnown.end(), key) == kKnown.end()) {
        Error(key, absl::StrCat("unknown key; allowed: ", Join(kKnown), ", and the W&B keys ",
                                "apiVersion, kind, controller, job, image_uri (ignored)"));
      }
    }
    auto get = [&](absl::string_view k) -> YAML::Node {
      auto it = keys.find(k);
      return it == keys.end() ? Undefined() : it->second;
    };

    for (auto [key, field] :
         {std::pair{"name", spec.mutable_name()},
          std::pair{"description", spec.mutable_description()},
          std::pair{"project", spec.mutable_project()}, std::pair{"entity", spec.mutable_entity()},
          std::pair{"program", spec.mutable_program()}}) {
      if (auto node = get(key); node.IsDefined()) {
        if (auto s = String(node, key)) *field = *s;
      }
    }
    ReadMethod(get("method"), &spec);
    if (auto node = get("metric"); node.IsDefined()) ReadMetric(node, spec.mutable_metric());
    if (auto node = get("parameters"); node.IsDefined()) {
      ReadParameters(node, "parameters", "", 1, spec.mutable_parameters());
    } else {
      Error("parameters", "required: a map of parameter name to definition");
    }
    ReadCommand(get("command"), &spec);
    if (auto node = get("early_terminate"); node.IsDefined()) {
      ReadEarlyTerminate(node, spec.mutable_early_terminate());
    }
    if (auto node = get("pruner"); node.IsDefined()) ReadPruner(node, spec.mutable_pruner());
    if (auto node = get("resources"); node.IsDefined()) {
      ReadResources(node, spec.mutable_resources());
    } else {
      spec.mutable_resources()->set_gpus_per_node(1);
      spec.mutable_resources()->set_nodes(1);
    }
    if (auto node = get("budget"); node.IsDefined()) ReadBudget(node, spec.mutable_budget());
    if (auto node = get("checkpoint"); node.IsDefined()) {
      ReadCheckpoint(node, spec.mutable_checkpoint());
    }
    if (auto node = get("pbt"); node.IsDefined()) {
      if (spec.method() != v1::SEARCH_METHOD_PBT) {
        Error("pbt", "settings of method pbt, and the spec's method is not pbt");
      } else {
        ReadPbt(node, spec.mutable_pbt());
      }
    } else if (spec.method() == v1::SEARCH_METHOD_PBT) {
      Error("pbt",
            "method pbt needs pbt: {interval: N} (steps between exploit/explore "
            "decisions); see docs/sweep-spec.md");
    }
    ReadSearchSettings(get("search"), spec.mutable_search());
    if (auto node = get("launcher"); node.IsDefined()) {
      if (auto s = String(node, "launcher")) {
        if (*s == "torchrun") {
          spec.set_launcher(v1::LAUNCHER_TORCHRUN);
        } else if (*s != "none") {
          Error("launcher", absl::StrCat("must be none or torchrun; got \"", *s, "\""));
        }
      }
    }
    if (auto node = get("early_terminate_period"); node.IsDefined()) {
      if (auto v = Number(node, "early_terminate_period")) {
        if (!(*v > 0 && *v <= 86400)) {
          Error("early_terminate_period",
                absl::StrCat("must be > 0 and at most 86400 seconds; got ", *v));
        } else if (!get("early_terminate").IsDefined()) {
          Error("early_terminate_period",
                "applies to early_terminate (W&B's hyperband), and the spec has none");
        } else {
          spec.mutable_early_terminate()->set_period_seconds(*v);
        }
      }
    }
    if (auto node = get("working_dir"); node.IsDefined()) {
      if (auto s = String(node, "working_dir")) {
        if (*s == "trial") {
          spec.set_run_in_trial_dir(true);
        } else if (*s != "code") {
          Error("working_dir",
                absl::StrCat("must be code (the agent's code dir, as under `wandb agent`) or "
                             "trial (the trial's own folder); got \"",
                             *s, "\""));
        }
      }
    }
    spec.set_run_cap(IntAtLeast(get("run_cap"), "run_cap", 1).value_or(0));
    spec.set_parallelism(static_cast<int32_t>(
        IntInRange(get("parallelism"), "parallelism", 1, 1'000'000).value_or(0)));
    spec.set_seed(static_cast<uint64_t>(IntAtLeast(get("seed"), "seed", 0).value_or(0)));
    spec.set_max_failures(static_cast<int32_t>(
        IntInRange(get("max_failures"), "max_failures", 0, 1'000'000).value_or(10)));
    spec.set_max_retries(
        static_cast<int32_t>(IntInRange(get("max_retries"), "max_retries", 0, 1000).value_or(3)));
    if (auto node = get("metric_pattern"); node.IsDefined()) {
      if (auto s = String(node, "metric_pattern")) {
        spec.set_metric_pattern(*s);
        CheckMetricPattern(*s);
      }
    }
    CrossChecks(&spec);
    out.warnings = std::move(warnings_);
    return out;
  }

  const std::vector<std::string>& errors() const { return errors_; }

 private:
  void Error(absl::string_view path, absl::string_view message) {
    errors_.push_back(absl::StrCat(path, ": ", message));
  }

  // Counts nodes so alias bombs (a DAG that expands exponentially) stop early.
  bool Visit() {
    if (++visited_ <= kMaxSpecNodes) return true;
    if (!budget_reported_) {
      budget_reported_ = true;
      Error("spec", absl::StrCat("expands to more than ", kMaxSpecNodes,
                                 " YAML nodes (YAML aliases?); the limit keeps parsing bounded"));
    }
    return false;
  }

  static std::string Child(absl::string_view path, absl::string_view key) {
    return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
  }

  // Reads a map's entries, reporting non-scalar and duplicate keys.
  bool CollectMap(const YAML::Node& node, absl::string_view path,
                  std::map<std::string, YAML::Node, std::less<>>* out) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!Visit()) return false;
      if (!it->first.IsScalar()) {
        Error(path.empty() ? "spec" : path, "keys must be plain names");
        continue;
      }
      std::string key = it->first.Scalar();
      if (!out->emplace(key, it->second).second) {
        Error(Child(path, key), "duplicate key");
      }
    }
    return true;
  }

  // Reports keys of `node` outside `allowed`.
  void CheckKeys(const std::map<std::string, YAML::Node, std::less<>>& keys, absl::string_view path,
                 const std::vector<absl::string_view>& allowed) {
    for (const auto& [key, value] : keys) {
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        Error(Child(path, key), absl::StrCat("unknown key; allowed here: ", Join(allowed)));
      }
    }
  }

  std::optional<std::string> String(const YAML::Node& node, absl::string_view path) {
    if (!node.IsScalar()) {
      Error(path, absl::StrCat("must be a string; got ", Describe(node)));
      return std::nullopt;
    }
    // Escaped control characters ("\r" in a quoted string) would not survive the normal form
    // (found by fuzz_spec_parser); newlines and tabs do.
    for (char c : node.Scalar()) {
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') || c == 0x7f) {
        Error(path, "must not contain control characters other than newline and tab");
        return std::nullopt;
      }
    }
    if (auto bad = FirstNonText(node.Scalar())) {
      Error(path, absl::StrCat("must not contain ", CodePointName(*bad), " (not text)"));
      return std::nullopt;
    }
    return node.Scalar();
  }

  std::optional<double> Number(const YAML::Node& node, absl::string_view path) {
    if (node.IsScalar()) {
      Scalar s = Classify(node);
      if (s.kind == Scalar::kBigInt) {
        Error(path, absl::StrCat(Describe(node), " ", kBigIntError));
        return std::nullopt;
      }
      if (s.kind == Scalar::kInt || s.kind == Scalar::kFloat) {
        if (std::isfinite(s.d)) return s.d;
        Error(path, absl::StrCat("must be a finite number; got ", Describe(node)));
        return std::nullopt;
      }
    }
    Error(path, absl::StrCat("must be a number; got ", Describe(node)));
    return std::nullopt;
  }

  std::optional<int64_t> Integer(const YAML::Node& node, absl::string_view path) {
    if (node.IsScalar()) {
      Scalar s = Classify(node);
      if (s.kind == Scalar::kInt) return s.i;
      if (s.kind == Scalar::kBigInt) {
        Error(path, absl::StrCat(Describe(node), " ", kBigIntError));
        return std::nullopt;
      }
      // 3.0 is accepted where an integer is meant; 3.5 is not.
      if (s.kind == Scalar::kFloat && std::isfinite(s.d) && s.d == std::floor(s.d) &&
          std::fabs(s.d) < 9e15) {
        return static_cast<int64_t>(s.d);
      }
    }
    Error(path, absl::StrCat("must be an integer; got ", Describe(node)));
    return std::nullopt;
  }

  std::optional<bool> Bool(const YAML::Node& node, absl::string_view path) {
    if (node.IsScalar()) {
      Scalar s = Classify(node);
      if (s.kind == Scalar::kBool) return s.b;
    }
    Error(path, absl::StrCat("must be true or false; got ", Describe(node)));
    return std::nullopt;
  }

  std::optional<int64_t> IntAtLeast(const YAML::Node& node, absl::string_view path, int64_t lo) {
    return IntInRange(node, path, lo, INT64_MAX);
  }

  std::optional<int64_t> IntInRange(const YAML::Node& node, absl::string_view path, int64_t lo,
                                    int64_t hi) {
    if (!node.IsDefined()) return std::nullopt;
    auto v = Integer(node, path);
    if (!v) return std::nullopt;
    if (*v < lo || *v > hi) {
      Error(path, hi == INT64_MAX ? absl::StrCat("must be >= ", lo, "; got ", *v)
                                  : absl::StrCat("must be in [", lo, ", ", hi, "]; got ", *v));
      return std::nullopt;
    }
    return v;
  }

  // Converts any YAML value to JSON (categorical values may be lists or maps).
  std::optional<nlohmann::ordered_json> ToJson(const YAML::Node& node, absl::string_view path,
                                               int depth) {
    if (!Visit()) return std::nullopt;
    if (depth > kMaxSpecNesting) {
      Error(path, absl::StrCat("nested more than ", kMaxSpecNesting, " levels"));
      return std::nullopt;
    }
    switch (node.Type()) {
      case YAML::NodeType::Null:
        return nlohmann::ordered_json(nullptr);
      case YAML::NodeType::Scalar: {
        Scalar s = Classify(node);
        switch (s.kind) {
          case Scalar::kNull:
            return nlohmann::ordered_json(nullptr);
          case Scalar::kBool:
            return nlohmann::ordered_json(s.b);
          case Scalar::kInt:
            return nlohmann::ordered_json(s.i);
          case Scalar::kBigInt:
            Error(path, absl::StrCat(Describe(node), " ", kBigIntError));
            return std::nullopt;
          case Scalar::kFloat:
            if (!std::isfinite(s.d)) {
              Error(path, absl::StrCat("must be finite; got ", Describe(node)));
              return std::nullopt;
            }
            return nlohmann::ordered_json(s.d);
          case Scalar::kString:
            // Control characters (other than tab) would not survive the normal form's YAML,
            // and no command line wants them (found by fuzz_spec_parser).
            for (char c : s.text) {
              if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
                Error(path,
                      "a string value must not contain control characters (newline, "
                      "carriage return, ...)");
                return std::nullopt;
              }
            }
            // Noncharacters come back from the normal form's YAML as U+FFFD.
            if (auto bad = FirstNonText(s.text)) {
              Error(path, absl::StrCat("a string value must not contain ", CodePointName(*bad),
                                       " (not text)"));
              return std::nullopt;
            }
            return nlohmann::ordered_json(s.text);
        }
        return std::nullopt;
      }
      case YAML::NodeType::Sequence: {
        nlohmann::ordered_json arr = nlohmann::ordered_json::array();
        int index = 0;
        for (const auto& item : node) {
          auto v = ToJson(item, absl::StrCat(path, "[", index++, "]"), depth + 1);
          if (!v) return std::nullopt;
          arr.push_back(std::move(*v));
        }
        return arr;
      }
      case YAML::NodeType::Map: {
        nlohmann::ordered_json obj = nlohmann::ordered_json::object();
        for (auto it = node.begin(); it != node.end(); ++it) {
          if (!it->first.IsScalar()) {
            Error(path, "map keys must be plain names");
            return std::nullopt;
          }
          auto v = ToJson(it->second, Child(path, it->first.Scalar()), depth + 1);
          if (!v) return std::nullopt;
          obj[it->first.Scalar()] = std::move(*v);
        }
        return obj;
      }
      default:
        Error(path, "is undefined");
        return std::nullopt;
    }
  }

  void ReadMethod(const YAML::Node& node, SweepSpec* spec) {
    static const std::vector<std::pair<absl::string_view, v1::SearchMethod>> kMethods = {
        {"grid", v1::SEARCH_METHOD_GRID},   {"random", v1::SEARCH_METHOD_RANDOM},
        {"bayes", v1::SEARCH_METHOD_BAYES}, {"tpe", v1::SEARCH_METHOD_TPE},
        {"sobol", v1::SEARCH_METHOD_SOBOL}, {"pbt", v1::SEARCH_METHOD_PBT}};
    if (!node.IsDefined()) {
      Error("method", "required; one of grid, random, bayes, tpe, sobol, pbt");
      return;
    }
    auto s = String(node, "method");
    if (!s) return;
    for (const auto& [name, method] : kMethods) {
      if (*s == name) {
        spec->set_method(method);
        return;
      }
    }
    Error("method",
          absl::StrCat("'", *s, "' is not a method; one of grid, random, bayes, tpe, ",
                       "sobol, pbt", *s == "custom" ? " (W&B's custom is not supported)" : ""));
  }

  void ReadMetric(const YAML::Node& node, v1::Metric* metric) {
    if (!node.IsMap()) {
      Error("metric", absl::StrCat("must be a map {name: ..., goal: minimize|maximize}; got ",
                                   Describe(node)));
      return;
    }
    std::map<std::string, YAML::Node, std::less<>> keys;
    if (!CollectMap(node, "metric", &keys)) return;
    CheckKeys(keys, "metric", {"name", "goal", "target", "impute", "impute_while_running"});
    if (auto it = keys.find("name"); it != keys.end()) {
      if (auto s = String(it->second, "metric.name")) {
        if (s->empty()) Error("metric.name", "must not be empty");
        metric->set_name(*s);
      }
    } else {
      Error("metric.name", "required: the name of the metric the script reports");
    }
    metric->set_goal(v1::GOAL_MINIMIZE);
    if (auto it = keys.find("goal"); it != keys.end()) {
      if (auto s = String(it->second, "metric.goal")) {
        if (*s == "maximize") {
          metric->set_goal(v1::GOAL_MAXIMIZE);
        } else if (*s != "minimize") {
          Error("metric.goal", absl::StrCat("'", *s, "' is not a goal; minimize or maximize"));
        }
      }
    }
    if (auto it = keys.find("target"); it != keys.end()) {
      if (auto v = Number(it->second, "metric.target")) metric->set_target(*v);
    }
    for (auto [key, field, allowed] :
         {std::tuple{"impute", metric->mutable_impute(),
                     std::vector<absl::string_view>{"latest", "best", "worst"}},
          std::tuple{"impute_while_running", metric->mutable_impute_while_running(),
                     std::vector<absl::string_view>{"latest", "best", "worst", "false"}}}) {
      if (auto it = keys.find(key); it != keys.end()) {
        std::string path = absl::StrCat("metric.", key);
        if (auto s = String(it->second, path)) {
          if (std::find(allowed.begin(), allowed.end(), *s) == allowed.end()) {
            Error(path, absl::StrCat("'", *s, "' is not allowed; one of ", Join(allowed)));
          }
          *field = *s;
        }
      }
    }
  }

  void ReadParameters(const YAML::Node& node, const std::string& path, const std::string& prefix,
                      int depth, google::protobuf::RepeatedPtrField<Parameter>* out) {
    if (!node.IsMap()) {
      Error(path,
            absl::StrCat("must be a map of parameter name to definition; got ", Describe(node)));
      return;
    }
    if (depth > kMaxSpecNesting / 4) {
      Error(path, absl::StrCat("parameters nest more than ", kMaxSpecNesting / 4, " levels"));
      return;
    }
    if (node.size() == 0) {
      Error(path, "needs at least one parameter");
      return;
    }
    static const std::regex kName(R"([A-Za-z_][A-Za-z0-9_.-]*)");
    std::map<std::string, YAML::Node, std::less<>> keys;
    // Keep spec order: iterate the node itself, use the map only to find duplicates.
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (!Visit()) return;
      if (!it->first.IsScalar()) {
        Error(path, "parameter names must be plain names");
        continue;
      }
      const std::string name = it->first.Scalar();
      const std::string child = Child(path, name);
      if (!keys.emplace(name, it->second).second) {
        Error(child, "duplicate parameter");
        continue;
      }
      if (name.size() > 1000 || !std::regex_match(name, kName)) {
        Error(child,
              "invalid parameter name; names match ^[A-Za-z_][A-Za-z0-9_.-]*$ (at most "
              "1000 characters)");
        continue;
      }
      Parameter* p = out->Add();
      p->set_name(name);
      p->set_path(prefix.empty() ? name : absl::StrCat(prefix, ".", name));
      ReadParameter(it->second, child, depth, p);
    }
  }

  void ReadParameter(const YAML::Node& node, const std::string& path, int depth, Parameter* p) {
    if (!node.IsMap()) {
      Error(path, absl::StrCat("must be a map such as {values: [...]}, {value: x}, {min: a, "
                               "max: b} or {distribution: ..., ...}; got ",
                               Describe(node)));
      return;
    }
    std::map<std::string, YAML::Node, std::less<>> keys;
    if (!CollectMap(node, path, &keys)) return;
    CheckKeys(keys, path,
              {"value", "values", "probabilities", "distribution", "min", "max", "mu", "sigma", "q",
               "a", "b", "parameters"});
    if (auto it = keys.find("parameters"); it != keys.end()) {
      for (const auto& [key, value] : keys) {
        if (key != "parameters") {
          Error(Child(path, key), "a parameter with nested `parameters` takes no other keys");
        }
      }
      ReadParameters(it->second, Child(path, "parameters"), p->path(), depth + 1,
                     p->mutable_parameters());
      return;
    }
    auto has = [&](absl::string_view k) { return keys.contains(k); };
    const DistributionInfo* info = nullptr;
    if (auto it = keys.find("distribution"); it != keys.end()) {
      auto name = String(it->second, Child(path, "distribution"));
      if (!name) return;
      info = FindDistribution(*name);
      if (info == nullptr) {
        std::vector<absl::string_view> names;
        for (const auto& d : Distributions()) names.push_back(d.name);
        Error(Child(path, "distribution"),
              absl::StrCat("'", *name, "' is not a distribution; one of ", Join(names)));
        return;
      }
    } else if (has("values")) {
      info = &InfoOf(v1::CATEGORICAL);
    } else if (has("value")) {
      info = &InfoOf(v1::CONSTANT);
    } else if (has("min") && has("max")) {
      bool ints = keys.at("min").IsScalar() && keys.at("max").IsScalar() &&
                  Classify(keys.at("min")).kind == Scalar::kInt &&
                  Classify(keys.at("max")).kind == Scalar::kInt;
      info = &InfoOf(ints ? v1::INT_UNIFORM : v1::UNIFORM);
    } else {
      Error(path,
            "cannot infer a distribution: give `values`, `value`, `min` and `max`, or "
            "`distribution`");
      return;
    }
    p->set_distribution(info->distribution);
    for (const auto& [key, value] : keys) {
      if (key == "distribution") continue;
      if (std::find(info->keys.begin(), info->keys.end(), key) == info->keys.end()) {
        Error(Child(path, key), absl::StrCat("is not used by distribution ", info->name,
                                             " (it takes: ", Join(info->keys), ")"));
      }
    }
    const Distribution d = info->distribution;
    if (d == v1::CONSTANT) {
      if (!has("value")) {
        Error(Child(path, "value"), "required by distribution constant");
        return;
      }
      if (auto v = ToJson(keys.at("value"), Child(path, "value"), 0)) {
        p->add_values_json(v->dump());
      }
      return;
    }
    if (d == v1::CATEGORICAL) {
      ReadCategorical(keys, path, p);
      return;
    }
    if (UsesMinMax(d)) {
      for (const char* key : {"min", "max"}) {
        if (!has(key))
          Error(Child(path, key), absl::StrCat("required by distribution ", info->name));
      }
      if (!has("min") || !has("max")) return;
      std::optional<double> lo, hi;
      if (d == v1::INT_UNIFORM) {
        // W&B's schema types int_uniform's bounds as integers: 0.0 is refused there too.
        for (const char* key : {"min", "max"}) {
          const Scalar::Kind kind = Classify(keys.at(key)).kind;
          if (kind != Scalar::kInt && kind != Scalar::kBigInt) {
            Error(Child(path, key),
                  absl::StrCat("must be an integer for int_uniform; got ", keys.at(key).Scalar(),
                               " (write it without a decimal point, or use "
                               "uniform or q_uniform)"));
          }
        }
        auto ilo = Integer(keys.at("min"), Child(path, "min"));
        auto ihi = Integer(keys.at("max"), Child(path, "max"));
        for (auto [key, v] : {std::pair{"min", &ilo}, std::pair{"max", &ihi}}) {
          if (*v && (**v < -static_cast<int64_t>(kMaxExactInteger) ||
                     **v > static_cast<int64_t>(kMaxExactInteger))) {
            Error(Child(path, key),
                  absl::StrCat("must be in [-9007199254740992, 9007199254740992] (2^53, the "
                               "integers sweepd samples exactly); got ",
                               **v));
            v->reset();
          }
        }
        if (ilo) lo = static_cast<double>(*ilo);
        if (ihi) hi = static_cast<double>(*ihi);
        p->set_integer(true);
      } else {
        lo = Number(keys.at("min"), Child(path, "min"));
        hi = Number(keys.at("max"), Child(path, "max"));
      }
      if (!lo || !hi) return;
      p->set_min(*lo);
      p->set_max(*hi);
      if (*lo >= *hi) {
        Error(Child(path, "min"), absl::StrCat("min ", keys.at("min").Scalar(),
                                               " must be less than max ", keys.at("max").Scalar()));
      }
      if (IsValuesForm(d) && *lo <= 0) {
        Error(Child(path, "min"),
              absl::StrCat("must be > 0 for ", info->name,
                           " (min and max are the values "
                           "themselves; use ",
                           info->name.substr(0, info->name.size() - 7),
                           " for natural-log exponents); got ", keys.at("min").Scalar()));
      }
      if ((d == v1::LOG_UNIFORM || d == v1::Q_LOG_UNIFORM || d == v1::INV_LOG_UNIFORM) &&
          (*hi > 700 || *lo < -700)) {
        Error(path,
              "min and max are natural-log exponents and must lie in [-700, 700]; did you "
              "mean the _values form?");
      }
    }
    if (d == v1::NORMAL || d == v1::Q_NORMAL || d == v1::LOG_NORMAL || d == v1::Q_LOG_NORMAL) {
      p->set_mu(0);
      p->set_sigma(1);
      if (has("mu")) {
        if (auto v = Number(keys.at("mu"), Child(path, "mu"))) p->set_mu(*v);
      }
      if (has("sigma")) {
        if (auto v = Number(keys.at("sigma"), Child(path, "sigma"))) {
          p->set_sigma(*v);
          // 0 is valid W&B (its schema's minimum); a constant then, see CollapseDegenerate.
          if (*v < 0) Error(Child(path, "sigma"), absl::StrCat("must be >= 0; got ", *v));
        }
      }
    }
    if (d == v1::BETA || d == v1::Q_BETA) {
      p->set_a(1);
      p->set_b(1);
      for (auto [key, setter] :
           {std::pair{"a", &Parameter::set_a}, std::pair{"b", &Parameter::set_b}}) {
        if (!has(key)) continue;
        if (auto v = Number(keys.at(key), Child(path, key))) {
          (p->*setter)(*v);
          if (*v < 0) Error(Child(path, key), absl::StrCat("must be >= 0; got ", *v));
        }
      }
    }
    const auto& dkeys = info->keys;
    if (std::find(dkeys.begin(), dkeys.end(), "q") != dkeys.end()) {
      p->set_q(1.0);
      if (has("q")) {
        if (auto v = Number(keys.at("q"), Child(path, "q"))) {
          p->set_q(*v);
          if (*v <= 0) Error(Child(path, "q"), absl::StrCat("must be > 0; got ", *v));
          // As W&B: an integer q gives integer samples.
          p->set_integer(Classify(keys.at("q")).kind == Scalar::kInt);
          if (p->integer() && *v > kMaxExactInteger) {
            Error(Child(path, "q"), absl::StrCat("must be at most 9007199254740992 (2^53) as an "
                                                 "integer, to stay exact; got ",
                                                 keys.at("q").Scalar()));
          }
        }
      }
    }
    if (d == v1::LOG_UNIFORM || d == v1::Q_LOG_UNIFORM || d == v1::INV_LOG_UNIFORM) {
      // W&B's validator flags these (its server shows a warning); they still work there.
      warnings_.push_back(absl::StrCat(
          path, ": distribution ", info->name,
          " is deprecated in W&B: min and max are natural-log exponents (e^min to e^max); ",
          info->name, "_values takes the values themselves"));
    }
    CollapseDegenerate(path, p);
    if (errors_.empty()) CheckSamplesFinite(path, p);
  }

  // Every sample must be a finite number (JSON has no infinity; it would reach the command line
  // as null or None), and integer samples must be exact. Checked at the extremes the sampler can
  // reach: the bounds, or mu +- 8 sigma (it draws normal quantiles within 1e-12 of 0 and 1, at
  // most 7.1 sigma out).
  void CheckSamplesFinite(const std::string& path, const Parameter* p) {
    const Distribution d = p->distribution();
    double lo = 0, hi = 0;
    switch (d) {
      case v1::INT_UNIFORM:
      case v1::UNIFORM:
      case v1::Q_UNIFORM:
      case v1::LOG_UNIFORM_VALUES:
      case v1::Q_LOG_UNIFORM_VALUES:
      case v1::INV_LOG_UNIFORM_VALUES:
        lo = p->min();
        hi = p->max();
        break;
      case v1::LOG_UNIFORM:
      case v1::Q_LOG_UNIFORM:
        lo = std::exp(p->min());
        hi = std::exp(p->max());
        break;
      case v1::INV_LOG_UNIFORM:
        lo = std::exp(-p->max());
        hi = std::exp(-p->min());
        break;
      case v1::NORMAL:
      case v1::Q_NORMAL:
        lo = p->mu() - 8 * p->sigma();
        hi = p->mu() + 8 * p->sigma();
        break;
      case v1::LOG_NORMAL:
      case v1::Q_LOG_NORMAL:
        lo = std::exp(p->mu() - 8 * p->sigma());
        hi = std::exp(p->mu() + 8 * p->sigma());
        break;
      case v1::BETA:
      case v1::Q_BETA:
        lo = 0;
        hi = 1;
        break;
      default:
        return;  // constant, categorical: the values themselves
    }
    if (!std::isfinite(lo) || !std::isfinite(hi)) {
      Error(path, absl::StrCat("samples of ", DistributionName(d),
                               " would overflow a double here (beyond 1.8e308); narrow its "
                               "parameters"));
      return;
    }
    const double widest = std::max(std::fabs(lo), std::fabs(hi));
    const auto text = [](double v) { return nlohmann::json(v).dump(); };
    const auto& dkeys = InfoOf(d).keys;
    if (std::find(dkeys.begin(), dkeys.end(), "q") != dkeys.end()) {
      // Samples are rounded as round(x / q) * q: a subnormal q, or one so small that x / q
      // overflows, gives infinity.
      if (p->q() < std::numeric_limits<double>::min()) {
        Error(Child(path, "q"), absl::StrCat("must be at least 2.2250738585072014e-308 (smaller "
                                             "numbers lose their precision); got ",
                                             text(p->q())));
        return;
      }
      if (!std::isfinite(widest / p->q()) || !std::isfinite(QuantizeToStep(lo, p->q())) ||
          !std::isfinite(QuantizeToStep(hi, p->q()))) {
        Error(Child(path, "q"), absl::StrCat("is too small for samples up to ", text(widest),
                                             ": rounding them to a multiple of ", text(p->q()),
                                             " overflows a double"));
        return;
      }
    }
    if (p->integer() && d != v1::INT_UNIFORM && widest > kMaxExactInteger) {
      Error(path, absl::StrCat("integer samples (an integer q) must lie within +-9007199254740992 "
                               "(2^53) to stay exact; these reach ",
                               text(widest), "; narrow the range or give a float q (e.g. 1.0)"));
    }
  }

  // sigma: 0 and beta's a: 0 or b: 0 are valid W&B, but describe no spread: every sample is
  // one value (its limit). W&B's samplers give NaN there; sweepd makes the parameter that
  // constant, and says so.
  void CollapseDegenerate(const std::string& path, Parameter* p) {
    const Distribution d = p->distribution();
    std::optional<double> value;
    std::string why;
    if ((d == v1::NORMAL || d == v1::Q_NORMAL || d == v1::LOG_NORMAL || d == v1::Q_LOG_NORMAL) &&
        p->sigma() == 0) {
      value = d == v1::LOG_NORMAL || d == v1::Q_LOG_NORMAL ? std::exp(p->mu()) : p->mu();
      why = "sigma 0";
    } else if ((d == v1::BETA || d == v1::Q_BETA) && (p->a() == 0 || p->b() == 0)) {
      if (p->a() == 0 && p->b() == 0) {
        Error(path, "beta with a: 0 and b: 0 has no single limit; give a > 0 or b > 0");
        return;
      }
      value = p->a() == 0 ? 0.0 : 1.0;
      why = p->a() == 0 ? "a 0" : "b 0";
    }
    if (!value) return;
    if (d == v1::Q_NORMAL || d == v1::Q_LOG_NORMAL || d == v1::Q_BETA) {
      value = QuantizeToStep(*value, p->q());
    }
    const std::string text =
        p->integer() ? std::to_string(std::llround(*value)) : nlohmann::json(*value).dump();
    warnings_.push_back(absl::StrCat(path, ": ", DistributionName(d), " with ", why,
                                     " gives one value; taken as the constant ", text,
                                     " (W&B would sample NaN)"));
    const std::string name = p->name(), full = p->path();
    p->Clear();
    p->set_name(name);
    p->set_path(full);
    p->set_distribution(v1::CONSTANT);
    p->add_values_json(text);
  }

  void ReadCategorical(const std::map<std::string, YAML::Node, std::less<>>& keys,
                       const std::string& path, Parameter* p) {
    const std::string vpath = Child(path, "values");
    auto it = keys.find("values");
    if (it == keys.end()) {
      Error(vpath, "required by distribution categorical");
      return;
    }
    if (!it->second.IsSequence() || it->second.size() == 0) {
      Error(vpath, absl::StrCat("must be a non-empty list; got ",
                                it->second.IsSequence() ? "an empty list" : Describe(it->second)));
      return;
    }
    std::set<std::string> seen;
    int index = 0;
    for (const auto& item : it->second) {
      std::string ipath = absl::StrCat(vpath, "[", index++, "]");
      auto v = ToJson(item, ipath, 0);
      if (!v) return;
      std::string text = v->dump();
      if (!seen.insert(text).second) {
        warnings_.push_back(absl::StrCat(ipath, ": value ", text, " appears more than once"));
      }
      p->add_values_json(std::move(text));
    }
    auto pit = keys.find("probabilities");
    if (pit == keys.end()) return;
    const std::string ppath = Child(path, "probabilities");
    if (!pit->second.IsSequence()) {
      Error(ppath, absl::StrCat("must be a list of numbers; got ", Describe(pit->second)));
      return;
    }
    if (pit->second.size() != static_cast<size_t>(p->values_json_size())) {
      Error(ppath, absl::StrCat("has ", pit->second.size(), " entries but values has ",
                                p->values_json_size(), "; give one probability per value"));
      return;
    }
    double sum = 0;
    index = 0;
    for (const auto& item : pit->second) {
      std::string ipath = absl::StrCat(ppath, "[", index++, "]");
      auto v = Number(item, ipath);
      if (!v) return;
      if (*v < 0) {
        Error(ipath, absl::StrCat("must be >= 0; got ", *v));
        return;
      }
      sum += *v;
      p->add_probabilities(*v);
    }
    if (std::fabs(sum - 1.0) > 1e-6) {
      Error(ppath, absl::StrCat("must sum to 1; they sum to ", sum));
    }
  }

  void ReadCommand(const YAML::Node& node, SweepSpec* spec) {
    if (!node.IsDefined()) {
      for (const char* token : {"${env}", "${interpreter}", "${program}", "${args}"}) {
        spec->add_command(token);
      }
      return;
    }
    if (!node.IsSequence() || node.size() == 0) {
      Error("command", absl::StrCat("must be a non-empty list of strings, e.g. [\"${env}\", "
                                    "\"${interpreter}\", \"${program}\", \"${args}\"]; got ",
                                    Describe(node)));
      return;
    }
    int index = 0;
    for (const auto& item : node) {
      std::string path = absl::StrCat("command[", index++, "]");
      auto text = String(item, path);  // a string without control characters
      if (!text) continue;
      spec->add_command(*text);
      if (std::string warning = CommandTokenWarning(*text); !warning.empty()) {
        warnings_.push_back(absl::StrCat(path, ": ", warning));
      }
    }
  }

  void ReadEarlyTerminate(const YAML::Node& node, v1::EarlyTerminate* et) {
    const std::string path = "early_terminate";
    if (!node.IsMap()) {
      Error(path,
            absl::StrCat("must be a map {type: hyperband, min_iter: N}; got ", Describe(node)));
      return;
    }
    std::map<std::string, YAML::Node, std::less<>> keys;
    if (!CollectMap(node, path, &keys)) return;
    CheckKeys(keys, path, {"type", "min_iter", "max_iter", "s", "eta", "strict"});
    if (auto it = keys.find("type"); it == keys.end()) {
      Error(Child(path, "type"), "required; only hyperband exists");
    } else if (auto s = String(it->second, Child(path, "type"))) {
      if (*s != "hyperband") {
        Error(Child(path, "type"), absl::StrCat("'", *s, "' is not supported; only hyperband"));
      }
      et->set_type(*s);
    }
    if (auto v = IntAtLeast(keys.contains("min_iter") ? keys.at("min_iter") : Undefined(),
                            Child(path, "min_iter"), 1)) {
      et->set_min_iter(*v);
    }
    if (auto v = IntAtLeast(keys.contains("max_iter") ? keys.at("max_iter") : Undefined(),
                            Child(path, "max_iter"), 1)) {
      et->set_max_iter(*v);
    }
    if (auto v = IntAtLeast(keys.contains("s") ? keys.at("s") : Undefined(), Child(path, "s"), 1)) {
      et->set_s(*v);
    }
    const bool has_min = keys.contains("min_iter"), has_max = keys.contains("max_iter"),
               has_s = keys.contains("s");
    if (has_min && has_max && has_s) {
      // W&B's schema accepts both; its engine then uses max_iter and s. So does sweepd.
      warnings_.push_back(
          "early_terminate: min_iter is ignored when max_iter and s are given (as in W&B)");
    } else if (has_min && has_s) {
      // Valid W&B: its engine reads max_iter and s only when max_iter is given.
      warnings_.push_back(
          "early_terminate: s is ignored without max_iter; the bands start at min_iter (as in "
          "W&B)");
      et->clear_s();
    } else if (has_min && has_max) {
      // W&B's schema lets this through, then its engine fails on the missing s.
      Error(path, "give min_iter, or max_iter with s (max_iter needs s)");
    } else if (!has_min && !(has_max && has_s)) {
      Error(path, "needs min_iter, or max_iter together with s");
    }
    et->set_eta(3);
    if (auto it = keys.find("eta"); it != keys.end()) {
      if (auto v = Number(it->second, Child(path, "eta"))) {
        et->set_eta(*v);
        if (*v <= 1) Error(Child(path, "eta"), absl::StrCat("must be > 1; got ", *v));
      }
    }
    // W&B's engine defaults strict to true (its docs say false); sweepd follows the engine.
    et->set_strict(true);
    if (auto it = keys.find("strict"); it != keys.end()) {
      if (auto v = Bool(it->second, Child(path, "strict"))) et->set_strict(*v);
    }
  }

  void ReadPruner(const YAML::Node& node, v1::Pruner* pruner) {
    const std::string path = "pruner";
    if (!node.IsMap()) {
      Error(path, absl::StrCat("must be a map {type: asha|hyperband|median|percentile|"
                               "threshold|none, ...}; got ",
                               Describe(node)));
      return;
    }
    std::map<std::string, YAML::Node, std::less<>> keys;
    if (!CollectMap(node, path, &keys)) return;
    static const std::vector<
        std::tuple<absl::string_view, v1::Pruner::Type, std::vector<absl::string_view>>>
        kTypes = {
            {"none", v1::Pruner::NONE, {}},
            {"asha",
             v1::Pruner::ASHA,
             {"resource", "min_resource", "max_resource", "reduction_factor",
              "min_early_stopping_rate", "mode"}},
            {"hyperband",
             v1::Pruner::HYPERBAND,
             {"resource", "min_resource", "max_resource", "reduction_factor", "brackets", "mode"}},
            {"median",
             v1::Pruner::MEDIAN,
             {"resource", "n_startup_trials", "n_warmup_steps", "interval_steps", "n_min_trials"}},
            {"percentile",
             v1::Pruner::PERCENTILE,
             {"resource", "percentile", "n_startup_trials", "n_warmup_steps", "interval_steps",
              "n_min_trials"}},
            {"threshold",
             v1::Pruner::THRESHOLD,
             {"resource", "lower", "upper", "n_warmup_steps", "interval_steps"}},
        };
    auto tit = keys.find("type");
    if (tit == keys.end()) {
      Error(Child(path, "type"),
            "required; one of asha, hyperband, median, percentile, "
            "threshold, none");
      return;
    }
    auto type = String(tit->second, Child(path, "type"));
    if (!type) return;
    const std::vector<absl::string_view>* allowed = nullptr;
    for (const auto& [name, t, settings] : kTypes) {
      if (*type == name) {
        pruner->set_type(t);
        allowed = &settings;
      }
    }
    if (allowed == nullptr) {
      Error(Child(path, "type"), absl::StrCat("'", *type,
                                              "' is not a pruner; one of asha, "
                                              "hyperband, median, percentile, threshold, none"));
      return;
    }
    for (const auto& [key, value] : keys) {
      if (key != "type" && std::find(allowed->begin(), allowed->end(), key) == allowed->end()) {
        Error(Child(path, key), absl::StrCat("is not a setting of pruner ", *type, " (it takes: ",
                                             allowed->empty() ? "nothing" : Join(*allowed), ")"));
      }
    }
    auto node_of = [&](absl::string_view k) {
      auto it = keys.find(k);
      return it == keys.end() ? Undefined() : it->second;
    };
    auto number = [&](absl::string_view k) -> std::optional<double> {
      auto n = node_of(k);
      return n.IsDefined() ? Number(n, Child(path, k)) : std::nullopt;
    };
    pruner->set_resource("step");
    if (auto n = node_of("resource"); n.IsDefined()) {
      if (auto s = String(n, Child(path, "resource"))) pruner->set_resource(*s);
    }
    const auto t = pruner->type();
    if (t == v1::Pruner::ASHA || t == v1::Pruner::HYPERBAND) {
      pruner->set_min_resource(number("min_resource").value_or(1));
      if (pruner->min_resource() <= 0) {
        Error(Child(path, "min_resource"),
              absl::StrCat("must be > 0; got ", pruner->min_resource()));
      }
      if (auto v = number("max_resource")) {
        pruner->set_max_resource(*v);
        if (*v <= pruner->min_resource()) {
          Error(Child(path, "max_resource"), absl::StrCat("must be greater than min_resource ",
                                                          pruner->min_resource(), "; got ", *v));
        }
      } else if (t == v1::Pruner::HYPERBAND) {
        Error(Child(path, "max_resource"), "required by pruner hyperband");
      }
      pruner->set_reduction_factor(number("reduction_factor").value_or(3));
      if (pruner->reduction_factor() <= 1) {
        Error(Child(path, "reduction_factor"),
              absl::StrCat("must be > 1; got ", pruner->reduction_factor()));
      }
      pruner->set_min_early_stopping_rate(
          static_cast<int32_t>(IntInRange(node_of("min_early_stopping_rate"),
                                          Child(path, "min_early_stopping_rate"), 0, 100)
                                   .value_or(0)));
      pruner->set_brackets(static_cast<int32_t>(
          IntInRange(node_of("brackets"), Child(path, "brackets"), 1, 100).value_or(0)));
      if (auto n = node_of("mode"); n.IsDefined()) {
        if (auto s = String(n, Child(path, "mode"))) {
          if (*s == "promotion") {
            pruner->set_promotion(true);
          } else if (*s != "stop") {
            Error(Child(path, "mode"),
                  absl::StrCat("must be stop (go on unless pruned at a rung) or promotion (pause "
                               "at every rung until promoted; needs checkpoints); got \"",
                               *s, "\""));
          }
        }
      }
    }
    if (t == v1::Pruner::MEDIAN || t == v1::Pruner::PERCENTILE || t == v1::Pruner::THRESHOLD) {
      pruner->set_n_startup_trials(static_cast<int32_t>(
          IntInRange(node_of("n_startup_trials"), Child(path, "n_startup_trials"), 0, 1'000'000)
              .value_or(5)));
      pruner->set_n_warmup_steps(
          IntAtLeast(node_of("n_warmup_steps"), Child(path, "n_warmup_steps"), 0).value_or(0));
      pruner->set_interval_steps(
          IntAtLeast(node_of("interval_steps"), Child(path, "interval_steps"), 1).value_or(1));
      pruner->set_n_min_trials(static_cast<int32_t>(
          IntInRange(node_of("n_min_trials"), Child(path, "n_min_trials"), 1, 1'000'000)
              .value_or(1)));
    }
    if (t == v1::Pruner::PERCENTILE) {
      if (auto v = number("percentile")) {
        pruner->set_percentile(*v);
        if (*v < 0 || *v > 100) {
          Error(Child(path, "percentile"), absl::StrCat("must be in [0, 100]; got ", *v));
        }
      } else if (!node_of("percentile").IsDefined()) {
        Error(Child(path, "percentile"), "required by pruner percentile (0..100)");
      }
    }
    if (t == v1::Pruner::THRESHOLD) {
      if (auto v = number("lower")) pruner->set_lower(*v);
      if (auto v = number("upper")) pruner->set_upper(*v);
      if (pruner->has_lower() && pruner->has_upper() && pruner->lower() >= pruner->upper()) {
        Error(Child(path, "lower"),
              absl::StrCat("must be less than upper ", pruner->upper(), "; got ", pruner->lower()));
      }
    }
  }

  void ReadResources(const YAML::Node& node, v1::Resources* resources) {
    if (!node.IsMap()) {
      Error("resources",
            absl::StrCat("must be a map {gpus_per_node: G, nodes: N}; got ", Describe(node)));
      return;
    }
    std::map<std::string, YAML::Node, std::less<>> keys;
    if (!CollectMap(node, "resources", &keys)) return;
    CheckKeys(keys, "resources", {"gpus_per_node", "nodes"});
    auto get = [&](absl::string_view k) {
      return keys.contains(k) ? keys.find(k)->second : Undefined();
    };
    resources->set_gpus_per_node(static_cast<int32_t>(
        IntInRange(get("gpus_per_node"), "resources.gpus_per_node", 0, 1024).value_or(1)));
    resources->set_nodes(
        static_cast<int32_t>(IntInRange(get("nodes"), "resources.nodes", 1, 4096).value_or(1)));
  }

  void ReadBudget(const YAML::Node& node, v1::Budget* budget) {
    if (!node.IsMap()) {
      Error("budget",
            absl::StrCat("must be a map {gpu_hours: H, max_trials: N}; got ", Describe(node)));
      return;
    }
    std::map<std::string, YAML::Node, std::less<>> keys;
    if (!CollectMap(node, "budget", &keys)) return;
    CheckKeys(keys, "budget", {"gpu_hours", "max_trials"});
    if (auto it = keys.find("gpu_hours"); it != keys.end()) {
      if (auto v = Number(it->second, "budget.gpu_hours")) {
        budget->set_gpu_hours(*v);
        if (*v <= 0) Error("budget.gpu_hours", absl::StrCat("must be > 0; got ", *v));
      }
    }
    if (auto it = keys.find("max_trials"); it != keys.end()) {
      if (auto v = IntAtLeast(it->second, "budget.max_trials", 1)) budget->set_max_trials(*v);
    }
  }

  void ReadCheckpoint(const YAML::Node& node, v1::Checkpoint* checkpoint) {
    if (!node.IsMap()) {
      Error("checkpoint", absl::StrCat("must be a map {dir: /shared/path, keep_best: K, "
                                       "delete_pruned_after_hours: H}; got ",
                                       Describe(node)));
      return;
    }
    std::map<std::string, YAML::Node, std::less<>> keys;
    if (!CollectMap(node, "checkpoint", &keys)) return;
    CheckKeys(keys, "checkpoint", {"dir", "keep_best", "delete_pruned_after_hours"});
    if (auto it = keys.find("keep_best"); it != keys.end()) {
      checkpoint->set_keep_best(static_cast<int32_t>(
          IntInRange(it->second, "checkpoint.keep_best", 1, 1'000'000).value_or(0)));
    }
    if (auto it = keys.find("delete_pruned_after_hours"); it != keys.end()) {
      if (auto v = Number(it->second, "checkpoint.delete_pruned_after_hours")) {
        if (!(*v > 0 && *v <= 1e6)) {
          Error("checkpoint.delete_pruned_after_hours",
                absl::StrCat("must be > 0 and at most 1000000 hours; got ", *v));
        } else {
          checkpoint->set_delete_pruned_after_hours(*v);
        }
      }
    }
    if (auto it = keys.find("dir"); it != keys.end()) {
      if (auto s = String(it->second, "checkpoint.dir")) {
        if (s->empty() || (*s)[0] != '/') {
          Error("checkpoint.dir",
                absl::StrCat("must be an absolute path that every agent reaches (a shared "
                             "filesystem); got \"",
                             *s, "\""));
        } else if (s->size() > 1024) {
          Error("checkpoint.dir", absl::StrCat("must be at most 1024 bytes; got ", s->size()));
        } else {
          checkpoint->set_dir(*s);
        }
      }
    }
  }

  // Defaults are Ray Tune's PopulationBasedTraining's (quantile_fraction 0.25,
  // resample_probability 0.25, perturbation_factors (1.2, 0.8)); population_size 8.
  void ReadPbt(const YAML::Node& node, v1::Pbt* pbt) {
    pbt->set_population_size(8);
    pbt->set_quantile(0.25);
    pbt->set_resample_probability(0.25);
    static const std::vector<absl::string_view> kKeys = {"population_size", "interval",
                                                         "quantile",        "resample_probability",
                                                         "perturb_factors", "hyperparameters"};
    if (!node.IsMap()) {
      Error("pbt", absl::StrCat("must be a map {", Join(kKeys), "}; got ", Describe(node)));
      return;
    }
    std::map<std::string, YAML::Node, std::less<>> keys;
    if (!CollectMap(node, "pbt", &keys)) return;
    CheckKeys(keys, "pbt", kKeys);
    auto get = [&](absl::string_view k) {
      return keys.contains(k) ? keys.find(k)->second : Undefined();
    };
    if (auto v = IntInRange(get("population_size"), "pbt.population_size", 2, 10'000)) {
      pbt->set_population_size(static_cast<int32_t>(*v));
    }
    if (!get("interval").IsDefined()) {
      Error("pbt.interval",
            "required: steps between a member's exploit/explore decisions "
            "(Ray Tune's perturbation_interval), e.g. 4");
    } else if (auto v = IntInRange(get("interval"), "pbt.interval", 1, 1'000'000'000)) {
      pbt->set_interval(*v);
    }
    if (auto n = get("quantile"); n.IsDefined()) {
      if (auto v = Number(n, "pbt.quantile")) {
        if (*v > 0 && *v <= 0.5) {
          pbt->set_quantile(*v);
        } else {
          Error("pbt.quantile", absl::StrCat("must be in (0, 0.5]; got ", *v));
        }
      }
    }
    if (auto n = get("resample_probability"); n.IsDefined()) {
      if (auto v = Number(n, "pbt.resample_probability")) {
        if (*v >= 0 && *v <= 1) {
          pbt->set_resample_probability(*v);
        } else {
          Error("pbt.resample_probability", absl::StrCat("must be in [0, 1]; got ", *v));
        }
      }
    }
    if (auto n = get("perturb_factors"); n.IsDefined()) {
      if (!n.IsSequence() || n.size() == 0 || n.size() > 16) {
        Error("pbt.perturb_factors",
              absl::StrCat("must be a list of 1 to 16 positive numbers, e.g. [0.8, 1.2]; got ",
                           Describe(n)));
      } else {
        for (size_t i = 0; i < n.size(); ++i) {
          const std::string path = absl::StrCat("pbt.perturb_factors[", i, "]");
          if (auto v = Number(n[i], path)) {
            if (!(*v > 0 && *v <= 1e6)) {
              Error(path, absl::StrCat("must be > 0 (a factor); got ", *v));
            } else {
              pbt->add_perturb_factors(*v);
            }
          }
        }
      }
    } else {
      pbt->add_perturb_factors(0.8);
      pbt->add_perturb_factors(1.2);
    }
    if (auto n = get("hyperparameters"); n.IsDefined()) {
      if (!n.IsSequence() || n.size() == 0) {
        Error("pbt.hyperparameters",
              absl::StrCat("must be a list of parameter names, e.g. [lr, momentum]; got ",
                           Describe(n)));
      } else {
        for (size_t i = 0; i < n.size() && i < 10'000; ++i) {
          if (auto s = String(n[i], absl::StrCat("pbt.hyperparameters[", i, "]"))) {
            pbt->add_hyperparameters(*s);
          }
        }
      }
    }
  }

  void ReadSearchSettings(const YAML::Node& node, v1::SearchSettings* search) {
    search->set_n_startup_trials(10);
    search->set_n_ei_candidates(24);
    search->set_multivariate(true);
    search->set_gamma(0.1);
    search->set_prior_weight(1.0);
    search->set_bandwidth_factor(0.1);
    search->set_clip_exponent(1.5);
    if (!node.IsDefined()) return;
    static const std::vector<absl::string_view> kKeys = {
        "n_startup_trials", "n_ei_candidates",  "multivariate", "gamma",
        "prior_weight",     "bandwidth_factor", "clip_exponent"};
    if (!node.IsMap()) {
      Error("search", absl::StrCat("must be a map {", Join(kKeys), "}; got ", Describe(node)));
      return;
    }
    std::map<std::string, YAML::Node, std::less<>> keys;
    if (!CollectMap(node, "search", &keys)) return;
    CheckKeys(keys, "search", kKeys);
    auto get = [&](absl::string_view k) {
      return keys.contains(k) ? keys.find(k)->second : Undefined();
    };
    search->set_n_startup_trials(static_cast<int32_t>(
        IntInRange(get("n_startup_trials"), "search.n_startup_trials", 0, 100'000).value_or(10)));
    search->set_n_ei_candidates(static_cast<int32_t>(
        IntInRange(get("n_ei_candidates"), "search.n_ei_candidates", 1, 100'000).value_or(24)));
    if (auto n = get("multivariate"); n.IsDefined()) {
      if (auto v = Bool(n, "search.multivariate")) search->set_multivariate(*v);
    }
    auto positive = [&](absl::string_view key, double low_exclusive, double high_inclusive,
                        void (v1::SearchSettings::*set)(double)) {
      auto n = get(key);
      if (!n.IsDefined()) return;
      const std::string path = absl::StrCat("search.", key);
      auto v = Number(n, path);
      if (!v) return;
      if (*v <= low_exclusive || *v > high_inclusive) {
        Error(path,
              absl::StrCat("must be in (", low_exclusive, ", ", high_inclusive, "]; got ", *v));
        return;
      }
      (search->*set)(*v);
    };
    positive("gamma", 0, 1, &v1::SearchSettings::set_gamma);
    positive("prior_weight", 0, 1e6, &v1::SearchSettings::set_prior_weight);
    positive("bandwidth_factor", 0, 1, &v1::SearchSettings::set_bandwidth_factor);
    positive("clip_exponent", 0, 4, &v1::SearchSettings::set_clip_exponent);
  }

  void CheckMetricPattern(const std::string& pattern) {
    // RE2 (linear time, whatever the pattern): see common/metric_pattern.h.
    if (auto compiled = CompileMetricPattern(pattern); !compiled.ok()) {
      Error("metric_pattern", std::string(compiled.status().message()));
    }
  }

  // The longest command line a trial of this spec can get, bounded from above: literal items, and
  // each `${args}` item as `--path=value` per parameter with its longest value (numbers at most
  // 32 characters). Linux refuses to start a command whose single argument exceeds 128 KiB
  // (MAX_ARG_STRLEN) or whose arguments and environment exceed ARG_MAX (2 MiB by default): such a
  // spec is refused here, not by every agent at every trial.
  void CheckCommandLength(const SweepSpec& spec) {
    size_t longest_arg = 0;
    size_t longest_param = 0;
    size_t args_total = 0;
    for (const Parameter* leaf : LeafParameters(spec)) {
      size_t value = 32;
      for (const auto& v : leaf->values_json()) value = std::max(value, v.size());
      const size_t arg = leaf->path().size() + 3 + value;
      longest_param = std::max(longest_param, arg);
      args_total += arg + 1;
    }
    size_t total = 0;
    for (const auto& token : LaunchCommand(spec)) {
      if (token.find("${args_json_file}") != std::string::npos) {
        total += token.size() + 1;  // a path; the values go into the file
      } else if (token.find("${args_json}") != std::string::npos) {
        total += token.size() + 1 + args_total;  // every value in this one argument
        longest_arg = std::max(longest_arg, token.size() + args_total);
      } else if (token.find("${args") != std::string::npos) {
        total += token.size() + 1 + args_total;  // one argument per parameter
        longest_arg = std::max(longest_arg, token.size() + longest_param);
      } else {
        total += token.size() + 1;
        longest_arg = std::max(longest_arg, token.size());
      }
    }
    constexpr size_t kMaxArg = 128 * 1024;
    constexpr size_t kMaxCommand = 1024 * 1024;  // ARG_MAX (2 MiB) less room for the environment
    if (longest_arg > kMaxArg) {
      Error("command", absl::StrCat("one argument can be up to ", longest_arg,
                                    " bytes long; Linux refuses a single argument over ", kMaxArg,
                                    " bytes (MAX_ARG_STRLEN): shorten the values, or pass them "
                                    "through ${args_json_file}"));
    } else if (total > kMaxCommand) {
      Error("command",
            absl::StrCat("can expand to ", total, " bytes of arguments; at most ", kMaxCommand,
                         " (ARG_MAX, less room for the environment): pass parameters "
                         "through ${args_json_file} instead"));
    }
  }

  // Method pbt: what it explores exists and can move, and nothing else stops its members.
  // (External sweeps, which cannot run pbt, are refused where they are created: `sweepctl
  // simulate` parses as external too, and simulates pbt.)
  void ValidatePbt(SweepSpec* spec, bool pruned) {
    if (pruned) {
      Error(spec->has_early_terminate() ? "early_terminate" : "pruner",
            "method pbt replaces its weak members itself; drop the early stopping");
    }
    if (spec->resources().nodes() > 1 && spec->checkpoint().dir().empty()) {
      Error("checkpoint.dir",
            "method pbt with multi-node trials copies checkpoints between trials: give a shared "
            "checkpoint: {dir: /shared/path}");
    }
    std::map<std::string, const v1::Parameter*, std::less<>> leaves;
    for (const v1::Parameter* leaf : LeafParameters(*spec)) leaves[leaf->path()] = leaf;
    if (spec->pbt().hyperparameters_size() == 0) {
      for (const auto& [path, leaf] : leaves) {
        if (PbtExploresByDefault(*leaf)) return;
      }
      Error("pbt.hyperparameters",
            "nothing to explore: no parameter has a continuous distribution; name the ones PBT "
            "may change, e.g. hyperparameters: [lr]");
      return;
    }
    std::set<std::string, std::less<>> seen;
    for (int i = 0; i < spec->pbt().hyperparameters_size(); ++i) {
      const std::string& name = spec->pbt().hyperparameters(i);
      const std::string path = absl::StrCat("pbt.hyperparameters[", i, "]");
      auto it = leaves.find(name);
      if (it == leaves.end()) {
        std::vector<std::string> names;
        for (const auto& [leaf_path, leaf] : leaves) names.push_back(leaf_path);
        Error(path, absl::StrCat("'", name,
                                 "' is not a parameter; parameters: ", absl::StrJoin(names, ", ")));
      } else if (it->second->distribution() == v1::CONSTANT) {
        Error(path, absl::StrCat("'", name, "' is a constant: PBT cannot change it"));
      } else if (!seen.insert(name).second) {
        Error(path, absl::StrCat("'", name, "' is named twice"));
      }
    }
  }

  void CrossChecks(SweepSpec* spec) {
    if (errors_.empty()) CheckCommandLength(*spec);
    // Flattened names must be unique (`a.b` at the top and `a: {parameters: {b}}` collide: the
    // store and the search keep parameters by flattened name). A name that is a prefix of
    // another (`model` beside `model.depth`, Hydra style) is fine, as it is in W&B: both are
    // passed as written.
    std::set<std::string> flat;
    for (const Parameter* leaf : LeafParameters(*spec)) {
      if (!flat.insert(leaf->path()).second) {
        Error(absl::StrCat("parameters.", leaf->path()),
              "flattened name collides with another parameter's (a dotted top-level name and a "
              "nested one spell the same path)");
      }
    }
    const bool model_based = spec->method() == v1::SEARCH_METHOD_BAYES ||
                             spec->method() == v1::SEARCH_METHOD_TPE ||
                             spec->method() == v1::SEARCH_METHOD_PBT;
    const bool pruned = spec->has_early_terminate() ||
                        (spec->has_pruner() && spec->pruner().type() != v1::Pruner::NONE);
    if (!spec->has_metric() && (model_based || pruned)) {
      Error("metric",
            absl::StrCat("required by ",
                         model_based ? absl::StrCat("method ", SearchMethodName(spec->method()))
                                     : std::string("early stopping"),
                         ": give {name: <reported metric>, goal: minimize|maximize}"));
    }
    if (spec->has_early_terminate() && spec->has_pruner()) {
      Error("pruner", "give early_terminate (W&B) or pruner (sweepd), not both");
    }
    if (spec->method() == v1::SEARCH_METHOD_PBT) ValidatePbt(spec, pruned);
    if (spec->checkpoint().keep_best() > 0 && !spec->has_metric()) {
      Error("checkpoint.keep_best", "needs a metric to rank trials by: give metric: {name: ...}");
    }
    if (spec->launcher() == v1::LAUNCHER_TORCHRUN &&
        std::find(spec->command().begin(), spec->command().end(), "${interpreter}") ==
            spec->command().end()) {
      Error("launcher",
            "torchrun wraps the ${interpreter} item of command, and command has none; "
            "use the default command or put ${interpreter} before ${program}");
    }
    bool uses_program = false;
    for (const auto& token : spec->command()) {
      if (token.find("${program}") != std::string::npos) uses_program = true;
    }
    if (uses_program && spec->program().empty() && !external_) {
      Error("program", "required: the command uses ${program}; name the training script");
    }
    if (spec->method() == v1::SEARCH_METHOD_GRID) {
      std::function<void(const google::protobuf::RepeatedPtrField<Parameter>&, absl::string_view)>
          check = [&](const auto& params, absl::string_view path) {
            for (const auto& p : params) {
              std::string child = absl::StrCat(path, ".", p.name());
              if (p.parameters_size() > 0) {
                check(p.parameters(), absl::StrCat(child, ".parameters"));
              } else if (p.probabilities_size() > 0) {
                Error(absl::StrCat(child, ".probabilities"),
                      "grid search runs every value once, so probabilities mean nothing there "
                      "(W&B refuses them too); drop them, or use method random or bayes");
              } else if (p.distribution() != v1::DISTRIBUTION_UNSPECIFIED &&
                         p.distribution() != v1::CATEGORICAL && p.distribution() != v1::CONSTANT &&
                         GridValueCount(p) == 0) {
                Error(child, absl::StrCat("grid search needs a finite set of values; ",
                                          DistributionName(p.distribution()),
                                          " is continuous (use values, int_uniform or "
                                          "q_uniform)"));
              }
            }
          };
      check(spec->parameters(), "parameters");
      if (errors_.empty() && GridSize(*spec) > kMaxGridPoints) {
        Error("parameters", absl::StrCat("the grid has more than ", kMaxGridPoints,
                                         " points; narrow it or use random search"));
      }
    }
  }

  const bool external_;
  std::vector<std::string> errors_;
  std::vector<std::string> warnings_;
  size_t visited_ = 0;
  bool budget_reported_ = false;
};

}  // namespace

absl::StatusOr<ParsedSpec> ParseSweepSpec(absl::string_view yaml, bool external) {
  if (absl::Status st = PrescanInput(yaml); !st.ok()) return st;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec: line ", e.mark.line + 1, " column ",
                                                   e.mark.column + 1, ": not valid YAML: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("spec: not valid YAML: ", e.what()));
  }
  SpecReader reader(external);
  ParsedSpec parsed;
  try {
    parsed = reader.Read(root);
  } catch (const std::exception& e) {
    // yaml-cpp throws on malformed node access; keep the error a value.
    return absl::InvalidArgumentError(absl::StrCat("spec: cannot be read: ", e.what()));
  }
  if (!reader.errors().empty()) {
    return absl::InvalidArgumentError(absl::StrJoin(reader.errors(), "\n"));
  }
  return parsed;
}

std::vector<std::string> SpecErrorLines(const absl::Status& status) {
  return absl::StrSplit(status.message(), '\n', absl::SkipEmpty());
}

absl::string_view DistributionName(Distribution distribution) {
  for (const auto& info : Distributions()) {
    if (info.distribution == distribution) return info.name;
  }
  return "unspecified";
}

absl::string_view SearchMethodName(v1::SearchMethod method) {
  switch (method) {
    case v1::SEARCH_METHOD_GRID:
      return "grid";
    case v1::SEARCH_METHOD_RANDOM:
      return "random";
    case v1::SEARCH_METHOD_BAYES:
      return "bayes";
    case v1::SEARCH_METHOD_TPE:
      return "tpe";
    case v1::SEARCH_METHOD_SOBOL:
      return "sobol";
    case v1::SEARCH_METHOD_PBT:
      return "pbt";
    default:
      return "unspecified";
  }
}

absl::string_view PrunerTypeName(v1::Pruner::Type type) {
  switch (type) {
    case v1::Pruner::NONE:
      return "none";
    case v1::Pruner::ASHA:
      return "asha";
    case v1::Pruner::HYPERBAND:
      return "hyperband";
    case v1::Pruner::MEDIAN:
      return "median";
    case v1::Pruner::PERCENTILE:
      return "percentile";
    case v1::Pruner::THRESHOLD:
      return "threshold";
    default:
      return "unspecified";
  }
}

}  // namespace sweepd
