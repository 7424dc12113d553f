#pragma once

// Where the files that ship with the agent are. Thread safety: pure functions of the binary's
// location and the file system.

#include <string>

namespace sweepd::worker {

// The folder holding the `sweepd` Python package that ships with this binary: the source tree's
// python/ for a build-tree binary, or PREFIX/share/sweepd/python when installed. Empty when
// neither exists.
std::string DefaultPythonPath();

// sweep-trial-shim next to this binary (build tree and install both put it there), or empty.
std::string DefaultTrialShim();

}  // namespace sweepd::worker
