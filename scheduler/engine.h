#pragma once

// The scheduler's state owner. All sweep, trial and agent state lives here and is touched only
// by the engine's own thread: gRPC handlers and store completions post work to it (Post) and
// never read or write state themselves. Memory is the working copy; the store is written
// through, and rebuilt from at start.
//
// Thread safety: the public methods are safe from any thread (they post to the engine thread and,
// for the blocking ones, wait for the answer), except RunUntilIdle, RunQueuedWithoutCommit and
// RunTick, which only the thread that started an engine without its own thread may call.
//
// Its definitions are split by concern: engine.cc (lifecycle, task queue, events, state setters),
// engine_recovery.cc (rebuild from the store), engine_sweep_api.cc (SweepService operations),
// engine_scheduling.cc (proposals, placement, stalls, stops, pruning), engine_agents.cc (the agent
// registry: identity, streams, liveness, quarantine), engine_trials.cc (metric intake and acks,
// trial ends and retries), engine_ask_tell.cc (external runners). Time comes from a Clock, so
// tests/sim/engine_sim runs all of it in virtual time.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "common/clock.h"
#include "scheduler/pruning/pruner.h"
#include "scheduler/search/pbt.h"
#include "scheduler/search/search_method.h"
#include "store/store.h"
#include "sweepd/v1/agent_service.pb.h"
#include "sweepd/v1/sweep_service.pb.h"

