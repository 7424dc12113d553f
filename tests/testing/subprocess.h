#pragma once

// Runs a real program to completion for tests: argv in, exit status and output out.

#include <functional>
#include <string>
#include <vector>

namespace sweepd::testing {

struct ProcessResult {
  // Exit code, or 128 + signal when killed by one.
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with the given arguments; `input` is written to its standard input.
ProcessResult RunProcess(const std::vector<std::string>& argv, const std::string& input = "");

// Starts argv in the background with stdout and stderr appended to `log_path`; returns its pid
// (-1 on failure). The caller signals and reaps it.
int SpawnProcess(const std::vector<std::string>& argv, const std::string& log_path);

// Polls `condition` until it holds or `timeout_ms` passes; returns whether it held.
bool WaitFor(const std::function<bool()>& condition, int timeout_ms);

// Path of a built binary, e.g. BinaryPath("cli/sweepctl").
std::string BinaryPath(const std::string& relative);

// Path of a file in the source tree, e.g. SourcePath("examples/grid/sweep.yaml").
std::string SourcePath(const std::string& relative);

}  // namespace sweepd::testing
