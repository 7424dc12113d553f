// The SweepService operations: create, pause, resume, cancel, enqueue.

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
namespace {

// Checks a user-given value against the parameter's space; returns the value to store. A value
// that equals a categorical's (16.0 for 16) becomes the categorical's own, as in Optuna (it
// stores the choice it matched) and W&B: the script gets what the spec lists, and trials group
// by one value. An integral number for an integer parameter is stored as an integer likewise.
absl::StatusOr<std::string> CanonicalValue(const v1::Parameter& leaf,
                                           const std::string& full_value_json) {
  auto v = nlohmann::json::parse(full_value_json, nullptr, false);
  // Errors quote the value, cut: a 100,000-digit value must not make a 100 kB error.
  const std::string value_json =
      full_value_json.size() <= 80
          ? full_value_json
          : absl::StrCat(full_value_json.substr(0, 60), "... (", full_value_json.size(), " bytes)");
  if (v.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("params.", leaf.path(), ": '", value_json, "' is not a JSON value"));
  }
  switch (leaf.distribution()) {
    case v1::CONSTANT:
    case v1::CATEGORICAL: {
      for (const auto& allowed : leaf.values_json()) {
        if (nlohmann::json::parse(allowed) == v) return allowed;
      }
      return absl::InvalidArgumentError(absl::StrCat("params.", leaf.path(), ": ", value_json,
                                                     " is not one of ",
                                                     absl::StrJoin(leaf.values_json(), ", ")));
    }
    default:
      break;
  }
  if (!v.is_number()) {
    return absl::InvalidArgumentError(
        absl::StrCat("params.", leaf.path(), ": must be a number; got ", value_json));
  }
  const double x = v.get<double>();
  double lo = leaf.min(), hi = leaf.max();
  switch (leaf.distribution()) {
    case v1::INT_UNIFORM:
    case v1::UNIFORM:
    case v1::LOG_UNIFORM_VALUES:
    case v1::INV_LOG_UNIFORM_VALUES:
      break;
    case v1::LOG_UNIFORM:
      lo = std::exp(lo);
      hi = std::exp(hi);
      break;
    case v1::INV_LOG_UNIFORM:
      lo = std::exp(-leaf.max());
      hi = std::exp(-leaf.min());
      break;
    default:
      lo = -std::numeric_limits<double>::infinity();  // unbounded or quantised laws: any number
      hi = std::numeric_limits<double>::infinity();
      break;
  }
  if (x < lo || x > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("params.", leaf.path(), ": ", value_json, " is outside [", lo, ", ", hi, "]"));
  }
  if (leaf.integer() && !v.is_number_integer()) {
    if (x != std::floor(x) || std::fabs(x) > 9007199254740992.0) {
      return absl::InvalidArgumentError(
          absl::StrCat("params.", leaf.path(), ": must be an integer; got ", value_json));
    }
    return nlohmann::json(static_cast<int64_t>(x)).dump();
  }
  return v.dump();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Sweep operations.

