#pragma once

// sweep-agent: connects to the scheduler, registers its slots, runs assigned trials as process
// groups, serves each trial's reporting socket, relays metrics with sequence numbers until they
// are acknowledged, and stops trials when told.
//
// Threads: Run() drives the trial loop (poll over pipes and sockets) on the calling thread; a
// connection thread owns the gRPC stream and hands scheduler messages to the loop through an
// inbox. Stop() may be called from any thread.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "common/clock.h"
#include "common/file_lock.h"
#include "common/security.h"
#include "sweepd/v1/agent_service.grpc.pb.h"
#include "worker/gpu_monitor.h"
#include "worker/report_buffer.h"
#include "worker/scheduler_connection.h"
#include "worker/trial_state_file.h"

namespace sweepd::worker {

struct AgentOptions {
  std::string scheduler = "127.0.0.1:7777";
  // Stable name across restarts; default: derived from the host and the workdir and kept in the
  // workdir (worker/agent_identity.h).
  std::string agent_id;
  // CPU slots, when the node has no GPUs (or discovery is off).
  int slots = 1;
  // GPUs to use, by CUDA index ("0,1"); empty: discover them.
  std::string gpus;
  // auto (NVML, then nvidia-smi), nvml, nvidia-smi, or none.
  std::string gpu_discovery = "auto";
  // Address other nodes reach this one at (MASTER_ADDR of gangs it leads); default: hostname.
  std::string advertise_address;
  // Trials run in WORKDIR/<sweep>/<trial>/.
  std::string workdir = "sweepd-work";
  // `program` resolves against this folder unless the scheduler names one (sweepctl run).
  std::string code_dir = ".";
  // `${interpreter}`.
  std::string interpreter = "python3";
  // A folder holding the `sweepd` Python package, put first on trials' PYTHONPATH.
  std::string python_path;
  // sweep-trial-shim, the parent of each trial's command, so trials survive an agent crash and
  // a restarted agent takes them over. Empty: commands run directly (and die with the agent).
  std::string trial_shim;
  // Appends every metrics acknowledgement ("trial first_seq acked_seq") here: an audit trail of
  // what sweepd said was durable (the chaos test checks the store against it).
  std::string ack_log;
  // Unacknowledged reports kept in memory per trial; more (while sweepd is away or its store
  // cannot commit) wait in a file in the trial's workdir, up to max_spill_bytes.
  size_t max_buffered_reports = 10000;
  uint64_t max_spill_bytes = uint64_t{1} << 30;
  // At most this much of a trial's stdout is kept in stdout.log.
  uint64_t max_log_bytes = uint64_t{1} << 30;
  // TLS to sweepd (ca: sweepd's CA; cert/key: this agent's certificate, whose common name must
  // be its agent id) and the token ($SWEEPD_TOKEN) when sweepd takes agents by token.
  TlsFiles tls;
  std::string token;
  // Seconds between reconnect attempts grow from 0.2 to this.
  double max_backoff_seconds = 10;
  // Leave(): with drain, running trials may finish (up to drain_timeout_seconds, 0 = no limit);
  // without, they are stopped at once: SIGTERM, then SIGKILL after stop_grace_seconds.
  bool drain = false;
  double drain_timeout_seconds = 0;
  int stop_grace_seconds = 10;
  // A cgroup (v2) per trial where the agent can create them (trial_cgroup.h); off: never.
  bool trial_cgroups = true;
  // What every timeout of the trial loop (grace periods, re-sends, heartbeats, leaving) and the
  // reports' times are measured on. Not owned.
  Clock* clock = &RealClock();
  // After its trials are gone, how long a leaving agent waits for sweepd to acknowledge their
  // reports and exits before it goes anyway.
  double leave_ack_seconds = 30;
};

class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Runs until Stop(): trials, reports, reconnects. Returns after every trial process is gone.
  absl::Status Run();
  // Asks Run() to stop now: running trials are killed (their process groups), the stream ends.
  void Stop();
  // Asks the agent to leave gracefully (a stop signal): it takes no new trials, lets the running
  // ones finish (options.drain) or stops them (reported as interrupted, so sweepd retries them
  // at once), waits for sweepd to acknowledge what they reported, deregisters, and Run()
  // returns. Safe from any thread.
  void Leave();

 private:
  struct Trial;
  struct Client;