namespace sweepd::scheduler {

// Where the engine sends messages for one agent: the agent's stream. Send never blocks.
class AgentChannel {
 public:
  virtual ~AgentChannel() = default;
  virtual void Send(v1::SchedulerMessage message) = 0;
  // Ends the stream; the agent will reconnect.
  virtual void Close() = 0;
};

// The most trials one sweep may have (proposed, enqueued or asked for): bounds the memory and
// store a runaway sweep can take.
inline constexpr int64_t kMaxTrialsPerSweep = 1'000'000;

struct EngineOptions {
  // Seconds between telling a trial to stop and SIGTERM, and between SIGTERM and SIGKILL.
  int stop_grace_seconds = 30;
  // Heartbeat period agents are asked to use.
  int heartbeat_seconds = 5;
  // Quarantine (W&B's flapping rule): an agent whose trials fail this many times within
  // quarantine_window_seconds gets no new trials until released.
  int quarantine_failures = 3;
  double quarantine_window_seconds = 60;
  // An agent silent (no message, or its stream gone) this long is dead: its trials are lost and
  // requeued under the retry policy. Until then they stay running and it may come back.
  double agent_timeout_seconds = 30;
  // After a restart, how long running trials wait for their agents to re-register and reattach
  // them before they count as lost.
  double reattach_seconds = 600;
  // Where time comes from (null: the real clocks). Deterministic simulation passes a FakeClock.
  Clock* clock = nullptr;
  // false: the engine runs no thread of its own; whoever started it runs its work with
  // RunUntilIdle and its periodic checks with RunTick, on that one thread (simulation).
  bool own_thread = true;
  // Non-zero: sweep ids are drawn from a generator seeded with this, so a simulation's history
  // is the same on every run. Zero: from the system's entropy.
  uint64_t id_seed = 0;
};

class Engine {
 public:
  // Shut down in this order (SchedulerServer::Shutdown): Stop(), then close `store`, then destroy
  // the engine. Writes still queued (a full disk) complete into the engine's callbacks as the
  // store closes (found under ASan by engine_sim with disk faults).
  Engine(store::Store* store, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Rebuilds state from the store and starts the engine thread.
  absl::Status Start();
  // Stops handing out work and the thread; closes agent channels.
  void Stop();

  // ---- SweepService operations (blocking: they return once the change is durable).
  absl::StatusOr<v1::CreateSweepResponse> CreateSweep(const v1::CreateSweepRequest& request);
  absl::StatusOr<v1::Sweep> PauseSweep(const std::string& sweep_id);
  absl::StatusOr<v1::Sweep> ResumeSweep(const std::string& sweep_id);
  absl::StatusOr<v1::Sweep> CancelSweep(const std::string& sweep_id, const std::string& reason);
  absl::StatusOr<v1::Trial> EnqueueTrial(const v1::EnqueueTrialRequest& request);
  absl::StatusOr<std::vector<v1::Agent>> ListAgents(bool all);
  // Lifts an agent's quarantine; FAILED_PRECONDITION when it is not quarantined.
  absl::StatusOr<v1::Agent> ReleaseAgent(const std::string& agent_id);

  // ---- Ask/tell for external runners (sweeps created with `external`).
  // A new trial (state RUNNING) with its parameters; OUT_OF_RANGE when nothing is left.
  absl::StatusOr<v1::Trial> AskTrial(const std::string& sweep_id);
  // Stores an intermediate report and answers with the pruning decision.
  absl::StatusOr<v1::ReportTrialResponse> ReportTrial(const v1::ReportTrialRequest& request);
  // Ends the trial with its final value and state.
  absl::StatusOr<v1::Trial> TellTrial(const v1::TellTrialRequest& request);

  // ---- Agent streams.
  // Registers (or re-registers) an agent; returns the reply to send first.
  absl::StatusOr<v1::Registered> AgentConnected(const v1::Register& request,
                                                std::shared_ptr<AgentChannel> channel);
  void AgentMessageReceived(const std::string& agent_id, v1::AgentMessage message);
  void AgentDisconnected(const std::string& agent_id, const AgentChannel* channel);
  // The agent said goodbye (Deregister: drained, or shutting down): it is gone now, and any
  // trial it still held is lost at once rather than after the dead-agent timeout.
  void AgentLeft(const std::string& agent_id, const AgentChannel* channel,
                 const std::string& reason);

  // ---- Watching. Events are durable before watchers hear of them.
  // Waits until the event counter passes `seen` or `timeout_ms` passes; returns the counter.
  int64_t WaitForEvents(int64_t seen, int timeout_ms);
  // Whether the sweep has ended (finished, canceled or failed) with nothing left running.
  bool SweepDone(const std::string& sweep_id);
  // Why no trial of the running sweep can start although it has work left and nothing runs
  // (every agent quarantined, none with room for its resources, none connected); empty while
  // it is not stuck. Any thread; never waits on the engine thread.
  std::string StallReason(const std::string& sweep_id) const;

  store::Store& store() { return *store_; }

  // Counters for sweepd's /metrics. Any thread; never waits on the engine thread.
  struct Stats {
    int64_t reports_received = 0;        // reports in the metric batches taken in
    int64_t reports_acknowledged = 0;    // of those, stored and acknowledged to their agent
    int64_t metric_batches_refused = 0;  // refused while the store could not commit
    int64_t queue_depth = 0;             // tasks waiting for the engine thread
  };
  Stats GetStats();

  // ---- Driving an engine started with own_thread = false (the thread that called Start only).
  // Runs queued work until none is left, store completions included: after it returns, every
  // write the engine made has committed and its follow-up has run.
  void RunUntilIdle();
  // Runs the engine's queued work without letting the store commit what it writes (a store with
  // hold_writes_until_flush keeps it queued): the moment a kill -9 can catch.
  void RunQueuedWithoutCommit();
  // The periodic checks the engine thread runs twice a second (agent liveness, reattach
  // deadlines, stalls, judge periods), at the clock's current time.
  void RunTick();

 private:
  // One node of a trial's placement (one for ordinary trials, `nodes` for gangs).
  struct Node {
    std::string agent_id;
    std::vector<int32_t> gpu_indices;
    bool assigned = false;  // Assign sent: node 0 at once, the others once node 0 has a port
    bool attached = true;   // false after a restart until its agent re-registers with it
    bool exited = false;
    double wall_seconds = 0;
  };

  struct Trial {
    int64_t id = 0;
    std::string public_id;
    int64_t sweep_id = 0;
    int64_t number = 0;
    v1::TrialState state = v1::TRIAL_STATE_QUEUED;
    ParamSet params;
    int32_t attempt = 1;
    bool enqueued = false;
    std::string agent_id;     // node 0's agent ("external" for ask/tell)
    std::vector<Node> nodes;  // empty while queued
    std::string master_addr;  // node 0's rendezvous address and port, once it started
    int32_t master_port = 0;
    int64_t start_us = 0;
    double reattach_deadline = 0;  // steady seconds; while nodes are not attached
    // Why the scheduler stopped it, when it did ("sweep canceled"): decides its final state.
    std::optional<v1::TrialState> stop_as;
    std::string stop_reason;
    size_t history_index = 0;  // its record in the sweep's search history
    // Pruning: reports of the sweep metric so far, the resource reached, the last value of the
    // resource metric (when the resource is a metric).
    int64_t metric_reports = 0;
    double resource = 0;
    std::optional<double> resource_metric_value;
    // Its last checkpoint (a report marked checkpoint), where a retry resumes, and the pruning
    // progress at that report, which a retry rewinds to.
    std::optional<int64_t> checkpoint_step;
    int64_t metric_reports_at_checkpoint = 0;
    double resource_at_checkpoint = 0;
    // The step this attempt resumed from (-1: from the beginning), for the GPU time a retry
    // redoes.
    int64_t attempt_start_step = -1;
    // ASHA with promotion: times it was promoted past a rung (the pruner lets it record one
    // rung more per promotion), and of those the ones that resumed it as a new attempt (attempts
    // that are not retries; the others let it go on in place).
    int32_t promotions = 0;
    int32_t resumed_promotions = 0;
    // For the checkpoint policy: where it last ran (node-local checkpoints live there), its
    // best value of the sweep metric, when it ended, and whether its checkpoints are deleted.
    std::vector<std::string> ran_on;
    std::optional<double> best_value;
    int64_t end_us = 0;
    bool checkpoint_deletion_queued = false;
    // Method pbt. A copy starts from `pbt_parent`'s checkpoint at `pbt_parent_step` (its own
    // first checkpoint_step), in place of the member it replaced; until it has started, that
    // checkpoint is pinned (copy_pending) and, without a shared checkpoint.dir, it runs only where
    // the parent's files are. A replaced member has left the population. pbt_last_step: its last
    // report of the sweep metric (decisions come at interval boundaries past it).
    bool pbt_copy = false;
    int64_t pbt_parent = 0;
    int64_t pbt_parent_step = 0;
    bool copy_pending = false;
    bool pbt_replaced = false;
    int64_t pbt_last_step = -1;
    // The sweep metric at its last decision (Ray ranks members by the score they had then, and
    // leaves out those that have made none); after a restart, until its next decision, its
    // latest value.
    std::optional<double> pbt_score;
    int64_t last_seq_seen = -1;           // redelivered reports are stored once and pruned on once
    std::vector<std::string> indexed_on;  // agents whose agent_trials_ entry holds it
  };

  struct Sweep {
    int64_t id = 0;
    std::string public_id;
    v1::SweepSpec spec;
    std::string spec_dir;
    v1::SweepState state = v1::SWEEP_STATE_RUNNING;
    bool external = false;
    std::unique_ptr<SearchMethod> search;
    PopulationBasedTraining* pbt = nullptr;  // `search` when the method is pbt
    std::set<int64_t> pending_copies;        // pbt copies not yet started (their pins)
    std::vector<TrialRecord> history;
    std::vector<int64_t> trial_ids;  // by number
    std::deque<int64_t> queue;       // queued trial ids, enqueued ones first
    int64_t proposed = 0;            // trials created (retries not counted)
    int64_t failures = 0;
    double gpu_seconds = 0;
    bool exhausted = false;  // the method has nothing more to propose
    std::string exhausted_reason;
    std::optional<double> best_value;
    bool target_reached = false;
    std::unique_ptr<pruning::Pruner> pruner;  // null: no early stopping
    std::string resource_metric;              // empty: the report's step
    double max_completed_resource = 0;        // for the GPU time saved by pruning
    // Trials assigned or running, and those plus queued ones: kept by every state change, so
    // scheduling never scans the sweep's history.
    int64_t active = 0;
    int64_t live = 0;
    // ASHA with promotion: trials paused at a rung, waiting to be promoted.
    std::set<int64_t> paused;
    // The checkpoint policy: pruned trials waiting out delete_pruned_after_hours (in the order
    // they ended), and trials whose checkpoints are to be deleted now (when an agent can).
    std::deque<int64_t> pruned_checkpoints;
    std::deque<int64_t> checkpoint_deletions;
    // Why it cannot go on (see StallReason); empty while it can.
    std::string stall_reason;
    // early_terminate_period: its pruner judges running trials on this timer (steady seconds of
    // the last round), not at their reports.
    double judge_period = 0;
    double judged_at = 0;
  };

  struct Agent {
    std::string id;
    v1::Agent info;
    std::shared_ptr<AgentChannel> channel;
    std::vector<std::string> slot_trial;  // per GPU index (or CPU slot): trial public id or ""
    int64_t incarnation = 0;
    bool connected = false;
    double last_seen = 0;        // steady seconds of its last message
    double disconnected_at = 0;  // steady seconds; 0 while connected or once its loss is handled
    std::deque<double> failure_times;  // seconds, steady clock; for quarantine
    bool quarantined = false;
    std::string quarantine_reason;
    bool draining = false;  // finishing its trials before leaving: no new ones
    // From its registration: the key only its own restarts know, its pid, and since when
    // (wall clock) its stream is up. They name it when another registration clashes.
    std::string workdir_key;
    int32_t pid = 0;
    int64_t connected_since_us = 0;
  };

  // Runs `task` on the engine thread.
  void Post(std::function<void()> task);
  // Runs `task` on the engine thread and waits for its result.
  template <typename T>
  T Call(std::function<T()> task);
  void Loop();
  // Periodic checks (engine thread): silent or long-gone agents, trials not reattached in time.
  void Tick();
  // The agent is dead: every node it ran is lost.
  void LoseAgentTrials(Agent& agent, const std::string& reason);
  // Sends `message` once every write the engine made before this call is committed, and only
  // then: what an agent is told to do (start a trial, stop one) is on disk first, so a sweepd
  // killed at any moment never has a trial running that its store does not place there (found by
  // engine_sim: an Assign sent before its commit, then a restart, ran the trial on two agents).
  // Every message to agents goes this way, so each channel keeps the order they were sent in.
  void SendWhenDurable(const std::shared_ptr<AgentChannel>& channel, v1::SchedulerMessage message);
  // Tells the agent a trial's exit is durable, so it can forget the trial.
  void AckExitWhenDurable(const std::shared_ptr<AgentChannel>& channel,
                          const std::string& trial_id);
  double SteadySeconds() const { return clock_->SteadySeconds(); }
  std::string NewSweepPublicId();

  // State changes, engine thread only.
  absl::Status Rebuild();
  void Schedule();
  bool ScheduleSweep(Sweep& sweep);
  // Method pbt's copies: where a new trial's weights come from and whom it replaces.
  struct Lineage {
    int64_t parent = 0;
    int64_t parent_step = 0;
    int64_t replaced = 0;
  };
  std::optional<int64_t> NewTrial(Sweep& sweep, ParamSet params, bool enqueued,
                                  const Lineage* lineage = nullptr);
  bool Assign(Sweep& sweep, Trial& trial);
  void SetTrialState(Trial& trial, v1::TrialState state, const std::string& reason,
                     store::TrialUpdate update = {});
  void SetSweepState(Sweep& sweep, v1::SweepState state, const std::string& reason);
  void StopTrial(Trial& trial, v1::TrialState stop_as, const std::string& reason);
  void MaybeFinish(Sweep& sweep);
  void OnTrialStarted(Agent& agent, const v1::TrialStarted& started);
  void OnMetricBatch(Agent& agent, v1::MetricBatch batch);
  void OnTrialExited(Agent& agent, const v1::TrialExited& exited);
  // Stores a trial's reports, tracks the sweep's best and target, feeds the pruner (prune), and
  // acknowledges them to `ack_to` once durable.
  void StoreReports(Sweep& sweep, Trial& trial, v1::MetricBatch batch,
                    const std::shared_ptr<AgentChannel>& ack_to, bool prune = true);
  // A trial ended: pruner, GPU accounting (used and saved), state, failure budget, scheduling.
  void EndTrial(Sweep& sweep, Trial& trial, v1::TrialState final_state, const std::string& reason,
                double gpu_seconds, store::TrialUpdate update = {});
  void ReleaseSlots(Trial& trial);
  // A lost trial goes back to the queue to run again: from its checkpoint when it has one (the
  // reports past it are dropped, the pruner rewound), else from the beginning.
  void Requeue(Sweep& sweep, Trial& trial, double attempt_gpu_seconds);
  // ASHA with promotion: the pruner's next promotable paused trial goes to the front of the
  // queue, to run on from its checkpoint; false when none is promotable.
  bool PromoteNext(Sweep& sweep);
  // Whether paused trials may still be promoted: not once the metric target is reached or the
  // GPU-hour budget is spent.
  bool MayPromote(const Sweep& sweep) const;
  // A trial stopped at a rung has exited: it waits, paused, holding nothing.
  void PauseTrial(Sweep& sweep, Trial& trial, const std::string& reason, double gpu_seconds,
                  store::TrialUpdate update);
  // The checkpoint policy (engine_checkpoints.cc). Once the sweep has ended: every ended trial
  // but the best keep_best is queued for deletion.
  void QueueCheckpointsBeyondTheBest(Sweep& sweep);
  // A trial ended: pruned ones start their delete_pruned_after_hours wait.
  void CheckpointPolicyOnTrialEnd(Sweep& sweep, Trial& trial);
  // On the engine's tick: due deletions are sent to an agent that can reach the checkpoints.
  void RunCheckpointPolicy(Sweep& sweep);
  // The agents a trial of `sweep` could be placed on now, packed: fewest free slots first.
  // early_terminate_period: every running trial of the sweep judged now, as W&B's controller
  // judges them on its timer.
  void JudgeRunningTrials(Sweep& sweep);
  // After scheduling: whether the sweep is stuck, and why (see StallReason).
  void UpdateStall(Sweep& sweep);
  std::string WhyNoPlacement(const Sweep& sweep) const;
  // With `trial`: for that trial (a pbt copy whose checkpoint is on one node's disk goes there
  // while that agent is around).
  std::vector<Agent*> Placement(const Sweep& sweep, const Trial* trial = nullptr);
  // Method pbt (engine_pbt.cc). At a member's interval boundary: when it ranks in the bottom
  // quantile, it stops and a copy of a top member's checkpoint with explored hyperparameters
  // takes its place at the front of the queue.
  void PbtOnReport(Sweep& sweep, Trial& trial, int64_t step,
                   const google::protobuf::Map<std::string, double>& metrics);
  // The checkpoint step of `trial` that a pbt copy not yet started needs kept, if any.
  std::optional<int64_t> PinnedCheckpoint(const Sweep& sweep, const Trial& trial) const;
  // Rebuild: lineage fields from the stored trials.
  void RestorePbt(Sweep& sweep, const std::map<std::string, v1::Trial>& stored);
  // Sends a node its Assign.
  void AssignNode(Sweep& sweep, Trial& trial, size_t rank);
  // The trial's checkpoint is out of reach (node-local on another node; a pbt copy whose agent
  // could not copy its parent's): it forgets it and runs from the beginning, its reports and
  // pruner state with it, and the event trial.checkpoint_unreachable says `why`.
  void StartOver(Sweep& sweep, Trial& trial, const std::string& agent_id, const std::string& why);
  // The node of `trial` that `agent_id` runs, or nullptr.
  Node* NodeOn(Trial& trial, const std::string& agent_id);
  // A node ended (exited, or its agent went away): stops the others on a failure and ends the
  // trial once every node has.
  void NodeEnded(Sweep& sweep, Trial& trial, Node& node, v1::TrialState node_state,
                 const std::string& reason, store::TrialUpdate update);
  // Counts a quick failure on an agent; quarantines it past the flapping limit.
  void CountAgentFailure(Agent& agent, const std::string& trial_id);
  // Feeds one report to the sweep's pruner; stops the trial when it says so (decide == false:
  // only records, when rebuilding).
  void Prune(Sweep& sweep, Trial& trial, int64_t step,
             const google::protobuf::Map<std::string, double>& metrics, bool decide);
  absl::Status ReplayPruner(Sweep& sweep);
  void Event(int64_t sweep_id, int64_t trial_id, const std::string& agent_id,
             const std::string& kind, const std::string& from, const std::string& to,
             const std::string& message);
  store::NewEvent MakeEvent(int64_t sweep_id, int64_t trial_id, const std::string& agent_id,
                            const std::string& kind, const std::string& from, const std::string& to,
                            const std::string& message) const;
  // Completion of a write that stored an event: wakes watchers. `what` names it in errors.
  store::WriteDone EventStored(const char* what);
  Sweep* FindSweep(const std::string& public_id);
  Trial* FindTrial(const std::string& public_id);
  bool Live(const Trial& trial) const;
  // Keeps agent_trials_ true for `trial` after its state or placement changed.
  void Reindex(Trial& trial);
  // The live trials with a node on the agent (a copy: callers change trials as they go).
  std::set<int64_t> TrialsOn(const std::string& agent_id) const;
  // Public ids of the trials an agent holds: those in `slots` (its slot table) and every live
  // trial with a node on it that has not exited.
  std::set<std::string> TrialsHeldBy(const std::string& agent_id,
                                     const std::vector<std::string>& slots) const;
  static void CountTrial(Sweep& sweep, v1::TrialState state, int delta);
  v1::Sweep SweepSnapshot(const Sweep& sweep);
  v1::Agent AgentSnapshot(const Agent& agent) const;
  int64_t NowMicros() const;

  store::Store* const store_;
  const EngineOptions options_;
  Clock* const clock_;
  std::mt19937_64 id_rng_;  // when options_.id_seed is set

  // Without an own thread: the driving thread, and work posted from other threads (store
  // completions), which RunUntilIdle takes in only once the store is flushed, so its order does
  // not depend on thread timing.
  std::thread::id driver_;
  std::deque<std::function<void()>> foreign_tasks_ ABSL_GUARDED_BY(tasks_mu_);

  std::mutex tasks_mu_;
  std::condition_variable tasks_cv_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(tasks_mu_);
  bool stopping_ ABSL_GUARDED_BY(tasks_mu_) = false;
  std::thread thread_;

  // Stalled sweeps by public id, published by the engine thread for readers on any thread.
  mutable std::mutex stalls_mu_;
  std::map<std::string, std::string> stalls_ ABSL_GUARDED_BY(stalls_mu_);

  std::mutex events_mu_;
  std::condition_variable events_cv_;
  int64_t event_counter_ ABSL_GUARDED_BY(events_mu_) = 0;

  // Engine-thread state.
  std::map<int64_t, Sweep> sweeps_;
  std::map<std::string, int64_t> sweep_ids_;
  std::map<int64_t, Trial> trials_;
  std::map<std::string, int64_t> trial_ids_;
  std::map<std::string, Agent> agents_;
  // Index: agent id -> live trials placed on it (every state change goes through SetTrialState,
  // which keeps it), so an agent's trials are found without scanning every trial ever made.
  std::map<std::string, std::set<int64_t>> agent_trials_;
  // Trials that wait for their agents to reattach them after a restart.
  std::set<int64_t> awaiting_reattach_;
  int64_t next_sweep_id_ = 1;
  int64_t next_trial_id_ = 1;
  int64_t next_incarnation_ = 1;
  double started_at_ = 0;  // steady seconds of Start()
  // While the store cannot commit: scheduling waits, metric batches are refused (unacknowledged,
  // so agents re-send them).
  bool store_was_degraded_ = false;
  int64_t metric_batches_refused_ = 0;
  bool ending_paused_ = false;  // MaybeFinish is ending paused trials (EndTrial re-enters it)
  std::atomic<int64_t> reports_received_{0};
  std::atomic<int64_t> reports_acknowledged_{0};
  std::atomic<int64_t> batches_refused_total_{0};
};

}  // namespace sweepd::scheduler