absl::StatusOr<v1::CreateSweepResponse> Engine::CreateSweep(const v1::CreateSweepRequest& request) {
  if (request.spec_yaml().size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(absl::StrCat("spec_yaml: is ", request.spec_yaml().size(),
                                                   " bytes; the limit is ", kMaxSpecBytes));
  }
  auto parsed = ParseSweepSpec(request.spec_yaml(), request.external());
  if (!parsed.ok()) return parsed.status();
  if (parsed->spec.resources().nodes() > 1 && request.external()) {
    return absl::InvalidArgumentError(
        "resources.nodes: an external sweep has no agents to place a multi-node trial on; use "
        "nodes: 1 (your runner decides where its trials run)");
  }
  if (parsed->spec.method() == v1::SEARCH_METHOD_PBT && request.external()) {
    return absl::InvalidArgumentError(
        "method: pbt copies checkpoints between trials that sweepd's agents run; an external "
        "runner (ask/tell) cannot use it");
  }
  if (parsed->spec.pruner().promotion() && request.external()) {
    return absl::InvalidArgumentError(
        "pruner.mode: promotion pauses and resumes trials on agents, and an external sweep has "
        "none; use mode: stop");
  }
  auto search = CreateSearchMethod(parsed->spec);
  if (!search.ok()) return search.status();
  auto pruner = pruning::CreatePruner(parsed->spec);
  if (!pruner.ok()) return pruner.status();
  auto done = std::make_shared<std::promise<absl::Status>>();
  auto committed = done->get_future();
  auto response = Call<absl::StatusOr<v1::CreateSweepResponse>>(
      [&]() -> absl::StatusOr<v1::CreateSweepResponse> {
        Sweep sweep;
        sweep.id = next_sweep_id_++;
        do {
          sweep.public_id = NewSweepPublicId();
        } while (sweep_ids_.contains(sweep.public_id));
        sweep.spec = parsed->spec;
        sweep.spec_dir = request.spec_dir();
        sweep.state = request.paused() ? v1::SWEEP_STATE_PAUSED : v1::SWEEP_STATE_RUNNING;
        sweep.external = request.external();
        sweep.search = std::move(*search);
        sweep.pbt = dynamic_cast<PopulationBasedTraining*>(sweep.search.get());
        sweep.pruner = std::move(*pruner);
        sweep.judge_period = sweep.spec.early_terminate().period_seconds();
        if (sweep.spec.has_pruner() && sweep.spec.pruner().resource() != "step") {
          sweep.resource_metric = sweep.spec.pruner().resource();
        }
        store_->CreateSweep({.id = sweep.id,
                             .public_id = sweep.public_id,
                             .spec = sweep.spec,
                             .spec_yaml = request.spec_yaml(),
                             .state = sweep.state,
                             .external = sweep.external,
                             .created_us = NowMicros()},
                            [done](absl::Status s) { done->set_value(s); });
        Event(sweep.id, 0, "", "sweep.created", "", SweepStateName(sweep.state),
              absl::StrCat("method ", SearchMethodName(sweep.spec.method())));
        v1::CreateSweepResponse out;
        *out.mutable_sweep() = SweepSnapshot(sweep);
        for (const auto& w : parsed->warnings) out.add_warnings(w);
        LogInfo({.sweep = sweep.public_id}, "created ({}, method {})",
                sweep.spec.name().empty() ? "unnamed" : sweep.spec.name(),
                SearchMethodName(sweep.spec.method()));
        sweep_ids_[sweep.public_id] = sweep.id;
        sweeps_[sweep.id] = std::move(sweep);
        Schedule();
        return out;
      });
  RETURN_IF_ERROR(committed.get());
  return response;
}

absl::StatusOr<v1::Sweep> Engine::PauseSweep(const std::string& sweep_id) {
  return Call<absl::StatusOr<v1::Sweep>>([&]() -> absl::StatusOr<v1::Sweep> {
    Sweep* sweep = FindSweep(sweep_id);
    if (sweep == nullptr) return absl::NotFoundError(absl::StrCat("no sweep '", sweep_id, "'"));
    if (sweep->state != v1::SWEEP_STATE_RUNNING) {
      return absl::FailedPreconditionError(absl::StrCat("sweep ", sweep_id, " is ",
                                                        SweepStateName(sweep->state),
                                                        "; only a running sweep can "
                                                        "be paused"));
    }
    SetSweepState(*sweep, v1::SWEEP_STATE_PAUSED, "paused by a user");
    return SweepSnapshot(*sweep);
  });
}

absl::StatusOr<v1::Sweep> Engine::ResumeSweep(const std::string& sweep_id) {
  return Call<absl::StatusOr<v1::Sweep>>([&]() -> absl::StatusOr<v1::Sweep> {
    Sweep* sweep = FindSweep(sweep_id);
    if (sweep == nullptr) return absl::NotFoundError(absl::StrCat("no sweep '", sweep_id, "'"));
    if (sweep->state != v1::SWEEP_STATE_PAUSED) {
      return absl::FailedPreconditionError(absl::StrCat("sweep ", sweep_id, " is ",
                                                        SweepStateName(sweep->state),
                                                        "; only a paused sweep can "
                                                        "be resumed"));
    }
    SetSweepState(*sweep, v1::SWEEP_STATE_RUNNING, "resumed by a user");
    Schedule();
    return SweepSnapshot(*sweep);
  });
}

