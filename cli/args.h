#pragma once

// A small command-line parser for sweepctl's `git`-style subcommands: `--flag=value`,
// `--flag value`, boolean `--flag`, `-h`/`--help`, and `--` ending the flags.

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace sweepd::cli {

struct FlagSpec {
  std::string name;  // without dashes
  // Placeholder shown in help (`N`, `FORMAT`); empty for a boolean flag.
  std::string value_name;
  std::string help;
  std::string default_value;
  // Allowed values, when the set is closed (`table`, `json`).
  std::vector<std::string> choices;
  // May be given several times; the values are joined with '\x1f' (unit separator).
  bool repeatable = false;
};

struct ParsedArgs {
  std::vector<std::string> positional;
  std::map<std::string, std::string> flags;  // booleans map to "true"
  bool help = false;

  std::string Get(const std::string& name) const;
  bool Has(const std::string& name) const { return flags.contains(name); }
};

// Parses `args` (after the subcommand) against `specs`; defaults are filled in. Errors name the
// flag and what is allowed.
absl::StatusOr<ParsedArgs> ParseArgs(const std::vector<std::string>& args,
                                     const std::vector<FlagSpec>& specs);

// The flags section of a command's --help.
std::string FlagsHelp(const std::vector<FlagSpec>& specs);

}  // namespace sweepd::cli
