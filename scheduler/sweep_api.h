#pragma once

// SweepService's operations, free of any transport: the gRPC service (grpc_services.h) and the
// dashboard's HTTP API (http_server.h) both answer through this one class, so a sweep reads and
// changes the same way whichever door a person uses. Every method validates its request first
// (api_requests.h); who may call is the transport's business.
//
// Calls that change state answer once the change is durable; reads go to the store's read pool
// and never wait on the engine thread or the store's writer. Thread-safe: it holds no state of
// its own.

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "scheduler/engine.h"
#include "store/store.h"
#include "sweepd/v1/sweep_service.pb.h"

namespace sweepd::scheduler {

class SweepApi {
 public:
  SweepApi(Engine* engine, store::Store* store) : engine_(engine), store_(store) {}

  absl::Status CreateSweep(const v1::CreateSweepRequest& request,
                           v1::CreateSweepResponse* response);
  absl::Status GetSweep(const v1::GetSweepRequest& request, v1::GetSweepResponse* response);
  absl::Status ListSweeps(const v1::ListSweepsRequest& request, v1::ListSweepsResponse* response);
  absl::Status PauseSweep(const v1::PauseSweepRequest& request, v1::PauseSweepResponse* response);
  absl::Status ResumeSweep(const v1::ResumeSweepRequest& request,
                           v1::ResumeSweepResponse* response);
  absl::Status CancelSweep(const v1::CancelSweepRequest& request,
                           v1::CancelSweepResponse* response);
  absl::Status ListTrials(const v1::ListTrialsRequest& request, v1::ListTrialsResponse* response);
  absl::Status GetTrial(const v1::GetTrialRequest& request, v1::GetTrialResponse* response);
  // Streams the sweep's events after `after_event_id` to `emit` (false: the client went away)
  // until the sweep is done or `cancelled` says so; durable events only.
  absl::Status WatchSweep(const v1::WatchSweepRequest& request,
                          const std::function<bool(const v1::Event&)>& emit,
                          const std::function<bool()>& cancelled);
  absl::Status EnqueueTrial(const v1::EnqueueTrialRequest& request,
                            v1::EnqueueTrialResponse* response);
  absl::Status AskTrial(const v1::AskTrialRequest& request, v1::AskTrialResponse* response);
  absl::Status ReportTrial(const v1::ReportTrialRequest& request,
                           v1::ReportTrialResponse* response);
  absl::Status TellTrial(const v1::TellTrialRequest& request, v1::TellTrialResponse* response);
  absl::Status ExportSweep(const v1::ExportSweepRequest& request,
                           v1::ExportSweepResponse* response);
  absl::Status ListAgents(const v1::ListAgentsRequest& request, v1::ListAgentsResponse* response);
  absl::Status ReleaseAgent(const v1::ReleaseAgentRequest& request,
                            v1::ReleaseAgentResponse* response);

  Engine& engine() { return *engine_; }
  store::Store& store() { return *store_; }

 private:
  // After a change: waits until it is durable, then answers the sweep as stored.
  absl::Status Durable(const std::string& sweep_id, v1::Sweep changed, v1::Sweep* out);
  // What the store does not keep: the sweep's total (grid size, run cap) and, while it runs,
  // why it is stalled. Every answer that carries a sweep has them.
  void FillDerived(v1::Sweep& sweep);
  // A sweep as stored, with FillDerived's fields.
  absl::StatusOr<v1::Sweep> LoadSweep(const std::string& id);
  // UNAVAILABLE, naming the fault, while the store cannot commit: calls that change state are
  // refused rather than left hanging.
  absl::Status StoreWritable() const;
  // For read answers: empty, or why what they show may be behind (the store cannot write).
  std::string StoreWarning() const;

  Engine* const engine_;
  store::Store* const store_;
};

}  // namespace sweepd::scheduler
