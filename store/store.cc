// The store's lifecycle (open, schema, checkpoints), its writer (the write connection and the SQL
// of each write) and group commit. About 850 lines: the writer's statements and the batch, retry
// and fault handling they run under are one unit, whose invariant (a write is acknowledged only
// once its batch committed) is easier to check in one file. Reads are in store_queries.cc.

#include "store/store.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <unordered_map>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "common/state_names.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "store/schema.h"
#include "store/store_internal.h"

namespace sweepd::store {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

}  // namespace

// ---------------------------------------------------------------------------------------------
// The writer: the write connection and its prepared statements. Used by the writer thread only.

class Store::Writer {
 public:
  explicit Writer(std::unique_ptr<Connection> db) : db_(std::move(db)) {}

  absl::Status Prepare() {
    ASSIGN_OR_RETURN(insert_sweep_, db_->Prepare(R"sql(
      INSERT INTO sweeps (id, public_id, name, state, spec, spec_yaml, metric_name, maximize,
                          external, created_us)
      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10))sql"));
    ASSIGN_OR_RETURN(update_sweep_, db_->Prepare(R"sql(
      UPDATE sweeps SET state = COALESCE(?2, state), reason = COALESCE(?3, reason),
                        end_us = COALESCE(?4, end_us),
                        gpu_seconds_saved = gpu_seconds_saved + ?5
      WHERE id = ?1)sql"));
    ASSIGN_OR_RETURN(insert_trial_, db_->Prepare(R"sql(
      INSERT INTO trials (id, sweep_id, number, public_id, state, params_json, attempt, enqueued,
                          created_us, parent_trial, parent_step, replaced_trial,
                          checkpoint_step)
      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
              CASE WHEN ?10 = '' THEN NULL ELSE ?11 END))sql"));
    ASSIGN_OR_RETURN(trial_state_,
                     db_->Prepare("SELECT sweep_id, state FROM trials WHERE id = ?1"));
    ASSIGN_OR_RETURN(update_trial_, db_->Prepare(R"sql(
      UPDATE trials SET state = COALESCE(?2, state), start_us = COALESCE(?3, start_us),
                        end_us = COALESCE(?4, end_us), exit_code = COALESCE(?5, exit_code),
                        exit_signal = COALESCE(?6, exit_signal), attempt = COALESCE(?7, attempt),
                        reason = COALESCE(?8, reason), agent_ids = COALESCE(?9, agent_ids),
                        gpus = COALESCE(?10, gpus), workdir = COALESCE(?11, workdir),
                        gpu_seconds = gpu_seconds + ?12,
                        gpu_seconds_saved = gpu_seconds_saved + ?13,
                        checkpoint_step = CASE WHEN ?19 THEN NULL
                                               ELSE COALESCE(?14, checkpoint_step) END,
                        gpu_seconds_redone = gpu_seconds_redone + ?15,
                        promotions = promotions + ?16,
                        checkpoint_deleted = max(checkpoint_deleted, ?17),
                        resumed_promotions = resumed_promotions + ?18
      WHERE id = ?1)sql"));
    ASSIGN_OR_RETURN(drop_reports_,
                     db_->Prepare("DELETE FROM metrics WHERE trial_id = ?1 AND step > ?2"));
    ASSIGN_OR_RETURN(drop_summaries_,
                     db_->Prepare("DELETE FROM trial_metrics WHERE trial_id = ?1"));
    // NaN is stored as NULL and counts as the worst value: +inf in min_value, -inf in max_value.
    ASSIGN_OR_RETURN(rebuild_summaries_, db_->Prepare(R"sql(
      INSERT INTO trial_metrics (trial_id, name_id, sweep_id, last_value, last_step, last_seq,
                                 min_value, max_value, count)
      SELECT ?1, g.name_id, ?2,
             (SELECT value FROM metrics l
              WHERE l.trial_id = ?1 AND l.name_id = g.name_id AND l.seq = g.last_seq),
             (SELECT step FROM metrics l
              WHERE l.trial_id = ?1 AND l.name_id = g.name_id AND l.seq = g.last_seq),
             g.last_seq, g.min_value, g.max_value, g.count
      FROM (SELECT name_id, max(seq) AS last_seq, min(coalesce(value, 9e999)) AS min_value,
                   max(coalesce(value, -9e999)) AS max_value, count(*) AS count
            FROM metrics WHERE trial_id = ?1 GROUP BY name_id) g)sql"));
    ASSIGN_OR_RETURN(
        add_sweep_gpu_,
        db_->Prepare("UPDATE sweeps SET gpu_seconds_used = gpu_seconds_used + ?2 WHERE id = ?1"));
    ASSIGN_OR_RETURN(count_state_, db_->Prepare(R"sql(
      INSERT INTO sweep_state_counts (sweep_id, state, count) VALUES (?1, ?2, ?3)
      ON CONFLICT (sweep_id, state) DO UPDATE SET count = count + excluded.count)sql"));
    ASSIGN_OR_RETURN(find_name_, db_->Prepare("SELECT id FROM metric_names WHERE name = ?1"));
    ASSIGN_OR_RETURN(insert_name_, db_->Prepare("INSERT INTO metric_names (name) VALUES (?1)"));
    ASSIGN_OR_RETURN(insert_metric_, db_->Prepare(R"sql(
      INSERT OR IGNORE INTO metrics (trial_id, name_id, seq, step, value, time_us)
      VALUES (?1, ?2, ?3, ?4, ?5, ?6))sql"));
    ASSIGN_OR_RETURN(upsert_summary_, db_->Prepare(R"sql(
      INSERT INTO trial_metrics (trial_id, name_id, sweep_id, last_value, last_step, last_seq,
                                 min_value, max_value, count)
      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
      ON CONFLICT (trial_id, name_id) DO UPDATE SET
        last_value = CASE WHEN excluded.last_seq > last_seq THEN excluded.last_value
                          ELSE last_value END,
        last_step = CASE WHEN excluded.last_seq > last_seq THEN excluded.last_step
                         ELSE last_step END,
        last_seq = max(last_seq, excluded.last_seq),
        min_value = min(min_value, excluded.min_value),
        max_value = max(max_value, excluded.max_value),
        count = count + excluded.count)sql"));
    ASSIGN_OR_RETURN(insert_event_, db_->Prepare(R"sql(
      INSERT INTO events (time_us, sweep_id, trial_id, agent_id, kind, from_state, to_state,
                          message)
      VALUES (?1, NULLIF(?2, 0), NULLIF(?3, 0), ?4, ?5, ?6, ?7, ?8))sql"));
    ASSIGN_OR_RETURN(upsert_agent_, db_->Prepare(R"sql(
      INSERT INTO agents (id, hostname, address, state, incarnation, info, last_seen_us)
      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
      ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname, address = excluded.address,
        state = excluded.state, incarnation = excluded.incarnation, info = excluded.info,
        last_seen_us = excluded.last_seen_us)sql"));
    ASSIGN_OR_RETURN(begin_, db_->Prepare("BEGIN IMMEDIATE"));
    ASSIGN_OR_RETURN(commit_, db_->Prepare("COMMIT"));
    ASSIGN_OR_RETURN(savepoint_, db_->Prepare("SAVEPOINT write"));
    ASSIGN_OR_RETURN(release_, db_->Prepare("RELEASE write"));
    ASSIGN_OR_RETURN(rollback_to_, db_->Prepare("ROLLBACK TO write"));
    return absl::OkStatus();
  }

  Connection& db() { return *db_; }

  // False once SQLite rolled the whole transaction back by itself (it does on SQLITE_FULL,
  // IOERR, NOMEM and some BUSY errors).
  bool InTransaction() const { return sqlite3_get_autocommit(db_->raw()) == 0; }

  absl::Status Begin() {
    batch_rows_ = 0;
    return begin_.Run();
  }
  // Metric rows inserted by the current transaction.
  int64_t batch_rows() const { return batch_rows_; }
  absl::Status Commit() { return commit_.Run(); }
  void Rollback() {
    (void)db_->Exec("ROLLBACK");
    batch_rows_ = 0;
    // Caches may hold ids created by the rolled-back batch.
    name_ids_.clear();
    trial_sweeps_.clear();
  }

  // Runs one write in a savepoint so that its failure leaves the batch's other writes intact.
  absl::Status ApplyIsolated(const std::function<absl::Status(Writer&)>& apply) {
    RETURN_IF_ERROR(savepoint_.Run());
    absl::Status status = apply(*this);
    if (status.ok()) return release_.Run();
    (void)rollback_to_.Run();
    (void)release_.Run();
    name_ids_.clear();
    trial_sweeps_.clear();
    return status;
  }

  absl::Status CreateSweep(const NewSweep& s) {
    std::string spec;
    s.spec.SerializeToString(&spec);
    insert_sweep_.Bind(1, s.id)
        .Bind(2, s.public_id)
        .Bind(3, s.spec.name())
        .Bind(4, static_cast<int64_t>(s.state))
        .BindBlob(5, spec)
        .Bind(6, s.spec_yaml)
        .Bind(7, s.spec.metric().name())
        .Bind(8, static_cast<int64_t>(s.spec.metric().goal() == v1::GOAL_MAXIMIZE))
        .Bind(9, static_cast<int64_t>(s.external))
        .Bind(10, s.created_us);
    return insert_sweep_.Run();
  }

  absl::Status UpdateSweep(const SweepUpdate& u) {
    update_sweep_.Bind(1, u.id);
    if (u.state) update_sweep_.Bind(2, static_cast<int64_t>(*u.state));
    if (u.reason) update_sweep_.Bind(3, *u.reason);
    if (u.end_us) update_sweep_.Bind(4, *u.end_us);
    update_sweep_.Bind(5, u.add_gpu_seconds_saved);
    RETURN_IF_ERROR(update_sweep_.Run());
    if (db_->Changes() == 0) return absl::NotFoundError(absl::StrCat("no sweep with id ", u.id));
    return absl::OkStatus();
  }

  absl::Status CreateTrial(const NewTrial& t) {
    insert_trial_.Bind(1, t.id)
        .Bind(2, t.sweep_id)
        .Bind(3, t.number)
        .Bind(4, t.public_id)
        .Bind(5, static_cast<int64_t>(t.state))
        .Bind(6, t.params_json)
        .Bind(7, static_cast<int64_t>(t.attempt))
        .Bind(8, static_cast<int64_t>(t.enqueued))
        .Bind(9, t.created_us)
        .Bind(10, t.parent_trial)
        .Bind(11, t.parent_step)
        .Bind(12, t.replaced_trial);
    RETURN_IF_ERROR(insert_trial_.Run());
    trial_sweeps_[t.id] = t.sweep_id;
    return CountState(t.sweep_id, t.state, +1);
  }

  absl::Status UpdateTrial(const TrialUpdate& u) {
    trial_state_.Bind(1, u.id);
    ASSIGN_OR_RETURN(bool found, trial_state_.Step());
    if (!found) {
      trial_state_.Reset();
      return absl::NotFoundError(absl::StrCat("no trial with id ", u.id));
    }
    const int64_t sweep_id = trial_state_.ColumnInt(0);
    const auto old_state = static_cast<v1::TrialState>(trial_state_.ColumnInt(1));
    trial_state_.Reset();
    update_trial_.Bind(1, u.id);
    if (u.state) update_trial_.Bind(2, static_cast<int64_t>(*u.state));
    if (u.start_us) update_trial_.Bind(3, *u.start_us);
    if (u.end_us) update_trial_.Bind(4, *u.end_us);
    if (u.exit_code) update_trial_.Bind(5, static_cast<int64_t>(*u.exit_code));
    if (u.exit_signal) update_trial_.Bind(6, static_cast<int64_t>(*u.exit_signal));
    if (u.attempt) update_trial_.Bind(7, static_cast<int64_t>(*u.attempt));
    if (u.reason) update_trial_.Bind(8, *u.reason);
    if (u.agent_ids) update_trial_.Bind(9, *u.agent_ids);
    if (u.gpus) update_trial_.Bind(10, *u.gpus);
    if (u.workdir) update_trial_.Bind(11, *u.workdir);
    update_trial_.Bind(12, u.add_gpu_seconds);
    update_trial_.Bind(13, u.add_gpu_seconds_saved);
    if (u.checkpoint_step) update_trial_.Bind(14, *u.checkpoint_step);
    update_trial_.Bind(15, u.add_gpu_seconds_redone);
    update_trial_.Bind(16, static_cast<int64_t>(u.add_promotion ? 1 : 0));
    update_trial_.Bind(17, static_cast<int64_t>(u.checkpoint_deleted ? 1 : 0));
    update_trial_.Bind(18, static_cast<int64_t>(u.add_resumed_promotion ? 1 : 0));
    update_trial_.Bind(19, static_cast<int64_t>(u.clear_checkpoint_step ? 1 : 0));
    RETURN_IF_ERROR(update_trial_.Run());
    if (u.drop_reports_after_step) {
      drop_reports_.Bind(1, u.id).Bind(2, *u.drop_reports_after_step);
      RETURN_IF_ERROR(drop_reports_.Run());
      if (db_->Changes() > 0) {
        drop_summaries_.Bind(1, u.id);
        RETURN_IF_ERROR(drop_summaries_.Run());
        rebuild_summaries_.Bind(1, u.id).Bind(2, sweep_id);
        RETURN_IF_ERROR(rebuild_summaries_.Run());
      }
    }
    if (u.state && *u.state != old_state) {
      RETURN_IF_ERROR(CountState(sweep_id, old_state, -1));
      RETURN_IF_ERROR(CountState(sweep_id, *u.state, +1));
    }
    if (u.add_gpu_seconds != 0) {
      add_sweep_gpu_.Bind(1, sweep_id).Bind(2, u.add_gpu_seconds);
      RETURN_IF_ERROR(add_sweep_gpu_.Run());
    }
    return absl::OkStatus();
  }

  // Inserts the reports' rows; summaries count only rows that were new (redelivery is a no-op).
  absl::StatusOr<size_t> AppendMetrics(int64_t trial_id, const std::vector<MetricReport>& reports) {
    ASSIGN_OR_RETURN(int64_t sweep_id, SweepOfTrial(trial_id));
    struct Summary {
      int64_t last_seq = -1;
      int64_t last_step = 0;
      double last = 0;
      double min = kInf;
      double max = -kInf;
      int64_t count = 0;
    };
    std::map<int64_t, Summary> summaries;
    size_t inserted = 0;
    for (const auto& report : reports) {
      for (const auto& [name, value] : report.metrics) {
        ASSIGN_OR_RETURN(int64_t name_id, NameId(name));
        insert_metric_.Bind(1, trial_id)
            .Bind(2, name_id)
            .Bind(3, report.seq)
            .Bind(4, report.step)
            .Bind(5, value)
            .Bind(6, report.time_us);
        RETURN_IF_ERROR(insert_metric_.Run());
        if (db_->Changes() == 0) continue;  // already stored
        ++inserted;
        Summary& s = summaries[name_id];
        if (report.seq > s.last_seq) {
          s.last_seq = report.seq;
          s.last_step = report.step;
          s.last = value;
        }
        // NaN is the worst value either way.
        s.min = std::min(s.min, std::isnan(value) ? kInf : value);
        s.max = std::max(s.max, std::isnan(value) ? -kInf : value);
        ++s.count;
      }
    }
    for (const auto& [name_id, s] : summaries) {
      upsert_summary_.Bind(1, trial_id)
          .Bind(2, name_id)
          .Bind(3, sweep_id)
          .Bind(4, s.last)
          .Bind(5, s.last_step)
          .Bind(6, s.last_seq)
          .Bind(7, s.min)
          .Bind(8, s.max)
          .Bind(9, s.count);
      RETURN_IF_ERROR(upsert_summary_.Run());
    }
    batch_rows_ += static_cast<int64_t>(inserted);
    return inserted;
  }

  absl::Status AppendEvent(const NewEvent& e) {
    insert_event_.Bind(1, e.time_us)
        .Bind(2, e.sweep_id)
        .Bind(3, e.trial_id)
        .Bind(4, e.agent_id)
        .Bind(5, e.kind)
        .Bind(6, e.from_state)
        .Bind(7, e.to_state)
        .Bind(8, e.message);
    return insert_event_.Run();
  }

  absl::Status UpsertAgent(const v1::Agent& a) {
    std::string info;
    a.SerializeToString(&info);
    upsert_agent_.Bind(1, a.id())
        .Bind(2, a.hostname())
        .Bind(3, a.address())
        .Bind(4, static_cast<int64_t>(a.state()))
        .Bind(5, a.incarnation())
        .BindBlob(6, info)
        .Bind(7, google::protobuf::util::TimeUtil::TimestampToMicroseconds(a.last_heartbeat()));
    return upsert_agent_.Run();
  }

 private:
  absl::Status CountState(int64_t sweep_id, v1::TrialState state, int64_t delta) {
    count_state_.Bind(1, sweep_id).Bind(2, static_cast<int64_t>(state)).Bind(3, delta);
    return count_state_.Run();
  }

  absl::StatusOr<int64_t> SweepOfTrial(int64_t trial_id) {
    if (auto it = trial_sweeps_.find(trial_id); it != trial_sweeps_.end()) return it->second;
    trial_state_.Bind(1, trial_id);
    ASSIGN_OR_RETURN(bool found, trial_state_.Step());
    if (!found) {
      trial_state_.Reset();
      return absl::NotFoundError(absl::StrCat("no trial with id ", trial_id));
    }
    const int64_t sweep_id = trial_state_.ColumnInt(0);
    trial_state_.Reset();
    if (trial_sweeps_.size() > 100'000) trial_sweeps_.clear();
    trial_sweeps_[trial_id] = sweep_id;
    return sweep_id;
  }

  absl::StatusOr<int64_t> NameId(const std::string& name) {
    if (auto it = name_ids_.find(name); it != name_ids_.end()) return it->second;
    find_name_.Bind(1, name);
    ASSIGN_OR_RETURN(bool found, find_name_.Step());
    int64_t id = 0;
    if (found) {
      id = find_name_.ColumnInt(0);
      find_name_.Reset();
    } else {
      find_name_.Reset();
      insert_name_.Bind(1, name);
      RETURN_IF_ERROR(insert_name_.Run());
      id = db_->LastInsertRowId();
    }
    name_ids_[name] = id;
    return id;
  }

  std::unique_ptr<Connection> db_;
  Statement insert_sweep_, update_sweep_, insert_trial_, trial_state_, update_trial_, drop_reports_,
      drop_summaries_, rebuild_summaries_, add_sweep_gpu_, count_state_, find_name_, insert_name_,
      insert_metric_, upsert_summary_, insert_event_, upsert_agent_, begin_, commit_, savepoint_,
      release_, rollback_to_;
  // Caches of committed (or in-batch) ids; cleared when a rollback may have undone them.
  absl::flat_hash_map<std::string, int64_t> name_ids_;
  absl::flat_hash_map<int64_t, int64_t> trial_sweeps_;
  int64_t batch_rows_ = 0;
};

// ---------------------------------------------------------------------------------------------

namespace {
// SQLite's words for a fault ("database or disk is full"), without the statement it hit.
std::string FaultReason(const absl::Status& status) {
  const absl::string_view message = status.message();
  const size_t colon = message.rfind(": ");
  return std::string(colon == absl::string_view::npos ? message : message.substr(colon + 2));
}
}  // namespace

Store::Store(StoreOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(StoreOptions options) {
  if (options.path.empty()) return absl::InvalidArgumentError("store path is empty");
  std::unique_ptr<Store> store(new Store(std::move(options)));
  RETURN_IF_ERROR(store->Init());
  return store;
}

absl::Status Store::Init() {
  ASSIGN_OR_RETURN(auto db, Connection::Open(options_.path, Connection::Mode::kReadWrite));
  // Before anything changes the file: switching another application's database to WAL would
  // already rewrite its header and leave a -wal file beside it.
  RETURN_IF_ERROR(CheckStoreIdentity(*db));
  // A store opened read-only would serve every read and fail every write after start-up, with
  // sweeps half created: refuse it now, saying what to fix.
  const std::string fix = absl::StrCat(
      "make the file and its folder writable by this user (sweepd also writes ", options_.path,
      "-wal, -shm and .lock beside it) or mount its filesystem read-write");
  if (db->ReadOnly()) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot be written (SQLite opened it read-only); ", fix));
  }
  auto mode = db->Prepare("PRAGMA journal_mode = WAL");
  if (!mode.ok()) return mode.status();
  ASSIGN_OR_RETURN(bool row, mode->Step());
  if (!row || mode->ColumnText(0) != "wal") {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot put ", options_.path, " in WAL mode (a network filesystem?)"));
  }
  mode->Reset();
  RETURN_IF_ERROR(db->Exec(options_.synchronous == Synchronous::kFull
                               ? "PRAGMA synchronous = FULL"
                               : "PRAGMA synchronous = NORMAL"));
  RETURN_IF_ERROR(db->Exec("PRAGMA foreign_keys = ON"));
  // The writer holds the only write connection: keep its pages cached (64 MiB).
  RETURN_IF_ERROR(db->Exec("PRAGMA cache_size = -65536"));
  // Checkpoints run on their own thread (CheckpointLoop), not inside the writer's commits.
  RETURN_IF_ERROR(db->Exec("PRAGMA wal_autocheckpoint = 0"));
  RETURN_IF_ERROR(MigrateSchema(*db));
  // A real commit, as every write will make: a read-only folder or mount can pass the checks
  // above and fail only here. It rewrites user_version with its own value.
  {
    ASSIGN_OR_RETURN(const int64_t version, db->QueryInt("PRAGMA user_version"));
    absl::Status probe = db->Exec("BEGIN IMMEDIATE");
    if (probe.ok()) probe = db->Exec(absl::StrCat("PRAGMA user_version = ", version));
    if (probe.ok()) probe = db->Exec("COMMIT");
    if (!probe.ok()) {
      (void)db->Exec("ROLLBACK");
      return absl::Status(probe.code(),
                          absl::StrCat("cannot be written (", FaultReason(probe), "); ", fix));
    }
  }
  if (options_.max_pages > 0) {
    RETURN_IF_ERROR(db->Exec(absl::StrCat("PRAGMA max_page_count = ", options_.max_pages)));
  }
  // Check the file before trusting it: a quick check reads every page once.
  auto check = db->Prepare("PRAGMA quick_check");
  if (!check.ok()) return check.status();
  ASSIGN_OR_RETURN(row, check->Step());
  if (row && check->ColumnText(0) != "ok") {
    return absl::DataLossError(
        absl::StrCat(options_.path, " failed its integrity check: ", check->ColumnText(0)));
  }
  writer_ = std::make_unique<Writer>(std::move(db));
  RETURN_IF_ERROR(writer_->Prepare());
  for (int i = 0; i < std::max(1, options_.read_connections); ++i) {
    ASSIGN_OR_RETURN(auto reader, Connection::Open(options_.path, Connection::Mode::kReadOnly));
    RETURN_IF_ERROR(reader->Exec("PRAGMA cache_size = -16384"));
    absl::MutexLock lock(&readers_mu_);
    idle_readers_.push_back(std::make_unique<ReadConnection>(std::move(reader)));
  }
  ASSIGN_OR_RETURN(checkpoint_db_, Connection::Open(options_.path, Connection::Mode::kReadWrite));
  RETURN_IF_ERROR(checkpoint_db_->Exec(options_.synchronous == Synchronous::kFull
                                           ? "PRAGMA synchronous = FULL"
                                           : "PRAGMA synchronous = NORMAL"));
  writer_thread_ = std::thread([this] { WriterLoop(); });
  checkpoint_thread_ = std::thread([this] { CheckpointLoop(); });
  return absl::OkStatus();
}

void Store::CheckpointLoop() {
  std::unique_lock<std::mutex> lock(checkpoint_mu_);
  while (!checkpoint_stop_) {
    checkpoint_cv_.wait_for(lock, std::chrono::milliseconds(200));
    if (checkpoint_stop_) break;
    lock.unlock();
    int wal_frames = 0, copied = 0;
    const int rc = sqlite3_wal_checkpoint_v2(checkpoint_db_->raw(), nullptr,
                                             SQLITE_CHECKPOINT_PASSIVE, &wal_frames, &copied);
    // Once everything is copied and no reader holds the old WAL, start it over so the file does
    // not grow for ever (TRUNCATE waits for nothing when it cannot proceed: busy is fine).
    if (rc == SQLITE_OK && wal_frames > 0 && copied == wal_frames && wal_frames > 4096) {
      sqlite3_wal_checkpoint_v2(checkpoint_db_->raw(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                                nullptr);
    }
    lock.lock();
  }
}

Store::~Store() {
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
  }
  if (writer_thread_.joinable()) writer_thread_.join();
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    checkpoint_stop_ = true;
  }
  checkpoint_cv_.notify_all();
  if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
  if (checkpoint_db_) {
    sqlite3_wal_checkpoint_v2(checkpoint_db_->raw(), nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                              nullptr);
  }
}

void Store::CrashForSimulation() {
  std::deque<PendingWrite> dropped;
  {
    absl::MutexLock lock(&queue_mu_);
    dropped.swap(queue_);
    flushes_queued_ = 0;
    stopping_ = true;
    crashed_ = true;
  }
  // The completions are destroyed unrun, as a killed process never runs them.
  dropped.clear();
}

void Store::Enqueue(std::function<absl::Status(Writer&)> apply, WriteDone done, size_t rows) {
  {
    absl::MutexLock lock(&queue_mu_);
    if (!stopping_) {
      if (!apply) ++flushes_queued_;
      queue_.push_back(PendingWrite{std::move(apply), std::move(done), rows});
      return;
    }
  }
  if (done) done(absl::UnavailableError("the store is shutting down"));
}

void Store::WriterLoop() {
  std::vector<PendingWrite> batch;
  std::vector<absl::Status> results;
  while (true) {
    batch.clear();
    {
      absl::MutexLock lock(&queue_mu_);
      queue_mu_.Await(absl::Condition(
          +[](Store* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->queue_mu_) {
            if (s->stopping_) return true;
            return s->options_.hold_writes_until_flush ? s->flushes_queued_ > 0
                                                       : !s->queue_.empty();
          },
          this));
      if (queue_.empty() && stopping_) return;
      // Take what queued while the last batch committed, up to the batch bounds.
      size_t rows = 0;
      while (!queue_.empty() && batch.size() < options_.max_batch_writes &&
             (batch.empty() || rows + queue_.front().rows <= options_.max_batch_rows)) {
        rows += queue_.front().rows;
        if (!queue_.front().apply) --flushes_queued_;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    results.assign(batch.size(), absl::OkStatus());
    absl::Status commit;
    if (gave_up_closing_) {
      // An earlier batch was given up on as the store closed: nothing after it may commit, or
      // the file would hold later writes without the earlier ones they follow (a trial running
      // an attempt whose assignment was never stored; found by engine_sim with disk faults).
      // What is stored stays a prefix of what was written, as after a kill -9.
      commit = absl::UnavailableError(
          "the store closed while its writes were failing; later writes are not attempted");
    } else {
      const auto commit_started = std::chrono::steady_clock::now();
      commit = ApplyBatch(batch, results);
      commit_seconds_.Observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - commit_started).count());
      if (!commit.ok() && options_.retry_storage_faults && IsStorageFault(commit)) {
        commit = RetryBatch(batch, results, commit);
        if (!commit.ok() && IsStorageFault(commit)) {
          absl::MutexLock lock(&queue_mu_);
          gave_up_closing_ = stopping_;  // RetryBatch gives up on a storage fault only then
        }
      }
    }
    if (!commit.ok()) {
      writer_->Rollback();
      const absl::Status failed(
          commit.code(), absl::StrCat("store commit failed; nothing of this batch was stored: ",
                                      commit.message()));
      for (auto& r : results) r = failed;
    }
    {
      absl::MutexLock lock(&stats_mu_);
      ++stats_.batches;
      stats_.writes += static_cast<int64_t>(batch.size());
      if (commit.ok()) {
        stats_.metric_rows += writer_->batch_rows();
      } else {
        ++stats_.failed_commits;
      }
    }
    {
      absl::MutexLock lock(&queue_mu_);
      if (crashed_) return;  // killed: no completion runs
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].done) batch[i].done(results[i]);
    }
  }
}

absl::Status Store::ApplyBatch(std::vector<PendingWrite>& batch,
                               std::vector<absl::Status>& results) {
  // Optimistic pass: writes rarely fail, so run them without savepoints (three statements fewer
  // per write). If one fails, roll back and run the batch again with each write isolated.
  RETURN_IF_ERROR(writer_->Begin());
  bool failed = false;
  for (size_t i = 0; i < batch.size() && !failed; ++i) {
    if (batch[i].apply) failed = !batch[i].apply(*writer_).ok();
  }
  if (!failed) return writer_->Commit();
  writer_->Rollback();
  RETURN_IF_ERROR(writer_->Begin());
  for (size_t i = 0; i < batch.size(); ++i) {
    if (!batch[i].apply) continue;
    results[i] = writer_->ApplyIsolated(batch[i].apply);
    // A disk-full or I/O error aborts the whole transaction: the batch's earlier writes are gone
    // too, so all of them fail with it. When storage faults are retried, one that left the
    // transaction open fails the batch too: the write is not the problem, the disk is.
    if (!results[i].ok() && (!writer_->InTransaction() ||
                             (options_.retry_storage_faults && IsStorageFault(results[i])))) {
      return results[i];
    }
  }
  return writer_->Commit();
}

bool IsStorageFault(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kResourceExhausted:  // SQLITE_FULL
    case absl::StatusCode::kDataLoss:           // SQLITE_IOERR (and corruption: retried, loudly)
    case absl::StatusCode::kUnavailable:        // SQLITE_BUSY
      return true;
    default:
      return false;
  }
}

absl::Status Store::RetryBatch(std::vector<PendingWrite>& batch, std::vector<absl::Status>& results,
                               absl::Status fault) {
  Clock& clock = *options_.clock;
  const double began = clock.SteadySeconds();
  double last_log = began;
  double backoff = 0.05;
  int64_t retries = 0;
  auto waiting = [&] {
    absl::MutexLock lock(&queue_mu_);
    return static_cast<int64_t>(queue_.size() + batch.size());
  };
  {
    const int64_t waiting_now = waiting();
    absl::MutexLock lock(&stats_mu_);
    health_ = {.degraded = true,
               .error = FaultReason(fault),
               .since_us = clock.NowMicros(),
               .waiting_writes = waiting_now,
               .retries = 0};
    ++stats_.failed_commits;
  }
  degraded_ = true;
  spdlog::error(
      "STORE WRITES FAILING ({}): {}. Nothing more is acknowledged until they succeed; agents keep "
      "their reports and API calls that change state are refused. Free space on the store's "
      "disk (or fix the I/O error); writes resume by themselves.",
      options_.path, FaultReason(fault));
  while (true) {
    writer_->Rollback();
    const bool retry = options_.hold_writes_until_flush
                           ? WaitForFlushToRetry(batch, fault)
                           : WaitToRetry(backoff, fault, [&] { return waiting(); });
    if (!retry) break;
    backoff = std::min(backoff * 2, options_.max_retry_seconds);
    if (options_.before_retry) options_.before_retry(writer_->db());
    results.assign(batch.size(), absl::OkStatus());
    fault = ApplyBatch(batch, results);
    ++retries;
    if (fault.ok() || !IsStorageFault(fault)) break;
    const double now = clock.SteadySeconds();
    {
      const int64_t waiting_now = waiting();
      absl::MutexLock lock(&stats_mu_);
      health_.error = FaultReason(fault);
      health_.waiting_writes = waiting_now;
      health_.retries = retries;
      ++stats_.failed_commits;
    }
    if (now - last_log >= 30) {
      last_log = now;
      spdlog::error("store writes still failing after {:.0f} s ({} writes waiting): {}",
                    now - began, waiting(), FaultReason(fault));
    }
  }
  if (fault.ok()) {
    spdlog::warn("store writes resumed after {:.1f} s and {} retries; {} writes waited",
                 clock.SteadySeconds() - began, retries, waiting());
  }
  {
    absl::MutexLock lock(&stats_mu_);
    health_ = StoreHealth{};
  }
  degraded_ = false;
  return fault;
}

bool Store::WaitToRetry(double backoff, const absl::Status& fault,
                        const std::function<int64_t()>& waiting) {
  Clock& clock = *options_.clock;
  auto closing = [&] {
    absl::MutexLock lock(&queue_mu_);
    return stopping_;
  };
  // Closing: retry for close_retry_seconds in all (not per batch), then fail what is left, one
  // attempt per batch. None of it was acknowledged.
  if (closing() && !closing_since_) closing_since_ = clock.SteadySeconds();
  if (closing_since_ && clock.SteadySeconds() - *closing_since_ > options_.close_retry_seconds) {
    if (!close_failure_logged_) {
      close_failure_logged_ = true;
      spdlog::error("store {} closing while writes still fail; {} writes were not stored: {}",
                    options_.path, waiting(), FaultReason(fault));
    }
    return false;
  }
  // Sleep in short steps so closing the store is noticed.
  const double wake = clock.SteadySeconds() + backoff;
  while (clock.SteadySeconds() < wake && !(closing() && !closing_since_)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

bool Store::WaitForFlushToRetry(std::vector<PendingWrite>& batch, const absl::Status& fault) {
  // Every Flush waiting now is answered: what was queued before it is not stored yet. Flush
  // markers carry no write, so taking them out of the batch and the queue loses nothing.
  std::vector<WriteDone> answer;
  for (auto& write : batch) {
    if (!write.apply && write.done) answer.push_back(std::move(write.done));
  }
  std::erase_if(batch, [](const PendingWrite& write) { return !write.apply; });
  {
    absl::MutexLock lock(&queue_mu_);
    for (auto& write : queue_) {
      if (!write.apply && write.done) answer.push_back(std::move(write.done));
    }
    std::erase_if(queue_, [](const PendingWrite& write) { return !write.apply; });
    flushes_queued_ = 0;
  }
  const absl::Status unavailable = absl::UnavailableError(absl::StrCat(
      "the store cannot write (", FaultReason(fault), "); nothing queued is stored yet"));
  for (auto& done : answer) done(unavailable);
  // The next Flush is the next retry; closing (or a simulated kill) ends the retries at once.
  absl::MutexLock lock(&queue_mu_);
  queue_mu_.Await(absl::Condition(
      +[](Store* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->queue_mu_) {
        return s->stopping_ || s->flushes_queued_ > 0;
      },
      this));
  return !stopping_;
}

StoreHealth Store::Health() const {
  absl::MutexLock lock(&stats_mu_);
  return health_;
}

absl::Status Store::Flush(double timeout_seconds) {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<absl::Status> status;
  };
  auto shared = std::make_shared<Shared>();
  Enqueue(
      nullptr,
      [shared](absl::Status status) {
        std::lock_guard<std::mutex> lock(shared->mu);
        shared->status = std::move(status);
        shared->cv.notify_all();
      },
      0);
  std::unique_lock<std::mutex> lock(shared->mu);
  if (shared->cv.wait_for(lock, std::chrono::duration<double>(timeout_seconds),
                          [&] { return shared->status.has_value(); })) {
    return *shared->status;
  }
  const StoreHealth health = Health();
  if (health.degraded) {
    return absl::UnavailableError(
        absl::StrCat("sweepd has not made it durable yet: its store cannot write (", health.error,
                     "); the change is kept in order and is stored when the fault clears"));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the store did not commit within ", timeout_seconds, " s"));
}

WriterStats Store::writer_stats() const {
  absl::MutexLock lock(&stats_mu_);
  return stats_;
}

void Store::CreateSweep(NewSweep sweep, WriteDone done) {
  Enqueue([s = std::move(sweep)](Writer& w) { return w.CreateSweep(s); }, std::move(done));
}

void Store::UpdateSweep(SweepUpdate update, WriteDone done) {
  Enqueue([u = std::move(update)](Writer& w) { return w.UpdateSweep(u); }, std::move(done));
}

void Store::CreateTrial(NewTrial trial, WriteDone done) {
  Enqueue([t = std::move(trial)](Writer& w) { return w.CreateTrial(t); }, std::move(done));
}

void Store::UpdateTrial(TrialUpdate update, WriteDone done) {
  Enqueue([u = std::move(update)](Writer& w) { return w.UpdateTrial(u); }, std::move(done));
}

void Store::AppendMetrics(int64_t trial_id, std::vector<MetricReport> reports, WriteDone done) {
  size_t rows = 0;
  for (const auto& r : reports) rows += r.metrics.size();
  Enqueue([trial_id,
           r = std::move(reports)](Writer& w) { return w.AppendMetrics(trial_id, r).status(); },
          std::move(done), std::max<size_t>(rows, 1));
}

void Store::RunOnWriter(std::function<absl::Status(Connection&)> fn, WriteDone done) {
  Enqueue([f = std::move(fn)](Writer& w) { return f(w.db()); }, std::move(done));
}

void Store::UpdateTrial(TrialUpdate update, NewEvent event, WriteDone done) {
  Enqueue(
      [u = std::move(update), e = std::move(event)](Writer& w) {
        RETURN_IF_ERROR(w.UpdateTrial(u));
        return w.AppendEvent(e);
      },
      std::move(done));
}

void Store::UpdateSweep(SweepUpdate update, NewEvent event, WriteDone done) {
  Enqueue(
      [u = std::move(update), e = std::move(event)](Writer& w) {
        RETURN_IF_ERROR(w.UpdateSweep(u));
        return w.AppendEvent(e);
      },
      std::move(done));
}

void Store::AppendEvent(NewEvent event, WriteDone done) {
  Enqueue([e = std::move(event)](Writer& w) { return w.AppendEvent(e); }, std::move(done));
}

void Store::UpsertAgent(v1::Agent agent, WriteDone done) {
  Enqueue([a = std::move(agent)](Writer& w) { return w.UpsertAgent(a); }, std::move(done));
}

absl::Status Store::Wait(const std::function<void(WriteDone)>& write) {
  std::promise<absl::Status> promise;
  auto future = promise.get_future();
  write([&promise](absl::Status status) { promise.set_value(std::move(status)); });
  return future.get();
}

absl::Status Store::Flush() {
  return Wait([this](WriteDone done) { Enqueue(nullptr, std::move(done), 0); });
}

}  // namespace sweepd::store