  // Decides what the node offers: --gpus, discovered GPUs, or CPU slots.
  absl::Status DiscoverResources();
  // Takes over the trials an earlier run of this agent left running (from their state files),
  // or kills those it cannot take over, so their GPUs are never handed out twice.
  void AdoptLeftoverTrials();
  absl::Status AdoptTrial(const TrialState& state);
  void WriteStateFile(const Trial& trial);
  void GpuMonitorLoop();
  // The Register sent on each (re)connection: identity, slots, and the trials it still has.
  v1::AgentMessage Hello();
  void HandleMessage(const v1::SchedulerMessage& message);
  void StartTrial(const v1::Assign& assign);
  void PollOnce();
  // Starts reading the trial's stdout on its own thread (worker/trial_output.h).
  void StartOutput(Trial& trial, bool append);
  // Moves up to `max` reports parsed from its stdout into the trial's reports.
  void TakeOutput(Trial& trial, size_t max);
  void AcceptClients(Trial& trial);
  void ServeClient(Trial& trial, Client& client);
  std::string HandleRequest(Trial& trial, const std::string& line, int peer_pid);
  // The spec's checkpoint policy says this trial's checkpoints may go (a folder under the
  // shared checkpoint dir, or under this agent's workdir).
  void DeleteCheckpoint(const v1::DeleteCheckpoint& request);
  // `checkpoint`: the report marks a checkpoint saved at `step` (metrics may be empty).
  void AddReport(Trial& trial, std::optional<int64_t> step,
                 std::vector<std::pair<std::string, double>> metrics, bool checkpoint = false);
  // The trial's report buffer (worker/report_buffer.h), with its spill file in its workdir.
  std::unique_ptr<ReportBuffer> NewReportBuffer(const Trial& trial) const;
  void CheckExit(Trial& trial);
  // Kills whatever the trial left running once its leader has ended (its group; and, with a
  // trial cgroup, every process in it).
  void KillLeftovers(Trial& trial);
  // Reads what the trial's cgroup used, logs it, and removes the cgroup.
  void ReleaseCgroup(Trial& trial);
  // Once a second: kills processes ended trials left behind that were re-parented to the agent,
  // reaps them, and removes cgroups that were still emptying.
  void CleanUpAfterTrials();
  void SendPending();
  void UpdateRunningSnapshot();
  bool Send(const v1::AgentMessage& message);
  void Wake();
  double NowSeconds() const { return options_.clock->SteadySeconds(); }
  int64_t NowMicros() const { return options_.clock->NowMicros(); }
  double UnixSeconds() const { return static_cast<double>(options_.clock->NowMicros()) / 1e6; }

  const AgentOptions options_;
  std::string agent_id_;
  std::string agent_key_;                 // proves a re-registration is this agent's own
  std::optional<FileLock> workdir_lock_;  // one agent per workdir, for the life of Run()
  // Why Run() ends with an error found on the connection thread (the id is taken).
  std::mutex fatal_mu_;
  absl::Status fatal_ ABSL_GUARDED_BY(fatal_mu_);
  std::atomic<bool> refused_{false};
  std::string state_dir_;           // per-trial state files (pid, start time, GPUs)
  std::vector<v1::Gpu> resources_;  // what Register advertises, by slot
  bool has_gpus_ = false;
  std::ofstream ack_log_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::unique_ptr<GpuMonitor> gpu_monitor_;
  std::thread gpu_thread_;
  std::mutex gpu_mu_;
  std::vector<v1::Gpu> gpu_readings_ ABSL_GUARDED_BY(gpu_mu_);  // latest utilisation and memory
  std::atomic<bool> stopping_{false};
  std::atomic<bool> leave_requested_{false};
  std::string runtime_dir_;  // holds the reporting sockets (short paths)
  int wake_pipe_[2] = {-1, -1};

  // Messages from the scheduler, handed from the connection thread to the trial loop.
  std::mutex inbox_mu_;
  std::deque<v1::SchedulerMessage> inbox_ ABSL_GUARDED_BY(inbox_mu_);

  // The stream to sweepd (worker/scheduler_connection.h), on its own thread; created by Run().
  // Set once under connection_mu_ (Stop() reads it from any thread); the trial loop and the
  // destructor use it without the lock after that.
  std::mutex connection_mu_;
  std::unique_ptr<SchedulerConnection> connection_;

  // The trials Register reports, refreshed by the trial loop.
  std::mutex running_mu_;
  std::vector<v1::RunningTrial> running_snapshot_ ABSL_GUARDED_BY(running_mu_);

  // Trial-loop state.
  std::map<std::string, std::unique_ptr<Trial>> trials_;
  std::deque<v1::AgentMessage> outbox_;  // started/exited messages not yet sent
  // Assigns of a trial whose earlier attempt is still ending here, by trial id.
  std::map<std::string, v1::Assign> deferred_assigns_;
  int64_t seen_generation_ = 0;
  // Leaving (trial loop): since when, whether trials are being stopped, and since when the last
  // trial is gone (waiting for acknowledgements).
  bool leaving_ = false;
  bool stopping_trials_ = false;
  double leave_started_ = 0;
  double trials_gone_at_ = 0;
  // Interrupts running trials: SIGTERM now, SIGKILL after the grace period.
  void StopTrialsForLeaving(const std::string& why);
  // Drives a graceful leave; true once the agent may go.
  bool LeaveStep();
  int heartbeat_seconds_ = 5;
  double last_heartbeat_ = 0;
  double last_cleanup_ = 0;
  std::string cgroup_parent_;  // where trial cgroups go; empty: none (trial_cgroup.h)
  std::vector<std::string> stale_cgroups_;
  int next_socket_ = 0;
};

}  // namespace sweepd::worker
