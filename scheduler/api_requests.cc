#include "scheduler/api_requests.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/metric_name.h"

namespace sweepd::scheduler {
namespace {

absl::Status CheckId(const std::string& field, const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  if (id.size() > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": at most 64 characters; got ", id.size()));
  }
  return absl::OkStatus();
}

absl::Status CheckLimit(int32_t limit, int32_t max) {
  if (limit < 0 || limit > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit: must be 0 (default 100) to ", max, "; got ", limit));
  }
  return absl::OkStatus();
}

template <typename IsValid>
absl::Status CheckStates(const google::protobuf::RepeatedField<int>& states, IsValid is_valid) {
  for (int s : states) {
    if (!is_valid(s) || s == 0) {  // 0: *_STATE_UNSPECIFIED
      return absl::InvalidArgumentError(absl::StrCat("states: ", s, " is not a state"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<int64_t> PageOffset(const std::string& token) {
  if (token.empty()) return 0;
  int64_t offset = 0;
  if (!absl::SimpleAtoi(token, &offset) || offset < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: '", token.substr(0, 40), "' is not a token this server gave"));
  }
  return offset;
}

absl::Status ValidateRequest(const v1::CreateSweepRequest& request) {
  if (request.spec_yaml().empty()) {
    return absl::InvalidArgumentError("spec_yaml: required (the sweep spec as YAML)");
  }
  return absl::OkStatus();
}

absl::Status ValidateRequest(const v1::GetSweepRequest& request) {
  return CheckId("sweep_id", request.sweep_id());
}

absl::Status ValidateRequest(const v1::ListSweepsRequest& request) {
  if (auto st = CheckLimit(request.limit(), kMaxSweepsPerPage); !st.ok()) return st;
  if (auto offset = PageOffset(request.page_token()); !offset.ok()) return offset.status();
  return CheckStates(request.states(), v1::SweepState_IsValid);
}

absl::Status ValidateRequest(const v1::PauseSweepRequest& request) {
  return CheckId("sweep_id", request.sweep_id());
}

absl::Status ValidateRequest(const v1::ResumeSweepRequest& request) {
  return CheckId("sweep_id", request.sweep_id());
}

absl::Status ValidateRequest(const v1::CancelSweepRequest& request) {
  if (auto st = CheckId("sweep_id", request.sweep_id()); !st.ok()) return st;
  if (request.reason().size() > 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("reason: at most 1024 characters; got ", request.reason().size()));
  }
  return absl::OkStatus();
}

absl::Status ValidateRequest(const v1::ListTrialsRequest& request) {
  if (auto st = CheckId("sweep_id", request.sweep_id()); !st.ok()) return st;
  if (auto st = CheckLimit(request.limit(), kMaxTrialsPerPage); !st.ok()) return st;
  if (request.sort_metric().size() > 256) {
    return absl::InvalidArgumentError("sort_metric: at most 256 characters");
  }
  if (auto offset = PageOffset(request.page_token()); !offset.ok()) return offset.status();
  return CheckStates(request.states(), v1::TrialState_IsValid);
}

absl::Status ValidateRequest(const v1::GetTrialRequest& request) {
  if (auto st = CheckId("trial_id", request.trial_id()); !st.ok()) return st;
  if (request.max_points() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_points: must be >= 0 (0: every point); got ", request.max_points()));
  }
  return absl::OkStatus();
}

absl::Status ValidateRequest(const v1::WatchSweepRequest& request) {
  return CheckId("sweep_id", request.sweep_id());
}

absl::Status ValidateRequest(const v1::EnqueueTrialRequest& request) {
  if (auto st = CheckId("sweep_id", request.sweep_id()); !st.ok()) return st;
  if (request.params_size() > 10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("params: at most 10000; got ", request.params_size()));
  }
  return absl::OkStatus();
}

absl::Status ValidateRequest(const v1::AskTrialRequest& request) {
  return CheckId("sweep_id", request.sweep_id());
}

absl::Status ValidateRequest(const v1::ReportTrialRequest& request) {
  if (auto st = CheckId("trial_id", request.trial_id()); !st.ok()) return st;
  if (request.step() < 0) {
    return absl::InvalidArgumentError(absl::StrCat("step: must be >= 0; got ", request.step()));
  }
  if (request.metrics().empty() || request.metrics_size() > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("metrics: give 1 to 1000 metrics; got ", request.metrics_size()));
  }
  for (const auto& [name, value] : request.metrics()) {
    if (auto st = CheckMetricName(name); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("metrics: ", st.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRequest(const v1::TellTrialRequest& request) {
  if (auto st = CheckId("trial_id", request.trial_id()); !st.ok()) return st;
  if (!v1::TrialState_IsValid(request.state())) {
    return absl::InvalidArgumentError(
        absl::StrCat("state: ", request.state(), " is not a trial state"));
  }
  return absl::OkStatus();
}

absl::Status ValidateRequest(const v1::ExportSweepRequest& request) {
  return CheckId("sweep_id", request.sweep_id());
}

absl::Status ValidateRequest(const v1::ListAgentsRequest&) { return absl::OkStatus(); }

absl::Status ValidateRequest(const v1::ReleaseAgentRequest& request) {
  return CheckId("agent_id", request.agent_id());
}

}  // namespace sweepd::scheduler
