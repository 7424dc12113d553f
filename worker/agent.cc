// The agent's trial loop: taking Assigns and Stops from sweepd, starting trials, serving their
// reporting sockets, relaying reports until acknowledged, noticing exits, cleaning up, and
// leaving gracefully. About 1,200 lines, over the 600 the core aims for, for a written reason:
// what is left here is the one thread that owns the trials map and the outbox, and every
// function below reads or changes both. The parts with a boundary of their own are out:
// worker/scheduler_connection (the stream and reconnects), worker/trial_launch (command and
// environment), worker/trial_state_file (takeover after a crash), worker/report_buffer
// (numbering, acks, spill), worker/trial_process and trial_output (the processes and their
// stdout). Each is tested without this loop; the loop itself is tested end to end
// (tests/integration), with real processes, sockets and signals.

#include "worker/agent.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/command_template.h"
#include "common/logging.h"
#include "worker/agent_identity.h"
#include "worker/checkpoint_clone.h"
#include "worker/report_protocol.h"
#include "worker/scheduler_connection.h"
#include "worker/trial_cgroup.h"
#include "worker/trial_launch.h"
#include "worker/trial_output.h"
#include "worker/trial_process.h"
#include "worker/trial_state_file.h"

namespace sweepd::worker {
namespace {

constexpr size_t kMaxBatchReports = 256;
// Reports sent but not acknowledged for this long go out again (sweepd refuses metrics while
// its store cannot commit; an acknowledgement may be lost). Storing is idempotent by seq.
constexpr double kResendAfterSeconds = 10;
// After a trial's leader ends, how long its stdout may take to end (every writer gone) before
// the agent stops reading it.
constexpr double kOutputAfterExitSeconds = 5;
// Reports taken from one trial's stdout per turn of the loop: a trial printing metrics as fast as
// it can does not delay the others' turn.
constexpr size_t kMaxReportsPerTurn = 5000;

std::string Hostname() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return name;
}

// The last few lines of a file, for a failed trial's reason.
std::string Tail(const std::string& path, size_t max_bytes = 400) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const auto size = static_cast<size_t>(in.tellg());
  const size_t start = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(start));
  std::string text(size - start, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (start > 0) {
    const size_t nl = text.find('\n');
    if (nl != std::string::npos) text = text.substr(nl + 1);
  }
  const size_t last_line = text.rfind('\n');
  return last_line == std::string::npos ? text : text.substr(last_line + 1);
}

// A TCP port free on every interface right now, for node 0's rendezvous (torchrun's
// MASTER_PORT). It is free when chosen; the trial binds it moments later.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

}  // namespace

struct Agent::Client {
  int fd = -1;
  std::string pending;
  bool closed = false;
};

struct Agent::Trial {
  std::string id;
  std::string sweep_id;
  std::unique_ptr<TrialProcess> process;
  std::string workdir;
  std::string socket_path;
  int listen_fd = -1;
  std::vector<Client> clients;
  std::unique_ptr<TrialOutput> output;  // reads stdout on its own thread
  std::string cgroup_dir;               // its cgroup (trial_cgroup.h); empty: none
  bool client_reported = false;         // once the client reports, stdout lines are only logged
  bool finished = false;                // the client sent finish: later reports are refused
  // Its reports until sweepd acknowledges them (numbering, spill file, what is in flight).
  std::unique_ptr<ReportBuffer> reports;
  double waiting_since = 0;  // when the oldest sent report went out (or was last acked)
  int64_t next_step = 0;
  std::vector<int32_t> gpu_indices;
  int node_rank = 0;    // this node's rank in a multi-node trial; only node 0 relays metrics
  int32_t attempt = 0;  // Assign.attempt: sweepd takes back only the attempt it placed (0: unknown)
  bool warned_not_rank0 = false;
  std::string state_file;
  std::string metric_pattern;
  std::string exit_file;  // where the shim records how the command ended
  double start_unix = 0;  // wall clock, for a restarted agent's wall_seconds
  double start = 0;
  bool stop_requested = false;
  bool interrupted = false;         // stopped by the agent itself, leaving
  bool checkpoint_on_stop = false;  // paused by sweepd: it runs again from its checkpoint
  // Checkpoint reports not yet acknowledged (seq, step), and the newest step sweepd stored: the
  // client deletes older checkpoint files only once a newer one is recorded.
  std::deque<std::pair<int64_t, int64_t>> pending_checkpoints;
  int64_t recorded_checkpoint = -1;
  // A pbt copy is still to take this step's checkpoint (sweepd's acks say): the client keeps it.
  int64_t keep_checkpoint = -1;
  std::string stop_reason;
  int grace_seconds = 30;
  double term_at = 0, kill_at = 0;
  bool term_sent = false, kill_sent = false;
  bool exited = false;
  // The leader has ended (how, here); the trial is `exited` once its output is read too.
  std::optional<ExitStatus> pending_exit;
  double exit_seen_at = 0;
  std::optional<v1::AgentMessage> exit_message;  // kept until sweepd says the exit is durable
  bool exit_acked = false;
  std::string stderr_path;
};

namespace {

// A listening reporting socket at `path` (mode 0600), or -1 with errno set.
int ListenOn(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 16) != 0) {
    const int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  chmod(path.c_str(), 0600);
  return fd;
}

}  // namespace

// Written when a trial starts (and when its client first reports): what a restarted agent needs
// to take the trial over, or at least to kill it (worker/trial_state_file.h).
void Agent::WriteStateFile(const Trial& trial) {
  const absl::Status written =
      WriteTrialState(trial.state_file, {.trial_id = trial.id,
                                         .sweep_id = trial.sweep_id,
                                         .pid = trial.process->pid(),
                                         .start_ticks = trial.process->start_ticks(),
                                         .keep_fd = trial.process->keep_fd(),
                                         .exit_file = trial.exit_file,
                                         .gpu_indices = trial.gpu_indices,
                                         .node_rank = trial.node_rank,
                                         .attempt = trial.attempt,
                                         .socket_path = trial.socket_path,
                                         .workdir = trial.workdir,
                                         .metric_pattern = trial.metric_pattern,
                                         .cgroup_dir = trial.cgroup_dir,
                                         .client_reported = trial.client_reported,
                                         .finished = trial.finished,
                                         .start_unix = trial.start_unix});
  if (!written.ok()) {
    LogError({.trial = trial.id}, "{}; a restarted agent may not find this trial",
             written.message());
  }
}

Agent::Agent(AgentOptions options) : options_(std::move(options)) {}

Agent::~Agent() {
  Stop();
  connection_.reset();  // its thread ends before what its callbacks use goes
  if (gpu_thread_.joinable()) gpu_thread_.join();
  for (int fd : wake_pipe_) {
    if (fd >= 0) close(fd);
  }
  if (!runtime_dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(runtime_dir_, ec);
  }
}

