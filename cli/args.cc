#include "cli/args.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"

namespace sweepd::cli {

std::string ParsedArgs::Get(const std::string& name) const {
  auto it = flags.find(name);
  return it == flags.end() ? std::string() : it->second;
}

absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs) {
  ParsedArgs out;
  auto find = [&](absl::string_view name) -> const FlagSpec* {
    for (const auto& spec : specs) {
      if (spec.name == name) return &spec;
    }
    return nullptr;
  };
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (flags_done || arg == "-" || !absl::StartsWith(arg, "-")) {
      out.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_done = true;
      continue;
    }
    if (arg == "-h" || arg == "--help") {
      out.help = true;
      continue;
    }
    absl::string_view body = arg;
    body.remove_prefix(absl::StartsWith(body, "--") ? 2 : 1);
    std::string name(body.substr(0, body.find('=')));
    // kubectl's short form: `-o json` is `--output json`.
    if (name == "o" && !absl::StartsWith(arg, "--")) name = "output";
    const FlagSpec* spec = find(name);
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg, "; see --help"));
    }
    std::string value;
    if (body.find('=') != absl::string_view::npos) {
      value = std::string(body.substr(body.find('=') + 1));
      if (spec->value_name.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("--", name, " takes no value"));
      }
    } else if (spec->value_name.empty()) {
      value = "true";
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " needs a value (", spec->value_name, ")"));
    }
    if (!spec->choices.empty() &&
        std::find(spec->choices.begin(), spec->choices.end(), value) == spec->choices.end()) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, ": '", value,
                                                     "' is not allowed; one of ",
                                                     absl::StrJoin(spec->choices, ", ")));
    }
    if (spec->repeatable && out.flags.contains(name)) {
      out.flags[name] += '\x1f' + value;
    } else {
      out.flags[name] = value;
    }
  }
  for (const auto& spec : specs) {
    if (!out.flags.contains(spec.name) && !spec.default_value.empty()) {
      out.flags[spec.name] = spec.default_value;
    }
  }
  return out;
}

std::string FlagsHelp(const std::vector<FlagSpec>& specs) {
  std::string out = "Flags:\n";
  std::vector<std::string> left;
  size_t width = 0;
  for (const auto& spec : specs) {
    left.push_back(absl::StrCat(spec.name == "output" ? "-o, " : "", "--", spec.name,
                                spec.value_name.empty() ? "" : " ", spec.value_name));
    width = std::max(width, left.back().size());
  }
  left.push_back("-h, --help");
  width = std::max(width, left.back().size());
  for (size_t i = 0; i <= specs.size(); ++i) {
    std::string help = i < specs.size() ? specs[i].help : "show this help";
    if (i < specs.size() && !specs[i].choices.empty()) {
      absl::StrAppend(&help, " (", absl::StrJoin(specs[i].choices, "|"), ")");
    }
    if (i < specs.size() && !specs[i].default_value.empty()) {
      absl::StrAppend(&help, " [default: ", specs[i].default_value, "]");
    }
    absl::StrAppend(&out, "  ", left[i], std::string(width - left[i].size() + 2, ' '), help, "\n");
  }
  return out;
}

}  // namespace sweepd::cli
