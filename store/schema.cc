#include "store/schema.h"

#include <vector>

#include "absl/strings/str_cat.h"

namespace sweepd::store {
namespace {

// Migration N (1-based) takes the schema from version N-1 to N. Append only; never edit a
// released step.
const std::vector<const char*>& Migrations() {
  static const auto* const kSteps = new std::vector<const char*>{
      // 1: the initial schema.
      R"sql(
CREATE TABLE sweeps (
  id INTEGER PRIMARY KEY,
  public_id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  state INTEGER NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  spec BLOB NOT NULL,
  spec_yaml TEXT NOT NULL,
  metric_name TEXT NOT NULL,
  maximize INTEGER NOT NULL,
  external INTEGER NOT NULL DEFAULT 0,
  created_us INTEGER NOT NULL,
  end_us INTEGER,
  gpu_seconds_used REAL NOT NULL DEFAULT 0,
  gpu_seconds_saved REAL NOT NULL DEFAULT 0
);
CREATE INDEX sweeps_by_state ON sweeps (state, id);

-- Trials per state of each sweep, kept by the trial writes so a summary reads a few rows.
CREATE TABLE sweep_state_counts (
  sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
  state INTEGER NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (sweep_id, state)
) WITHOUT ROWID;

CREATE TABLE trials (
  id INTEGER PRIMARY KEY,
  sweep_id INTEGER NOT NULL REFERENCES sweeps (id),
  number INTEGER NOT NULL,
  public_id TEXT NOT NULL UNIQUE,
  state INTEGER NOT NULL,
  params_json TEXT NOT NULL,
  attempt INTEGER NOT NULL DEFAULT 1,
  enqueued INTEGER NOT NULL DEFAULT 0,
  agent_ids TEXT NOT NULL DEFAULT '',
  gpus TEXT NOT NULL DEFAULT '',
  workdir TEXT NOT NULL DEFAULT '',
  created_us INTEGER NOT NULL,
  start_us INTEGER,
  end_us INTEGER,
  exit_code INTEGER NOT NULL DEFAULT 0,
  exit_signal INTEGER NOT NULL DEFAULT 0,
  reason TEXT NOT NULL DEFAULT '',
  gpu_seconds REAL NOT NULL DEFAULT 0,
  UNIQUE (sweep_id, number)
);
CREATE INDEX trials_by_state ON trials (sweep_id, state, number);

CREATE TABLE metric_names (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE
);

-- Append-only; (trial, metric, seq) once, so a redelivered batch is stored once. A NULL value
-- is NaN (SQLite cannot store NaN). No REFERENCES clauses: this is the hot table, and the writer
-- checks the trial once per batch and takes name ids from metric_names itself, which saves two
-- index lookups per row.
CREATE TABLE metrics (
  trial_id INTEGER NOT NULL,
  name_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  step INTEGER NOT NULL,
  value REAL,
  time_us INTEGER NOT NULL,
  PRIMARY KEY (trial_id, name_id, seq)
) WITHOUT ROWID;

-- Per trial and metric: last value and extremes, kept by the metric writes so that trials sort
-- by a metric through an index. NaN counts as the worst value: +inf in min_value, -inf in
-- max_value.
CREATE TABLE trial_metrics (
  trial_id INTEGER NOT NULL REFERENCES trials (id),
  name_id INTEGER NOT NULL REFERENCES metric_names (id),
  sweep_id INTEGER NOT NULL,
  last_value REAL,
  last_step INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  min_value REAL NOT NULL,
  max_value REAL NOT NULL,
  count INTEGER NOT NULL,
  PRIMARY KEY (trial_id, name_id)
) WITHOUT ROWID;
CREATE INDEX trial_metrics_by_min ON trial_metrics (sweep_id, name_id, min_value);
CREATE INDEX trial_metrics_by_max ON trial_metrics (sweep_id, name_id, max_value);
CREATE INDEX trial_metrics_by_last ON trial_metrics (sweep_id, name_id, last_value);

CREATE TABLE agents (
  id TEXT PRIMARY KEY,
  hostname TEXT NOT NULL,
  address TEXT NOT NULL,
  state INTEGER NOT NULL,
  incarnation INTEGER NOT NULL,
  info BLOB NOT NULL,
  last_seen_us INTEGER NOT NULL
) WITHOUT ROWID;

-- The audit log: every transition of a sweep, trial or agent.
CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  time_us INTEGER NOT NULL,
  sweep_id INTEGER,
  trial_id INTEGER,
  agent_id TEXT NOT NULL DEFAULT '',
  kind TEXT NOT NULL,
  from_state TEXT NOT NULL DEFAULT '',
  to_state TEXT NOT NULL DEFAULT '',
  message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_by_sweep ON events (sweep_id, id);
CREATE INDEX events_by_trial ON events (trial_id, id);
)sql",
      // 2: each pruned trial's share of the GPU time pruning saved (the dashboard draws the
      // savings over time; sweeps.gpu_seconds_saved stays their sum).
      R"sql(
ALTER TABLE trials ADD COLUMN gpu_seconds_saved REAL NOT NULL DEFAULT 0;
)sql",
      // 3: checkpoints. The step of a trial's last checkpoint (NULL: none), where its retry
      // resumes; and the GPU seconds its retries redid (what earlier attempts ran past it).
      R"sql(
ALTER TABLE trials ADD COLUMN checkpoint_step INTEGER;
ALTER TABLE trials ADD COLUMN gpu_seconds_redone REAL NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN promotions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN resumed_promotions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN checkpoint_deleted INTEGER NOT NULL DEFAULT 0;
)sql",
      // 4: population-based training. A copy's lineage: the trial whose checkpoint it started
      // from (public id), at which step, and the member it replaced.
      R"sql(
ALTER TABLE trials ADD COLUMN parent_trial TEXT NOT NULL DEFAULT '';
ALTER TABLE trials ADD COLUMN parent_step INTEGER NOT NULL DEFAULT 0;
ALTER TABLE trials ADD COLUMN replaced_trial TEXT NOT NULL DEFAULT '';
)sql",
  };
  return *kSteps;
}

}  // namespace