void Agent::Stop() {
  stopping_ = true;
  {
    std::lock_guard<std::mutex> lock(connection_mu_);
    if (connection_) connection_->Stop();
  }
  Wake();
}

void Agent::Leave() {
  leave_requested_ = true;
  Wake();
}

void Agent::StopTrialsForLeaving(const std::string& why) {
  stopping_trials_ = true;
  const double now = NowSeconds();
  for (auto& [id, trial] : trials_) {
    if (trial->exited || trial->stop_requested) continue;
    trial->stop_requested = true;
    trial->interrupted = true;
    trial->stop_reason = why;
    trial->grace_seconds = options_.stop_grace_seconds;
    trial->term_at = now;
    trial->kill_at = now + options_.stop_grace_seconds;
    LogInfo({.trial = id}, "stopping: {} (SIGKILL in {} s if it does not exit)", why,
            options_.stop_grace_seconds);
  }
}

bool Agent::LeaveStep() {
  const double now = NowSeconds();
  if (!leaving_) {
    leaving_ = true;
    leave_started_ = now;
    last_heartbeat_ = 0;  // tell sweepd at once: no new trials here
    if (options_.drain) {
      spdlog::info("draining: {} trial(s) may finish{}; no new ones. A second signal stops them.",
                   trials_.size(),
                   options_.drain_timeout_seconds > 0
                       ? absl::StrCat(" within ", options_.drain_timeout_seconds, " s")
                       : "");
    } else {
      StopTrialsForLeaving("preempted: the agent is shutting down");
    }
  }
  if (!stopping_trials_ && options_.drain_timeout_seconds > 0 &&
      now - leave_started_ > options_.drain_timeout_seconds) {
    StopTrialsForLeaving(absl::StrCat("preempted: the agent's drain timeout (",
                                      options_.drain_timeout_seconds, " s) passed"));
  }
  const bool running = std::any_of(trials_.begin(), trials_.end(),
                                   [](const auto& entry) { return !entry.second->exited; });
  if (running) return false;
  if (trials_.empty()) return true;  // all reported and acknowledged
  if (trials_gone_at_ == 0) trials_gone_at_ = now;
  if (now - trials_gone_at_ > options_.leave_ack_seconds) {
    size_t reports = 0;
    for (const auto& [id, trial] : trials_) {
      reports += trial->reports->in_memory() + static_cast<size_t>(trial->reports->spilled());
    }
    spdlog::warn(
        "leaving without sweepd's acknowledgement of {} trial exit(s) and {} report(s) after {} s "
        "(is sweepd reachable?)",
        trials_.size(), reports, options_.leave_ack_seconds);
    return true;
  }
  return false;
}

void Agent::Wake() {
  if (wake_pipe_[1] >= 0) {
    const char c = 1;
    (void)!write(wake_pipe_[1], &c, 1);
  }
}

bool Agent::Send(const v1::AgentMessage& message) {
  return connection_ != nullptr && connection_->Send(message);
}

v1::AgentMessage Agent::Hello() {
  v1::AgentMessage hello;
  v1::Register* reg = hello.mutable_register_();
  reg->set_agent_id(agent_id_);
  reg->set_workdir_key(agent_key_);
  reg->set_pid(static_cast<int32_t>(getpid()));
  reg->set_hostname(Hostname());
  reg->set_address(options_.advertise_address.empty() ? Hostname() : options_.advertise_address);
  reg->set_version("0.1.0");
  reg->set_draining(leave_requested_.load());
  for (const v1::Gpu& gpu : resources_) *reg->add_gpus() = gpu;
  // What it still runs (or ran, with the exit not yet durable at sweepd): sweepd reattaches
  // these instead of restarting them.
  std::lock_guard<std::mutex> lock(running_mu_);
  for (const auto& r : running_snapshot_) *reg->add_running_trials() = r;
  return hello;
}

absl::Status Agent::DiscoverResources() {
  if (options_.slots < 1 || options_.slots > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--slots: must be 1 to 1024; got ", options_.slots));
  }
  const std::string& discovery = options_.gpu_discovery;
  if (discovery != "none") {
    auto monitor = OpenGpuMonitor(discovery);
    if (monitor.ok()) {
      gpu_monitor_ = std::move(*monitor);
    } else if (monitor.status().code() == absl::StatusCode::kInvalidArgument ||
               discovery != "auto") {
      return absl::FailedPreconditionError(
          absl::StrCat("--gpu-discovery ", discovery, ": ", monitor.status().message()));
    } else {
      spdlog::info("no GPUs found ({}); running {} CPU slot(s)", monitor.status().message(),
                   options_.slots);
    }
  }
  std::vector<v1::Gpu> found;
  if (gpu_monitor_) {
    auto readings = gpu_monitor_->Read();
    if (!readings.ok()) return readings.status();
    found = std::move(*readings);
  }
  if (!options_.gpus.empty()) {
    auto wanted = ParseGpuList(options_.gpus, "--gpus");
    if (!wanted.ok()) return wanted.status();
    for (int index : *wanted) {
      v1::Gpu gpu;
      gpu.set_index(index);
      auto it = std::find_if(found.begin(), found.end(),
                             [&](const v1::Gpu& g) { return g.index() == index; });
      if (it != found.end()) {
        gpu = *it;
      } else if (gpu_monitor_) {
        return absl::InvalidArgumentError(
            absl::StrCat("--gpus: GPU ", index, " is not on this node (", gpu_monitor_->Source(),
                         " lists ", found.size(), ")"));
      } else {
        gpu.set_uuid(absl::StrCat("gpu-", index));
        gpu.set_name("GPU (from --gpus)");
      }
      resources_.push_back(std::move(gpu));
    }
    has_gpus_ = true;
  } else if (!found.empty()) {
    resources_ = found;
    has_gpus_ = true;
  } else {
    for (int i = 0; i < options_.slots; ++i) {
      v1::Gpu slot;
      slot.set_index(i);
      slot.set_uuid(absl::StrCat("slot-", i));
      slot.set_name("cpu slot");
      resources_.push_back(std::move(slot));
    }
  }
  if (has_gpus_) {
    std::vector<std::string> names;
    for (const auto& g : resources_) names.push_back(absl::StrCat(g.index(), ": ", g.name()));
    spdlog::info("offering {} GPU(s){}: {}", resources_.size(),
                 gpu_monitor_ ? absl::StrCat(" (found by ", gpu_monitor_->Source(), ")") : "",
                 absl::StrJoin(names, ", "));
  }
  return absl::OkStatus();
}

