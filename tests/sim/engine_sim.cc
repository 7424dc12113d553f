// Deterministic simulation of the scheduler core: the real Engine and a real Store (a temporary
// SQLite file) with simulated agents, in virtual time (FakeClock), from a seed.
//
// Each seed builds a world of 2-4 agents and one sweep, then takes random steps: time passes
// (agents heartbeat, the engine runs its periodic checks), trials report and exit, agents' streams
// break (messages in flight are lost), agents hang, crash with their trials, or restart keeping
// them, sweepd is killed and rebuilt from its store, the store's disk fills (real SQLITE_FULL, from
// a page cap on the writer's connection) and frees, operators pause, resume and enqueue. Then the
// faults stop and the sweep must finish. After every step it checks:
//   - an Assign never names a trial another agent still runs, unless sweepd has had the time to
//     declare that agent lost (its stream down past the dead-agent timeout), and never a GPU its
//     agent's running trials hold;
//   - every report sweepd acknowledged is stored exactly once (at the end of the run, and after
//     every sweepd restart);
//   - at the end: every trial terminal, the sweep's counts and GPU seconds equal the sum over its
//     trials, PRAGMA integrity_check is ok.
// Identical seeds give identical histories (the log of every action and message): --repeat runs
// each seed twice and compares them. A failure prints the seed; --seed N --verbose replays it.
//
// Usage: engine_sim [--seeds N] [--first-seed S] [--seed S] [--steps N] [--repeat] [--verbose]

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/clock.h"
#include "common/state_names.h"
#include "scheduler/engine.h"
#include "spdlog/spdlog.h"
#include "store/sqlite.h"
#include "store/store.h"
#include "tests/testing/recording_channel.h"

