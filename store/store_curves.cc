// The dashboard's sweep-wide read: every trial's learning curve of one metric, page by page.
// Apart from store_queries.cc because it is the one read whose cost grows with the number of
// reports (it walks the metrics table), and the one whose speed bench/dashboard_bench watches.

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "store/store.h"
#include "store/store_internal.h"

namespace sweepd::store {

absl::StatusOr<CurvePage> Store::SweepCurves(absl::string_view sweep_public_id,
                                             const std::string& metric, int64_t from_number,
                                             int64_t limit, int max_points,
                                             const std::vector<v1::TrialState>& states) {
  ASSIGN_OR_RETURN(Lease db, AcquireReader());
  RETURN_IF_ERROR(db->db().Exec("BEGIN"));
  struct EndRead {
    Connection& c;
    ~EndRead() { (void)c.Exec("COMMIT"); }
  } end_read{db->db()};

  ASSIGN_OR_RETURN(Statement * s,
                   db->Get("SELECT id, metric_name FROM sweeps WHERE public_id = ?1"));
  s->Bind(1, sweep_public_id);
  ASSIGN_OR_RETURN(bool found, s->Step());
  if (!found) return absl::NotFoundError(absl::StrCat("no sweep '", sweep_public_id, "'"));
  const int64_t sweep_id = s->ColumnInt(0);
  const std::string name = metric.empty() ? s->ColumnText(1) : metric;
  s->Reset();

  CurvePage page;
  ASSIGN_OR_RETURN(Statement * n, db->Get("SELECT count(*) FROM trials WHERE sweep_id = ?1"));
  n->Bind(1, sweep_id);
  ASSIGN_OR_RETURN(bool counted, n->Step());
  page.total_trials = counted ? n->ColumnInt(0) : 0;
  n->Reset();

  ASSIGN_OR_RETURN(Statement * id, db->Get("SELECT id FROM metric_names WHERE name = ?1"));
  id->Bind(1, name);
  ASSIGN_OR_RETURN(bool named, id->Step());
  const int64_t name_id = named ? id->ColumnInt(0) : -1;
  id->Reset();

  // The state list is integers of ours: no injection is possible.
  std::string state_filter;
  for (v1::TrialState state : states) {
    absl::StrAppend(&state_filter, state_filter.empty() ? " AND state IN (" : ", ",
                    static_cast<int>(state));
  }
  if (!state_filter.empty()) state_filter += ")";
  ASSIGN_OR_RETURN(Statement * t, db->Get(absl::StrCat("SELECT id, public_id, number, state "
                                                       "FROM trials WHERE sweep_id = ?1 AND "
                                                       "number >= ?2",
                                                       state_filter, " ORDER BY number LIMIT ?3")));
  ASSIGN_OR_RETURN(Statement * m, db->Get("SELECT step, value FROM metrics "
                                          "WHERE trial_id = ?1 AND name_id = ?2 ORDER BY seq"));
  ASSIGN_OR_RETURN(Statement * sum, db->Get("SELECT last_seq, count FROM trial_metrics "
                                            "WHERE trial_id = ?1 AND name_id = ?2"));
  ASSIGN_OR_RETURN(Statement * seek, db->Get("SELECT step, value, seq FROM metrics "
                                             "WHERE trial_id = ?1 AND name_id = ?2 AND seq >= ?3 "
                                             "ORDER BY seq LIMIT 1"));
  t->Bind(1, sweep_id).Bind(2, from_number).Bind(3, limit + 1);
  while (true) {
    ASSIGN_OR_RETURN(bool more, t->Step());
    if (!more) break;
    if (static_cast<int64_t>(page.curves.size()) == limit) {
      page.next_number = t->ColumnInt(2);
      break;
    }
    TrialCurve curve;
    const int64_t trial_key = t->ColumnInt(0);
    curve.trial_id = t->ColumnText(1);
    curve.number = t->ColumnInt(2);
    curve.state = static_cast<v1::TrialState>(t->ColumnInt(3));
    if (name_id >= 0) {
      // A long curve is sampled by index seeks at evenly spaced report numbers (max_points
      // seeks), not read whole: running trials' curves are refreshed while they grow, and
      // reading every row of a thousand long curves every few seconds took sweepd's CPU from
      // the reports (bench/sweep_bench --dashboard-pages).
      sum->Bind(1, trial_key).Bind(2, name_id);
      ASSIGN_OR_RETURN(bool summarized, sum->Step());
      const int64_t last_seq = summarized ? sum->ColumnInt(0) : 0;
      const int64_t count = summarized ? sum->ColumnInt(1) : 0;
      sum->Reset();
      if (max_points == 0 || count <= max_points) {
        m->Bind(1, trial_key).Bind(2, name_id);
        while (true) {
          ASSIGN_OR_RETURN(bool point, m->Step());
          if (!point) break;
          curve.steps.push_back(m->ColumnInt(0));
          curve.values.push_back(m->ColumnIsNull(1) ? NAN : m->ColumnDouble(1));
        }
        m->Reset();
      } else {
        int64_t last_taken = -1;
        for (int i = 0; i < max_points; ++i) {
          const int64_t target = max_points == 1 ? last_seq : last_seq * i / (max_points - 1);
          seek->Bind(1, trial_key).Bind(2, name_id).Bind(3, std::max(target, last_taken + 1));
          ASSIGN_OR_RETURN(bool point, seek->Step());
          if (point) {
            last_taken = seek->ColumnInt(2);
            curve.steps.push_back(seek->ColumnInt(0));
            curve.values.push_back(seek->ColumnIsNull(1) ? NAN : seek->ColumnDouble(1));
          }
          seek->Reset();
          if (!point) break;
        }
      }
    }
    page.curves.push_back(std::move(curve));
  }
  t->Reset();
  return page;
}

absl::StatusOr<int64_t> Store::LatestEventId(absl::string_view sweep_public_id) {
  ASSIGN_OR_RETURN(Lease db, AcquireReader());
  ASSIGN_OR_RETURN(Statement * s,
                   db->Get("SELECT COALESCE(MAX(id), 0) FROM events WHERE sweep_id = "
                           "(SELECT id FROM sweeps WHERE public_id = ?1)"));
  s->Bind(1, sweep_public_id);
  ASSIGN_OR_RETURN(bool row, s->Step());
  const int64_t id = row ? s->ColumnInt(0) : 0;
  s->Reset();
  return id;
}

}  // namespace sweepd::store
