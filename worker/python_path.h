#pragma once

#include <string>

namespace sweepd::worker {

// The folder holding the `sweepd` Python package that ships with this binary: the source tree's
// python/ for a build-tree binary, or PREFIX/share/sweepd/python when installed. Empty when
// neither exists.
std::string DefaultPythonPath();

}  // namespace sweepd::worker
