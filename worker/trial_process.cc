#include "worker/trial_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sweepd::worker {
namespace {

// Resolves a program name against PATH as execvp would, so a missing program is an error the
// agent can report instead of a child that exits 127.
absl::StatusOr<std::string> ResolveProgram(const std::string& name,
                                           const std::map<std::string, std::string>& env) {
  if (name.find('/') != std::string::npos) {
    if (access(name.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot execute ", name, ": ", std::strerror(errno)));
    }
    return name;
  }
  auto it = env.find("PATH");
  const std::string path = it != env.end() ? it->second : "/usr/local/bin:/usr/bin:/bin";
  for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty())) {
    std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("program '", name, "' not found in PATH (", path, ")"));
}

// Every trial leader this process started and has not yet destroyed, across all the agents in
// it (`sweepctl run` embeds one per loopback node): one agent's clean-up must never kill or reap
// another's trial. Held across posix_spawn, so a leader is registered before any scan sees it.
std::mutex& LeadersMu() {
  static std::mutex mu;
  return mu;
}
std::set<pid_t>& Leaders() {
  static std::set<pid_t> leaders;
  return leaders;
}

// This process's children (zombies included), from each thread's children list.
std::vector<pid_t> ChildPids() {
  std::vector<pid_t> pids;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream in(task.path() / "children");
    for (pid_t pid; in >> pid;) pids.push_back(pid);
  }
  return pids;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TrialProcess>> TrialProcess::Start(const LaunchSpec& spec) {
  if (spec.argv.empty()) return absl::InvalidArgumentError("empty command");
  auto program = ResolveProgram(spec.argv[0], spec.env);
  if (!program.ok()) return program.status();

  int out_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  const int err_fd = open(spec.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (err_fd < 0) {
    close(out_pipe[0]);
    close(out_pipe[1]);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", spec.stderr_path, ": ", std::strerror(errno)));
  }
  const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  // With the shim, it holds a copy of the pipe's read end at keep_fd (see trial_shim.cc).
  const int keep_fd = spec.shim.empty() ? -1 : (out_pipe[0] == 3 ? 4 : 3);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, null_fd, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
  if (keep_fd >= 0) posix_spawn_file_actions_adddup2(&actions, out_pipe[0], keep_fd);
  posix_spawn_file_actions_addchdir_np(&actions, spec.workdir.c_str());
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // A session (and so a process group) of its own: stopping the trial signals the group.
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<std::string> args = spec.argv;
  std::string executable = *program;
  if (!spec.shim.empty()) {
    args[0] = *program;
    if (spec.cgroup_dir.empty()) {
      args.insert(args.begin(), {spec.shim, spec.exit_file, std::to_string(keep_fd), "--"});
    } else {
      args.insert(args.begin(),
                  {spec.shim, spec.exit_file, std::to_string(keep_fd), spec.cgroup_dir, "--"});
    }
    executable = spec.shim;
  }
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : spec.env) env_strings.push_back(absl::StrCat(k, "=", v));
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);

  pid_t pid = 0;
  std::unique_lock<std::mutex> registry(LeadersMu());
  const int rc = posix_spawn(&pid, executable.c_str(), &actions, &attr, argv.data(), envp.data());
  if (rc == 0) Leaders().insert(pid);
  registry.unlock();
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(out_pipe[1]);
  close(err_fd);
  if (null_fd >= 0) close(null_fd);
  if (rc != 0) {
    close(out_pipe[0]);
    return absl::FailedPreconditionError(
        absl::StrCat("cannot start ", *program, " in ", spec.workdir, ": ", std::strerror(rc)));
  }
  if (spec.shim.empty() && !spec.cgroup_dir.empty()) {
    // No shim to join it before the command runs: join it now (what it forked meanwhile, if
    // anything, is still killed with its group).
    std::ofstream(spec.cgroup_dir + "/cgroup.procs") << pid;
  }
  fcntl(out_pipe[0], F_SETFL, fcntl(out_pipe[0], F_GETFL) | O_NONBLOCK);
  std::unique_ptr<TrialProcess> process(new TrialProcess(pid, out_pipe[0]));
  process->start_ticks_ = ProcessStartTicks(pid);
  process->keep_fd_ = keep_fd;
  process->exit_file_ = spec.exit_file;
  return process;
}

absl::StatusOr<std::unique_ptr<TrialProcess>> TrialProcess::Adopt(pid_t pid, uint64_t start_ticks,
                                                                  int keep_fd,
                                                                  const std::string& exit_file) {
  if (pid <= 1 || start_ticks == 0 || ProcessStartTicks(pid) != start_ticks) {
    return absl::NotFoundError(absl::StrCat("process ", pid, " is gone"));
  }
  // The same pipe, opened again through the shim's descriptor.
  const int fd =
      open(absl::StrCat("/proc/", pid, "/fd/", keep_fd).c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot open the stdout pipe of process ",
                                                      pid, " (fd ", keep_fd,
                                                      "): ", std::strerror(errno)));
  }
  std::unique_ptr<TrialProcess> process(new TrialProcess(pid, fd));
  process->start_ticks_ = start_ticks;
  process->keep_fd_ = keep_fd;
  process->adopted_ = true;
  process->exit_file_ = exit_file;
  return process;
}

