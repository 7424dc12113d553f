#pragma once

// The durable home of everything sweepd knows: one SQLite file in WAL mode.
//
// Writes go through one writer thread that owns the write connection. Callers enqueue writes and
// get a completion that runs only after the transaction holding their write committed (group
// commit: whatever queued while the previous batch was being committed goes into the next
// transaction, bounded by StoreOptions). A write that fails (a constraint, a missing trial) fails
// alone: each write runs in its own savepoint.
//
// Storage faults (disk full, I/O error): by default the writer rolls the batch back and retries
// it, with backoff, until it commits. Meanwhile nothing is acknowledged, the store reports itself
// degraded (Health) and logs it loudly, and writes queue in order behind the stuck batch; when
// space returns everything commits and the completions run, so nothing is lost and the order of
// writes holds. With retry_storage_faults off, a failed commit instead fails every write of the
// batch and the writer goes on with the next batch.
//
// Reads run on any thread, each on a pooled read-only connection; WAL gives every read a
// committed snapshot, so reads never see half a batch and never block the writer.
//
// Thread safety: every public method is safe to call from any thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/clock.h"
#include "common/prometheus.h"
#include "store/sqlite.h"
#include "sweepd/v1/resources.pb.h"
#include "sweepd/v1/spec.pb.h"
#include "sweepd/v1/sweep_service.pb.h"

