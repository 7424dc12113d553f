#include "scheduler/sweep_api.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "scheduler/api_requests.h"

namespace sweepd::scheduler {
namespace {

// How long an API call waits for its change to be durable before it answers UNAVAILABLE (the
// change stays queued and is stored when the store recovers).
constexpr double kDurableWithinSeconds = 30;

}  // namespace

void SweepApi::FillDerived(v1::Sweep& sweep) {
  if (auto search = CreateSearchMethod(sweep.spec()); search.ok()) {
    if (auto size = (*search)->Size()) sweep.set_total_trials(*size);
  }
  if (sweep.total_trials() == 0) {
    int64_t cap = sweep.spec().run_cap();
    if (sweep.spec().budget().max_trials() > 0) {
      cap = cap > 0 ? std::min(cap, sweep.spec().budget().max_trials())
                    : sweep.spec().budget().max_trials();
    }
    sweep.set_total_trials(cap);
  }
  if (sweep.state() == v1::SWEEP_STATE_RUNNING) {
    sweep.set_stalled(engine_->StallReason(sweep.id()));
  }
}

absl::StatusOr<v1::Sweep> SweepApi::LoadSweep(const std::string& id) {
  auto sweep = store_->GetSweep(id);
  if (!sweep.ok()) return sweep.status();
  FillDerived(*sweep);
  return sweep;
}

absl::Status SweepApi::StoreWritable() const {
  const store::StoreHealth health = store_->Health();
  if (!health.degraded) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "sweepd cannot write its store (", health.error,
      "); changes are refused until it can (free space on the store's disk). Nothing was "
      "changed."));
}

std::string SweepApi::StoreWarning() const {
  const store::StoreHealth health = store_->Health();
  if (!health.degraded) return "";
  return absl::StrCat("sweepd cannot write its store since ",
                      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                                       absl::FromUnixMicros(health.since_us), absl::UTCTimeZone()),
                      " (", health.error,
                      "): nothing new is stored or acknowledged until it can; free space on its "
                      "disk");
}

absl::Status SweepApi::Durable(const std::string& sweep_id, v1::Sweep changed, v1::Sweep* out) {
  RETURN_IF_ERROR(store_->Flush(kDurableWithinSeconds));
  auto stored = LoadSweep(sweep_id);
  *out = stored.ok() ? std::move(*stored) : std::move(changed);
  return absl::OkStatus();
}

absl::Status SweepApi::CreateSweep(const v1::CreateSweepRequest& request,
                                   v1::CreateSweepResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  RETURN_IF_ERROR(StoreWritable());
  ASSIGN_OR_RETURN(*response, engine_->CreateSweep(request));
  auto stored = LoadSweep(response->sweep().id());
  if (stored.ok()) *response->mutable_sweep() = std::move(*stored);
  return absl::OkStatus();
}

absl::Status SweepApi::GetSweep(const v1::GetSweepRequest& request,
                                v1::GetSweepResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  ASSIGN_OR_RETURN(*response->mutable_sweep(), LoadSweep(request.sweep_id()));
  response->set_warning(StoreWarning());
  return absl::OkStatus();
}

absl::Status SweepApi::ListSweeps(const v1::ListSweepsRequest& request,
                                  v1::ListSweepsResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  ASSIGN_OR_RETURN(const int64_t offset, PageOffset(request.page_token()));
  const int64_t limit = request.limit() == 0 ? 100 : request.limit();
  std::vector<v1::SweepState> states;
  for (int s : request.states()) states.push_back(static_cast<v1::SweepState>(s));
  ASSIGN_OR_RETURN(auto sweeps, store_->ListSweeps(states, limit + 1, offset));
  for (size_t i = 0; i < sweeps.size() && static_cast<int64_t>(i) < limit; ++i) {
    FillDerived(sweeps[i]);
    *response->add_sweeps() = std::move(sweeps[i]);
  }
  if (static_cast<int64_t>(sweeps.size()) > limit) {
    response->set_next_page_token(std::to_string(offset + limit));
  }
  response->set_warning(StoreWarning());
  return absl::OkStatus();
}

absl::Status SweepApi::PauseSweep(const v1::PauseSweepRequest& request,
                                  v1::PauseSweepResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  RETURN_IF_ERROR(StoreWritable());
  ASSIGN_OR_RETURN(auto sweep, engine_->PauseSweep(request.sweep_id()));
  return Durable(request.sweep_id(), std::move(sweep), response->mutable_sweep());
}

absl::Status SweepApi::ResumeSweep(const v1::ResumeSweepRequest& request,
                                   v1::ResumeSweepResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  RETURN_IF_ERROR(StoreWritable());
  ASSIGN_OR_RETURN(auto sweep, engine_->ResumeSweep(request.sweep_id()));
  return Durable(request.sweep_id(), std::move(sweep), response->mutable_sweep());
}

absl::Status SweepApi::CancelSweep(const v1::CancelSweepRequest& request,
                                   v1::CancelSweepResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  RETURN_IF_ERROR(StoreWritable());
  ASSIGN_OR_RETURN(auto sweep, engine_->CancelSweep(request.sweep_id(), request.reason()));
  return Durable(request.sweep_id(), std::move(sweep), response->mutable_sweep());
}

