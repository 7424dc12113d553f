#pragma once

// Validation of every SweepService request, in one place: each request type has its
// ValidateRequest, which names the field, the value and what is allowed. The gRPC layer
// (grpc_services.cc) calls it for every call before anything else runs, and a request type
// without one does not compile there. What needs state (does the sweep exist, is the store
// writable) is checked later, by the engine and the store.
//
// Thread safety: free functions of their arguments.

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sweepd/v1/sweep_service.pb.h"

namespace sweepd::scheduler {

// Largest page a list call returns (sweeps, trials).
inline constexpr int32_t kMaxSweepsPerPage = 1000;
inline constexpr int32_t kMaxTrialsPerPage = 10000;

absl::Status ValidateRequest(const v1::CreateSweepRequest& request);
absl::Status ValidateRequest(const v1::GetSweepRequest& request);
absl::Status ValidateRequest(const v1::ListSweepsRequest& request);
absl::Status ValidateRequest(const v1::PauseSweepRequest& request);
absl::Status ValidateRequest(const v1::ResumeSweepRequest& request);
absl::Status ValidateRequest(const v1::CancelSweepRequest& request);
absl::Status ValidateRequest(const v1::ListTrialsRequest& request);
absl::Status ValidateRequest(const v1::GetTrialRequest& request);
absl::Status ValidateRequest(const v1::WatchSweepRequest& request);
absl::Status ValidateRequest(const v1::EnqueueTrialRequest& request);
absl::Status ValidateRequest(const v1::AskTrialRequest& request);
absl::Status ValidateRequest(const v1::ReportTrialRequest& request);
absl::Status ValidateRequest(const v1::TellTrialRequest& request);
absl::Status ValidateRequest(const v1::ExportSweepRequest& request);
absl::Status ValidateRequest(const v1::ListAgentsRequest& request);
absl::Status ValidateRequest(const v1::ReleaseAgentRequest& request);

// A page token is an offset this server gave, opaque to clients.
absl::StatusOr<int64_t> PageOffset(const std::string& token);

}  // namespace sweepd::scheduler
