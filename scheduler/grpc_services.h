#pragma once

// The gRPC face of the scheduler: SweepService for clients, AgentService for agents. Every
// SweepService call is authorized in one place (Serve) and answered by SweepApi, which validates
// it (api_requests.h) and is shared with the dashboard's HTTP API; agent
// streams by ValidateAgentMessage and AuthorizeAgent. Handlers then call the Engine (state
// changes) or the Store (reads); they hold no state of their own. Thread-safe (gRPC's sync server
// calls them from its thread pool).
//
// Why the synchronous API and not the callback one (STYLE.md's default): every call either
// reads the store or posts to the engine's single thread and waits for its answer, so a handler
// thread only ever waits on the engine or SQLite, never on the network; each agent stream has
// one reader (its handler thread) and one writer thread draining an outbox, so a slow agent
// never blocks the engine. sweepd serves the few tens of agents of a small lab, where a thread
// per stream costs some megabytes of stack; the callback API earns its complexity at thousands
// of streams. bench/sweep_bench (64 agents) keeps this choice honest.

#include <grpcpp/grpcpp.h>

#include "common/security.h"
#include "scheduler/api_requests.h"
#include "scheduler/engine.h"
#include "scheduler/sweep_api.h"
#include "store/store.h"
#include "sweepd/v1/agent_service.grpc.pb.h"
#include "sweepd/v1/sweep_service.grpc.pb.h"

namespace sweepd::scheduler {

grpc::Status ToGrpc(const absl::Status& status);

// Who may call: with TLS, API calls need the token (when sweepd has one) and agents their
// certificate (when sweepd has a CA) or the token (common/security.h).
struct SecurityPolicy {
  bool tls = false;
  std::string token;
  bool require_agent_cert = false;
};

class SweepServiceImpl final : public v1::SweepService::Service {
 public:
  SweepServiceImpl(Engine* engine, store::Store* store, SecurityPolicy security = {})
      : api_(engine, store), security_(std::move(security)) {}

  grpc::Status CreateSweep(grpc::ServerContext*, const v1::CreateSweepRequest*,
                           v1::CreateSweepResponse*) override;
  grpc::Status GetSweep(grpc::ServerContext*, const v1::GetSweepRequest*,
                        v1::GetSweepResponse*) override;
  grpc::Status ListSweeps(grpc::ServerContext*, const v1::ListSweepsRequest*,
                          v1::ListSweepsResponse*) override;
  grpc::Status PauseSweep(grpc::ServerContext*, const v1::PauseSweepRequest*,
                          v1::PauseSweepResponse*) override;
  grpc::Status ResumeSweep(grpc::ServerContext*, const v1::ResumeSweepRequest*,
                           v1::ResumeSweepResponse*) override;
  grpc::Status CancelSweep(grpc::ServerContext*, const v1::CancelSweepRequest*,
                           v1::CancelSweepResponse*) override;
  grpc::Status ListTrials(grpc::ServerContext*, const v1::ListTrialsRequest*,
                          v1::ListTrialsResponse*) override;
  grpc::Status GetTrial(grpc::ServerContext*, const v1::GetTrialRequest*,
                        v1::GetTrialResponse*) override;
  grpc::Status WatchSweep(grpc::ServerContext*, const v1::WatchSweepRequest*,
                          grpc::ServerWriter<v1::Event>*) override;
  grpc::Status EnqueueTrial(grpc::ServerContext*, const v1::EnqueueTrialRequest*,
                            v1::EnqueueTrialResponse*) override;
  grpc::Status AskTrial(grpc::ServerContext*, const v1::AskTrialRequest*,
                        v1::AskTrialResponse*) override;
  grpc::Status ReportTrial(grpc::ServerContext*, const v1::ReportTrialRequest*,
                           v1::ReportTrialResponse*) override;
  grpc::Status TellTrial(grpc::ServerContext*, const v1::TellTrialRequest*,
                         v1::TellTrialResponse*) override;
  grpc::Status ExportSweep(grpc::ServerContext*, const v1::ExportSweepRequest*,
                           v1::ExportSweepResponse*) override;
  grpc::Status ListAgents(grpc::ServerContext*, const v1::ListAgentsRequest*,
                          v1::ListAgentsResponse*) override;
  grpc::Status ReleaseAgent(grpc::ServerContext*, const v1::ReleaseAgentRequest*,
                            v1::ReleaseAgentResponse*) override;

 private:
  // Every call goes through here: who may call (common/security.h), then `body` (a SweepApi
  // call, which validates the request), whose status the client gets.
  template <typename Request, typename Body>
  grpc::Status Serve(grpc::ServerContext& context, const Request& /*request*/, Body body) {
    if (auto st = AuthorizeApiCall(context, security_.tls, !security_.token.empty()); !st.ok()) {
      return ToGrpc(st);
    }
    return ToGrpc(body());
  }

  SweepApi api_;
  const SecurityPolicy security_;
};

class AgentServiceImpl final : public v1::AgentService::Service {
 public:
  explicit AgentServiceImpl(Engine* engine, SecurityPolicy security = {})
      : engine_(engine), security_(std::move(security)) {}

  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::SchedulerMessage, v1::AgentMessage>* stream) override;

 private:
  Engine* const engine_;
  const SecurityPolicy security_;
};

}  // namespace sweepd::scheduler
