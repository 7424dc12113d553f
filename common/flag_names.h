#pragma once

// Lets the daemons take `--log-level` as well as Abseil's `--log_level`: users type hyphens (as
// in kubectl and git), Abseil flag names have underscores. And makes their `--help` list their
// own flags.

#include <string>

#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace sweepd {

// `--help` and `--helpshort` list the flags defined in the daemon's main.cc (Abseil's default
// looks for a file named after the program, finds none, and prints "No flags matched").
inline void ShowOwnFlagsInHelp() {
  absl::FlagsUsageConfig config;
  config.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "main.cc");
  };
  config.contains_helpshort_flags = config.contains_help_flags;
  config.version_string = [] { return std::string("sweepd 0.1.0\n"); };
  absl::SetFlagsUsageConfig(config);
}

// Rewrites, in place, hyphens to underscores in the name part of every `--flag[=value]`
// argument (not in values, not after a bare `--`).
inline void NormalizeFlagNames(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    if (arg[0] != '-' || arg[1] != '-') continue;
    if (arg[2] == '\0') break;  // `--` ends the flags
    for (char* c = arg + 2; *c != '\0' && *c != '='; ++c) {
      if (*c == '-') *c = '_';
    }
  }
}

}  // namespace sweepd
