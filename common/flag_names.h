#pragma once

// Lets the daemons take `--log-level` as well as Abseil's `--log_level`: users type hyphens (as
// in kubectl and git), Abseil flag names have underscores.

namespace sweepd {

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
