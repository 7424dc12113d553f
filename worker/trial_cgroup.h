#pragma once

// A cgroup (v2) per trial, where this agent may create them: every process a trial starts stays
// in it, whatever it does to its session or process group, so the trial ends with all of them
// (cgroup.kill), and its CPU time and peak memory can be read. The mechanism Slurm, systemd and
// Kubernetes use for the same job. Where cgroup v2 is not mounted or not writable (no
// delegation), the agent falls back on being a subreaper (trial_process.h: KillAdoptedOrphans)
// and the shim's own clean-up (trial_shim.cc); both paths are tested.
//
// Thread safety: free functions over the cgroup file system; callers own each trial's directory.

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"

namespace sweepd::worker {

// Where trial cgroups go: the agent's own cgroup v2 folder, if it can create folders there.
// Errors say why not (no cgroup2 mount, not writable), for the one log line that says which way
// trials are contained.
absl::StatusOr<std::string> FindTrialCgroupParent();

struct CgroupUsage {
  std::optional<double> cpu_seconds;          // cpu.stat usage_usec
  std::optional<uint64_t> peak_memory_bytes;  // memory.peak, with the memory controller
};

// Creates `parent/name` (empty folder already there: reused, for a trial taken over).
absl::StatusOr<std::string> CreateTrialCgroup(const std::string& parent, const std::string& name);
// Kills every process in the cgroup (cgroup.kill, or one by one on kernels before 5.14).
void KillCgroup(const std::string& dir);
// Whether any process is left in it.
bool CgroupPopulated(const std::string& dir);
CgroupUsage ReadCgroupUsage(const std::string& dir);
// Removes the (empty) cgroup; false while processes remain.
bool RemoveCgroup(const std::string& dir);

}  // namespace sweepd::worker
