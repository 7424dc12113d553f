// sweepctl: the command-line client of sweepd.

#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/command.h"

namespace sweepd::cli {
namespace {

constexpr char kVersion[] = "0.1.0";

std::vector<Command> AllCommands() {
  std::vector<Command> commands = SpecCommands();
  for (auto& c : ServerCommands()) commands.push_back(std::move(c));
  commands.push_back(SimulateCommand());
  return commands;
}

void PrintTopHelp(std::ostream& out, const std::vector<Command>& commands) {
  out << "sweepctl: submit, watch and query hyperparameter sweeps run by sweepd.\n\n"
      << "Usage: sweepctl COMMAND [ARGS] [FLAGS]\n\nCommands:\n";
  size_t width = 0;
  for (const auto& c : commands) width = std::max(width, c.name.size());
  for (const auto& c : commands) {
    out << "  " << c.name << std::string(width - c.name.size() + 2, ' ') << c.summary << "\n";
  }
  out << "\nRun 'sweepctl COMMAND --help' for a command's flags.\n"
      << "Exit codes: 0 success, 1 the command failed, 2 the command line was wrong.\n";
}

void PrintCommandHelp(std::ostream& out, const Command& c) {
  out << "Usage: " << c.usage << "\n\n" << c.description << "\n\n" << FlagsHelp(c.flags);
}

int Main(int argc, char** argv) {
  const std::vector<Command> commands = AllCommands();
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    PrintTopHelp(std::cerr, commands);
    return kExitUsage;
  }
  if (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
    PrintTopHelp(std::cout, commands);
    return kExitOk;
  }
  if (args[0] == "--version" || args[0] == "version") {
    std::cout << "sweepctl " << kVersion << "\n";
    return kExitOk;
  }
  const Command* command = nullptr;
  for (const auto& c : commands) {
    if (c.name == args[0]) command = &c;
  }
  if (command == nullptr) {
    std::cerr << "sweepctl: unknown command '" << args[0] << "'; run 'sweepctl --help'\n";
    return kExitUsage;
  }
  auto parsed = ParseArgs({args.begin() + 1, args.end()}, command->flags);
  if (!parsed.ok()) {
    std::cerr << "sweepctl " << command->name << ": " << parsed.status().message() << "\n";
    return kExitUsage;
  }
  if (parsed->help) {
    PrintCommandHelp(std::cout, *command);
    return kExitOk;
  }
  const int n = static_cast<int>(parsed->positional.size());
  if (n < command->min_args || (command->max_args >= 0 && n > command->max_args)) {
    std::cerr << "sweepctl " << command->name
              << ": wrong number of arguments\nUsage: " << command->usage << "\n";
    return kExitUsage;
  }
  return command->run(*parsed, std::cout, std::cerr);
}

}  // namespace
}  // namespace sweepd::cli

int main(int argc, char** argv) { return sweepd::cli::Main(argc, argv); }
