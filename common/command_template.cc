#include "common/command_template.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/ascii.h"
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

// An item that W&B's agent takes for a macro: `${` at the start and `}` at the end.
bool IsWholeMacro(absl::string_view token) {
  return token.size() >= 3 && absl::StartsWith(token, "${") && absl::EndsWith(token, "}");
}

// W&B's `\$\{envvar\:([A-Z0-9_]*)\}`, replaced anywhere in an item; an unset variable leaves
// its name. A scanner, not std::regex: libstdc++'s regex recurses per character and a long item
// would overflow the stack.
std::string SubstituteEnvvars(
    absl::string_view token,
    const std::function<std::optional<std::string>(const std::string&)>& getenv) {
  static constexpr absl::string_view kOpen = "${envvar:";
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t start = token.find(kOpen, pos);
    if (start == absl::string_view::npos) break;
    size_t end = start + kOpen.size();
    while (end < token.size() &&
           (absl::ascii_isupper(static_cast<unsigned char>(token[end])) ||
            absl::ascii_isdigit(static_cast<unsigned char>(token[end])) || token[end] == '_')) {
      ++end;
    }
    if (end >= token.size() || token[end] != '}') {
      // Not the macro's shape: keep the text and look again after its `${`.
      absl::StrAppend(&out, token.substr(pos, start + 2 - pos));
      pos = start + 2;
      continue;
    }
    absl::StrAppend(&out, token.substr(pos, start - pos));
    const std::string name(token.substr(start + kOpen.size(), end - start - kOpen.size()));
    std::optional<std::string> value = getenv ? getenv(name) : std::nullopt;
    out += value.value_or(name);
    pos = end + 1;
  }
  absl::StrAppend(&out, token.substr(pos));
  return out;
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

// A string as Python's json.dumps writes it (ensure_ascii): non-ASCII as \uXXXX escapes,
// surrogate pairs above the BMP.
std::string PythonJsonString(const std::string& s) {
  std::string out = "\"";
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    uint32_t cp = c;
    size_t len = 1;
    if (c >= 0x80) {
      len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      if (len == 1 || i + len > s.size()) {
        cp = 0xFFFD;  // not UTF-8: the replacement character, as the JSON dump does
        len = 1;
      } else {
        cp = c & (0xFF >> (len + 1));
        for (size_t k = 1; k < len; ++k)
          cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
      }
    }
    i += len;
    char buf[16];
    switch (cp) {
      case '"':
        out += "\\\"";
        break;
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
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (cp < 0x20 || (cp >= 0x7f && cp < 0x10000)) {
          std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
          out += buf;
        } else if (cp >= 0x10000) {
          const uint32_t v = cp - 0x10000;
          std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xD800 + (v >> 10),
                        0xDC00 + (v & 0x3FF));
          out += buf;
        } else {
          out += static_cast<char>(cp);
        }
    }
  }
  out += "\"";
  return out;
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

std::string CommandTokenWarning(absl::string_view token) {
  const std::string expanded = SubstituteEnvvars(token, [](const std::string&) {
    return std::optional<std::string>("x");  // only the shape matters here
  });
  const auto& names = CommandMacroNames();
  if (IsWholeMacro(token) && expanded == token) {
    const absl::string_view name = token.substr(2, token.size() - 3);
    if (absl::StartsWith(name, "envvar:")) {
      return absl::StrCat("'", token,
                          "' is not W&B's envvar macro (the name must be A-Z, 0-9 and _); it "
                          "expands to nothing, as under `wandb agent`");
    }
    if ((std::find(names.begin(), names.end(), name) != names.end() && name != "envvar:NAME")) {
      return "";
    }
    return absl::StrCat("'", token,
                        "' is no macro sweepd or W&B's agent knows; it expands to nothing, as "
                        "under `wandb agent` (known: ${",
                        absl::StrJoin(names, "}, ${"), "})");
  }
  std::string warning;
  ForEachMacro(expanded, [&](absl::string_view name, size_t, size_t) {
    if (!warning.empty()) return;
    if (std::find(names.begin(), names.end(), name) != names.end()) {
      warning = absl::StrCat("'", token, "' holds ${", name,
                             "} inside a longer item: it is passed as written, as W&B's agent "
                             "does; make the macro a command item of its own");
    }
  });
  return warning;
}

std::string PythonStr(absl::string_view value_json) {
  auto v = nlohmann::ordered_json::parse(value_json, nullptr, /*allow_exceptions=*/false);
  if (v.is_discarded()) return std::string(value_json);
  return PythonRepr(v, true);
}