int64_t CurrentSchemaVersion() { return static_cast<int64_t>(Migrations().size()); }

absl::Status CheckStoreIdentity(Connection& db) {
  auto app_id = db.QueryInt("PRAGMA application_id");
  if (!app_id.ok()) return app_id.status();
  auto version = db.QueryInt("PRAGMA user_version");
  if (!version.ok()) return version.status();
  if (*app_id != 0 && *app_id != kApplicationId) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the file is not a sweepd store (application_id ", *app_id, "); refusing to touch it"));
  }
  if (*app_id == 0) {
    auto tables = db.QueryInt("SELECT count(*) FROM sqlite_schema");
    if (!tables.ok()) return tables.status();
    if (*version != 0 || *tables != 0) {
      return absl::FailedPreconditionError(
          "the file is another application's SQLite database; refusing to touch it");
    }
  }
  if (*version > CurrentSchemaVersion()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the store has schema version ", *version, " but this sweepd knows versions up to ",
        CurrentSchemaVersion(), "; upgrade sweepd (downgrading a store is not supported)"));
  }
  return absl::OkStatus();
}

absl::Status MigrateSchema(Connection& db) {
  if (auto st = CheckStoreIdentity(db); !st.ok()) return st;
  auto version = db.QueryInt("PRAGMA user_version");
  if (!version.ok()) return version.status();
  for (int64_t v = *version; v < CurrentSchemaVersion(); ++v) {
    absl::Status status = db.Exec("BEGIN IMMEDIATE");
    if (status.ok()) status = db.Exec(Migrations()[static_cast<size_t>(v)]);
    if (status.ok()) status = db.Exec(absl::StrCat("PRAGMA application_id = ", kApplicationId));
    if (status.ok()) status = db.Exec(absl::StrCat("PRAGMA user_version = ", v + 1));
    if (status.ok()) status = db.Exec("COMMIT");
    if (!status.ok()) {
      (void)db.Exec("ROLLBACK");
      return absl::Status(status.code(), absl::StrCat("migrating the store to schema version ",
                                                      v + 1, ": ", status.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace sweepd::store
