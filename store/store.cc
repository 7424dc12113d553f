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

namespace sweepd::store {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

google::protobuf::Timestamp Micros(int64_t us) {
  return google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(us);
}

// Parameters are stored as one JSON object in spec order.
void ParamsFromJson(const std::string& json, v1::Trial* trial) {
  auto obj = nlohmann::ordered_json::parse(json, nullptr, false);
  if (!obj.is_object()) return;
  for (const auto& [name, value] : obj.items()) {
    auto* p = trial->add_params();
    p->set_name(name);
    p->set_value_json(value.dump());
  }
}

// A query's SQL fragment `IN (1, 2, 3)` for states (integers only: no injection possible).
std::string StateList(const std::vector<int>& states) {
  return absl::StrCat("(", absl::StrJoin(states, ", "), ")");
}

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
                          created_us)
      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9))sql"));
    ASSIGN_OR_RETURN(trial_state_,
                     db_->Prepare("SELECT sweep_id, state FROM trials WHERE id = ?1"));
    ASSIGN_OR_RETURN(update_trial_, db_->Prepare(R"sql(
      UPDATE trials SET state = COALESCE(?2, state), start_us = COALESCE(?3, start_us),
                        end_us = COALESCE(?4, end_us), exit_code = COALESCE(?5, exit_code),
                        exit_signal = COALESCE(?6, exit_signal), attempt = COALESCE(?7, attempt),
                        reason = COALESCE(?8, reason), agent_ids = COALESCE(?9, agent_ids),
                        gpus = COALESCE(?10, gpus), workdir = COALESCE(?11, workdir),
                        gpu_seconds = gpu_seconds + ?12
      WHERE id = ?1)sql"));
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
        .Bind(9, t.created_us);
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
    RETURN_IF_ERROR(update_trial_.Run());
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
  Statement insert_sweep_, update_sweep_, insert_trial_, trial_state_, update_trial_,
      add_sweep_gpu_, count_state_, find_name_, insert_name_, insert_metric_, upsert_summary_,
      insert_event_, upsert_agent_, begin_, commit_, savepoint_, release_, rollback_to_;
  // Caches of committed (or in-batch) ids; cleared when a rollback may have undone them.
  absl::flat_hash_map<std::string, int64_t> name_ids_;
  absl::flat_hash_map<int64_t, int64_t> trial_sweeps_;
  int64_t batch_rows_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Read connections: each caches its prepared statements.

class Store::ReadConnection {
 public:
  explicit ReadConnection(std::unique_ptr<Connection> db) : db_(std::move(db)) {}

  // A cached statement for `sql` (which must be a string literal or otherwise stable).
  absl::StatusOr<Statement*> Get(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      ASSIGN_OR_RETURN(Statement stmt, db_->Prepare(sql));
      it = cache_.emplace(sql, std::move(stmt)).first;
    }
    it->second.Reset();
    return &it->second;
  }

  Connection& db() { return *db_; }

  // False once SQLite rolled the whole transaction back by itself (it does on SQLITE_FULL,
  // IOERR, NOMEM and some BUSY errors).
  bool InTransaction() const { return sqlite3_get_autocommit(db_->raw()) == 0; }

 private:
  std::unique_ptr<Connection> db_;
  std::unordered_map<std::string, Statement> cache_;
};

class Store::Lease {
 public:
  Lease(Store* store, std::unique_ptr<ReadConnection> reader)
      : store_(store), reader_(std::move(reader)) {}
  Lease(Lease&&) = default;
  ~Lease() {
    if (reader_) store_->ReleaseReader(std::move(reader_));
  }
  ReadConnection& operator*() { return *reader_; }
  ReadConnection* operator->() { return reader_.get(); }