absl::StatusOr<v1::Sweep> Engine::CancelSweep(const std::string& sweep_id,
                                              const std::string& reason) {
  return Call<absl::StatusOr<v1::Sweep>>([&]() -> absl::StatusOr<v1::Sweep> {
    Sweep* sweep = FindSweep(sweep_id);
    if (sweep == nullptr) return absl::NotFoundError(absl::StrCat("no sweep '", sweep_id, "'"));
    if (sweep->state != v1::SWEEP_STATE_RUNNING && sweep->state != v1::SWEEP_STATE_PAUSED) {
      return absl::FailedPreconditionError(
          absl::StrCat("sweep ", sweep_id, " already ended (", SweepStateName(sweep->state), ")"));
    }
    const std::string why = reason.empty() ? "canceled by a user" : reason;
    SetSweepState(*sweep, v1::SWEEP_STATE_CANCELED, why);
    for (int64_t id : sweep->trial_ids) {
      Trial& trial = trials_.at(id);
      if (trial.state == v1::TRIAL_STATE_QUEUED || trial.state == v1::TRIAL_STATE_PAUSED) {
        SetTrialState(trial, v1::TRIAL_STATE_CANCELED, why, {.end_us = NowMicros()});
      } else if (Live(trial)) {
        StopTrial(trial, v1::TRIAL_STATE_CANCELED, "sweep canceled");
      }
    }
    sweep->queue.clear();
    QueueCheckpointsBeyondTheBest(*sweep);  // paused trials were just canceled too
    return SweepSnapshot(*sweep);
  });
}

absl::StatusOr<v1::Trial> Engine::EnqueueTrial(const v1::EnqueueTrialRequest& request) {
  return Call<absl::StatusOr<v1::Trial>>([&]() -> absl::StatusOr<v1::Trial> {
    Sweep* sweep = FindSweep(request.sweep_id());
    if (sweep == nullptr) {
      return absl::NotFoundError(absl::StrCat("no sweep '", request.sweep_id(), "'"));
    }
    if (sweep->state != v1::SWEEP_STATE_RUNNING && sweep->state != v1::SWEEP_STATE_PAUSED) {
      return absl::FailedPreconditionError(
          absl::StrCat("sweep ", request.sweep_id(), " ended (", SweepStateName(sweep->state),
                       "); trials can be enqueued only while it runs or is paused"));
    }
    if (static_cast<int64_t>(sweep->trial_ids.size()) >= kMaxTrialsPerSweep) {
      return absl::ResourceExhaustedError(
          absl::StrCat("sweep ", request.sweep_id(), " has ", kMaxTrialsPerSweep,
                       " trials, the most one sweep may have; start another sweep"));
    }
    const auto leaves = LeafParameters(sweep->spec);
    std::map<std::string, std::string> given;
    for (const auto& p : request.params()) {
      auto leaf = std::find_if(leaves.begin(), leaves.end(),
                               [&](const v1::Parameter* l) { return l->path() == p.name(); });
      if (leaf == leaves.end()) {
        std::vector<std::string> names;
        for (const auto* l : leaves) names.push_back(l->path());
        return absl::InvalidArgumentError(absl::StrCat("params.", p.name(),
                                                       ": not a parameter of this sweep; it has ",
                                                       absl::StrJoin(names, ", ")));
      }
      ASSIGN_OR_RETURN(std::string value, CanonicalValue(**leaf, p.value_json()));
      if (!given.emplace(p.name(), std::move(value)).second) {
        return absl::InvalidArgumentError(absl::StrCat("params.", p.name(), ": given twice"));
      }
    }
    // Parameters not given come from the search method, as a proposal would.
    ParamSet params;
    if (given.size() < leaves.size()) {
      auto proposal = sweep->search->Propose(sweep->history);
      if (!proposal.ok() && proposal.status().code() != absl::StatusCode::kOutOfRange) {
        return proposal.status();
      }
      if (proposal.ok()) params = std::move(*proposal);
    }
    if (params.empty()) {
      for (const auto* leaf : leaves) {
        v1::TrialParam p;
        p.set_name(leaf->path());
        p.set_value_json(GridValueCount(*leaf) > 0 ? GridValue(*leaf, 0) : "null");
        params.push_back(std::move(p));
      }
    }
    for (auto& p : params) {
      if (auto it = given.find(p.name()); it != given.end()) p.set_value_json(it->second);
    }
    auto id = NewTrial(*sweep, std::move(params), /*enqueued=*/true);
    if (!id) return absl::InternalError("could not create the trial");
    // Enqueued trials run before proposed ones.
    sweep->queue.erase(std::find(sweep->queue.begin(), sweep->queue.end(), *id));
    sweep->queue.push_front(*id);
    Trial& trial = trials_.at(*id);
    v1::Trial out;
    out.set_id(trial.public_id);
    out.set_sweep_id(sweep->public_id);
    out.set_number(trial.number);
    out.set_state(trial.state);
    out.set_enqueued(true);
    for (const auto& p : trial.params) *out.add_params() = p;
    Schedule();
    return out;
  });
}

}  // namespace sweepd::scheduler
