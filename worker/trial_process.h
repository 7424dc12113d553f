#pragma once

// One trial's process: started in a process group of its own (setsid), stdout read through a
// pipe (so the agent can log it and parse metric lines), stderr to a file, and stopped by
// signalling the whole group, grandchildren included. Not thread-safe: the agent's trial loop
// owns each TrialProcess.

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace sweepd::worker {

struct LaunchSpec {
  // argv[0] is looked up in PATH (from `env`) when it has no slash.
  std::vector<std::string> argv;
  // The complete environment of the process.
  std::map<std::string, std::string> env;
  std::string workdir;
  std::string stderr_path;
  // sweep-trial-shim: when set, the command runs as the shim's child, so it can outlive the
  // agent (see trial_shim.cc) and its end is recorded in exit_file.
  std::string shim;
  std::string exit_file;
  // A cgroup (v2) folder the trial runs in (trial_cgroup.h): the shim joins it before it starts
  // the command. Empty: none.
  std::string cgroup_dir;
};

struct ExitStatus {
  int exit_code = 0;  // when exited normally
  int signal = 0;     // when killed by a signal
};

class TrialProcess {
 public:
  // Starts the process. Errors name what failed (a missing program is FAILED_PRECONDITION).
  static absl::StatusOr<std::unique_ptr<TrialProcess>> Start(const LaunchSpec& spec);
  // Takes over a trial an earlier run of the agent started through the shim: `pid` (the shim,
  // leader of the group) must still be the process that started at `start_ticks`. Its stdout
  // pipe is opened again through the shim's KEEP_FD; its end is read from `exit_file`, since
  // this process is not its parent.
  static absl::StatusOr<std::unique_ptr<TrialProcess>> Adopt(pid_t pid, uint64_t start_ticks,
                                                             int keep_fd,
                                                             const std::string& exit_file);
  // A trial whose leader `pid` ended while no agent watched it: Poll() reports what
  // `exit_file` says; what is left of its group (a pgid stays unused while members live) is
  // still killed with it.
  static std::unique_ptr<TrialProcess> Ended(pid_t pid, const std::string& exit_file);
  // Kills the group (SIGKILL) and reaps it if still running: no orphans, ever.
  ~TrialProcess();
  TrialProcess(const TrialProcess&) = delete;
  TrialProcess& operator=(const TrialProcess&) = delete;

  // Process id, also the process group id.
  pid_t pid() const { return pid_; }
  // Read end of the stdout pipe (non-blocking); -1 once closed by CloseStdout().
  int stdout_fd() const { return stdout_fd_; }
  void CloseStdout();
  // Hands the read end over to the caller (who closes it); -1 if there is none.
  int ReleaseStdout() { return std::exchange(stdout_fd_, -1); }

  // Reaps the process if it exited; returns its status from then on.
  std::optional<ExitStatus> Poll();
  // Blocks until exit, at most `timeout`.
  std::optional<ExitStatus> Wait(std::chrono::milliseconds timeout);
  // Sends `sig` to the whole process group.
  void SignalGroup(int sig);
  // Whether any process of the group is still alive (the leader may have exited first).
  bool GroupAlive() const;

  // The leader's start time (clock ticks since boot): with the pid, names it for good.
  uint64_t start_ticks() const { return start_ticks_; }
  // The shim's copy of the stdout pipe's read end (-1 without a shim).
  int keep_fd() const { return keep_fd_; }
  bool adopted() const { return adopted_; }
  // Leaves the process running when this object goes (its shim carries on; a later agent takes
  // it over), instead of killing its group.
  void Detach() { detached_ = true; }

 private:
  TrialProcess(pid_t pid, int stdout_fd) : pid_(pid), stdout_fd_(stdout_fd) {}
  pid_t pid_;
  int stdout_fd_;
  std::optional<ExitStatus> exit_;
  uint64_t start_ticks_ = 0;
  int keep_fd_ = -1;
  bool adopted_ = false;
  bool detached_ = false;
  std::string exit_file_;
};

// The start time of a process in clock ticks since boot (/proc/PID/stat field 22), or 0 when
// there is no such process or it is a zombie.
uint64_t ProcessStartTicks(pid_t pid);

// Makes this process the reaper of orphaned descendants (PR_SET_CHILD_SUBREAPER): a trial's
// grandchildren whose parent died re-parent to the agent instead of init, so the agent can see
// and reap them.
absl::Status BecomeSubreaper();

// Kills this process's children that are neither trial leaders (`leaders`) nor in this
// process's own session: as a subreaper, those are what trials left behind after their shim was
// killed (a `setsid` child outliving a SIGKILLed trial). The agent's own helpers (nvidia-smi)
// share its session and are left alone. Those already dead are reaped; the ones it kills are
// reaped by the next call. Returns the pids it signalled.
std::vector<pid_t> KillAdoptedOrphans(const std::vector<pid_t>& leaders);

// Reaps exited children that are not trial leaders (orphaned grandchildren). Leaders in
// `leaders` are left for their TrialProcess to reap. Returns how many were reaped.
int ReapOrphans(const std::vector<pid_t>& leaders);

// Splits `data` into complete lines, keeping a partial last line in `pending` for the next call.
// Lines longer than `max_line` are cut (a flooding script cannot exhaust memory).
std::vector<std::string> SplitLines(std::string& pending, const char* data, size_t size,
                                    size_t max_line = 64 * 1024);

}  // namespace sweepd::worker