std::vector<std::pair<std::string, nlohmann::ordered_json>> WandbRunArgs(
    const std::vector<v1::TrialParam>& params) {
  std::vector<std::pair<std::string, nlohmann::ordered_json>> args;
  std::map<std::string, size_t> index;  // top-level key -> position in args
  for (const auto& p : params) {
    auto value = nlohmann::ordered_json::parse(p.value_json(), nullptr, false);
    if (value.is_discarded()) value = p.value_json();
    const std::vector<std::string> keys =
        p.keys_size() > 0 ? std::vector<std::string>(p.keys().begin(), p.keys().end())
                          : std::vector<std::string>{p.name()};
    if (keys.size() == 1) {
      if (auto it = index.find(keys[0]); it != index.end()) {
        args[it->second].second = std::move(value);
      } else {
        index[keys[0]] = args.size();
        args.emplace_back(keys[0], std::move(value));
      }
      continue;
    }
    // A nested parameter: a path inside its top-level key's dict.
    auto [it, added] = index.emplace(keys[0], args.size());
    if (added) args.emplace_back(keys[0], nlohmann::ordered_json::object());
    nlohmann::ordered_json* node = &args[it->second].second;
    for (size_t i = 1; i < keys.size(); ++i) {
      if (!node->is_object()) *node = nlohmann::ordered_json::object();
      node = &(*node)[keys[i]];
    }
    *node = std::move(value);
  }
  return args;
}

std::string NestedParamsJson(const std::vector<v1::TrialParam>& params) {
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  for (auto& [key, value] : WandbRunArgs(params)) root[key] = std::move(value);
  // Invalid UTF-8 (a raw value that is not JSON) becomes U+FFFD rather than an exception
  // (found by fuzz_command_template).
  return root.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::string PythonJsonDumps(const nlohmann::ordered_json& value) {
  switch (value.type()) {
    case nlohmann::ordered_json::value_t::object: {
      std::vector<std::string> items;
      for (const auto& [key, item] : value.items()) {
        items.push_back(absl::StrCat(PythonJsonString(key), ": ", PythonJsonDumps(item)));
      }
      return absl::StrCat("{", absl::StrJoin(items, ", "), "}");
    }
    case nlohmann::ordered_json::value_t::array: {
      std::vector<std::string> items;
      for (const auto& item : value) items.push_back(PythonJsonDumps(item));
      return absl::StrCat("[", absl::StrJoin(items, ", "), "]");
    }
    case nlohmann::ordered_json::value_t::string:
      return PythonJsonString(value.get_ref<const std::string&>());
    case nlohmann::ordered_json::value_t::number_float: {
      const double x = value.get<double>();
      if (std::isnan(x)) return "NaN";
      if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
      return PythonFloat(x);
    }
    default:
      return value.dump();  // null, true, false, integers
  }
}

absl::StatusOr<std::vector<std::string>> ExpandCommand(
    const std::vector<std::string>& command_template, const std::vector<v1::TrialParam>& params,
    const CommandContext& context) {
  // As W&B's agent (wandb_agent.py, sweeps/utils.py create_sweep_command and
  // create_sweep_command_args): first `${envvar:NAME}` anywhere in an item (an unset NAME
  // leaves the name itself); then an item that is `${...}` as a whole is replaced by the
  // macro's items (an unknown macro by none); every other item is passed as written.
  const auto run_args = WandbRunArgs(params);
  std::vector<std::string> argv;
  for (const std::string& raw : command_template) {
    const std::string token = SubstituteEnvvars(raw, context.getenv);
    if (!IsWholeMacro(token)) {
      argv.push_back(token);
      continue;
    }
    const absl::string_view name = absl::string_view(token).substr(2, token.size() - 3);
    if (name == "env") {
      argv.push_back(context.env);
    } else if (name == "interpreter") {
      argv.push_back(context.interpreter);
    } else if (name == "program") {
      if (context.program.empty()) {
        return absl::FailedPreconditionError(
            "command uses ${program} but the spec names no program");
      }
      argv.push_back(context.program);
    } else if (name == "args_json") {
      nlohmann::ordered_json dict = nlohmann::ordered_json::object();
      for (const auto& [key, value] : run_args) dict[key] = value;
      argv.push_back(PythonJsonDumps(dict));
    } else if (name == "args_json_file") {
      argv.push_back(context.args_json_file);
    } else if (IsListMacro(name)) {
      for (const auto& [key, value] : run_args) {
        const std::string text = PythonRepr(value, true);
        if (name == "args") {
          argv.push_back(absl::StrCat("--", key, "=", text));
        } else if (name == "args_no_equals") {
          argv.push_back(absl::StrCat("--", key));
          argv.push_back(text);
        } else if (name == "args_no_hyphens") {
          argv.push_back(absl::StrCat(key, "=", text));
        } else if (name == "args_no_boolean_flags") {
          // W&B: true booleans become bare flags, false ones are left out.
          if (value.is_boolean()) {
            if (value.get<bool>()) argv.push_back(absl::StrCat("--", key));
          } else {
            argv.push_back(absl::StrCat("--", key, "=", text));
          }
        } else if (name == "args_append_hydra") {
          argv.push_back(absl::StrCat("+", key, "=", text));
        } else if (name == "args_override_hydra") {
          argv.push_back(absl::StrCat("++", key, "=", text));
        }
      }
    }
    // Any other whole-item macro (`${project}`, `${entity}`, a typo): nothing, as W&B.
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
