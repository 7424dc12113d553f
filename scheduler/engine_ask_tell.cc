// Ask/tell for external runners.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <future>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/command_template.h"
#include "common/logging.h"
#include "common/param_space.h"
#include "common/spec_parser.h"
#include "common/state_names.h"
#include "common/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "scheduler/engine.h"
#include "scheduler/engine_internal.h"

namespace sweepd::scheduler {

// ---------------------------------------------------------------------------------------------
// Ask/tell for external runners.

absl::StatusOr<v1::Trial> Engine::AskTrial(const std::string& sweep_id) {
  return Call<absl::StatusOr<v1::Trial>>([&]() -> absl::StatusOr<v1::Trial> {
    Sweep* sweep = FindSweep(sweep_id);
    if (sweep == nullptr) return absl::NotFoundError(absl::StrCat("no sweep '", sweep_id, "'"));
    if (!sweep->external) {
      return absl::FailedPreconditionError(
          absl::StrCat("sweep ", sweep_id,
                       " runs its trials on agents; ask/tell needs a sweep submitted with "
                       "--external"));
    }
    if (sweep->state != v1::SWEEP_STATE_RUNNING) {
      return absl::FailedPreconditionError(
          absl::StrCat("sweep ", sweep_id, " is ", SweepStateName(sweep->state)));
    }
    if (sweep->queue.empty()) {
      int64_t cap = sweep->spec.run_cap();
      if (sweep->spec.budget().max_trials() > 0) {
        cap = cap > 0 ? std::min(cap, sweep->spec.budget().max_trials())
                      : sweep->spec.budget().max_trials();
      }
      if (cap <= 0 || cap > kMaxTrialsPerSweep) cap = kMaxTrialsPerSweep;
      if (!sweep->exhausted && static_cast<int64_t>(sweep->trial_ids.size()) >= cap) {
        sweep->exhausted = true;
        sweep->exhausted_reason = absl::StrCat("run cap of ", cap, " trials reached");
      }
      if (!sweep->exhausted && !sweep->target_reached) {
        auto params = sweep->search->Propose(sweep->history);
        if (params.ok()) {
          NewTrial(*sweep, std::move(*params), false);
        } else {
          sweep->exhausted = true;
          sweep->exhausted_reason = std::string(params.status().message());
        }
      }
      if (sweep->queue.empty()) {
        MaybeFinish(*sweep);
        return absl::OutOfRangeError(absl::StrCat(
            "sweep ", sweep_id, " has nothing left to propose: ",
            sweep->target_reached ? "metric target reached" : sweep->exhausted_reason));
      }
    }
    Trial& trial = trials_.at(sweep->queue.front());
    sweep->queue.pop_front();
    trial.agent_id = "external";
    trial.start_us = NowMicros();
    SetTrialState(trial, v1::TRIAL_STATE_RUNNING, "asked by an external runner",
                  {.start_us = trial.start_us, .agent_ids = std::string("external")});
    v1::Trial out;
    out.set_id(trial.public_id);
    out.set_sweep_id(sweep->public_id);
    out.set_number(trial.number);
    out.set_state(trial.state);
    out.set_attempt(trial.attempt);
    for (const auto& p : trial.params) *out.add_params() = p;
    return out;
  });
}

absl::StatusOr<v1::ReportTrialResponse> Engine::ReportTrial(const v1::ReportTrialRequest& request) {
  return Call<absl::StatusOr<v1::ReportTrialResponse>>(
      [&]() -> absl::StatusOr<v1::ReportTrialResponse> {
        Trial* trial = FindTrial(request.trial_id());
        if (trial == nullptr) {
          return absl::NotFoundError(absl::StrCat("no trial '", request.trial_id(), "'"));
        }
        if (trial->agent_id != "external" || trial->state != v1::TRIAL_STATE_RUNNING) {
          return absl::FailedPreconditionError(
              absl::StrCat("trial ", trial->public_id, " is ", TrialStateName(trial->state),
                           trial->agent_id == "external" ? "" : " on an agent",
                           "; only a running trial of an --external sweep takes reports"));
        }
        Sweep& sweep = sweeps_.at(trial->sweep_id);
        v1::MetricBatch batch;
        batch.set_trial_id(trial->public_id);
        batch.set_first_seq(trial->last_seq_seen + 1);
        v1::Report* report = batch.add_reports();
        report->set_seq(trial->last_seq_seen + 1);
        report->set_step(request.step());
        report->set_time_us(NowMicros());
        report->mutable_metrics()->insert(request.metrics().begin(), request.metrics().end());
        StoreReports(sweep, *trial, std::move(batch), nullptr);
        v1::ReportTrialResponse response;
        response.set_should_continue(!trial->stop_as);
        response.set_reason(trial->stop_reason);
        return response;
      });
}

absl::StatusOr<v1::Trial> Engine::TellTrial(const v1::TellTrialRequest& request) {
  return Call<absl::StatusOr<v1::Trial>>([&]() -> absl::StatusOr<v1::Trial> {
    Trial* trial = FindTrial(request.trial_id());
    if (trial == nullptr) {
      return absl::NotFoundError(absl::StrCat("no trial '", request.trial_id(), "'"));
    }
    if (trial->agent_id != "external" || trial->state != v1::TRIAL_STATE_RUNNING) {
      return absl::FailedPreconditionError(
          absl::StrCat("trial ", trial->public_id, " is ", TrialStateName(trial->state),
                       "; only a running trial of an --external sweep can be told"));
    }
    Sweep& sweep = sweeps_.at(trial->sweep_id);
    v1::TrialState state = request.state() == v1::TRIAL_STATE_UNSPECIFIED
                               ? v1::TRIAL_STATE_COMPLETED
                               : request.state();
    if (state != v1::TRIAL_STATE_COMPLETED && state != v1::TRIAL_STATE_FAILED &&
        state != v1::TRIAL_STATE_PRUNED) {
      return absl::InvalidArgumentError("state: a trial is told completed, failed or pruned");
    }
    if (state == v1::TRIAL_STATE_COMPLETED && !request.has_value() && sweep.spec.has_metric()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "value: required for a completed trial (the final ", sweep.spec.metric().name(), ")"));
    }
    if (request.has_value() && sweep.spec.has_metric()) {
      v1::MetricBatch batch;
      batch.set_trial_id(trial->public_id);
      batch.set_first_seq(trial->last_seq_seen + 1);
      v1::Report* report = batch.add_reports();
      report->set_seq(trial->last_seq_seen + 1);
      // At the last step it reported (the told value ends its curve there), or at 0 when it
      // reported nothing; it used to be the count of pruner-counted reports, 0 without a
      // pruner, which put the final point of every curve back at step 0 (seen on the
      // dashboard's curves).
      const TrialRecord& record = sweep.history[trial->history_index];
      report->set_step(record.value.has_value() ? record.last_step : 0);
      report->set_time_us(NowMicros());
      (*report->mutable_metrics())[sweep.spec.metric().name()] = request.value();
      StoreReports(sweep, *trial, std::move(batch), nullptr, /*prune=*/false);
    }
    // A trial the pruner stopped ends pruned even if the runner finished it.
    if (trial->stop_as && state == v1::TRIAL_STATE_COMPLETED) state = *trial->stop_as;
    const double seconds = static_cast<double>(NowMicros() - trial->start_us) / 1e6;
    EndTrial(sweep, *trial, state,
             trial->stop_as ? trial->stop_reason : absl::StrCat("told ", TrialStateName(state)),
             std::max(0.0, seconds));
    MaybeFinish(sweep);
    v1::Trial out;
    out.set_id(trial->public_id);
    out.set_sweep_id(sweep.public_id);
    out.set_number(trial->number);
    out.set_state(trial->state);
    for (const auto& p : trial->params) *out.add_params() = p;
    return out;
  });
}

}  // namespace sweepd::scheduler