namespace sweepd::store {

enum class Synchronous {
  // fsync the WAL at every commit: an acknowledged write survives power loss.
  kFull,
  // fsync only at checkpoints: an acknowledged write survives a crash of sweepd, but the last
  // commits before a power loss or kernel crash may be lost (the file stays consistent).
  kNormal,
};

struct StoreOptions {
  std::string path;
  Synchronous synchronous = Synchronous::kFull;
  // Bounds of one group-commit transaction.
  size_t max_batch_writes = 4096;
  size_t max_batch_rows = 50000;
  // Read-only connections kept for queries.
  int read_connections = 4;
  // Cap on the file's size in pages (0 = SQLite's default): writes past it fail with
  // RESOURCE_EXHAUSTED, like a full disk.
  int64_t max_pages = 0;
  // On a storage fault, retry the batch until it commits (see above) instead of failing it.
  bool retry_storage_faults = true;
  // Retries back off from 50 ms up to this.
  double max_retry_seconds = 2.0;
  // When the store is closed while degraded, it keeps retrying this long, then fails what is
  // left (none of it was acknowledged).
  double close_retry_seconds = 10.0;
  // Runs on the writer connection before each retry (tests lift a fault with it).
  std::function<void(Connection&)> before_retry;
  // Deterministic simulation: writes wait in the queue until Flush (so which of them committed
  // does not depend on thread timing), and CrashForSimulation can drop them as kill -9 would.
  // A storage fault is then retried once per Flush instead of on a timer: each Flush while the
  // fault holds returns UNAVAILABLE, and nothing queued is lost or acknowledged meanwhile.
  bool hold_writes_until_flush = false;
  // What the retry backoff and the degraded-since time are measured on. Not owned.
  Clock* clock = &RealClock();
};

// Whether writes are committing. `degraded` while a storage fault holds up the writer.
struct StoreHealth {
  bool degraded = false;
  std::string error;     // the fault, e.g. "database or disk is full"
  int64_t since_us = 0;  // when the fault began (Unix microseconds)
  int64_t waiting_writes = 0;
  int64_t retries = 0;
};

// A storage fault: disk full, I/O error, or the file busy; worth retrying as is.
bool IsStorageFault(const absl::Status& status);

// ---- What writes carry. Integer ids are assigned by the caller (the scheduler's state owner),
// starting above Store::MaxIds(), so writes never wait for the database to name a row.

struct NewSweep {
  int64_t id = 0;
  std::string public_id;  // "s-k3v9q2mz"
  v1::SweepSpec spec;
  std::string spec_yaml;
  v1::SweepState state = v1::SWEEP_STATE_RUNNING;
  bool external = false;
  int64_t created_us = 0;
};

struct SweepUpdate {
  int64_t id = 0;
  std::optional<v1::SweepState> state;
  std::optional<std::string> reason;
  std::optional<int64_t> end_us;
  double add_gpu_seconds_saved = 0;
};

struct NewTrial {
  int64_t id = 0;
  int64_t sweep_id = 0;
  int64_t number = 0;
  std::string public_id;  // "s-k3v9q2mz-0007"
  v1::TrialState state = v1::TRIAL_STATE_QUEUED;
  // JSON object of flattened name -> value, in spec order.
  std::string params_json;
  int32_t attempt = 1;
  bool enqueued = false;
  int64_t created_us = 0;
  // Method pbt's copies: the trial whose checkpoint it starts from (public id), that
  // checkpoint's step (also its own first checkpoint_step), and the member it replaces.
  std::string parent_trial;
  int64_t parent_step = 0;
  std::string replaced_trial;
};

struct TrialUpdate {
  int64_t id = 0;
  std::optional<v1::TrialState> state;
  std::optional<int64_t> start_us;
  std::optional<int64_t> end_us;
  std::optional<int32_t> exit_code;
  std::optional<int32_t> exit_signal;
  std::optional<int32_t> attempt;
  std::optional<std::string> reason;
  std::optional<std::string> agent_ids;  // comma-separated
  std::optional<std::string> gpus;       // comma-separated
  std::optional<std::string> workdir;
  // Added to the trial's and its sweep's GPU-seconds.
  double add_gpu_seconds = 0;
  // GPU seconds pruning this trial saved (added to the trial only; the sweep's total is kept by
  // SweepUpdate::add_gpu_seconds_saved).
  double add_gpu_seconds_saved = 0;
  // The step of the trial's last checkpoint; clear_checkpoint_step forgets it (a retry that
  // cannot reach it starts over).
  std::optional<int64_t> checkpoint_step;
  bool clear_checkpoint_step = false;
  // GPU seconds of an attempt that a retry redoes (added to the trial only; they are in
  // add_gpu_seconds already).
  double add_gpu_seconds_redone = 0;
  // A retry starts over from this step: the trial's stored reports at later steps (an earlier
  // attempt's, which the retry reports again) are deleted and its metric summaries recomputed,
  // so its curve has each step once. INT64_MIN: every report (a retry without a checkpoint).
  std::optional<int64_t> drop_reports_after_step;
  // ASHA with promotion: one more promotion, and whether it resumed the trial after a pause.
  bool add_promotion = false;
  bool add_resumed_promotion = false;
  // The checkpoint policy deleted the trial's checkpoints.
  bool checkpoint_deleted = false;
};

// One report of a trial: several metrics at one step, with the agent's sequence number.
struct MetricReport {
  int64_t seq = 0;
  int64_t step = 0;
  int64_t time_us = 0;
  std::vector<std::pair<std::string, double>> metrics;
};

struct NewEvent {
  int64_t time_us = 0;
  int64_t sweep_id = 0;  // 0 = none
  int64_t trial_id = 0;  // 0 = none
  std::string agent_id;
  std::string kind;  // "trial.state", "sweep.created", ...
  std::string from_state;
  std::string to_state;
  std::string message;
};

// ---- Queries.

struct TrialQuery {
  std::string sweep_public_id;
  std::vector<v1::TrialState> states;  // all when empty
  // Sort by this metric (default: the sweep's metric when it has one, else by trial number).
  std::string sort_metric;
  bool sort_by_last = false;
  bool descending = false;  // worst first
  int64_t limit = 100;
  int64_t offset = 0;
  bool with_total = true;
  // All trials by number (ignoring sort_metric), with the sweep metric's values: for rebuilding
  // the scheduler's state.
  bool by_number = false;
};

struct TrialPage {
  std::vector<v1::Trial> trials;
  int64_t total = -1;  // -1 when not asked for
};

struct TrialDetail {
  v1::Trial trial;
  std::vector<v1::Event> events;
  std::vector<v1::LearningCurve> curves;
};

// A sweep's export: one row per trial, parameters and final metrics as columns.
struct ExportTable {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
};

// The integer keys behind a sweep's public ids.
struct SweepKeys {
  int64_t sweep_id = 0;
  std::map<std::string, int64_t> trial_ids;  // public id -> key
  std::map<int64_t, int64_t> last_seqs;      // trial key -> highest stored report seq
};

// One trial's learning curve of one metric, for drawing every curve of a sweep at once.
struct TrialCurve {
  std::string trial_id;
  int64_t number = 0;
  v1::TrialState state = v1::TRIAL_STATE_UNSPECIFIED;
  std::vector<int64_t> steps;
  std::vector<double> values;  // NaN kept
};

struct CurvePage {
  std::vector<TrialCurve> curves;
  int64_t next_number = -1;  // where the next page starts; -1 when this was the last
  int64_t total_trials = 0;  // trials of the sweep, all pages
};

struct MaxIds {
  int64_t sweep_id = 0;
  int64_t trial_id = 0;
};

struct WriterStats {
  int64_t batches = 0;
  int64_t writes = 0;
  int64_t metric_rows = 0;
  int64_t failed_commits = 0;
};

using WriteDone = std::function<void(absl::Status)>;

class Store {
 public:
  static absl::StatusOr<std::unique_ptr<Store>> Open(StoreOptions options);
  // Commits everything queued, then stops the writer.
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // ---- Writes. `done` runs on the writer thread once the write is durable (OK) or failed; it
  // must not block. Never blocks the caller.
  void CreateSweep(NewSweep sweep, WriteDone done);
  void UpdateSweep(SweepUpdate update, WriteDone done);
  void CreateTrial(NewTrial trial, WriteDone done);
  void UpdateTrial(TrialUpdate update, WriteDone done);
  // Idempotent on (trial, seq, metric): a redelivered report is acknowledged and stored once.
  void AppendMetrics(int64_t trial_id, std::vector<MetricReport> reports, WriteDone done);
  void AppendEvent(NewEvent event, WriteDone done);
  // A state change and the event that records it, as one write: both are stored or neither, so
  // every stored transition has its event whatever a crash or a fault interrupts.
  void UpdateTrial(TrialUpdate update, NewEvent event, WriteDone done);
  void UpdateSweep(SweepUpdate update, NewEvent event, WriteDone done);
  void UpsertAgent(v1::Agent agent, WriteDone done);

