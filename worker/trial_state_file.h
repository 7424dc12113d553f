#pragma once

// A trial's state file: written by the agent when the trial starts (and when its client first
// reports), kept until sweepd has its exit. It holds what a restarted agent needs to take the
// trial over, or at least to kill it so its GPUs are never handed out twice.
//
// Thread safety: free functions over files; one writer per file (the agent's trial loop).

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sweepd::worker {

struct TrialState {
  std::string trial_id;
  std::string sweep_id;
  // The shim's process (the trial's group leader), and its start time in clock ticks: a pid
  // alone may have been reused by the time the agent comes back.
  pid_t pid = 0;
  uint64_t start_ticks = 0;
  // The shim's end of the pipe that tells it the agent is alive (-1: no shim).
  int keep_fd = -1;
  std::string exit_file;  // where the shim records how the command ended
  std::vector<int32_t> gpu_indices;
  int node_rank = 0;
  int32_t attempt = 0;  // Assign.attempt; 0 in files of agents that did not keep it
  std::string socket_path;
  std::string workdir;
  std::string metric_pattern;
  std::string cgroup_dir;
  bool client_reported = false;
  bool finished = false;
  double start_unix = 0;
};

// Whether `id` (a trial's or sweep's) is safe as one path component: what sweepd makes, and
// nothing that could climb out of the workdir.
bool SafeId(const std::string& id);

// Writes the file whole or not at all (a temporary file renamed over it): a torn file would
// leave a restarted agent unable to take the trial over or even kill it. On failure (a full
// disk) the previous file stays.
absl::Status WriteTrialState(const std::string& path, const TrialState& state);

// What a state file read back holds. `state` fails when the file is not a whole state of this
// format (an older agent's "pid ticks gpus" line, a damaged file, ids unfit for a path); `pid`
// and `start_ticks` are still filled in whenever they could be read, so the process can be
// killed.
struct ReadTrialStateResult {
  absl::StatusOr<TrialState> state;
  pid_t pid = 0;
  uint64_t start_ticks = 0;
};
ReadTrialStateResult ReadTrialState(const std::string& path);

}  // namespace sweepd::worker