void Agent::AdoptLeftoverTrials() {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(state_dir_, ec)) {
    if (entry.path().extension() == ".tmp") {
      std::filesystem::remove(entry.path(), ec);
      continue;
    }
    const ReadTrialStateResult read = ReadTrialState(entry.path().string());
    const std::string name = entry.path().filename().string();
    const absl::Status adopted = read.state.ok() ? AdoptTrial(*read.state) : read.state.status();
    if (adopted.ok()) continue;  // its state file stays
    if (read.pid > 1 && read.start_ticks != 0 && ProcessStartTicks(read.pid) == read.start_ticks) {
      LogWarn({.trial = name},
              "left running by an earlier run of this agent (pid {}), cannot "
              "take it over ({}); killing it so its GPUs are free",
              read.pid, adopted.message());
      kill(-read.pid, SIGKILL);
    }
    std::filesystem::remove(entry.path(), ec);
  }
}

absl::Status Agent::AdoptTrial(const TrialState& state) {
  auto trial = std::make_unique<Trial>();
  trial->id = state.trial_id;
  trial->sweep_id = state.sweep_id;
  const pid_t pid = state.pid;
  const uint64_t start_ticks = state.start_ticks;
  trial->exit_file = state.exit_file;
  if (state.keep_fd < 0 || trial->exit_file.empty()) {
    return absl::FailedPreconditionError("it was started without sweep-trial-shim");
  }
  bool alive = ProcessStartTicks(pid) == start_ticks && start_ticks != 0;
  if (!alive && !std::filesystem::exists(trial->exit_file)) {
    return absl::NotFoundError("it is gone and left no exit record");
  }
  std::unique_ptr<TrialProcess> running;
  if (alive) {
    auto process = TrialProcess::Adopt(pid, start_ticks, state.keep_fd, trial->exit_file);
    if (process.ok()) {
      running = std::move(*process);
    } else if (ProcessStartTicks(pid) != start_ticks && std::filesystem::exists(trial->exit_file)) {
      // It ended between the two looks (the shim records the end before it exits): reported
      // from its record like any trial that ended while no agent watched, not dropped and lost.
      alive = false;
    } else {
      return process.status();
    }
  }
  trial->workdir = state.workdir;
  trial->stderr_path = trial->workdir + "/stderr.log";
  trial->socket_path = state.socket_path;
  trial->metric_pattern = state.metric_pattern;
  trial->client_reported = state.client_reported;
  trial->cgroup_dir = state.cgroup_dir;
  trial->finished = state.finished;
  trial->node_rank = state.node_rank;
  trial->attempt = state.attempt;
  trial->start_unix = state.start_unix > 0 ? state.start_unix : UnixSeconds();
  trial->start = NowSeconds() - std::max(0.0, UnixSeconds() - trial->start_unix);
  trial->gpu_indices = state.gpu_indices;
  trial->state_file = absl::StrCat(state_dir_, "/", trial->id);
  // Its reports wait unnumbered until sweepd says which seq comes next (Registered.next_seqs).
  trial->reports = NewReportBuffer(*trial);
  trial->reports->WaitForSequence();
  if (alive) {
    trial->process = std::move(running);
    // The reporting socket again, at the path the trial knows (SWEEP_SOCKET); its client
    // reconnects.
    std::error_code ec;
    std::filesystem::create_directories(std::filesystem::path(trial->socket_path).parent_path(),
                                        ec);
    unlink(trial->socket_path.c_str());
    trial->listen_fd = ListenOn(trial->socket_path);
    if (trial->listen_fd < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("reporting socket ", trial->socket_path, ": ", std::strerror(errno)));
    }
  } else {
    // It ended while no agent watched; the shim recorded how. Reported like any exit.
    trial->process = TrialProcess::Ended(pid, trial->exit_file);
  }
  StartOutput(*trial, /*append=*/true);
  LogInfo({.trial = trial->id}, "taken over from an earlier run of this agent (pid {}{})", pid,
          alive ? ", still running" : ", ended meanwhile");
  trials_[trial->id] = std::move(trial);
  return absl::OkStatus();
}