  // Runs `fn` on the writer connection inside the next batch's transaction, like a write (for
  // maintenance such as `PRAGMA max_page_count`, and for tests that inject faults).
  void RunOnWriter(std::function<absl::Status(Connection&)> fn, WriteDone done);

  // Blocking form: `Wait([&](WriteDone d) { store.CreateSweep(s, std::move(d)); })`.
  static absl::Status Wait(const std::function<void(WriteDone)>& write);
  // Returns once everything queued before the call has committed (or failed).
  absl::Status Flush();
  // Like Flush, but gives up after `timeout`: UNAVAILABLE while the store is degraded (what was
  // queued stays queued and commits when the fault clears), DEADLINE_EXCEEDED otherwise.
  absl::Status Flush(double timeout_seconds);

  // Whether writes are committing now; cheap, from any thread.
  StoreHealth Health() const;
  bool Degraded() const { return degraded_.load(std::memory_order_relaxed); }

  // ---- Reads.
  absl::StatusOr<MaxIds> GetMaxIds();
  absl::StatusOr<v1::Sweep> GetSweep(absl::string_view public_id);
  absl::StatusOr<SweepKeys> GetSweepKeys(absl::string_view public_id);
  absl::StatusOr<std::vector<v1::Sweep>> ListSweeps(const std::vector<v1::SweepState>& states,
                                                    int64_t limit, int64_t offset);
  absl::StatusOr<TrialPage> ListTrials(const TrialQuery& query);
  // Events, and curves of `metric_names` (all when empty) downsampled to `max_points` (0 = all).
  absl::StatusOr<TrialDetail> GetTrial(absl::string_view public_id,
                                       const std::vector<std::string>& metric_names, int max_points,
                                       bool with_curves = true);
  // Curves of `metric` for the sweep's trials numbered from `from_number`, at most `limit`
  // trials, each downsampled to `max_points` (0 = all), only trials in `states` (all when
  // empty): the dashboard loads a large sweep's curves page by page, showing its progress, and
  // refreshes running trials' curves in one read.
  absl::StatusOr<CurvePage> SweepCurves(absl::string_view sweep_public_id,
                                        const std::string& metric, int64_t from_number,
                                        int64_t limit, int max_points,
                                        const std::vector<v1::TrialState>& states = {});
  // The id of the sweep's newest event (0 when none): where a live view starts following.
  absl::StatusOr<int64_t> LatestEventId(absl::string_view sweep_public_id);
  absl::StatusOr<std::vector<v1::Event>> ListEvents(absl::string_view sweep_public_id,
                                                    int64_t after_id, int64_t limit);
  absl::StatusOr<std::vector<v1::Agent>> ListAgents();
  absl::StatusOr<ExportTable> ExportSweep(absl::string_view public_id);