 private:
  Store* store_;
  std::unique_ptr<ReadConnection> reader_;
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
    absl::Status commit = ApplyBatch(batch, results);
    if (!commit.ok() && options_.retry_storage_faults && IsStorageFault(commit)) {
      commit = RetryBatch(batch, results, commit);
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
  using Clock = std::chrono::steady_clock;
  const auto began = Clock::now();
  auto last_log = began;
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
               .since_us = std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count(),
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
  auto closing = [&] {
    absl::MutexLock lock(&queue_mu_);
    return stopping_;
  };
  while (true) {
    writer_->Rollback();
    // Closing: retry for close_retry_seconds in all (not per batch), then fail what is left,
    // one attempt per batch. None of it was acknowledged.
    if (closing() && !closing_since_) closing_since_ = Clock::now();
    if (closing_since_ && std::chrono::duration<double>(Clock::now() - *closing_since_).count() >
                              options_.close_retry_seconds) {
      if (!close_failure_logged_) {
        close_failure_logged_ = true;
        spdlog::error("store {} closing while writes still fail; {} writes were not stored: {}",
                      options_.path, waiting(), FaultReason(fault));
      }
      break;
    }
    // Sleep in short steps so closing the store is noticed.
    const auto wake = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(backoff));
    while (Clock::now() < wake && !(closing() && !closing_since_)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    backoff = std::min(backoff * 2, options_.max_retry_seconds);
    if (options_.before_retry) options_.before_retry(writer_->db());
    results.assign(batch.size(), absl::OkStatus());
    fault = ApplyBatch(batch, results);
    ++retries;
    if (fault.ok() || !IsStorageFault(fault)) break;
    const auto now = Clock::now();
    {
      const int64_t waiting_now = waiting();
      absl::MutexLock lock(&stats_mu_);
      health_.error = FaultReason(fault);
      health_.waiting_writes = waiting_now;
      health_.retries = retries;
      ++stats_.failed_commits;
    }
    if (std::chrono::duration<double>(now - last_log).count() >= 30) {
      last_log = now;
      spdlog::error("store writes still failing after {:.0f} s ({} writes waiting): {}",
                    std::chrono::duration<double>(now - began).count(), waiting(),
                    FaultReason(fault));
    }
  }
  if (fault.ok()) {
    spdlog::warn("store writes resumed after {:.1f} s and {} retries; {} writes waited",
                 std::chrono::duration<double>(Clock::now() - began).count(), retries, waiting());
  }
  {
    absl::MutexLock lock(&stats_mu_);
    health_ = StoreHealth{};
  }
  degraded_ = false;
  return fault;
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

// ---------------------------------------------------------------------------------------------
// Reads.

absl::StatusOr<Store::Lease> Store::AcquireReader() {
  {
    absl::MutexLock lock(&readers_mu_);
    if (!idle_readers_.empty()) {
      auto reader = std::move(idle_readers_.back());
      idle_readers_.pop_back();
      return Lease(this, std::move(reader));
    }
  }
  // All busy: open another; it joins the pool when released.
  ASSIGN_OR_RETURN(auto db, Connection::Open(options_.path, Connection::Mode::kReadOnly));
  return Lease(this, std::make_unique<ReadConnection>(std::move(db)));
}

void Store::ReleaseReader(std::unique_ptr<ReadConnection> reader) {
  absl::MutexLock lock(&readers_mu_);
  if (idle_readers_.size() < static_cast<size_t>(std::max(1, options_.read_connections)) * 4) {
    idle_readers_.push_back(std::move(reader));
  }
}

absl::StatusOr<MaxIds> Store::GetMaxIds() {
  ASSIGN_OR_RETURN(Lease db, AcquireReader());
  MaxIds ids;
  ASSIGN_OR_RETURN(ids.sweep_id, db->db().QueryInt("SELECT COALESCE(MAX(id), 0) FROM sweeps"));
  ASSIGN_OR_RETURN(ids.trial_id, db->db().QueryInt("SELECT COALESCE(MAX(id), 0) FROM trials"));
  return ids;
}

namespace {

constexpr char kSweepColumns[] =
    "id, public_id, state, reason, spec, spec_yaml, metric_name, maximize, external, "
    "created_us, end_us, gpu_seconds_used, gpu_seconds_saved";

struct SweepRow {
  int64_t id = 0;
  bool maximize = false;
  std::string metric_name;
  v1::Sweep sweep;
};

SweepRow SweepFromRow(const Statement& s) {
  SweepRow row;
  row.id = s.ColumnInt(0);
  v1::Sweep& sweep = row.sweep;
  sweep.set_id(s.ColumnText(1));
  sweep.set_state(static_cast<v1::SweepState>(s.ColumnInt(2)));
  sweep.set_reason(s.ColumnText(3));
  sweep.mutable_spec()->ParseFromString(s.ColumnText(4));
  sweep.set_spec_yaml(s.ColumnText(5));
  row.metric_name = s.ColumnText(6);
  row.maximize = s.ColumnInt(7) != 0;
  sweep.set_external(s.ColumnInt(8) != 0);
  *sweep.mutable_created_time() = Micros(s.ColumnInt(9));
  if (!s.ColumnIsNull(10)) *sweep.mutable_end_time() = Micros(s.ColumnInt(10));
  sweep.set_gpu_seconds_used(s.ColumnDouble(11));
  sweep.set_gpu_seconds_saved(s.ColumnDouble(12));
  return row;
}

void AddCount(v1::TrialCounts* c, int state, int64_t n) {
  switch (state) {
    case v1::TRIAL_STATE_QUEUED:
      c->set_queued(n);
      break;
    case v1::TRIAL_STATE_ASSIGNED:
      c->set_assigned(n);
      break;
    case v1::TRIAL_STATE_RUNNING:
      c->set_running(n);
      break;
    case v1::TRIAL_STATE_COMPLETED:
      c->set_completed(n);
      break;
    case v1::TRIAL_STATE_PRUNED:
      c->set_pruned(n);
      break;
    case v1::TRIAL_STATE_FAILED:
      c->set_failed(n);
      break;
    case v1::TRIAL_STATE_LOST:
      c->set_lost(n);
      break;
    case v1::TRIAL_STATE_CANCELED:
      c->set_canceled(n);
      break;
    default:
      break;
  }
}

constexpr char kTrialColumns[] =
    "t.id, t.public_id, t.number, t.state, t.params_json, t.attempt, t.enqueued, t.agent_ids, "
    "t.gpus, t.workdir, t.created_us, t.start_us, t.end_us, t.exit_code, t.exit_signal, "
    "t.reason, t.gpu_seconds";
constexpr int kTrialColumnCount = 17;

v1::Trial TrialFromRow(const Statement& s, const std::string& sweep_public_id) {
  v1::Trial t;
  t.set_id(s.ColumnText(1));
  t.set_sweep_id(sweep_public_id);
  t.set_number(s.ColumnInt(2));
  t.set_state(static_cast<v1::TrialState>(s.ColumnInt(3)));
  ParamsFromJson(s.ColumnText(4), &t);
  t.set_attempt(static_cast<int32_t>(s.ColumnInt(5)));
  t.set_enqueued(s.ColumnInt(6) != 0);
  for (absl::string_view a : absl::StrSplit(s.ColumnText(7), ',', absl::SkipEmpty())) {
    t.add_agent_ids(std::string(a));
  }
  for (absl::string_view g : absl::StrSplit(s.ColumnText(8), ',', absl::SkipEmpty())) {
    t.add_gpus(std::string(g));
  }
  t.set_workdir(s.ColumnText(9));
  *t.mutable_created_time() = Micros(s.ColumnInt(10));
  if (!s.ColumnIsNull(11)) *t.mutable_start_time() = Micros(s.ColumnInt(11));
  if (!s.ColumnIsNull(12)) *t.mutable_end_time() = Micros(s.ColumnInt(12));
  t.set_exit_code(static_cast<int32_t>(s.ColumnInt(13)));
  t.set_exit_signal(static_cast<int32_t>(s.ColumnInt(14)));
  t.set_reason(s.ColumnText(15));
  t.set_gpu_seconds(s.ColumnDouble(16));
  return t;
}

// Fills the trial's sweep-metric values from a trial_metrics row at columns [col, col + 3):
// last_value, min_value, max_value, last_step.
void FillMetricValues(const Statement& s, int col, bool maximize, v1::Trial* t) {
  if (s.ColumnIsNull(col + 1)) return;  // no such metric reported
  t->set_last_value(s.ColumnIsNull(col) ? NAN : s.ColumnDouble(col));
  const double best = maximize ? s.ColumnDouble(col + 2) : s.ColumnDouble(col + 1);
  t->set_best_value(best);
  t->set_last_step(s.ColumnInt(col + 3));
}

}  // namespace

absl::StatusOr<v1::Sweep> Store::ReadSweep(ReadConnection& db, absl::string_view public_id) {
  ASSIGN_OR_RETURN(Statement * s, db.Get(absl::StrCat("SELECT ", kSweepColumns,
                                                      " FROM sweeps WHERE public_id = ?1")));
  s->Bind(1, public_id);
  ASSIGN_OR_RETURN(bool found, s->Step());
  if (!found) return absl::NotFoundError(absl::StrCat("no sweep '", public_id, "'"));
  SweepRow row = SweepFromRow(*s);
  s->Reset();
  ASSIGN_OR_RETURN(Statement * counts,
                   db.Get("SELECT state, count FROM sweep_state_counts WHERE sweep_id = ?1"));
  counts->Bind(1, row.id);
  while (true) {
    ASSIGN_OR_RETURN(bool more, counts->Step());
    if (!more) break;
    AddCount(row.sweep.mutable_counts(), static_cast<int>(counts->ColumnInt(0)),
             counts->ColumnInt(1));
  }
  if (!row.metric_name.empty()) {
    // Best trial: one step down the (sweep, metric, extreme) index.
    ASSIGN_OR_RETURN(Statement * best,
                     db.Get(row.maximize ? "SELECT t.public_id, tm.max_value FROM trial_metrics tm "
                                           "JOIN trials t ON t.id = tm.trial_id "
                                           "WHERE tm.sweep_id = ?1 AND tm.name_id = "
                                           "(SELECT id FROM metric_names WHERE name = ?2) "
                                           "ORDER BY tm.max_value DESC, tm.trial_id LIMIT 1"
                                         : "SELECT t.public_id, tm.min_value FROM trial_metrics tm "
                                           "JOIN trials t ON t.id = tm.trial_id "
                                           "WHERE tm.sweep_id = ?1 AND tm.name_id = "
                                           "(SELECT id FROM metric_names WHERE name = ?2) "
                                           "ORDER BY tm.min_value ASC, tm.trial_id LIMIT 1"));
    best->Bind(1, row.id).Bind(2, row.metric_name);
    ASSIGN_OR_RETURN(bool has_best, best->Step());
    if (has_best && std::isfinite(best->ColumnDouble(1))) {
      row.sweep.set_best_trial_id(best->ColumnText(0));
      row.sweep.set_best_value(best->ColumnDouble(1));
    }
    best->Reset();
  }
  return row.sweep;
}

absl::StatusOr<v1::Sweep> Store::GetSweep(absl::string_view public_id) {
  ASSIGN_OR_RETURN(Lease db, AcquireReader());
  return ReadSweep(*db, public_id);
}

absl::StatusOr<SweepKeys> Store::GetSweepKeys(absl::string_view public_id) {
  ASSIGN_OR_RETURN(Lease db, AcquireReader());
  ASSIGN_OR_RETURN(Statement * s, db->Get("SELECT id FROM sweeps WHERE public_id = ?1"));
  s->Bind(1, public_id);
  ASSIGN_OR_RETURN(bool found, s->Step());
  if (!found) return absl::NotFoundError(absl::StrCat("no sweep '", public_id, "'"));
  SweepKeys keys;
  keys.sweep_id = s->ColumnInt(0);
  s->Reset();
  ASSIGN_OR_RETURN(Statement * t, db->Get("SELECT public_id, id FROM trials WHERE sweep_id = ?1"));
  t->Bind(1, keys.sweep_id);
  while (true) {
    ASSIGN_OR_RETURN(bool more, t->Step());
    if (!more) break;
    keys.trial_ids[t->ColumnText(0)] = t->ColumnInt(1);
  }
  t->Reset();
  ASSIGN_OR_RETURN(Statement * m, db->Get("SELECT trial_id, MAX(last_seq) FROM trial_metrics "
                                          "WHERE sweep_id = ?1 GROUP BY trial_id"));
  m->Bind(1, keys.sweep_id);
  while (true) {
    ASSIGN_OR_RETURN(bool more, m->Step());
    if (!more) break;
    keys.last_seqs[m->ColumnInt(0)] = m->ColumnInt(1);
  }
  m->Reset();
  return keys;
}

absl::StatusOr<std::vector<v1::Sweep>> Store::ListSweeps(const std::vector<v1::SweepState>& states,
                                                         int64_t limit, int64_t offset) {
  ASSIGN_OR_RETURN(Lease db, AcquireReader());
  std::vector<int> state_ints(states.begin(), states.end());
  std::string sql = "SELECT public_id FROM sweeps";
  if (!state_ints.empty()) absl::StrAppend(&sql, " WHERE state IN ", StateList(state_ints));
  absl::StrAppend(&sql, " ORDER BY id DESC LIMIT ?1 OFFSET ?2");
  ASSIGN_OR_RETURN(Statement * s, db->Get(sql));
  s->Bind(1, limit).Bind(2, offset);
  std::vector<std::string> ids;
  while (true) {
    ASSIGN_OR_RETURN(bool more, s->Step());
    if (!more) break;
    ids.push_back(s->ColumnText(0));
  }
  s->Reset();
  std::vector<v1::Sweep> sweeps;
  for (const auto& id : ids) {
    ASSIGN_OR_RETURN(v1::Sweep sweep, ReadSweep(*db, id));
    sweeps.push_back(std::move(sweep));
  }
  return sweeps;
}

absl::StatusOr<TrialPage> Store::ListTrials(const TrialQuery& query) {
  ASSIGN_OR_RETURN(Lease db, AcquireReader());
  // Everything below reads one snapshot.
  RETURN_IF_ERROR(db->db().Exec("BEGIN"));
  struct EndRead {
    Connection& c;
    ~EndRead() { (void)c.Exec("COMMIT"); }
  } end_read{db->db()};

  ASSIGN_OR_RETURN(Statement * sweep_stmt,
                   db->Get("SELECT id, metric_name, maximize FROM sweeps WHERE public_id = ?1"));
  sweep_stmt->Bind(1, query.sweep_public_id);
  ASSIGN_OR_RETURN(bool found, sweep_stmt->Step());
  if (!found) return absl::NotFoundError(absl::StrCat("no sweep '", query.sweep_public_id, "'"));
  const int64_t sweep_id = sweep_stmt->ColumnInt(0);
  const std::string sweep_metric = sweep_stmt->ColumnText(1);
  const bool maximize = sweep_stmt->ColumnInt(2) != 0;
  sweep_stmt->Reset();

  if (query.by_number) {
    ASSIGN_OR_RETURN(Statement * s,
                     db->Get(absl::StrCat(
                         "SELECT ", kTrialColumns,
                         ", tm.last_value, tm.min_value, tm.max_value, tm.last_step FROM trials t "
                         "LEFT JOIN trial_metrics tm ON tm.trial_id = t.id AND tm.name_id = "
                         "(SELECT id FROM metric_names WHERE name = ?2) "
                         "WHERE t.sweep_id = ?1 ORDER BY t.number LIMIT ?3 OFFSET ?4")));
    s->Bind(1, sweep_id).Bind(2, sweep_metric).Bind(3, query.limit).Bind(4, query.offset);
    TrialPage page;
    while (true) {
      ASSIGN_OR_RETURN(bool more, s->Step());
      if (!more) break;
      v1::Trial t = TrialFromRow(*s, query.sweep_public_id);
      FillMetricValues(*s, kTrialColumnCount, maximize, &t);
      page.trials.push_back(std::move(t));
    }
    s->Reset();
    return page;
  }
  const std::string metric = query.sort_metric.empty() ? sweep_metric : query.sort_metric;
  int64_t name_id = -1;
  if (!metric.empty()) {
    ASSIGN_OR_RETURN(Statement * n, db->Get("SELECT id FROM metric_names WHERE name = ?1"));
    n->Bind(1, metric);
    ASSIGN_OR_RETURN(bool has, n->Step());
    if (has) name_id = n->ColumnInt(0);
    n->Reset();
  }
  std::vector<int> states(query.states.begin(), query.states.end());
  const std::string state_filter =
      states.empty() ? "" : absl::StrCat(" AND t.state IN ", StateList(states));

  TrialPage page;
  const int64_t limit = std::clamp<int64_t>(query.limit, 1, 10'000);
  const int64_t offset = std::max<int64_t>(query.offset, 0);
  // 1. Trials with the metric, in metric order; 2. then the others, by number.
  const bool best_first = !query.descending;
  std::string order_column, direction;
  if (query.sort_by_last) {
    order_column = "tm.last_value";
    direction = (maximize == best_first) ? "DESC" : "ASC";
  } else {
    order_column = maximize ? "tm.max_value" : "tm.min_value";
    direction = (maximize == best_first) ? "DESC" : "ASC";
  }
  int64_t with_metric_total = 0;
  if (name_id >= 0) {
    const std::string sql = absl::StrCat(
        "SELECT ", kTrialColumns,
        ", tm.last_value, tm.min_value, tm.max_value, tm.last_step FROM trial_metrics tm "
        "JOIN trials t ON t.id = tm.trial_id WHERE tm.sweep_id = ?1 AND tm.name_id = ?2",
        state_filter, " ORDER BY ",
        query.sort_by_last ? absl::StrCat(order_column, " IS NULL, ") : "", order_column, " ",
        direction, ", t.number LIMIT ?3 OFFSET ?4");
    ASSIGN_OR_RETURN(Statement * s, db->Get(sql));
    s->Bind(1, sweep_id).Bind(2, name_id).Bind(3, limit).Bind(4, offset);
    while (true) {
      ASSIGN_OR_RETURN(bool more, s->Step());
      if (!more) break;
      v1::Trial t = TrialFromRow(*s, query.sweep_public_id);
      FillMetricValues(*s, kTrialColumnCount, maximize, &t);
      page.trials.push_back(std::move(t));
    }
    s->Reset();
    // Only a page that runs past the trials with the metric needs to know how many there are.
    if (static_cast<int64_t>(page.trials.size()) < limit) {
      ASSIGN_OR_RETURN(
          Statement * c,
          db->Get(absl::StrCat("SELECT count(*) FROM trial_metrics tm JOIN trials t ON t.id = "
                               "tm.trial_id WHERE tm.sweep_id = ?1 AND tm.name_id = ?2",
                               state_filter)));
      c->Bind(1, sweep_id).Bind(2, name_id);
      ASSIGN_OR_RETURN(bool row, c->Step());
      with_metric_total = row ? c->ColumnInt(0) : 0;
      c->Reset();
    }
  }
  const int64_t remaining = limit - static_cast<int64_t>(page.trials.size());
  if (remaining > 0) {
    const std::string sql =
        absl::StrCat("SELECT ", kTrialColumns, " FROM trials t WHERE t.sweep_id = ?1", state_filter,
                     name_id >= 0 ? " AND NOT EXISTS (SELECT 1 FROM trial_metrics tm WHERE "
                                    "tm.trial_id = t.id AND tm.name_id = ?4)"
                                  : "",
                     " ORDER BY t.number ", query.descending && name_id < 0 ? "DESC" : "ASC",
                     " LIMIT ?2 OFFSET ?3");
    ASSIGN_OR_RETURN(Statement * s, db->Get(sql));
    s->Bind(1, sweep_id)
        .Bind(2, remaining)
        .Bind(3, std::max<int64_t>(0, offset - with_metric_total));
    if (name_id >= 0) s->Bind(4, name_id);
    while (true) {
      ASSIGN_OR_RETURN(bool more, s->Step());
      if (!more) break;
      page.trials.push_back(TrialFromRow(*s, query.sweep_public_id));
    }
    s->Reset();
  }
  if (query.with_total) {
    // From the per-state counts the writes keep: no scan of the sweep's trials.
    std::string sql = "SELECT COALESCE(SUM(count), 0) FROM sweep_state_counts WHERE sweep_id = ?1";
    if (!states.empty()) absl::StrAppend(&sql, " AND state IN ", StateList(states));
    ASSIGN_OR_RETURN(Statement * c, db->Get(sql));
    c->Bind(1, sweep_id);
    ASSIGN_OR_RETURN(bool row, c->Step());
    page.total = row ? c->ColumnInt(0) : 0;
    c->Reset();
  }
  return page;
}

absl::StatusOr<TrialDetail> Store::GetTrial(absl::string_view public_id,
                                            const std::vector<std::string>& metric_names,
                                            int max_points, bool with_curves) {
  ASSIGN_OR_RETURN(Lease db, AcquireReader());
  RETURN_IF_ERROR(db->db().Exec("BEGIN"));
  struct EndRead {
    Connection& c;
    ~EndRead() { (void)c.Exec("COMMIT"); }
  } end_read{db->db()};

  ASSIGN_OR_RETURN(Statement * s,
                   db->Get(absl::StrCat("SELECT ", kTrialColumns,
                                        ", s.public_id, s.metric_name, s.maximize, t.sweep_id "
                                        "FROM trials t JOIN sweeps s ON s.id = t.sweep_id "
                                        "WHERE t.public_id = ?1")));
  s->Bind(1, public_id);
  ASSIGN_OR_RETURN(bool found, s->Step());
  if (!found) return absl::NotFoundError(absl::StrCat("no trial '", public_id, "'"));
  TrialDetail detail;
  const int64_t trial_id = s->ColumnInt(0);
  detail.trial = TrialFromRow(*s, s->ColumnText(kTrialColumnCount));
  const std::string sweep_metric = s->ColumnText(kTrialColumnCount + 1);
  const bool maximize = s->ColumnInt(kTrialColumnCount + 2) != 0;
  s->Reset();

  // Summaries of every metric.
  ASSIGN_OR_RETURN(Statement * m,
                   db->Get("SELECT n.name, n.id, tm.last_value, tm.min_value, tm.max_value, "
                           "tm.last_step, tm.count FROM trial_metrics tm "
                           "JOIN metric_names n ON n.id = tm.name_id "
                           "WHERE tm.trial_id = ?1 ORDER BY n.name"));
  m->Bind(1, trial_id);
  std::vector<std::pair<std::string, int64_t>> names;
  while (true) {
    ASSIGN_OR_RETURN(bool more, m->Step());
    if (!more) break;
    auto* summary = detail.trial.add_metrics();
    summary->set_name(m->ColumnText(0));
    const bool is_sweep_metric = summary->name() == sweep_metric;
    summary->set_last(m->ColumnIsNull(2) ? NAN : m->ColumnDouble(2));
    summary->set_best(is_sweep_metric && maximize ? m->ColumnDouble(4) : m->ColumnDouble(3));
    summary->set_last_step(m->ColumnInt(5));
    summary->set_count(m->ColumnInt(6));
    if (is_sweep_metric) {
      detail.trial.set_last_value(summary->last());
      detail.trial.set_best_value(summary->best());
      detail.trial.set_last_step(summary->last_step());
    }
    names.emplace_back(summary->name(), m->ColumnInt(1));
  }
  m->Reset();

  ASSIGN_OR_RETURN(Statement * e,
                   db->Get("SELECT id, time_us, agent_id, kind, from_state, to_state, message "
                           "FROM events WHERE trial_id = ?1 ORDER BY id"));
  e->Bind(1, trial_id);
  while (true) {
    ASSIGN_OR_RETURN(bool more, e->Step());
    if (!more) break;
    v1::Event ev;
    ev.set_id(e->ColumnInt(0));
    *ev.mutable_time() = Micros(e->ColumnInt(1));
    ev.set_sweep_id(detail.trial.sweep_id());
    ev.set_trial_id(detail.trial.id());
    ev.set_agent_id(e->ColumnText(2));
    ev.set_kind(e->ColumnText(3));
    ev.set_from_state(e->ColumnText(4));
    ev.set_to_state(e->ColumnText(5));
    ev.set_message(e->ColumnText(6));
    detail.events.push_back(std::move(ev));
  }
  e->Reset();

  if (!with_curves) return detail;
  ASSIGN_OR_RETURN(Statement * c, db->Get("SELECT seq, step, value, time_us FROM metrics "
                                          "WHERE trial_id = ?1 AND name_id = ?2 ORDER BY seq"));
  for (const auto& [name, name_id] : names) {
    if (!metric_names.empty() &&
        std::find(metric_names.begin(), metric_names.end(), name) == metric_names.end()) {
      continue;
    }
    v1::LearningCurve curve;
    curve.set_name(name);
    c->Bind(1, trial_id).Bind(2, name_id);
    while (true) {
      ASSIGN_OR_RETURN(bool more, c->Step());
      if (!more) break;
      auto* p = curve.add_points();
      p->set_seq(c->ColumnInt(0));
      p->set_step(c->ColumnInt(1));
      p->set_name(name);
      p->set_value(c->ColumnIsNull(2) ? NAN : c->ColumnDouble(2));
      *p->mutable_time() = Micros(c->ColumnInt(3));
    }
    c->Reset();
    if (max_points > 0 && curve.points_size() > max_points) {
      // Keep evenly spaced points, always the first and the last.
      v1::LearningCurve sampled;
      sampled.set_name(name);
      const int n = curve.points_size();
      for (int i = 0; i < max_points; ++i) {
        const int index =
            max_points == 1
                ? n - 1
                : static_cast<int>(static_cast<int64_t>(i) * (n - 1) / (max_points - 1));
        *sampled.add_points() = curve.points(index);
      }
      curve = std::move(sampled);
    }
    detail.curves.push_back(std::move(curve));
  }
  return detail;
}

absl::StatusOr<std::vector<v1::Event>> Store::ListEvents(absl::string_view sweep_public_id,
                                                         int64_t after_id, int64_t limit) {
  ASSIGN_OR_RETURN(Lease db, AcquireReader());
  ASSIGN_OR_RETURN(
      Statement * s,
      db->Get("SELECT e.id, e.time_us, COALESCE(t.public_id, ''), e.agent_id, e.kind, "
              "e.from_state, e.to_state, e.message FROM events e "
              "LEFT JOIN trials t ON t.id = e.trial_id "
              "WHERE e.sweep_id = (SELECT id FROM sweeps WHERE public_id = ?1) AND e.id > ?2 "
              "ORDER BY e.id LIMIT ?3"));
  s->Bind(1, sweep_public_id).Bind(2, after_id).Bind(3, limit);
  std::vector<v1::Event> events;
  while (true) {
    ASSIGN_OR_RETURN(bool more, s->Step());
    if (!more) break;
    v1::Event ev;
    ev.set_id(s->ColumnInt(0));
    *ev.mutable_time() = Micros(s->ColumnInt(1));
    ev.set_sweep_id(std::string(sweep_public_id));
    ev.set_trial_id(s->ColumnText(2));
    ev.set_agent_id(s->ColumnText(3));
    ev.set_kind(s->ColumnText(4));
    ev.set_from_state(s->ColumnText(5));
    ev.set_to_state(s->ColumnText(6));
    ev.set_message(s->ColumnText(7));
    events.push_back(std::move(ev));
  }
  s->Reset();
  return events;
}

absl::StatusOr<std::vector<v1::Agent>> Store::ListAgents() {
  ASSIGN_OR_RETURN(Lease db, AcquireReader());
  ASSIGN_OR_RETURN(Statement * s, db->Get("SELECT info FROM agents ORDER BY id"));
  std::vector<v1::Agent> agents;
  while (true) {
    ASSIGN_OR_RETURN(bool more, s->Step());
    if (!more) break;
    v1::Agent agent;
    agent.ParseFromString(s->ColumnText(0));
    agents.push_back(std::move(agent));
  }
  s->Reset();
  return agents;
}

absl::StatusOr<ExportTable> Store::ExportSweep(absl::string_view public_id) {
  ASSIGN_OR_RETURN(Lease db, AcquireReader());
  RETURN_IF_ERROR(db->db().Exec("BEGIN"));
  struct EndRead {
    Connection& c;
    ~EndRead() { (void)c.Exec("COMMIT"); }
  } end_read{db->db()};
  ASSIGN_OR_RETURN(Statement * sw, db->Get("SELECT id, spec FROM sweeps WHERE public_id = ?1"));
  sw->Bind(1, public_id);
  ASSIGN_OR_RETURN(bool found, sw->Step());
  if (!found) return absl::NotFoundError(absl::StrCat("no sweep '", public_id, "'"));
  const int64_t sweep_id = sw->ColumnInt(0);
  sw->Reset();
  // Metric columns: every metric any trial of the sweep reported, by name.
  ASSIGN_OR_RETURN(Statement * names,
                   db->Get("SELECT DISTINCT n.id, n.name FROM trial_metrics tm "
                           "JOIN metric_names n ON n.id = tm.name_id WHERE tm.sweep_id = ?1 "
                           "ORDER BY n.name"));
  names->Bind(1, sweep_id);
  std::vector<std::pair<int64_t, std::string>> metrics;
  while (true) {
    ASSIGN_OR_RETURN(bool more, names->Step());
    if (!more) break;
    metrics.emplace_back(names->ColumnInt(0), names->ColumnText(1));
  }
  names->Reset();
  ExportTable table;
  table.columns = {"trial", "number", "state", "attempt", "gpu_seconds", "reason"};
  std::vector<std::string> param_names;
  ASSIGN_OR_RETURN(Statement * t,
                   db->Get("SELECT id, public_id, number, state, attempt, gpu_seconds, reason, "
                           "params_json FROM trials WHERE sweep_id = ?1 ORDER BY number"));
  ASSIGN_OR_RETURN(Statement * v, db->Get("SELECT name_id, last_value FROM trial_metrics "
                                          "WHERE trial_id = ?1"));
  t->Bind(1, sweep_id);
  std::vector<std::pair<std::vector<std::string>, nlohmann::ordered_json>> rows;
  std::vector<std::map<int64_t, std::string>> values;
  while (true) {
    ASSIGN_OR_RETURN(bool more, t->Step());
    if (!more) break;
    std::vector<std::string> row = {t->ColumnText(1),
                                    std::to_string(t->ColumnInt(2)),
                                    TrialStateName(static_cast<v1::TrialState>(t->ColumnInt(3))),
                                    std::to_string(t->ColumnInt(4)),
                                    absl::StrCat(t->ColumnDouble(5)),
                                    t->ColumnText(6)};
    auto params = nlohmann::ordered_json::parse(t->ColumnText(7), nullptr, false);
    if (params.is_object()) {
      for (const auto& [name, value] : params.items()) {
        if (std::find(param_names.begin(), param_names.end(), name) == param_names.end()) {
          param_names.push_back(name);
        }
      }
    }
    std::map<int64_t, std::string> last;
    v->Bind(1, t->ColumnInt(0));
    while (true) {
      ASSIGN_OR_RETURN(bool has, v->Step());
      if (!has) break;
      last[v->ColumnInt(0)] = v->ColumnIsNull(1) ? "nan" : absl::StrCat(v->ColumnDouble(1));
    }
    v->Reset();
    rows.emplace_back(std::move(row), std::move(params));
    values.push_back(std::move(last));
  }
  t->Reset();
  for (const auto& p : param_names) table.columns.push_back(p);
  for (const auto& [id, name] : metrics) table.columns.push_back(name);
  for (size_t i = 0; i < rows.size(); ++i) {
    auto& [row, params] = rows[i];
    for (const auto& p : param_names) {
      if (!params.is_object() || !params.contains(p)) {
        row.emplace_back();
      } else {
        const auto& value = params[p];
        row.push_back(value.is_string() ? value.get<std::string>() : value.dump());
      }
    }
    for (const auto& [id, name] : metrics) {
      auto it = values[i].find(id);
      row.push_back(it == values[i].end() ? "" : it->second);
    }
    table.rows.push_back(std::move(row));
  }
  return table;
}

}  // namespace sweepd::store