void Agent::GpuMonitorLoop() {
  while (!stopping_) {
    auto readings = gpu_monitor_->Read();
    if (readings.ok()) {
      std::lock_guard<std::mutex> lock(gpu_mu_);
      gpu_readings_ = std::move(*readings);
    } else {
      spdlog::debug("GPU readings: {}", readings.status().message());
    }
    for (int waited = 0; waited < heartbeat_seconds_ * 20 && !stopping_; ++waited) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
}

absl::Status Agent::Run() {
  // First of all, before anything in the workdir is touched: is it ours alone, and who are we.
  auto claim = ClaimWorkdir(options_.workdir, options_.agent_id, Hostname());
  if (!claim.ok()) return claim.status();
  if (!claim->lock.held()) {
    spdlog::warn("cannot lock {} on this filesystem ({}): nothing stops a second agent on it",
                 claim->lock.path(), claim->lock.why_not_held());
  }
  workdir_lock_.emplace(std::move(claim->lock));
  agent_id_ = claim->identity.agent_id;
  agent_key_ = claim->identity.key;
  spdlog::info("agent id {} (workdir {})", agent_id_, options_.workdir);
  if (auto st = DiscoverResources(); !st.ok()) return st;
  auto credentials = MakeChannelCredentials(options_.tls);
  if (!credentials.ok()) return credentials.status();
  credentials_ = *credentials;
  if (!options_.ack_log.empty()) {
    ack_log_.open(options_.ack_log, std::ios::app);
    if (!ack_log_) {
      return absl::FailedPreconditionError(
          absl::StrCat("--ack-log ", options_.ack_log, ": cannot open for appending"));
    }
  }
  if (pipe2(wake_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::string pattern = (std::filesystem::temp_directory_path() / "sweep-agent-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  }
  runtime_dir_ = pattern;
  std::error_code ec;
  state_dir_ = (std::filesystem::path(options_.workdir) / ".sweep-agent" / agent_id_).string();
  std::filesystem::create_directories(state_dir_, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", state_dir_, ": ", ec.message()));
  }
  AdoptLeftoverTrials();
  UpdateRunningSnapshot();  // the first registration lists the trials taken over
  if (auto st = BecomeSubreaper(); !st.ok()) spdlog::warn("{}", st.message());
  if (options_.trial_cgroups) {
    if (auto parent = FindTrialCgroupParent(); parent.ok()) {
      cgroup_parent_ = *parent;
      spdlog::info("each trial runs in a cgroup of its own under {}", cgroup_parent_);
    } else {
      spdlog::info(
          "trials run without cgroups ({}); the agent kills what they leave behind as "
          "their subreaper",
          parent.status().message());
    }
  } else {
    spdlog::info(
        "trials run without cgroups (--trial-cgroups=false); the agent kills what they "
        "leave behind as their subreaper");
  }
  if (gpu_monitor_) gpu_thread_ = std::thread([this] { GpuMonitorLoop(); });
  auto connection = std::make_unique<SchedulerConnection>(
      ConnectionOptions{.scheduler = options_.scheduler,
                        .credentials = credentials_,
                        .token = options_.token,
                        .max_backoff_seconds = options_.max_backoff_seconds},
      SchedulerConnection::Callbacks{.hello = [this] { return Hello(); },
                                     .on_message =
                                         [this](v1::SchedulerMessage message) {
                                           {
                                             std::lock_guard<std::mutex> lock(inbox_mu_);
                                             inbox_.push_back(std::move(message));
                                           }
                                           Wake();
                                         },
                                     .on_refused =
                                         [this](absl::Status why) {
                                           refused_ = true;
                                           {
                                             std::lock_guard<std::mutex> lock(fatal_mu_);
                                             fatal_ = std::move(why);
                                           }
                                           Stop();
                                         }});
  {
    // Stop() may come from the signal thread at any time, also before the connection existed.
    std::lock_guard<std::mutex> lock(connection_mu_);
    connection_ = std::move(connection);
    if (stopping_) connection_->Stop();
    connection_->Start();
  }
  while (!stopping_) {
    PollOnce();
    if (leave_requested_ && LeaveStep()) {
      v1::AgentMessage goodbye;
      goodbye.mutable_deregister()->set_reason(
          options_.drain && !stopping_trials_ ? "drained" : "shut down; its trials were stopped");
      const bool sent = Send(goodbye);
      // No reconnecting from here on; sweepd ends the stream once it has the goodbye. (Not
      // stopping_ yet: that would cancel the stream before sweepd has read the goodbye.)
      connection_->FinishAfterThisStream();
      for (int waited = 0; sent && waited < 60 && connection_->Connected(); ++waited) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      spdlog::info("{}; {}", goodbye.deregister().reason(),
                   sent ? "deregistered" : "sweepd unreachable, leaving without deregistering");
      Stop();
    }
  }
  // Leaving: no orphans. Kill every trial's group and reap it. Not when sweepd refused this
  // agent before it ever registered: the trials it took over at start are this workdir's, and
  // the next agent started on it takes them over again.
  for (auto& [id, trial] : trials_) {
    if (refused_ && trial->process) {
      trial->process->Detach();
      continue;
    }
    if (trial->process && !trial->exited) KillLeftovers(*trial);
    ReleaseCgroup(*trial);
  }
  trials_.clear();  // TrialProcess destructors reap
  ReapOrphans({});
  for (int waited = 0; !stale_cgroups_.empty() && waited < 20; ++waited) {
    CleanUpAfterTrials();
    if (!stale_cgroups_.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  connection_->Join();
  std::lock_guard<std::mutex> lock(fatal_mu_);
  return fatal_;
}

void Agent::HandleMessage(const v1::SchedulerMessage& message) {
  switch (message.kind_case()) {
    case v1::SchedulerMessage::kRegistered: {
      heartbeat_seconds_ = std::max(1, message.registered().heartbeat_seconds());
      // Assigns held back on the last stream are sweepd's to place again: it counts what this
      // agent did not list as lost.
      deferred_assigns_.clear();
      for (const auto& [id, next_seq] : message.registered().next_seqs()) {
        auto it = trials_.find(id);
        if (it == trials_.end() || it->second->reports->seq_known()) continue;
        // A trial taken over after a restart: its reports continue sweepd's sequence.
        Trial& trial = *it->second;
        trial.reports->ContinueAt(next_seq);
        LogInfo({.trial = id}, "sweepd took it back; its reports continue at seq {}",
                trial.reports->first_seq());
      }
      for (const auto& id : message.registered().kill_trial_ids()) {
        auto it = trials_.find(id);
        if (it == trials_.end()) continue;
        {
          // sweepd has given it up: its reports and its exit have no place there any more.
          Trial& given_up = *it->second;
          given_up.reports->Clear();
          given_up.exit_acked = true;  // forget it once it ends
        }
        if (it->second->process && !it->second->exited) {
          LogWarn({.trial = id}, "the scheduler no longer owns it; killing");
          it->second->stop_requested = true;
          it->second->process->SignalGroup(SIGKILL);
        }
      }
      break;
    }
    case v1::SchedulerMessage::kAssign:
      StartTrial(message.assign());
      break;
    case v1::SchedulerMessage::kStop: {
      if (auto deferred = deferred_assigns_.find(message.stop().trial_id());
          deferred != deferred_assigns_.end()) {
        // Stopped before it could start: it ends here, as stopped.
        v1::AgentMessage exited;
        exited.mutable_trial_exited()->set_trial_id(deferred->first);
        exited.mutable_trial_exited()->set_node_rank(deferred->second.gang().node_rank());
        exited.mutable_trial_exited()->set_attempt(deferred->second.attempt());
        exited.mutable_trial_exited()->set_stopped_by_scheduler(true);
        outbox_.push_back(std::move(exited));
        deferred_assigns_.erase(deferred);
        break;
      }
      auto it = trials_.find(message.stop().trial_id());
      if (it == trials_.end()) break;
      Trial& trial = *it->second;
      if (trial.stop_requested) break;
      trial.stop_requested = true;
      trial.stop_reason = message.stop().reason();
      trial.checkpoint_on_stop = message.stop().checkpoint();
      trial.grace_seconds = std::max(0, message.stop().grace_seconds());
      trial.term_at = NowSeconds() + trial.grace_seconds;
      trial.kill_at = trial.term_at + trial.grace_seconds;
      LogInfo({.trial = trial.id}, "stop: {} (SIGTERM in {} s)", trial.stop_reason,
              trial.grace_seconds);
      break;
    }
    case v1::SchedulerMessage::kDeleteCheckpoint:
      DeleteCheckpoint(message.delete_checkpoint());
      break;
    case v1::SchedulerMessage::kAck: {
      auto it = trials_.find(message.ack().trial_id());
      if (it == trials_.end()) break;
      Trial& trial = *it->second;
      if (message.ack().exited()) {
        trial.exit_acked = true;
        break;
      }
      if (ack_log_.is_open()) {
        // An audit trail: trial, its first seq on this agent, and the seq now durable.
        ack_log_ << trial.id << " " << trial.reports->first_seq() << " " << message.ack().seq()
                 << "\n";
        ack_log_.flush();
      }
      trial.reports->Ack(message.ack().seq());
      while (!trial.pending_checkpoints.empty() &&
             trial.pending_checkpoints.front().first <= message.ack().seq()) {
        trial.recorded_checkpoint = trial.pending_checkpoints.front().second;
        trial.pending_checkpoints.pop_front();
      }
      trial.keep_checkpoint =
          message.ack().has_keep_checkpoint_step() ? message.ack().keep_checkpoint_step() : -1;
      trial.waiting_since = NowSeconds();
      break;
    }
    default:
      break;
  }
}

void Agent::DeleteCheckpoint(const v1::DeleteCheckpoint& request) {
  // Ids name folders: one path component each, never "." or "..".
  for (const std::string& id : {request.sweep_id(), request.trial_id()}) {
    if (id.empty() || id == "." || id == ".." || id.find('/') != std::string::npos ||
        id.find('\0') != std::string::npos) {
      LogWarn({.trial = request.trial_id()}, "refusing to delete checkpoints: bad id '{}'", id);
      return;
    }
  }
  if (auto it = trials_.find(request.trial_id()); it != trials_.end() && !it->second->exited) {
    LogWarn({.trial = request.trial_id()}, "not deleting the checkpoints of a trial it runs");
    return;
  }
  const std::filesystem::path folder =
      request.checkpoint_dir().empty() ? std::filesystem::path(options_.workdir) /
                                             request.sweep_id() / request.trial_id() / "checkpoint"
                                       : std::filesystem::path(request.checkpoint_dir()) /
                                             request.sweep_id() / request.trial_id();
  std::error_code ec;
  const auto removed = std::filesystem::remove_all(folder, ec);
  if (ec) {
    LogWarn({.trial = request.trial_id()}, "deleting its checkpoints in {} failed: {}",
            folder.string(), ec.message());
    return;
  }
  LogInfo({.trial = request.trial_id()}, "deleted its checkpoints: {} ({} files)", folder.string(),
          static_cast<uint64_t>(removed));
}

void Agent::StartTrial(const v1::Assign& assign) {
  auto fail = [&](const std::string& why, bool spec_error = false) {
    LogError({.trial = assign.trial_id()}, "cannot start: {}", why);
    v1::AgentMessage exited;
    exited.mutable_trial_exited()->set_trial_id(assign.trial_id());
    exited.mutable_trial_exited()->set_node_rank(assign.gang().node_rank());
    exited.mutable_trial_exited()->set_attempt(assign.attempt());
    exited.mutable_trial_exited()->set_exit_code(127);
    exited.mutable_trial_exited()->set_stderr_tail(why);
    if (spec_error) exited.mutable_trial_exited()->set_spec_error(why);
    outbox_.push_back(std::move(exited));
  };
  // The spec's fault, not this node's: sweepd fails the trial without blaming the agent.
  auto fail_spec = [&](const std::string& why) { fail(why, /*spec_error=*/true); };
  if (!SafeId(assign.trial_id()) || !SafeId(assign.sweep_id())) {
    fail("trial or sweep id has characters not allowed in a path");
    return;
  }
  if (auto it = trials_.find(assign.trial_id()); it != trials_.end()) {
    const int32_t running = it->second->attempt;
    if (running == assign.attempt() || running == 0 || assign.attempt() == 0) {
      return;  // a duplicate Assign after a reconnect
    }
    // An earlier attempt of this trial is still ending here (sweepd gave it up, then placed its
    // retry on this agent again): the retry starts once that one is gone, so the two never share
    // the trial's folder, socket or GPUs.
    LogInfo({.trial = assign.trial_id()}, "attempt {} starts once attempt {} has ended",
            assign.attempt(), running);
    deferred_assigns_[assign.trial_id()] = assign;
    return;
  }
  if (leaving_) {
    // Crossed with the draining heartbeat: hand it back, not failed, to run elsewhere.
    LogInfo({.trial = assign.trial_id()}, "not started: the agent is leaving");
    v1::AgentMessage exited;
    exited.mutable_trial_exited()->set_trial_id(assign.trial_id());
    exited.mutable_trial_exited()->set_node_rank(assign.gang().node_rank());
    exited.mutable_trial_exited()->set_attempt(assign.attempt());
    exited.mutable_trial_exited()->set_interrupted(true);
    exited.mutable_trial_exited()->set_stderr_tail("the agent is leaving; not started");
    outbox_.push_back(std::move(exited));
    return;
  }
  // Never two trials on one GPU: the scheduler should not ask, and the agent checks anyway.
  for (int32_t g : assign.gpu_indices()) {
    if (std::none_of(resources_.begin(), resources_.end(),
                     [&](const v1::Gpu& r) { return r.index() == g; })) {
      fail(absl::StrCat("GPU ", g, " is not one this agent offers"));
      return;
    }
    for (const auto& [id, other] : trials_) {
      if (!other->exited && std::find(other->gpu_indices.begin(), other->gpu_indices.end(), g) !=
                                other->gpu_indices.end()) {
        fail(absl::StrCat("GPU ", g, " is busy with trial ", id));
        return;
      }
    }
  }
  auto trial = std::make_unique<Trial>();
  trial->id = assign.trial_id();
  trial->sweep_id = assign.sweep_id();
  trial->gpu_indices.assign(assign.gpu_indices().begin(), assign.gpu_indices().end());
  trial->node_rank = assign.gang().node_rank();
  trial->attempt = assign.attempt();
  trial->workdir =
      (std::filesystem::path(options_.workdir) / assign.sweep_id() / assign.trial_id()).string();
  std::error_code ec;
  std::filesystem::create_directories(trial->workdir, ec);
  if (ec) {
    fail(absl::StrCat("cannot create ", trial->workdir, ": ", ec.message()));
    return;
  }
  trial->workdir = std::filesystem::absolute(trial->workdir).string();
  trial->stderr_path = trial->workdir + "/stderr.log";
  trial->reports = NewReportBuffer(*trial);
  trial->reports->StartAt(assign.first_seq());

  // The reporting socket, in a short private folder (socket paths are limited to 107 bytes).
  trial->socket_path = absl::StrCat(runtime_dir_, "/", next_socket_++, ".sock");
  // The command and environment (worker/trial_launch.h).
  auto plan =
      PlanLaunch(assign, trial->workdir, trial->socket_path,
                 {.code_dir = options_.code_dir,
                  .interpreter = options_.interpreter,
                  .python_path = options_.python_path,
                  .has_gpus = has_gpus_,
                  .advertise_address =
                      options_.advertise_address.empty() ? Hostname() : options_.advertise_address,
                  .base_env = ProcessEnvironment(),
                  .free_port = FreePort});
  if (!plan.ok()) {
    // INVALID_ARGUMENT: the spec's fault (any node would refuse it); otherwise this node's.
    fail(std::string(plan.status().message()),
         /*spec_error=*/plan.status().code() == absl::StatusCode::kInvalidArgument);
    return;
  }
  std::filesystem::create_directories(plan->checkpoint_dir, ec);
  if (ec) {
    fail(absl::StrCat("cannot create the checkpoint folder ", plan->checkpoint_dir, ": ",
                      ec.message(), " (is the spec's checkpoint.dir mounted on this node?)"));
    return;
  }
  if (!assign.clone_checkpoint_from().empty() && assign.has_resume_step()) {
    // Method pbt: this trial starts from another's checkpoint, copied into its own folder
    // before it runs (the source keeps its files until sweepd has seen this one start).
    const std::string& source = assign.clone_checkpoint_from();
    if (source.empty() || source == "." || source == ".." ||
        source.find('/') != std::string::npos) {
      fail(absl::StrCat("bad clone_checkpoint_from '", source, "'"));
      return;
    }
    const std::filesystem::path from =
        assign.checkpoint_dir().empty()
            ? std::filesystem::path(options_.workdir) / assign.sweep_id() / source / "checkpoint"
            : std::filesystem::path(assign.checkpoint_dir()) / assign.sweep_id() / source;
    auto copied = CloneCheckpoint(from, plan->checkpoint_dir, assign.resume_step());
    if (!copied.ok()) {
      fail(absl::StrCat("cannot copy the checkpoint of trial ", source, " at step ",
                        assign.resume_step(), ": ", copied.status().message()));
      return;
    }
    LogInfo({.trial = assign.trial_id()}, "copied {} checkpoint file(s) of {} at step {}", *copied,
            source, assign.resume_step());
  }
  std::ofstream(plan->params_file) << plan->params_json << "\n";
  trial->listen_fd = ListenOn(trial->socket_path);
  if (trial->listen_fd < 0) {
    fail(absl::StrCat("reporting socket ", trial->socket_path, ": ", std::strerror(errno)));
    return;
  }
  trial->exit_file = trial->workdir + "/.exit";
  std::filesystem::remove(trial->exit_file, ec);
  if (!cgroup_parent_.empty()) {
    // One cgroup per attempt, never reused: a retry can start here while its killed earlier
    // attempt's cgroup is still being emptied and removed (stale_cgroups_, killed every second),
    // and that clean-up killed the retry when both had the trial's name (seen in CI:
    // RestartE2eTest.ARetryPlacedWhereItsKilledAttemptIsStillEndingStartsAfterIt, SIGKILL 0.8 s
    // after the retry started).
    auto cgroup = CreateTrialCgroup(
        cgroup_parent_,
        absl::StrCat("sweep-", agent_id_, "-", trial->id, "-a", trial->attempt, "-", NowMicros()));
    if (cgroup.ok()) {
      trial->cgroup_dir = *cgroup;
    } else {
      LogWarn({.trial = trial->id}, "{}; it runs without a cgroup", cgroup.status().message());
    }
  }
  auto process = TrialProcess::Start({.argv = plan->argv,
                                      .env = plan->env,
                                      .workdir = plan->run_dir,
                                      .stderr_path = trial->stderr_path,
                                      .shim = options_.trial_shim,
                                      .exit_file = trial->exit_file,
                                      .cgroup_dir = trial->cgroup_dir});
  if (!process.ok()) {
    if (!trial->cgroup_dir.empty()) RemoveCgroup(trial->cgroup_dir);
    close(trial->listen_fd);
    unlink(trial->socket_path.c_str());
    const std::string why(process.status().message());
    // E2BIG: the command line and environment are over the kernel's limit (submit checks the
    // spec's bound, but values from `enqueue` or the environment can still exceed it).
    if (absl::StrContains(why, std::strerror(E2BIG))) {
      fail_spec(absl::StrCat(why,
                             " (the command line is over the kernel's ARG_MAX; pass "
                             "parameters through ${args_json_file})"));
    } else {
      fail(why);
    }
    return;
  }
  trial->process = std::move(*process);
  trial->metric_pattern = assign.metric_pattern();
  StartOutput(*trial, /*append=*/false);
  trial->start = NowSeconds();
  trial->start_unix = UnixSeconds();
  // A state file while it runs: a later run of this agent takes the trial over after a crash
  // (or kills it, when it cannot).
  trial->state_file = absl::StrCat(state_dir_, "/", trial->id);
  WriteStateFile(*trial);
  LogInfo({.trial = trial->id}, "started pid {}{}: {}", trial->process->pid(),
          plan->nnodes > 1 ? absl::StrCat(" as node ", trial->node_rank, " of ", plan->nnodes) : "",
          absl::StrJoin(plan->argv, " "));
  v1::AgentMessage started;
  auto* s = started.mutable_trial_started();
  s->set_trial_id(trial->id);
  s->set_pid(trial->process->pid());
  s->set_workdir(trial->workdir);
  s->set_stdout_path(trial->workdir + "/stdout.log");
  s->set_stderr_path(trial->stderr_path);
  s->set_node_rank(trial->node_rank);
  if (trial->node_rank == 0) {
    s->set_master_addr(plan->master_addr);
    s->set_master_port(plan->master_port);
  }
  outbox_.push_back(std::move(started));
  trials_[trial->id] = std::move(trial);
}

void Agent::AddReport(Trial& trial, std::optional<int64_t> step,
                      std::vector<std::pair<std::string, double>> metrics, bool checkpoint) {
  if (trial.node_rank != 0) {
    // Only global rank 0 reports for a multi-node trial; the client reduces across ranks.
    if (!trial.warned_not_rank0) {
      LogInfo({.trial = trial.id}, "node {} does not relay metrics; node 0 reports for the trial",
              trial.node_rank);
      trial.warned_not_rank0 = true;
    }
    return;
  }
  v1::Report report;
  report.set_step(step.value_or(trial.next_step));
  if (!checkpoint) trial.next_step = report.step() + 1;
  report.set_checkpoint(checkpoint);
  report.set_time_us(NowMicros());
  for (auto& [name, value] : metrics) (*report.mutable_metrics())[name] = value;
  const int64_t step_reported = report.step();
  trial.reports->Add(std::move(report));
  // Numbered now unless the agent restarted and waits for sweepd's numbering; then the client
  // keeps its older files (it never hears this one was recorded).
  if (checkpoint && trial.reports->last_seq() >= 0) {
    trial.pending_checkpoints.emplace_back(trial.reports->last_seq(), step_reported);
  }
}

std::unique_ptr<ReportBuffer> Agent::NewReportBuffer(const Trial& trial) const {
  return std::make_unique<ReportBuffer>(
      ReportBuffer::Options{.trial_id = trial.id,
                            .spill_path = trial.workdir + "/.unacked-reports",
                            .max_in_memory = options_.max_buffered_reports,
                            .max_spill_bytes = options_.max_spill_bytes});
}

std::string Agent::HandleRequest(Trial& trial, const std::string& line, int peer_pid) {
  auto request = ParseReportRequest(line);
  if (!request.ok()) return ErrorReply(request.status().message());
  if (!request->trial_id.empty() && request->trial_id != trial.id) {
    return ErrorReply(
        absl::StrCat("this socket belongs to trial ", trial.id, ", not ", request->trial_id));
  }
  (void)peer_pid;
  if (trial.finished &&
      (request->op == ReportRequest::Op::kReport ||
       (request->op == ReportRequest::Op::kFinish && !request->metrics.empty()))) {
    return ErrorReply(
        absl::StrCat("trial ", trial.id, " already sent finish; reports after it are not stored"));
  }
  if (!trial.client_reported && request->op != ReportRequest::Op::kShouldStop) {
    trial.client_reported = true;
    if (trial.output) trial.output->StopParsing();
    WriteStateFile(trial);  // a restarted agent must not parse stdout for metrics either
  }
  switch (request->op) {
    case ReportRequest::Op::kReport:
      AddReport(trial, request->step, std::move(request->metrics));
      break;
    case ReportRequest::Op::kFinish:
      if (!request->metrics.empty()) AddReport(trial, request->step, std::move(request->metrics));
      trial.finished = true;
      WriteStateFile(trial);  // still refused after an agent restart
      break;
    case ReportRequest::Op::kShouldStop:
      break;
    case ReportRequest::Op::kCheckpoint:
      AddReport(trial, request->step, std::move(request->metrics), /*checkpoint=*/true);
      break;
  }
  return trial.stop_requested
             ? StopReply(trial.stop_reason, trial.interrupted || trial.checkpoint_on_stop,
                         trial.recorded_checkpoint, trial.keep_checkpoint)
             : ContinueReply(trial.recorded_checkpoint, trial.keep_checkpoint);
}

void Agent::AcceptClients(Trial& trial) {
  while (true) {
    const int fd = accept4(trial.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;
    // Only processes of the trial's own process group may report for it.
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
        getpgid(cred.pid) != trial.process->pid()) {
      const std::string reply = ErrorReply(absl::StrCat("this socket belongs to trial ", trial.id,
                                                        "; your process is not part of it"));
      (void)!send(fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      close(fd);
      continue;
    }
    trial.clients.push_back(Client{.fd = fd});
  }
}

void Agent::ServeClient(Trial& trial, Client& client) {
  char buf[16384];
  while (true) {
    const ssize_t n = recv(client.fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0) {
      client.closed = true;
      break;
    }
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) client.closed = true;
      break;
    }
    for (auto& line :
         SplitLines(client.pending, buf, static_cast<size_t>(n), kMaxRequestBytes + 1)) {
      if (line.empty()) continue;
      const std::string reply = HandleRequest(trial, line, 0);
      if (send(client.fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
          static_cast<ssize_t>(reply.size())) {
        client.closed = true;  // a client that does not read its replies is dropped
        return;
      }
    }
  }
}

void Agent::StartOutput(Trial& trial, bool append) {
  const int fd = trial.process ? trial.process->ReleaseStdout() : -1;
  if (fd < 0) return;  // a trial that ended while no agent watched: nothing more to read
  auto output = TrialOutput::Start(fd, {.trial_id = trial.id,
                                        .log_path = trial.workdir + "/stdout.log",
                                        .append = append,
                                        .max_log_bytes = options_.max_log_bytes,
                                        .metric_pattern = trial.metric_pattern,
                                        .wake = [this] { Wake(); }});
  if (!output.ok()) {
    LogError({.trial = trial.id}, "its stdout is not kept or parsed: {}",
             output.status().message());
    return;
  }
  trial.output = std::move(*output);
  if (trial.client_reported) trial.output->StopParsing();
}

void Agent::KillLeftovers(Trial& trial) {
  if (trial.process && trial.process->GroupAlive()) trial.process->SignalGroup(SIGKILL);
  if (!trial.cgroup_dir.empty()) KillCgroup(trial.cgroup_dir);
}

void Agent::ReleaseCgroup(Trial& trial) {
  if (trial.cgroup_dir.empty()) return;
  const CgroupUsage usage = ReadCgroupUsage(trial.cgroup_dir);
  if (usage.cpu_seconds || usage.peak_memory_bytes) {
    LogInfo({.trial = trial.id}, "used {} CPU-seconds{}",
            usage.cpu_seconds ? absl::StrFormat("%.1f", *usage.cpu_seconds) : "?",
            usage.peak_memory_bytes
                ? absl::StrFormat(", peak memory %.1f MiB", *usage.peak_memory_bytes / 1048576.0)
                : "");
  }
  // Its last processes may still be exiting: retried every second until it is empty.
  if (!RemoveCgroup(trial.cgroup_dir)) stale_cgroups_.push_back(trial.cgroup_dir);
  trial.cgroup_dir.clear();
}

void Agent::CleanUpAfterTrials() {
  std::vector<pid_t> leaders;
  for (const auto& [id, trial] : trials_) {
    if (trial->process) leaders.push_back(trial->process->pid());
  }
  for (pid_t pid : KillAdoptedOrphans(leaders)) {
    spdlog::warn(
        "killed pid {}, left running by a trial that has ended (it had left the trial's "
        "process group)",
        pid);
  }
  std::erase_if(stale_cgroups_, [](const std::string& dir) {
    KillCgroup(dir);
    return RemoveCgroup(dir);
  });
}

void Agent::TakeOutput(Trial& trial, size_t max) {
  if (!trial.output) return;
  for (auto& parsed : trial.output->Take(max)) {
    if (trial.client_reported) continue;
    AddReport(trial, parsed.step, std::move(parsed.metrics));
  }
}

void Agent::CheckExit(Trial& trial) {
  if (trial.exited || trial.process == nullptr) return;
  const double now = NowSeconds();
  if (!trial.pending_exit) {
    // Poll before signalling: a trial that ended on its own was not stopped, whatever came next.
    auto exit = trial.process->Poll();
    if (!exit) {
      if (trial.stop_requested && !trial.term_sent && now >= trial.term_at) {
        trial.term_sent = true;
        trial.process->SignalGroup(SIGTERM);
      }
      if (trial.stop_requested && !trial.kill_sent && now >= trial.kill_at) {
        trial.kill_sent = true;
        trial.process->SignalGroup(SIGKILL);
      }
      return;
    }
    trial.pending_exit = exit;
    trial.exit_seen_at = now;
    // No orphans: whatever is left of the trial goes with its leader, so its stdout ends too.
    KillLeftovers(trial);
  }
  // Its last lines may still be in the pipe: the reader thread finishes them first, unless
  // something outside the trial keeps the pipe open; then it is given up after a while.
  if (trial.output && !trial.output->Finished()) {
    if (now - trial.exit_seen_at < kOutputAfterExitSeconds) return;
    trial.output->Abandon();
  }
  TakeOutput(trial, std::numeric_limits<size_t>::max());
  const std::optional<ExitStatus> exit = trial.pending_exit;
  trial.exited = true;
  ReleaseCgroup(trial);
  // Interrupted only if the agent's own signal reached it before it ended.
  if (trial.interrupted && !trial.term_sent && !trial.kill_sent) trial.interrupted = false;
  for (auto& c : trial.clients) close(c.fd);
  trial.clients.clear();
  close(trial.listen_fd);
  trial.listen_fd = -1;
  unlink(trial.socket_path.c_str());
  // The state file (and the shim's .exit) stay until sweepd has the exit: an agent restarted
  // before that reports it from them.
  v1::AgentMessage message;
  auto* e = message.mutable_trial_exited();
  e->set_trial_id(trial.id);
  e->set_node_rank(trial.node_rank);
  e->set_attempt(trial.attempt);
  e->set_exit_code(exit->exit_code);
  e->set_signal(exit->signal);
  e->set_stopped_by_scheduler(trial.stop_requested && !trial.interrupted);
  e->set_interrupted(trial.interrupted);
  e->set_wall_seconds(now - trial.start);
  if (exit->exit_code != 0 || exit->signal != 0) e->set_stderr_tail(Tail(trial.stderr_path));
  // Queued after the trial's metrics are sent (SendPending sends metrics first), and kept until
  // acknowledged (re-sent after a reconnect).
  trial.exit_message = message;
  outbox_.push_back(std::move(message));
  LogInfo({.trial = trial.id}, "exited: code {} signal {}", exit->exit_code, exit->signal);
}

void Agent::SendPending() {
  const int64_t generation = connection_->generation();
  if (generation != seen_generation_) {
    // A new connection: everything unacknowledged goes out again.
    seen_generation_ = generation;
    for (auto& [id, trial] : trials_) {
      trial->reports->Rewind();
      // An exit sent on the old stream may never have reached a durable store: again.
      const std::string& trial_id = id;  // (a structured binding cannot be captured in C++20)
      const bool queued =
          std::any_of(outbox_.begin(), outbox_.end(), [&](const v1::AgentMessage& m) {
            return m.has_trial_exited() && m.trial_exited().trial_id() == trial_id;
          });
      if (trial->exit_message && !trial->exit_acked && !queued) {
        outbox_.push_back(*trial->exit_message);
      }
    }
  }
  if (seen_generation_ == 0) return;  // never registered yet
  const double now = NowSeconds();
  for (auto& [id, trial] : trials_) {
    ReportBuffer& reports = *trial->reports;
    if (!reports.seq_known()) continue;  // waits for sweepd's Registered
    if (reports.in_flight() > 0 && now - trial->waiting_since > kResendAfterSeconds) {
      LogInfo({.trial = id}, "{} reports unacknowledged for {:.0f} s; sending them again",
              reports.in_flight(), now - trial->waiting_since);
      reports.Rewind();
    }
    if (reports.in_flight() == 0 && reports.in_memory() > 0) trial->waiting_since = now;
    while (true) {
      v1::AgentMessage message;
      if (!reports.Next(kMaxBatchReports, message.mutable_metric_batch())) break;
      if (!Send(message)) return;
      reports.MarkSent(message.metric_batch());
    }
  }
  // A trial's exit goes out only once sweepd has acknowledged all its reports: then the exit
  // (which ends the trial, and may end the sweep) is never stored ahead of the trial's last
  // metrics, even when sweepd refused them for a while. An exit still waiting does not hold up
  // other messages.
  std::deque<v1::AgentMessage> waiting;
  while (!outbox_.empty()) {
    v1::AgentMessage next = std::move(outbox_.front());
    outbox_.pop_front();
    if (next.has_trial_exited()) {
      auto it = trials_.find(next.trial_exited().trial_id());
      if (it != trials_.end() && !it->second->reports->empty()) {
        waiting.push_back(std::move(next));
        continue;
      }
    }
    if (!Send(next)) {
      outbox_.push_front(std::move(next));
      break;
    }
  }
  for (auto it = waiting.rbegin(); it != waiting.rend(); ++it) outbox_.push_front(std::move(*it));
  if (now - last_heartbeat_ >= heartbeat_seconds_) {
    v1::AgentMessage heartbeat;
    for (auto& [id, trial] : trials_) {
      if (!trial->exited) heartbeat.mutable_heartbeat()->add_running_trial_ids(id);
    }
    heartbeat.mutable_heartbeat()->set_draining(leaving_);
    {
      std::lock_guard<std::mutex> lock(gpu_mu_);
      for (const auto& g : gpu_readings_) *heartbeat.mutable_heartbeat()->add_gpus() = g;
    }
    if (Send(heartbeat)) last_heartbeat_ = now;
  }
  // Trials whose metrics and exit sweepd has made durable are done here.
  for (auto it = trials_.begin(); it != trials_.end();) {
    const Trial& t = *it->second;
    if (t.exited && t.reports->empty() && t.exit_acked) {
      if (t.reports->spill_used()) unlink(t.reports->spill_path().c_str());
      std::error_code ec;
      std::filesystem::remove(t.state_file, ec);
      if (!t.exit_file.empty()) std::filesystem::remove(t.exit_file, ec);
      it = trials_.erase(it);
    } else {
      ++it;
    }
  }
  // Retries that waited for their earlier attempt to end here.
  for (auto it = deferred_assigns_.begin(); it != deferred_assigns_.end();) {
    if (trials_.contains(it->first)) {
      ++it;
      continue;
    }
    const v1::Assign assign = std::move(it->second);
    it = deferred_assigns_.erase(it);
    StartTrial(assign);
  }
}

void Agent::PollOnce() {
  std::vector<pollfd> fds;
  fds.push_back({.fd = wake_pipe_[0], .events = POLLIN, .revents = 0});
  for (auto& [id, trial] : trials_) {
    if (trial->exited) continue;
    fds.push_back({.fd = trial->listen_fd, .events = POLLIN, .revents = 0});
    for (auto& c : trial->clients) fds.push_back({.fd = c.fd, .events = POLLIN, .revents = 0});
  }
  // Short timeout: exits and stop deadlines are checked on every turn.
  poll(fds.data(), fds.size(), 50);
  if (fds[0].revents & POLLIN) {
    char drain[256];
    while (read(wake_pipe_[0], drain, sizeof(drain)) > 0) {
    }
  }
  std::deque<v1::SchedulerMessage> inbox;
  {
    std::lock_guard<std::mutex> lock(inbox_mu_);
    inbox.swap(inbox_);
  }
  for (const auto& m : inbox) HandleMessage(m);
  for (auto& [id, trial] : trials_) {
    if (trial->exited) continue;
    TakeOutput(*trial, kMaxReportsPerTurn);
    AcceptClients(*trial);
    for (auto& c : trial->clients) ServeClient(*trial, c);
    std::erase_if(trial->clients, [](const Client& c) {
      if (c.closed) close(c.fd);
      return c.closed;
    });
    CheckExit(*trial);
  }
  SendPending();
  UpdateRunningSnapshot();
  if (const double now = NowSeconds(); now - last_cleanup_ >= 1) {
    last_cleanup_ = now;
    CleanUpAfterTrials();
  }
}

void Agent::UpdateRunningSnapshot() {
  // What a re-registration reports (read by the connection thread).
  std::vector<v1::RunningTrial> snapshot;
  for (const auto& [id, t] : trials_) {
    v1::RunningTrial r;
    r.set_trial_id(id);
    r.set_node_rank(t->node_rank);
    r.set_attempt(t->attempt);
    r.set_last_seq(t->reports->last_seq());
    r.set_acked_seq(t->reports->acked_seq());
    for (int32_t g : t->gpu_indices) r.add_gpu_indices(g);
    snapshot.push_back(std::move(r));
  }
  std::lock_guard<std::mutex> lock(running_mu_);
  running_snapshot_ = std::move(snapshot);
}

}  // namespace sweepd::worker