  WriterStats writer_stats() const;
  // Seconds each batch took to apply and commit (one transaction, fsync included), for
  // sweepd's /metrics.
  Histogram::Snapshot commit_seconds() const { return commit_seconds_.Read(); }

  // Simulation only (with hold_writes_until_flush): what kill -9 of sweepd leaves. Writes not yet
  // flushed are dropped, their completions never run; the writer stops. Destroy the store next.
  void CrashForSimulation();

 private:
  class Writer;
  class ReadConnection;

  struct PendingWrite {
    std::function<absl::Status(Writer&)> apply;
    WriteDone done;
    size_t rows = 1;
  };

  explicit Store(StoreOptions options);
  absl::Status Init();
  void Enqueue(std::function<absl::Status(Writer&)> apply, WriteDone done, size_t rows = 1);
  void WriterLoop();
  // Applies a batch in one transaction; per-write results in `results`; the commit's status.
  absl::Status ApplyBatch(std::vector<PendingWrite>& batch, std::vector<absl::Status>& results);

  // A pooled read connection, returned to the pool when the lease ends.
  class Lease;
  absl::StatusOr<Lease> AcquireReader();
  void ReleaseReader(std::unique_ptr<ReadConnection> reader);

  // Query bodies, on a leased connection.
  absl::StatusOr<v1::Sweep> ReadSweep(ReadConnection& db, absl::string_view public_id);

  const StoreOptions options_;
  std::unique_ptr<Writer> writer_;  // used only by the writer thread after Init

  absl::Mutex queue_mu_;
  std::deque<PendingWrite> queue_ ABSL_GUARDED_BY(queue_mu_);
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  // CrashForSimulation: the writer runs no completion any more, as a killed process would not.
  bool crashed_ ABSL_GUARDED_BY(queue_mu_) = false;
  // Flush markers queued (hold_writes_until_flush: the writer waits for one).
  int64_t flushes_queued_ ABSL_GUARDED_BY(queue_mu_) = 0;

  mutable absl::Mutex stats_mu_;
  WriterStats stats_ ABSL_GUARDED_BY(stats_mu_);
  StoreHealth health_ ABSL_GUARDED_BY(stats_mu_);
  std::atomic<bool> degraded_{false};
  Histogram commit_seconds_{
      {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};
  // Writer thread only: when closing while degraded began, and whether that was logged.
  std::optional<double> closing_since_;  // options_.clock's steady seconds
  // A batch with a storage fault failed as the store closed; later batches fail unattempted.
  bool gave_up_closing_ = false;
  bool close_failure_logged_ = false;
  // Retries a batch that hit a storage fault until it commits (or the store closes).
  absl::Status RetryBatch(std::vector<PendingWrite>& batch, std::vector<absl::Status>& results,
                          absl::Status fault);
  // Between two retries: waits `backoff` seconds on the clock; false once the store has been
  // closing for close_retry_seconds.
  bool WaitToRetry(double backoff, const absl::Status& fault,
                   const std::function<int64_t()>& waiting);
  // The same under hold_writes_until_flush: answers waiting Flushes with UNAVAILABLE and waits
  // for the next one; false once the store closes.
  bool WaitForFlushToRetry(std::vector<PendingWrite>& batch, const absl::Status& fault);

  absl::Mutex readers_mu_;
  std::vector<std::unique_ptr<ReadConnection>> idle_readers_ ABSL_GUARDED_BY(readers_mu_);

  std::thread writer_thread_;

  // Checkpoints copy the WAL back into the database file. SQLite would run them inside a commit
  // on the writer thread (stalling every waiting write); this thread runs them beside it on its
  // own connection, PASSIVE, so they never block the writer.
  void CheckpointLoop();
  std::unique_ptr<Connection> checkpoint_db_;
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_stop_ = false;
  std::thread checkpoint_thread_;
};

}  // namespace sweepd::store
