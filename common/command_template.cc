#include "common/command_template.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <regex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace sweepd {
namespace {

// Macros that expand to one token each per parameter (or none) and must stand alone.
const std::vector<absl::string_view>& ListMacros() {
  static const auto* const kMacros = new std::vector<absl::string_view>{"args",
                                                                        "args_no_equals",
                                                                        "args_no_hyphens",
                                                                        "args_no_boolean_flags",
                                                                        "args_append_hydra",
                                                                        "args_override_hydra"};
  return *kMacros;
}

bool IsListMacro(absl::string_view name) {
  const auto& list = ListMacros();
  return std::find(list.begin(), list.end(), name) != list.end();
}

// Calls `on_macro(name)` for each `${name}` in token; returns false on an unterminated `${`.
template <typename Fn>
bool ForEachMacro(absl::string_view token, Fn on_macro) {
  size_t pos = 0;
  while ((pos = token.find("${", pos)) != absl::string_view::npos) {
    const size_t end = token.find('}', pos + 2);
    if (end == absl::string_view::npos) return false;
    on_macro(token.substr(pos + 2, end - pos - 2), pos, end + 1);
    pos = end + 1;
  }
  return true;
}

// Python's repr of a float: the shortest digits that round-trip, in fixed notation when the
// decimal exponent is in [-4, 16), else `d.ddde+XX`; integral values keep a `.0`.
std::string PythonFloat(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), x, std::chars_format::scientific);
  if (ec != std::errc()) return std::to_string(x);
  const std::string sci(buf, end);  // -d.ddde±XX
  const size_t e = sci.find('e');
  const int exponent = std::stoi(sci.substr(e + 1));
  std::string mantissa = sci.substr(0, e);
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits = mantissa.substr(0, 1) + (mantissa.size() > 2 ? mantissa.substr(2) : "");
  std::string out;
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out = "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
    } else if (static_cast<size_t>(exponent) + 1 >= digits.size()) {
      out = digits + std::string(static_cast<size_t>(exponent) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, static_cast<size_t>(exponent) + 1) + "." +
            digits.substr(static_cast<size_t>(exponent) + 1);
    }
  } else {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    out += exp;
  }
  return negative ? "-" + out : out;
}

// Python's repr of a str: single quotes unless the text has a single quote and no double one.
std::string PythonStringRepr(const std::string& s) {
  const bool use_double = s.find('\'') != std::string::npos && s.find('"') == std::string::npos;
  const char quote = use_double ? '"' : '\'';
  std::string out(1, quote);
  for (unsigned char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c == quote) {
          out += '\\';
          out += static_cast<char>(c);
        } else if (c < 0x20 || c == 0x7f) {
          char hex[8];
          std::snprintf(hex, sizeof(hex), "\\x%02x", c);
          out += hex;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += quote;
  return out;
}

std::string PythonRepr(const nlohmann::ordered_json& v, bool top_level) {
  switch (v.type()) {
    case nlohmann::ordered_json::value_t::null:
      return "None";
    case nlohmann::ordered_json::value_t::boolean:
      return v.get<bool>() ? "True" : "False";
    case nlohmann::ordered_json::value_t::string: {
      const auto& s = v.get_ref<const std::string&>();
      return top_level ? s : PythonStringRepr(s);
    }
    case nlohmann::ordered_json::value_t::array: {
      std::vector<std::string> items;
      for (const auto& item : v) items.push_back(PythonRepr(item, false));
      return absl::StrCat("[", absl::StrJoin(items, ", "), "]");
    }
    case nlohmann::ordered_json::value_t::object: {
      std::vector<std::string> items;
      for (const auto& [key, item] : v.items()) {
        items.push_back(absl::StrCat(PythonStringRepr(key), ": ", PythonRepr(item, false)));
      }
      return absl::StrCat("{", absl::StrJoin(items, ", "), "}");
    }
    case nlohmann::ordered_json::value_t::number_float:
      return PythonFloat(v.get<double>());
    default:
      return v.dump();  // integers
  }
}

}  // namespace

const std::vector<absl::string_view>& CommandMacroNames() {
  static const auto* const kNames = new std::vector<absl::string_view>{"env",
                                                                       "interpreter",
                                                                       "program",
                                                                       "args",
                                                                       "args_no_equals",
                                                                       "args_no_hyphens",
                                                                       "args_no_boolean_flags",
                                                                       "args_json",
                                                                       "args_json_file",
                                                                       "args_append_hydra",
                                                                       "args_override_hydra",
                                                                       "envvar:NAME"};
  return *kNames;
}

absl::Status ValidateCommandToken(absl::string_view token) {
  static const std::regex kEnvName(R"([A-Za-z_][A-Za-z0-9_]*)");
  absl::Status status;
  const bool terminated =
      ForEachMacro(token, [&](absl::string_view name, size_t begin, size_t end) {
        if (!status.ok()) return;
        if (absl::StartsWith(name, "envvar:")) {
          std::string var(name.substr(7));
          if (!std::regex_match(var, kEnvName)) {
            status = absl::InvalidArgumentError(
                absl::StrCat("${", name, "}: '", var, "' is not an environment variable name"));
          }
          return;
        }
        const auto& names = CommandMacroNames();
        if (std::find(names.begin(), names.end(), name) == names.end() || name == "envvar:NAME") {
          status = absl::InvalidArgumentError(absl::StrCat("unknown macro ${", name, "}; known: ${",
                                                           absl::StrJoin(names, "}, ${"), "}"));
          return;
        }
        if (IsListMacro(name) && (begin != 0 || end != token.size())) {
          status = absl::InvalidArgumentError(absl::StrCat(
              "${", name, "} expands to several arguments and must be a list item of its own"));
        }
      });
  if (!terminated) {
    return absl::InvalidArgumentError(absl::StrCat("'", token, "' has a ${ without a closing }"));
  }
  return status;
}