namespace sweepd::sim {
namespace {

using scheduler::AgentChannel;
using scheduler::Engine;
using scheduler::EngineOptions;

constexpr double kAgentTimeout = 30;
constexpr double kReattach = 120;

using SimChannel = testing::RecordingChannel;

struct SimTrial {
  std::string id;
  int32_t rank = 0;  // node rank within a gang (0 for single-node trials)
  int32_t attempt = 1;
  std::vector<int32_t> gpus;
  bool seq_known = true;  // false after the agent restarted with it, until Registered
  int64_t next_seq = 0;
  int64_t acked_seq = -1;
  std::deque<v1::Report> unacked;
  bool stop_requested = false;
  int reports = 0;
  double started_at = 0;
};

struct SimAgent {
  std::string id;
  std::string key;
  int gpus = 1;
  int32_t pid = 0;
  bool connected = false;
  bool hung = false;  // alive, but sends nothing (no heartbeats)
  // The last time sweepd heard from it: a message, or its stream still up while it was not hung.
  double last_contact = 0;
  std::shared_ptr<SimChannel> channel;
  std::map<std::string, SimTrial> trials;  // processes alive on the node
  // Exits not yet acknowledged, with the GPUs the trial held (the real agent still lists such a
  // trial as running when it registers, so sweepd reattaches it rather than losing it).
  std::map<std::string, std::pair<v1::TrialExited, std::vector<int32_t>>> exited;
};

// What the seeds did, summed, so a run says how much it exercised.
struct Totals {
  int64_t steps = 0, assigns = 0, gang_sweeps = 0, reports_acked = 0, stream_drops = 0, hangs = 0,
          crashes = 0, sweepd_restarts = 0, agent_leaves = 0, cancels = 0, disk_fills = 0,
          steps_with_disk_full = 0, promotion_sweeps = 0, pbt_sweeps = 0;
  int64_t trials = 0, completed = 0, pruned = 0, failed = 0, lost = 0, canceled = 0;
};

class World {
 public:
  World(uint64_t seed, int max_steps, bool verbose, Totals* totals)
      : seed_(seed), rng_(seed), max_steps_(max_steps), verbose_(verbose), totals_(*totals) {}
  ~World() {
    CloseSweepd();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  // Runs the seed; returns the violations found (empty: it passed).
  std::vector<std::string> Run() {
    // Memory-backed when the machine has /dev/shm: the simulation commits at every step.
    std::string tmpl = ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    tmpl += "/engine-sim-XXXXXX";
    const char* base = ::mkdtemp(tmpl.data());
    if (base == nullptr) return {"mkdtemp failed"};
    dir_ = base;
    if (auto s = OpenSweepd(); !s.ok()) return {absl::StrCat("open: ", s.ToString())};
    const int agents = 2 + Pick(3);
    for (int i = 0; i < agents; ++i) {
      SimAgent agent;
      agent.id = absl::StrCat("node", i);
      agent.key = absl::StrCat("key", i);
      agent.gpus = 1 + Pick(2);
      agent.pid = 100 + i;
      agents_.push_back(std::move(agent));
      Connect(agents_.back(), /*restarted=*/false);
    }
    CreateSweep();
    for (int step = 0; step < max_steps_ && violations_.empty(); ++step) {
      ++totals_.steps;
      if (disk_full_) ++totals_.steps_with_disk_full;
      RandomStep(/*faults=*/true);
      Deliver();
    }
    Heal();
    if (violations_.empty()) CheckEnd();
    return violations_;
  }

  const std::string& history() const { return history_; }

 private:
  int Pick(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
  bool Chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  void Log(const std::string& line) {
    const std::string entry = absl::StrCat("t=", clock_.SteadySeconds(), " ", line, "\n");
    history_ += entry;
    if (verbose_) std::fputs(entry.c_str(), stdout);
  }
  void Violation(const std::string& what) {
    Log("VIOLATION " + what);
    violations_.push_back(what);
  }

  absl::Status OpenSweepd() {
    store::StoreOptions options;
    options.path = dir_ + "/sweepd.db";
    options.synchronous = store::Synchronous::kNormal;  // kill -9, not power loss, is simulated
    options.hold_writes_until_flush = true;
    // A full disk is retried once per Flush; once the simulation frees it, the retry lifts the cap.
    options.before_retry = [this](store::Connection& db) {
      if (!disk_full_) (void)db.Exec("PRAGMA max_page_count = 1073741823");
    };
    auto store = store::Store::Open(options);
    if (!store.ok()) return store.status();
    store_ = std::move(*store);
    EngineOptions engine_options;
    engine_options.clock = &clock_;
    engine_options.own_thread = false;
    engine_options.id_seed = seed_ + 1;
    engine_options.agent_timeout_seconds = kAgentTimeout;
    engine_options.reattach_seconds = kReattach;
    engine_options.heartbeat_seconds = 5;
    engine_options.stop_grace_seconds = 5;
    engine_ = std::make_unique<Engine>(store_.get(), engine_options);
    return engine_->Start();
  }

  // As sweepd shuts down (SchedulerServer::Shutdown): the engine stops, the store closes while
  // the engine still exists (writes still queued, with a full disk, complete into the engine's
  // callbacks), then the engine goes.
  void CloseSweepd() {
    if (engine_) engine_->Stop();
    store_.reset();
    engine_.reset();
  }

  void CreateSweep() {
    const int trials = 6 + Pick(10);
    const bool asha = Chance(0.5);
    // A quarter of the other sweeps are population-based training (by the seed, as below):
    // copies of checkpoints replace members, through restarts and faults alike.
    const bool pbt = !asha && seed_ % 4 == 2;
    std::string spec =
        absl::StrCat("program: train.py\nmethod: ", pbt ? "pbt" : "random",
                     "\nmetric: {name: loss, goal: minimize}\n"
                     "parameters:\n  lr: {min: 0.0001, max: 0.1}\n  layers: {values: [1, 2, 3]}\n"
                     "run_cap: ",
                     trials, "\nmax_retries: 2\nmax_failures: 40\nseed: ", seed_ % 1000, "\n");
    if (pbt) {
      spec += absl::StrCat("pbt: {population_size: ", trials,
                           ", interval: 2}\ncheckpoint: {dir: /shared/checkpoints}\n");
      ++totals_.pbt_sweeps;
    }
    if (asha) {
      // A quarter of the ASHA sweeps pause and promote (chosen by the seed, not a draw, so the
      // other seeds' worlds stay as they were).
      spec +=
          absl::StrCat("pruner: {type: asha, min_resource: 1, reduction_factor: 2, max_resource: 8",
                       seed_ % 4 == 3 ? ", mode: promotion" : "", "}\n");
      if (seed_ % 4 == 3) ++totals_.promotion_sweeps;
    }
    if (Chance(0.3)) {
      spec += "resources: {nodes: 2, gpus_per_node: 1}\n";
      ++totals_.gang_sweeps;
    }
    v1::CreateSweepRequest request;
    request.set_spec_yaml(spec);
    auto created = engine_->CreateSweep(request);
    if (!created.ok()) {
      Violation("create sweep: " + created.status().ToString());
      return;
    }
    sweep_id_ = created->sweep().id();
    Log(absl::StrCat("created ", sweep_id_, " run_cap ", trials));
  }

  // ---- Agents.

  void Connect(SimAgent& agent, bool restarted) {
    v1::Register reg;
    reg.set_agent_id(agent.id);
    reg.set_hostname(agent.id);
    reg.set_address("10.0.0.1");
    reg.set_workdir_key(agent.key);
    reg.set_pid(agent.pid);
    for (int g = 0; g < agent.gpus; ++g) reg.add_gpus()->set_index(g);
    for (const auto& [id, trial] : agent.trials) {
      auto* running = reg.add_running_trials();
      running->set_trial_id(id);
      running->set_node_rank(trial.rank);
      running->set_last_seq(trial.next_seq - 1);
      running->set_acked_seq(trial.acked_seq);
      for (int32_t g : trial.gpus) running->add_gpu_indices(g);
      running->set_attempt(trial.attempt);
    }
    for (const auto& [id, exit] : agent.exited) {
      auto* running = reg.add_running_trials();
      running->set_trial_id(id);
      running->set_node_rank(exit.first.node_rank());
      running->set_attempt(exit.first.attempt());
      for (int32_t g : exit.second) running->add_gpu_indices(g);
    }
    auto channel = std::make_shared<SimChannel>();
    auto registered = engine_->AgentConnected(reg, channel);
    if (!registered.ok()) {
      Log(absl::StrCat(agent.id, " register refused: ", registered.status().message()));
      return;
    }
    agent.channel = channel;
    agent.connected = true;
    agent.hung = false;
    agent.last_contact = clock_.SteadySeconds();
    Log(absl::StrCat(agent.id, restarted ? " re-registered" : " registered", " with ",
                     agent.trials.size(), " trials; kill ", registered->kill_trial_ids_size()));
    for (const auto& [id, next_seq] : registered->next_seqs()) {
      auto it = agent.trials.find(id);
      if (it == agent.trials.end() || it->second.seq_known) continue;
      SimTrial& trial = it->second;
      trial.seq_known = true;
      trial.next_seq = next_seq;
      trial.acked_seq = next_seq - 1;
      for (auto& report : trial.unacked) {
        report.set_seq(trial.next_seq);
        report.set_step(trial.next_seq);
        ++trial.next_seq;
      }
    }
    for (const auto& id : registered->kill_trial_ids()) {
      Log(absl::StrCat(agent.id, " kills ", id, " (sweepd gave it up)"));
      agent.trials.erase(id);
      agent.exited.erase(id);
    }
    // The real agent re-sends what was not acknowledged: reports, then exits.
    for (auto& [id, trial] : agent.trials) {
      if (!trial.seq_known) {
        // sweepd did not take it back with a sequence: it is not its trial any more.
        continue;
      }
      SendReports(agent, trial);
    }
    for (const auto& [id, exited] : agent.exited) {
      v1::AgentMessage message;
      *message.mutable_trial_exited() = exited.first;
      Send(agent, std::move(message));
    }
  }

  void StreamDown(SimAgent& agent, const std::string& why) {
    if (!agent.connected) return;
    agent.connected = false;
    if (!agent.hung) agent.last_contact = clock_.SteadySeconds();
    (void)agent.channel->Take();  // in flight: lost
    Log(absl::StrCat(agent.id, " stream down: ", why));
    ++totals_.stream_drops;
    engine_->AgentDisconnected(agent.id, agent.channel.get());
    engine_->RunUntilIdle();
  }

  void Send(SimAgent& agent, v1::AgentMessage message) {
    if (!agent.connected || agent.hung) return;
    agent.last_contact = clock_.SteadySeconds();
    engine_->AgentMessageReceived(agent.id, std::move(message));
    engine_->RunUntilIdle();
  }

  // The trial reports once more (numbered when its agent knows the sequence) and keeps the
  // report until it is acknowledged.
  const v1::Report& NewReport(SimTrial& trial, double loss) {
    v1::Report report;
    report.set_seq(trial.seq_known ? trial.next_seq++ : -1);
    report.set_step(report.seq());
    report.set_time_us(clock_.NowMicros());
    (*report.mutable_metrics())["loss"] = loss;
    // Some reports also mark a checkpoint, so retries resume from one and drop only what
    // follows it.
    report.set_checkpoint(trial.reports % 3 == 2);
    ++trial.reports;
    trial.unacked.push_back(std::move(report));
    return trial.unacked.back();
  }

  // Every unacknowledged report of the trial, as the real agent re-sends them.
  static v1::AgentMessage UnackedBatch(const SimTrial& trial) {
    v1::AgentMessage message;
    auto* batch = message.mutable_metric_batch();
    batch->set_trial_id(trial.id);
    batch->set_first_seq(trial.unacked.front().seq());
    for (const auto& r : trial.unacked) *batch->add_reports() = r;
    return message;
  }

  void SendReports(SimAgent& agent, const SimTrial& trial) {
    if (trial.unacked.empty() || !trial.seq_known) return;
    Send(agent, UnackedBatch(trial));
  }

  // The agent reads what sweepd sent it.
  void Deliver() {
    for (int round = 0; round < 8; ++round) {
      bool any = false;
      for (auto& agent : agents_) {
        if (!agent.connected) continue;
        if (agent.channel->closed()) {
          StreamDown(agent, "sweepd closed it");
          continue;
        }
        if (agent.hung) continue;
        for (auto& message : agent.channel->Take()) {
          any = true;
          Handle(agent, message);
        }
      }
      if (!any) return;
    }
  }

  void Handle(SimAgent& agent, const v1::SchedulerMessage& message) {
    switch (message.kind_case()) {
      case v1::SchedulerMessage::kAssign: {
        const auto& assign = message.assign();
        Log(absl::StrCat(agent.id, " assign ", assign.trial_id(), " attempt ", assign.attempt(),
                         " gpus ", assign.gpu_indices_size() > 0 ? assign.gpu_indices(0) : -1));
        CheckAssign(agent, assign);
        ++totals_.assigns;
        if (agent.trials.contains(assign.trial_id())) return;
        SimTrial trial;
        trial.id = assign.trial_id();
        trial.rank = assign.gang().node_rank();
        trial.attempt = assign.attempt();
        trial.gpus.assign(assign.gpu_indices().begin(), assign.gpu_indices().end());
        trial.next_seq = assign.first_seq();
        trial.acked_seq = assign.first_seq() - 1;
        trial.started_at = clock_.SteadySeconds();
        agent.trials[trial.id] = trial;
        v1::AgentMessage started;
        started.mutable_trial_started()->set_trial_id(assign.trial_id());
        started.mutable_trial_started()->set_node_rank(trial.rank);
        started.mutable_trial_started()->set_pid(1000 + Pick(1000));
        started.mutable_trial_started()->set_master_addr("10.0.0.1");
        started.mutable_trial_started()->set_master_port(29500);
        Send(agent, std::move(started));
        break;
      }
      case v1::SchedulerMessage::kStop: {
        Log(absl::StrCat(agent.id, " stop ", message.stop().trial_id()));
        auto it = agent.trials.find(message.stop().trial_id());
        if (it != agent.trials.end()) it->second.stop_requested = true;
        break;
      }
      case v1::SchedulerMessage::kAck: {
        const auto& ack = message.ack();
        if (ack.exited()) {
          agent.exited.erase(ack.trial_id());
          break;
        }
        auto it = agent.trials.find(ack.trial_id());
        if (it == agent.trials.end()) break;
        SimTrial& trial = it->second;
        trial.acked_seq = std::max(trial.acked_seq, ack.seq());
        while (!trial.unacked.empty() && trial.unacked.front().seq() <= ack.seq()) {
          acked_seqs_[trial.id][trial.unacked.front().seq()] = trial.attempt;
          ++totals_.reports_acked;
          trial.unacked.pop_front();
        }
        break;
      }
      default:
        break;
    }
  }

  // No trial on two agents, unless sweepd may have declared the other one lost; no GPU twice.
  void CheckAssign(const SimAgent& agent, const v1::Assign& assign) {
    for (const auto& other : agents_) {
      auto running = other.trials.find(assign.trial_id());
      if (running == other.trials.end()) continue;
      if (&other == &agent) {
        Violation(absl::StrCat(assign.trial_id(), " assigned to ", agent.id, " which runs it"));
        continue;
      }
      // Another node of the same gang: that is the placement, not a second copy.
      if (running->second.attempt == assign.attempt() &&
          running->second.rank != assign.gang().node_rank()) {
        continue;
      }
      const double silent = clock_.SteadySeconds() - other.last_contact;
      const bool may_be_lost = (!other.connected || other.hung) && silent >= kAgentTimeout;
      if (!may_be_lost) {
        Violation(absl::StrCat(assign.trial_id(), " assigned to ", agent.id, " while ", other.id,
                               " runs it, silent only ", silent, " s"));
      }
    }
    for (int32_t g : assign.gpu_indices()) {
      if (g < 0 || g >= agent.gpus) {
        Violation(absl::StrCat(assign.trial_id(), " got GPU ", g, " of ", agent.id, " which has ",
                               agent.gpus));
      }
      for (const auto& [id, trial] : agent.trials) {
        if (id != assign.trial_id() &&
            std::find(trial.gpus.begin(), trial.gpus.end(), g) != trial.gpus.end()) {
          Violation(absl::StrCat(assign.trial_id(), " got GPU ", g, " of ", agent.id,
                                 " which trial ", id, " holds"));
        }
      }
    }
  }

  // ---- Steps.

  void RandomStep(bool faults) {
    const int roll = Pick(100);
    if (roll < 30) {
      AdvanceTime(0.5 + Pick(40) * 0.25);
    } else if (roll < 70) {
      ProgressTrial();
    } else if (!faults) {
      AdvanceTime(1);
    } else if (roll < 76) {
      SimAgent& agent = agents_[Pick(static_cast<int>(agents_.size()))];
      StreamDown(agent, "network");
    } else if (roll < 84) {
      ReconnectOne();
    } else if (roll < 86) {
      SimAgent& agent = agents_[Pick(static_cast<int>(agents_.size()))];
      if (agent.connected && !agent.hung) {
        agent.hung = true;
        ++totals_.hangs;
        Log(agent.id + " hangs");
      }
    } else if (roll < 88) {
      CrashAgent(agents_[Pick(static_cast<int>(agents_.size()))], /*trials_survive=*/Chance(0.5));
    } else if (roll < 89) {
      RestartSweepd();
    } else if (roll < 90) {
      KillSweepdMidWork();
    } else if (roll < 91) {
      Leave(agents_[Pick(static_cast<int>(agents_.size()))]);
    } else if (roll < 93) {
      Operate();
    } else if (roll < 94 || (disk_full_ && roll < 97)) {
      DiskFillsOrFrees();
    } else {
      AdvanceTime(Pick(2) == 0 ? kAgentTimeout + 1 : 5);
    }
  }

  void AdvanceTime(double seconds) {
    // In steps of at most 2 s: a live agent heartbeats more often than the engine gives up on it.
    while (seconds > 0) {
      const double dt = std::min(seconds, 2.0);
      seconds -= dt;
      clock_.Advance(dt);
      for (auto& agent : agents_) {
        if (!agent.connected || agent.hung) continue;
        v1::AgentMessage beat;
        for (const auto& [id, trial] : agent.trials)
          beat.mutable_heartbeat()->add_running_trial_ids(id);
        beat.mutable_heartbeat();
        Send(agent, std::move(beat));
      }
      engine_->RunTick();
      engine_->RunUntilIdle();
      Deliver();
    }
    Log(absl::StrCat("time now ", clock_.SteadySeconds()));
  }

  void ProgressTrial() {
    std::vector<std::pair<SimAgent*, std::string>> running;
    for (auto& agent : agents_) {
      for (const auto& [id, trial] : agent.trials) running.emplace_back(&agent, id);
    }
    if (running.empty()) {
      AdvanceTime(1);
      return;
    }
    auto [agent, id] = running[static_cast<size_t>(Pick(static_cast<int>(running.size())))];
    SimTrial& trial = agent->trials.at(id);
    v1::TrialExited exit;
    exit.set_trial_id(id);
    exit.set_wall_seconds(clock_.SteadySeconds() - trial.started_at);
    exit.set_node_rank(trial.rank);
    exit.set_attempt(trial.attempt);
    if (trial.stop_requested) {
      exit.set_signal(15);
      exit.set_stopped_by_scheduler(true);
    } else if (trial.rank != 0 && !Chance(0.1)) {
      return;  // a gang's other nodes only run; node 0 reports
    } else if (trial.rank == 0 && trial.reports < 8 && !Chance(0.04)) {
      // One more report: a falling loss curve, the seed and trial making it distinct.
      const v1::Report report =
          NewReport(trial, 1.0 / (1 + trial.reports) +
                               static_cast<double>(std::hash<std::string>{}(id) % 97) / 97);
      if (trial.seq_known && agent->connected && !agent->hung) {
        v1::AgentMessage message;
        auto* batch = message.mutable_metric_batch();
        batch->set_trial_id(id);
        batch->set_first_seq(report.seq());
        *batch->add_reports() = report;
        Send(*agent, std::move(message));
      }
      Log(absl::StrCat(agent->id, " ", id, " reports seq ", report.seq()));
      return;
    } else {
      exit.set_exit_code(Chance(0.15) ? 1 : 0);
    }
    Log(absl::StrCat(agent->id, " ", id, " exits code ", exit.exit_code(), " signal ",
                     exit.signal()));
    // Its last reports go first, then the exit (the real agent flushes them in that order).
    if (trial.seq_known) SendReports(*agent, trial);
    agent->exited[id] = {exit, trial.gpus};
    agent->trials.erase(id);
    v1::AgentMessage message;
    *message.mutable_trial_exited() = exit;
    Send(*agent, std::move(message));
  }

  void ReconnectOne() {
    std::vector<SimAgent*> down;
    for (auto& agent : agents_) {
      if (!agent.connected || agent.hung) down.push_back(&agent);
    }
    if (down.empty()) return;
    SimAgent& agent = *down[static_cast<size_t>(Pick(static_cast<int>(down.size())))];
    if (agent.connected) StreamDown(agent, "hung agent restarts its stream");
    Connect(agent, /*restarted=*/true);
  }

  void CrashAgent(SimAgent& agent, bool trials_survive) {
    Log(absl::StrCat(agent.id, " crashes",
                     trials_survive ? " (its trials go on)" : " with its trials"));
    StreamDown(agent, "agent crashed");
    ++totals_.crashes;
    agent.exited.clear();  // its memory is gone
    agent.pid += 1000;
    if (!trials_survive) {
      agent.trials.clear();
      return;
    }
    for (auto& [id, trial] : agent.trials) {
      // The restarted agent knows the trial from its state file, not its sequence numbers.
      trial.seq_known = false;
      trial.stop_requested = false;
    }
  }

  // The agent shuts down as sweep-agent does on SIGTERM: it stops its trials (interrupted, not
  // their fault), sends their exits, and says goodbye. It comes back later as a new process.
  void Leave(SimAgent& agent) {
    if (!agent.connected || agent.hung) return;
    Log(agent.id + " shuts down");
    ++totals_.agent_leaves;
    for (auto& [id, trial] : agent.trials) {
      v1::AgentMessage message;
      auto* exit = message.mutable_trial_exited();
      exit->set_trial_id(id);
      exit->set_node_rank(trial.rank);
      exit->set_attempt(trial.attempt);
      exit->set_signal(15);
      exit->set_interrupted(true);
      exit->set_wall_seconds(clock_.SteadySeconds() - trial.started_at);
      SendReports(agent, trial);
      Send(agent, std::move(message));
    }
    agent.trials.clear();
    agent.exited.clear();
    engine_->AgentLeft(agent.id, agent.channel.get(), "shutting down");
    engine_->RunUntilIdle();
    agent.connected = false;
    agent.last_contact = clock_.SteadySeconds();
    (void)agent.channel->Take();
    agent.pid += 1000;
  }

  // kill -9 of sweepd in the middle of its work: an agent's message (a report, an exit, a
  // heartbeat) has been handled, its writes are queued and not committed, and the process dies.
  void KillSweepdMidWork() {
    std::vector<SimAgent*> live;
    for (auto& agent : agents_) {
      if (agent.connected && !agent.hung) live.push_back(&agent);
    }
    if (!live.empty()) {
      SimAgent& agent = *live[static_cast<size_t>(Pick(static_cast<int>(live.size())))];
      v1::AgentMessage message;
      if (!agent.trials.empty() && Chance(0.7)) {
        SimTrial& trial = agent.trials.begin()->second;
        if (trial.rank == 0 && trial.seq_known) {
          NewReport(trial, 0.5);
          message = UnackedBatch(trial);
        }
      }
      if (message.kind_case() == v1::AgentMessage::KIND_NOT_SET) message.mutable_heartbeat();
      Log(absl::StrCat("sweepd gets a message from ", agent.id,
                       " and is killed before it commits"));
      engine_->AgentMessageReceived(agent.id, std::move(message));
      engine_->RunQueuedWithoutCommit();
      // What it sent before dying (acks of what was not durable would be the bug) arrives.
      Deliver();
    }
    store_->CrashForSimulation();
    RestartSweepd();
  }

  void RestartSweepd() {
    Log("sweepd killed and restarted");
    ++totals_.sweepd_restarts;
    for (auto& agent : agents_) {
      if (agent.connected) {
        agent.connected = false;
        if (!agent.hung) agent.last_contact = clock_.SteadySeconds();
        (void)agent.channel->Take();
      }
    }
    CloseSweepd();
    disk_full_ = false;
    CheckStoredReports("after a restart");
    if (auto s = OpenSweepd(); !s.ok()) Violation("reopen: " + s.ToString());
  }

  // The store's disk fills: the writer's connection may not grow the file past its size now, so
  // the next write that needs a page fails with SQLITE_FULL, as on a full disk. Freeing it lets
  // the store's next retry through. A restarted sweepd starts on a disk with room.
  void DiskFillsOrFrees() {
    if (disk_full_) {
      disk_full_ = false;
      Log("the store's disk frees");
    } else {
      disk_full_ = true;
      ++totals_.disk_fills;
      Log("the store's disk fills");
      store_->RunOnWriter(
          [](store::Connection& db) -> absl::Status {
            auto pages = db.QueryInt("PRAGMA page_count");
            if (!pages.ok()) return pages.status();
            return db.Exec(absl::StrCat("PRAGMA max_page_count = ", *pages));
          },
          nullptr);
    }
    engine_->RunUntilIdle();
  }

  void Operate() {
    const int what = Pick(20);
    if (what == 0) {
      auto canceled = engine_->CancelSweep(sweep_id_, "canceled by the simulation");
      ++totals_.cancels;
      Log(absl::StrCat("cancel: ", canceled.ok() ? "ok" : canceled.status().message()));
    } else if (what < 7) {
      auto paused = engine_->PauseSweep(sweep_id_);
      Log(absl::StrCat("pause: ", paused.ok() ? "ok" : paused.status().message()));
    } else if (what < 14) {
      auto resumed = engine_->ResumeSweep(sweep_id_);
      Log(absl::StrCat("resume: ", resumed.ok() ? "ok" : resumed.status().message()));
    } else {
      v1::EnqueueTrialRequest request;
      request.set_sweep_id(sweep_id_);
      auto* lr = request.add_params();
      lr->set_name("lr");
      lr->set_value_json("0.01");
      auto enqueued = engine_->EnqueueTrial(request);
      Log(absl::StrCat("enqueue: ", enqueued.ok() ? enqueued->id() : enqueued.status().message()));
    }
    engine_->RunUntilIdle();
  }

  // Faults stop: every agent comes back and the sweep must end.
  void Heal() {
    if (!violations_.empty()) return;
    Log("healing: no more faults");
    if (disk_full_) DiskFillsOrFrees();
    (void)engine_->ResumeSweep(sweep_id_);
    for (int step = 0; step < 4000; ++step) {
      for (auto& agent : agents_) {
        if (!agent.connected || agent.hung) {
          if (agent.connected) StreamDown(agent, "hung agent restarts its stream");
          Connect(agent, /*restarted=*/true);
        }
      }
      Deliver();
      if (engine_->SweepDone(sweep_id_) && NothingRunning()) return;
      RandomStep(/*faults=*/false);
      Deliver();
    }
    Violation(absl::StrCat("the sweep did not end after the faults stopped: ",
                           engine_->StallReason(sweep_id_)));
  }

  bool NothingRunning() const {
    for (const auto& agent : agents_) {
      if (!agent.trials.empty() || !agent.exited.empty()) return false;
    }
    return true;
  }

  // Every acknowledged report is stored exactly once.
  void CheckStoredReports(const std::string& when) {
    store::StoreOptions options;
    options.path = dir_ + "/sweepd.db";
    std::unique_ptr<store::Store> owned;
    store::Store* store = store_.get();
    if (store == nullptr) {
      auto opened = store::Store::Open(options);
      if (!opened.ok()) {
        Violation(absl::StrCat("reopen for checks ", when, ": ", opened.status().ToString()));
        return;
      }
      owned = std::move(*opened);
      store = owned.get();
    }
    for (const auto& [trial_id, seqs] : acked_seqs_) {
      auto detail = store->GetTrial(trial_id, {"loss"}, 0);
      if (!detail.ok()) {
        Violation(absl::StrCat(trial_id, " unreadable ", when, ": ", detail.status().ToString()));
        continue;
      }
      std::map<int64_t, int> stored;
      for (const auto& curve : detail->curves) {
        for (const auto& point : curve.points()) ++stored[point.seq()];
      }
      for (const auto& [seq, attempt] : seqs) {
        // A retry drops its earlier attempts' reports past the checkpoint it resumes from (it
        // reports those steps again): theirs are stored at most once, the stored attempt's
        // exactly once.
        const bool current = attempt == detail->trial.attempt();
        if (current ? stored[seq] != 1 : stored[seq] > 1) {
          Violation(absl::StrCat(trial_id, " seq ", seq, " of attempt ", attempt,
                                 " acknowledged but stored ", stored[seq], " times ", when));
        }
      }
    }
  }

  void CheckEnd() {
    CheckStoredReports("at the end");
    auto sweep = store_->GetSweep(sweep_id_);
    if (!sweep.ok()) {
      Violation("sweep unreadable: " + sweep.status().ToString());
      return;
    }
    store::TrialQuery query;
    query.sweep_public_id = sweep_id_;
    query.by_number = true;
    query.limit = 100000;
    auto page = store_->ListTrials(query);
    if (!page.ok()) {
      Violation("trials unreadable: " + page.status().ToString());
      return;
    }
    std::map<v1::TrialState, int64_t> counts;
    double gpu_seconds = 0;
    for (const auto& trial : page->trials) {
      ++counts[trial.state()];
      gpu_seconds += trial.gpu_seconds();
      const bool terminal = trial.state() != v1::TRIAL_STATE_QUEUED &&
                            trial.state() != v1::TRIAL_STATE_ASSIGNED &&
                            trial.state() != v1::TRIAL_STATE_RUNNING;
      if (!terminal) {
        Violation(absl::StrCat(trial.id(), " is ", TrialStateName(trial.state()),
                               " after its sweep ended"));
      }
    }
    const auto& c = sweep->counts();
    const std::vector<std::pair<v1::TrialState, int64_t>> expected = {
        {v1::TRIAL_STATE_QUEUED, c.queued()},   {v1::TRIAL_STATE_ASSIGNED, c.assigned()},
        {v1::TRIAL_STATE_RUNNING, c.running()}, {v1::TRIAL_STATE_COMPLETED, c.completed()},
        {v1::TRIAL_STATE_PRUNED, c.pruned()},   {v1::TRIAL_STATE_FAILED, c.failed()},
        {v1::TRIAL_STATE_LOST, c.lost()},       {v1::TRIAL_STATE_CANCELED, c.canceled()}};
    for (const auto& [state, count] : expected) {
      if (counts[state] != count) {
        Violation(absl::StrCat("sweep counts ", count, " ", TrialStateName(state),
                               " trials; its trials say ", counts[state]));
      }
    }
    if (std::abs(gpu_seconds - sweep->gpu_seconds_used()) > 1e-6 * (1 + gpu_seconds)) {
      Violation(absl::StrCat("sweep GPU seconds ", sweep->gpu_seconds_used(),
                             "; its trials add up to ", gpu_seconds));
    }
    totals_.trials += static_cast<int64_t>(page->trials.size());
    totals_.completed += c.completed();
    totals_.pruned += c.pruned();
    totals_.failed += c.failed();
    totals_.lost += c.lost();
    totals_.canceled += c.canceled();
    Log(absl::StrCat("end: ", SweepStateName(sweep->state()), ", ", page->trials.size(),
                     " trials, ", c.completed(), " completed, ", c.pruned(), " pruned, ",
                     c.failed(), " failed, ", c.lost(), " lost"));
    CloseSweepd();
    auto db = store::Connection::Open(dir_ + "/sweepd.db", store::Connection::Mode::kReadOnly);
    if (!db.ok()) {
      Violation("open for integrity_check: " + db.status().ToString());
      return;
    }
    auto check = (*db)->Prepare("PRAGMA integrity_check");
    auto row = check.ok() ? check->Step() : absl::StatusOr<bool>(check.status());
    if (!row.ok() || !*row || check->ColumnText(0) != "ok") {
      Violation("integrity_check failed");
    }
  }

  const uint64_t seed_;
  std::mt19937_64 rng_;
  const int max_steps_;
  const bool verbose_;
  Totals& totals_;
  FakeClock clock_;
  std::string dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Engine> engine_;
  std::vector<SimAgent> agents_;
  std::string sweep_id_;
  // Per trial: each acknowledged seq and the attempt that reported it.
  std::map<std::string, std::map<int64_t, int32_t>> acked_seqs_;
  bool disk_full_ = false;
  std::vector<std::string> violations_;
  std::string history_;
};

int Main(int argc, char** argv) {
  uint64_t first_seed = 1;
  int64_t seeds = 100;
  int steps = 300;
  bool repeat = false;
  bool verbose = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "engine_sim: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--seeds") {
      seeds = std::stoll(value());
    } else if (arg == "--first-seed") {
      first_seed = std::stoull(value());
    } else if (arg == "--seed") {
      first_seed = std::stoull(value());
      seeds = 1;
    } else if (arg == "--steps") {
      steps = std::stoi(value());
    } else if (arg == "--repeat") {
      repeat = true;
    } else if (arg == "--verbose") {
      verbose = true;
    } else {
      std::fprintf(stderr,
                   "usage: engine_sim [--seeds N] [--first-seed S] [--seed S] [--steps N] "
                   "[--repeat] [--verbose]\n");
      return 2;
    }
  }
  spdlog::set_level(verbose ? spdlog::level::info : spdlog::level::off);
  int64_t failed = 0;
  Totals totals;
  for (uint64_t seed = first_seed; seed < first_seed + static_cast<uint64_t>(seeds); ++seed) {
    World world(seed, steps, verbose, &totals);
    std::vector<std::string> violations = world.Run();
    if (violations.empty() && repeat) {
      Totals ignored;
      World again(seed, steps, false, &ignored);
      again.Run();
      if (again.history() != world.history()) {
        violations.push_back("a second run of the seed took a different history");
      }
    }
    if (!violations.empty()) {
      ++failed;
      std::printf("seed %llu FAILED (replay: engine_sim --seed %llu --steps %d --verbose):\n",
                  static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed),
                  steps);
      for (const auto& v : violations) std::printf("  %s\n", v.c_str());
    }
  }
  std::printf(
      "engine_sim: %lld seeds from %llu, %lld failed\n"
      "  %lld steps, %lld assigns (%lld sweeps of 2-node gangs, %lld ASHA sweeps that promote, "
      "%lld pbt sweeps), %lld reports acknowledged\n"
      "  faults: %lld stream drops, %lld hangs, %lld agent crashes, %lld agent shutdowns, "
      "%lld sweepd restarts, %lld cancels, %lld disk fills (%lld steps with the disk full)\n"
      "  trials: %lld (%lld completed, %lld pruned, %lld failed, %lld lost, %lld canceled)\n",
      static_cast<long long>(seeds), static_cast<unsigned long long>(first_seed),
      static_cast<long long>(failed), static_cast<long long>(totals.steps),
      static_cast<long long>(totals.assigns), static_cast<long long>(totals.gang_sweeps),
      static_cast<long long>(totals.promotion_sweeps), static_cast<long long>(totals.pbt_sweeps),
      static_cast<long long>(totals.reports_acked), static_cast<long long>(totals.stream_drops),
      static_cast<long long>(totals.hangs), static_cast<long long>(totals.crashes),
      static_cast<long long>(totals.agent_leaves), static_cast<long long>(totals.sweepd_restarts),
      static_cast<long long>(totals.cancels), static_cast<long long>(totals.disk_fills),
      static_cast<long long>(totals.steps_with_disk_full), static_cast<long long>(totals.trials),
      static_cast<long long>(totals.completed), static_cast<long long>(totals.pruned),
      static_cast<long long>(totals.failed), static_cast<long long>(totals.lost),
      static_cast<long long>(totals.canceled));
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace sweepd::sim

int main(int argc, char** argv) { return sweepd::sim::Main(argc, argv); }