absl::Status SweepApi::ListTrials(const v1::ListTrialsRequest& request,
                                  v1::ListTrialsResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  ASSIGN_OR_RETURN(const int64_t offset, PageOffset(request.page_token()));
  store::TrialQuery query{.sweep_public_id = request.sweep_id(),
                          .sort_metric = request.sort_metric(),
                          .sort_by_last = request.sort_by_last(),
                          .descending = request.descending(),
                          .limit = request.limit() == 0 ? 100 : request.limit(),
                          .offset = offset,
                          .by_number = request.by_number()};
  for (int s : request.states()) query.states.push_back(static_cast<v1::TrialState>(s));
  ASSIGN_OR_RETURN(auto page, store_->ListTrials(query));
  for (auto& t : page.trials) *response->add_trials() = std::move(t);
  response->set_total(page.total);
  if (offset + response->trials_size() < page.total) {
    response->set_next_page_token(std::to_string(offset + response->trials_size()));
  }
  return absl::OkStatus();
}

absl::Status SweepApi::GetTrial(const v1::GetTrialRequest& request,
                                v1::GetTrialResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  std::vector<std::string> names(request.metric_names().begin(), request.metric_names().end());
  ASSIGN_OR_RETURN(auto detail, store_->GetTrial(request.trial_id(), names, request.max_points(),
                                                 !request.without_metrics()));
  *response->mutable_trial() = std::move(detail.trial);
  for (auto& e : detail.events) *response->add_events() = std::move(e);
  for (auto& c : detail.curves) *response->add_curves() = std::move(c);
  return absl::OkStatus();
}

absl::Status SweepApi::WatchSweep(const v1::WatchSweepRequest& request,
                                  const std::function<bool(const v1::Event&)>& emit,
                                  const std::function<bool()>& cancelled) {
  RETURN_IF_ERROR(ValidateRequest(request));
  RETURN_IF_ERROR(store_->GetSweep(request.sweep_id()).status());
  int64_t after = std::max<int64_t>(0, request.after_event_id());
  int64_t seen = engine_->WaitForEvents(-1, 0);
  while (!cancelled()) {
    // Read the "done" state before the events, so the last events are never missed.
    const bool done = engine_->SweepDone(request.sweep_id());
    // The engine's last writes (the final events, the sweep's end state) may still be queued
    // at the store: once they commit, a client reading the store after the stream sees the
    // end.
    if (done) (void)store_->Flush(kDurableWithinSeconds);
    ASSIGN_OR_RETURN(auto events, store_->ListEvents(request.sweep_id(), after, 1000));
    for (const auto& e : events) {
      if (!emit(e)) return absl::OkStatus();  // the client went away
      after = e.id();
    }
    if (events.size() == 1000) continue;
    if (done) return absl::OkStatus();
    seen = engine_->WaitForEvents(seen, 1000);
  }
  return absl::OkStatus();
}

absl::Status SweepApi::EnqueueTrial(const v1::EnqueueTrialRequest& request,
                                    v1::EnqueueTrialResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  RETURN_IF_ERROR(StoreWritable());
  ASSIGN_OR_RETURN(*response->mutable_trial(), engine_->EnqueueTrial(request));
  return store_->Flush(kDurableWithinSeconds);
}

absl::Status SweepApi::AskTrial(const v1::AskTrialRequest& request,
                                v1::AskTrialResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  RETURN_IF_ERROR(StoreWritable());
  ASSIGN_OR_RETURN(*response->mutable_trial(), engine_->AskTrial(request.sweep_id()));
  return store_->Flush(kDurableWithinSeconds);
}

absl::Status SweepApi::ReportTrial(const v1::ReportTrialRequest& request,
                                   v1::ReportTrialResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  RETURN_IF_ERROR(StoreWritable());
  ASSIGN_OR_RETURN(*response, engine_->ReportTrial(request));
  return store_->Flush(kDurableWithinSeconds);
}

absl::Status SweepApi::TellTrial(const v1::TellTrialRequest& request,
                                 v1::TellTrialResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  RETURN_IF_ERROR(StoreWritable());
  ASSIGN_OR_RETURN(*response->mutable_trial(), engine_->TellTrial(request));
  return store_->Flush(kDurableWithinSeconds);
}

absl::Status SweepApi::ExportSweep(const v1::ExportSweepRequest& request,
                                   v1::ExportSweepResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  ASSIGN_OR_RETURN(auto table, store_->ExportSweep(request.sweep_id()));
  for (auto& c : table.columns) response->add_columns(std::move(c));
  for (auto& row : table.rows) {
    auto* out = response->add_rows();
    for (auto& cell : row) out->add_cells(std::move(cell));
  }
  return absl::OkStatus();
}

absl::Status SweepApi::ListAgents(const v1::ListAgentsRequest& request,
                                  v1::ListAgentsResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  ASSIGN_OR_RETURN(auto agents, engine_->ListAgents(request.all()));
  for (auto& a : agents) *response->add_agents() = std::move(a);
  return absl::OkStatus();
}

absl::Status SweepApi::ReleaseAgent(const v1::ReleaseAgentRequest& request,
                                    v1::ReleaseAgentResponse* response) {
  RETURN_IF_ERROR(ValidateRequest(request));
  ASSIGN_OR_RETURN(*response->mutable_agent(), engine_->ReleaseAgent(request.agent_id()));
  return absl::OkStatus();
}

}  // namespace sweepd::scheduler
