#pragma once

// One sweepctl subcommand: its name, help and flags, and the function that runs it.

#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "cli/args.h"

namespace sweepd::cli {

// Exit codes, as git and kubectl users expect: 0 success, 1 the command failed (bad spec,
// server error), 2 the command line itself was wrong.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;
inline constexpr int kExitUsage = 2;

struct Command {
  std::string name;
  std::string summary;  // one line for `sweepctl --help`
  std::string usage;    // `sweepctl preview FILE [flags]`
  std::string description;
  std::vector<FlagSpec> flags;
  // Positional arguments: at least min_args, at most max_args (-1 = any number).
  int min_args = 0;
  int max_args = 0;
  std::function<int(const ParsedArgs&, std::ostream& out, std::ostream& err)> run;
};

// Commands that work on spec files without a scheduler: validate, preview.
std::vector<Command> SpecCommands();

// Commands that talk to sweepd, and `run`, which embeds one.
std::vector<Command> ServerCommands();

// `simulate`: search and pruning in virtual time.
Command SimulateCommand();

}  // namespace sweepd::cli
