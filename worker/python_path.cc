#include "worker/python_path.h"

#include <filesystem>

namespace sweepd::worker {

std::string DefaultPythonPath() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const auto dir = exe.parent_path();
  for (const auto& candidate :
       {dir / ".." / ".." / "python", dir / ".." / "share" / "sweepd" / "python",
        dir / ".." / "python"}) {
    if (std::filesystem::exists(candidate / "sweepd" / "__init__.py", ec)) {
      return std::filesystem::canonical(candidate, ec).string();
    }
  }
  return "";
}

std::string DefaultTrialShim() {
  std::error_code ec;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const auto shim = exe.parent_path() / "sweep-trial-shim";
  return std::filesystem::exists(shim, ec) ? shim.string() : "";
}

}  // namespace sweepd::worker
