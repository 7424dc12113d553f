// The store's reads: each runs on a pooled read-only connection, in its own WAL snapshot. About
// 670 lines, a little over the 600 the core aims for: each query is its SQL and the few lines
// that turn rows into messages, and they share the pool and the row helpers at the top; split by
// topic they would each need those helpers from a shared header for no gain in clarity.

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
#include "store/store.h"
#include "store/store_internal.h"

namespace sweepd::store {
namespace {

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
    case v1::TRIAL_STATE_PAUSED:
      c->set_paused(n);
      break;
    default:
      break;
  }
}

constexpr char kTrialColumns[] =
    "t.id, t.public_id, t.number, t.state, t.params_json, t.attempt, t.enqueued, t.agent_ids, "
    "t.gpus, t.workdir, t.created_us, t.start_us, t.end_us, t.exit_code, t.exit_signal, "
    "t.reason, t.gpu_seconds, t.gpu_seconds_saved, t.checkpoint_step, t.gpu_seconds_redone, "
    "t.promotions, t.checkpoint_deleted, t.resumed_promotions, t.parent_trial, t.parent_step, "
    "t.replaced_trial";
constexpr int kTrialColumnCount = 26;

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
  t.set_gpu_seconds_saved(s.ColumnDouble(17));
  if (!s.ColumnIsNull(18)) t.set_checkpoint_step(s.ColumnInt(18));
  t.set_gpu_seconds_redone(s.ColumnDouble(19));
  t.set_promotions(static_cast<int32_t>(s.ColumnInt(20)));
  t.set_checkpoint_deleted(s.ColumnInt(21) != 0);
  t.set_resumed_promotions(static_cast<int32_t>(s.ColumnInt(22)));
  t.set_parent_trial_id(s.ColumnText(23));
  if (!t.parent_trial_id().empty()) t.set_parent_step(s.ColumnInt(24));
  t.set_replaced_trial_id(s.ColumnText(25));
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

  std::vector<int> states(query.states.begin(), query.states.end());
  const std::string state_filter =
      states.empty() ? "" : absl::StrCat(" AND t.state IN ", StateList(states));
  // The matching trials across pages, from the per-state counts the writes keep: no scan of the
  // sweep's trials.
  const auto count_total = [&]() -> absl::StatusOr<int64_t> {
    std::string sql = "SELECT COALESCE(SUM(count), 0) FROM sweep_state_counts WHERE sweep_id = ?1";
    if (!states.empty()) absl::StrAppend(&sql, " AND state IN ", StateList(states));
    ASSIGN_OR_RETURN(Statement * c, db->Get(sql));
    c->Bind(1, sweep_id);
    ASSIGN_OR_RETURN(bool row, c->Step());
    const int64_t total = row ? c->ColumnInt(0) : 0;
    c->Reset();
    return total;
  };

  if (query.by_number) {
    ASSIGN_OR_RETURN(Statement * s,
                     db->Get(absl::StrCat(
                         "SELECT ", kTrialColumns,
                         ", tm.last_value, tm.min_value, tm.max_value, tm.last_step FROM trials t "
                         "LEFT JOIN trial_metrics tm ON tm.trial_id = t.id AND tm.name_id = "
                         "(SELECT id FROM metric_names WHERE name = ?2) "
                         "WHERE t.sweep_id = ?1",
                         state_filter, " ORDER BY t.number LIMIT ?3 OFFSET ?4")));
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
    if (query.with_total) {
      ASSIGN_OR_RETURN(page.total, count_total());
    }
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
    ASSIGN_OR_RETURN(page.total, count_total());
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