std::unique_ptr<TrialProcess> TrialProcess::Ended(pid_t pid, const std::string& exit_file) {
  std::unique_ptr<TrialProcess> process(new TrialProcess(pid, -1));
  process->adopted_ = true;
  process->exit_file_ = exit_file;
  return process;
}

TrialProcess::~TrialProcess() {
  if (detached_) {
    CloseStdout();
    return;
  }
  if (GroupAlive()) SignalGroup(SIGKILL);
  if (!exit_ && !adopted_) {
    int status = 0;
    while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  CloseStdout();
  std::lock_guard<std::mutex> registry(LeadersMu());
  Leaders().erase(pid_);
}

void TrialProcess::CloseStdout() {
  if (stdout_fd_ >= 0) close(stdout_fd_);
  stdout_fd_ = -1;
}

std::optional<ExitStatus> TrialProcess::Poll() {
  if (exit_) return exit_;
  if (adopted_) {
    // Not our child: gone when its start time no longer matches (exited, reaped or a zombie);
    // the shim wrote how the command ended. No record: the shim itself was killed (SIGKILL).
    if (pid_ > 0 && start_ticks_ != 0 && ProcessStartTicks(pid_) == start_ticks_) {
      return std::nullopt;
    }
    ExitStatus e{.exit_code = 0, .signal = SIGKILL};
    std::ifstream in(exit_file_);
    std::string kind;
    int value = 0;
    if (in >> kind >> value) {
      e = kind == "exit" ? ExitStatus{.exit_code = value, .signal = 0}
                         : ExitStatus{.exit_code = 0, .signal = value};
    }
    exit_ = e;
    return exit_;
  }
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return std::nullopt;
  ExitStatus e;
  if (WIFEXITED(status)) e.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) e.signal = WTERMSIG(status);
  exit_ = e;
  return exit_;
}

std::optional<ExitStatus> TrialProcess::Wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto delay = std::chrono::microseconds(200);
  while (true) {
    if (auto e = Poll()) return e;
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::microseconds(20'000));
  }
}

void TrialProcess::SignalGroup(int sig) {
  if (pid_ > 1) kill(-pid_, sig);
}

uint64_t ProcessStartTicks(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= stat.size()) return 0;
  std::istringstream fields(stat.substr(close_paren + 2));
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
    if (i == 3 && field == "Z") return 0;  // exited, not yet reaped
    if (i == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return 0;
}

bool TrialProcess::GroupAlive() const { return pid_ > 1 && kill(-pid_, 0) == 0; }

absl::Status BecomeSubreaper() {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return absl::InternalError(
        absl::StrCat("prctl(PR_SET_CHILD_SUBREAPER): ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::vector<pid_t> KillAdoptedOrphans(const std::vector<pid_t>& leaders) {
  std::vector<pid_t> killed;
  const pid_t own_session = getsid(0);
  std::lock_guard<std::mutex> registry(LeadersMu());
  for (pid_t pid : ChildPids()) {
    if (pid <= 1 || Leaders().contains(pid) ||
        std::find(leaders.begin(), leaders.end(), pid) != leaders.end()) {
      continue;
    }
    const pid_t session = getsid(pid);
    if (session < 0 || session == own_session) continue;  // gone, or the agent's own helper
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) continue;  // already dead: reaped, not killed
    if (kill(pid, SIGKILL) == 0) killed.push_back(pid);   // reaped on the next call
  }
  return killed;
}

int ReapOrphans(const std::vector<pid_t>& leaders) {
  int reaped = 0;
  std::lock_guard<std::mutex> registry(LeadersMu());
  for (pid_t pid : ChildPids()) {
    // A leader's status is its TrialProcess's to collect, whichever agent of this process owns
    // it; helpers (nvidia-smi) are waited for by whoever started them, never reaped here.
    if (pid <= 1 || Leaders().contains(pid) ||
        std::find(leaders.begin(), leaders.end(), pid) != leaders.end() ||
        getsid(pid) == getsid(0)) {
      continue;
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) ++reaped;
  }
  return reaped;
}

std::vector<std::string> SplitLines(std::string& pending, const char* data, size_t size,
                                    size_t max_line) {
  std::vector<std::string> lines;
  for (size_t i = 0; i < size; ++i) {
    const char c = data[i];
    if (c == '\n') {
      lines.push_back(std::move(pending));
      pending.clear();
    } else if (pending.size() < max_line) {
      pending.push_back(c);
    }
  }
  return lines;
}

}  // namespace sweepd::worker
