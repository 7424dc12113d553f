#include "worker/trial_cgroup.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace sweepd::worker {
namespace {

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WriteSmallFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace

absl::StatusOr<std::string> FindTrialCgroupParent() {
  // The cgroup2 mount (/sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one).
  std::string mount;
  std::ifstream mountinfo("/proc/self/mountinfo");
  for (std::string line; std::getline(mountinfo, line);) {
    const std::vector<std::string> fields = absl::StrSplit(line, ' ');
    for (size_t i = 0; i + 1 < fields.size(); ++i) {
      if (fields[i] == "-" && fields[i + 1] == "cgroup2" && fields.size() > 4) {
        mount = fields[4];
        break;
      }
    }
    if (!mount.empty()) break;
  }
  if (mount.empty()) return absl::NotFoundError("no cgroup v2 hierarchy is mounted");
  // This process's own cgroup in it: the "0::/path" line.
  std::string own;
  std::ifstream cgroup("/proc/self/cgroup");
  for (std::string line; std::getline(cgroup, line);) {
    if (absl::StartsWith(line, "0::")) own = line.substr(3);
  }
  if (own.empty()) return absl::NotFoundError("this process has no cgroup v2 path");
  const std::string parent = own == "/" ? mount : mount + own;
  const std::string probe = absl::StrCat(parent, "/sweep-agent-probe-", getpid());
  if (mkdir(probe.c_str(), 0755) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create cgroups under ", parent, ": ", std::strerror(errno),
                     " (run the agent with a delegated cgroup, e.g. systemd's Delegate=yes)"));
  }
  const bool can_join = access((probe + "/cgroup.procs").c_str(), W_OK) == 0;
  rmdir(probe.c_str());
  if (!can_join) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot move processes into cgroups under ", parent));
  }
  return parent;
}

absl::StatusOr<std::string> CreateTrialCgroup(const std::string& parent, const std::string& name) {
  const std::string dir = absl::StrCat(parent, "/", name);
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create cgroup ", dir, ": ", std::strerror(errno)));
  }
  return dir;
}

bool CgroupPopulated(const std::string& dir) {
  const std::string events = ReadSmallFile(dir + "/cgroup.events");
  if (!events.empty()) return events.find("populated 1") != std::string::npos;
  return !absl::StripAsciiWhitespace(ReadSmallFile(dir + "/cgroup.procs")).empty();
}

void KillCgroup(const std::string& dir) {
  if (access((dir + "/cgroup.kill").c_str(), W_OK) == 0 &&
      WriteSmallFile(dir + "/cgroup.kill", "1")) {
    return;
  }
  // Before Linux 5.14: one by one. A process forking meanwhile is in the cgroup too, so a few
  // rounds catch the children of those killed in the last.
  for (int round = 0; round < 50 && CgroupPopulated(dir); ++round) {
    std::istringstream procs(ReadSmallFile(dir + "/cgroup.procs"));
    for (pid_t pid; procs >> pid;) {
      if (pid > 1) kill(pid, SIGKILL);
    }
    usleep(10000);
  }
}

CgroupUsage ReadCgroupUsage(const std::string& dir) {
  CgroupUsage usage;
  std::istringstream cpu(ReadSmallFile(dir + "/cpu.stat"));
  for (std::string key, value; cpu >> key >> value;) {
    uint64_t usec = 0;
    if (key == "usage_usec" && absl::SimpleAtoi(value, &usec)) usage.cpu_seconds = usec / 1e6;
  }
  uint64_t peak = 0;
  if (absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadSmallFile(dir + "/memory.peak")), &peak)) {
    usage.peak_memory_bytes = peak;
  }
  return usage;
}

bool RemoveCgroup(const std::string& dir) { return rmdir(dir.c_str()) == 0 || errno == ENOENT; }

}  // namespace sweepd::worker