std::string PythonStr(absl::string_view value_json) {
  auto v = nlohmann::ordered_json::parse(value_json, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) return std::string(value_json);
  return PythonRepr(v, true);
}

std::string NestedParamsJson(const std::vector<v1::TrialParam>& params) {
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  for (const auto& p : params) {
    auto value = nlohmann::ordered_json::parse(p.value_json(), nullptr, false);
    if (value.is_discarded()) value = p.value_json();
    nlohmann::ordered_json* node = &root;
    std::vector<std::string> parts = absl::StrSplit(p.name(), '.');
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      nlohmann::ordered_json& next = (*node)[parts[i]];
      if (!next.is_object()) next = nlohmann::ordered_json::object();
      node = &next;
    }
    (*node)[parts.back()] = std::move(value);
  }
  // Invalid UTF-8 (a raw value that is not JSON) becomes U+FFFD rather than an exception
  // (found by fuzz_command_template).
  return root.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

absl::StatusOr<std::vector<std::string>> ExpandCommand(
    const std::vector<std::string>& command_template, const std::vector<v1::TrialParam>& params,
    const CommandContext& context) {
  std::vector<std::string> argv;
  for (const std::string& token : command_template) {
    if (absl::Status st = ValidateCommandToken(token); !st.ok()) return st;
    // A list macro stands alone (checked above): expand it into several arguments.
    if (absl::StartsWith(token, "${") && token.back() == '}' &&
        IsListMacro(absl::string_view(token).substr(2, token.size() - 3))) {
      const absl::string_view name = absl::string_view(token).substr(2, token.size() - 3);
      for (const auto& p : params) {
        const std::string value = PythonStr(p.value_json());
        if (name == "args") {
          argv.push_back(absl::StrCat("--", p.name(), "=", value));
        } else if (name == "args_no_equals") {
          argv.push_back(absl::StrCat("--", p.name()));
          argv.push_back(value);
        } else if (name == "args_no_hyphens") {
          argv.push_back(absl::StrCat(p.name(), "=", value));
        } else if (name == "args_no_boolean_flags") {
          // W&B: true booleans become bare flags, false ones are left out.
          if (p.value_json() == "true") {
            argv.push_back(absl::StrCat("--", p.name()));
          } else if (p.value_json() != "false") {
            argv.push_back(absl::StrCat("--", p.name(), "=", value));
          }
        } else if (name == "args_append_hydra") {
          argv.push_back(absl::StrCat("+", p.name(), "=", value));
        } else if (name == "args_override_hydra") {
          argv.push_back(absl::StrCat("++", p.name(), "=", value));
        }
      }
      continue;
    }
    std::string out;
    size_t last = 0;
    absl::Status status;
    ForEachMacro(token, [&](absl::string_view name, size_t begin, size_t end) {
      out.append(token, last, begin - last);
      last = end;
      if (name == "env") {
        out += context.env;
      } else if (name == "interpreter") {
        out += context.interpreter;
      } else if (name == "program") {
        out += context.program;
      } else if (name == "args_json") {
        out += NestedParamsJson(params);
      } else if (name == "args_json_file") {
        out += context.args_json_file;
      } else if (absl::StartsWith(name, "envvar:")) {
        std::string var(name.substr(7));
        std::optional<std::string> value = context.getenv ? context.getenv(var) : std::nullopt;
        if (!value && status.ok()) {
          status = absl::FailedPreconditionError(
              absl::StrCat("command uses ${envvar:", var, "} but ", var,
                           " is not set in the agent's environment"));
        }
        out += value.value_or("");
      }
    });
    if (!status.ok()) return status;
    out.append(token, last, std::string::npos);
    argv.push_back(std::move(out));
  }
  return argv;
}

std::vector<std::string> LaunchCommand(const v1::SweepSpec& spec) {
  std::vector<std::string> out;
  for (const auto& token : spec.command()) {
    out.push_back(token);
    if (spec.launcher() == v1::LAUNCHER_TORCHRUN && token == "${interpreter}") {
      // `--redirects 1 --tee 1`: Debian's torch 1.13 torchrun fails at start without them; ranks'
      // output then carries a `[default0]:` prefix (report metrics through the client).
      for (const char* flag :
           {"-m", "torch.distributed.run", "--nnodes=${envvar:SWEEP_NNODES}",
            "--node_rank=${envvar:SWEEP_NODE_RANK}",
            "--nproc_per_node=${envvar:SWEEP_NPROC_PER_NODE}",
            "--master_addr=${envvar:MASTER_ADDR}", "--master_port=${envvar:MASTER_PORT}",
            "--redirects", "1", "--tee", "1"}) {
        out.push_back(flag);
      }
    }
  }
  return out;
}

}  // namespace sweepd
