// Every SweepService call validates its request before anything runs: a bad field is refused
// with INVALID_ARGUMENT naming the field, the value and what is allowed, and nothing changes.
// Checked on ValidateRequest itself and, for every RPC, over real gRPC against a real sweepd on
// loopback (real store file), so a handler that skipped the check would be caught.

#include "scheduler/api_requests.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/server.h"
#include "sweepd/v1/sweep_service.grpc.pb.h"

namespace sweepd::scheduler {
namespace {

using ::testing::HasSubstr;

std::string TooLong() { return std::string(65, 'x'); }

TEST(ApiRequestsTest, IdsAreRequiredAndBounded) {
  v1::GetSweepRequest get;
  EXPECT_EQ(ValidateRequest(get).message(), "sweep_id: required");
  get.set_sweep_id(TooLong());
  EXPECT_EQ(ValidateRequest(get).message(), "sweep_id: at most 64 characters; got 65");
  get.set_sweep_id("s-abc");
  EXPECT_TRUE(ValidateRequest(get).ok());
  v1::GetTrialRequest trial;
  EXPECT_EQ(ValidateRequest(trial).message(), "trial_id: required");
  v1::ReleaseAgentRequest release;
  EXPECT_EQ(ValidateRequest(release).message(), "agent_id: required");
}

TEST(ApiRequestsTest, PagesAreBoundedAndTokensAreOnlyOurs) {
  v1::ListSweepsRequest sweeps;
  sweeps.set_limit(1001);
  EXPECT_EQ(ValidateRequest(sweeps).message(), "limit: must be 0 (default 100) to 1000; got 1001");
  sweeps.set_limit(-1);
  EXPECT_EQ(ValidateRequest(sweeps).message(), "limit: must be 0 (default 100) to 1000; got -1");
  sweeps.set_limit(1000);
  EXPECT_TRUE(ValidateRequest(sweeps).ok());
  sweeps.set_page_token("abc");
  EXPECT_EQ(ValidateRequest(sweeps).message(), "page_token: 'abc' is not a token this server gave");
  v1::ListTrialsRequest trials;
  trials.set_sweep_id("s-abc");
  trials.set_limit(10001);
  EXPECT_THAT(ValidateRequest(trials).message(), HasSubstr("to 10000; got 10001"));
  trials.set_limit(0);
  trials.mutable_states()->Add(0);
  EXPECT_EQ(ValidateRequest(trials).message(), "states: 0 is not a state");
  trials.mutable_states()->Set(0, 99);
  EXPECT_EQ(ValidateRequest(trials).message(), "states: 99 is not a state");
  trials.mutable_states()->Set(0, v1::TRIAL_STATE_RUNNING);
  EXPECT_TRUE(ValidateRequest(trials).ok());
}

TEST(ApiRequestsTest, ReportsNeedAStepAndNamedMetrics) {
  v1::ReportTrialRequest report;
  report.set_trial_id("s-abc-0001");
  EXPECT_EQ(ValidateRequest(report).message(), "metrics: give 1 to 1000 metrics; got 0");
  (*report.mutable_metrics())["loss"] = 0.5;
  report.set_step(-1);
  EXPECT_EQ(ValidateRequest(report).message(), "step: must be >= 0; got -1");
  report.set_step(3);
  EXPECT_TRUE(ValidateRequest(report).ok());
  (*report.mutable_metrics())["bad\nname"] = 1;
  EXPECT_THAT(ValidateRequest(report).message(), HasSubstr("metrics: "));
}

TEST(ApiRequestsTest, OtherFieldsAreBounded) {
  v1::CreateSweepRequest create;
  EXPECT_EQ(ValidateRequest(create).message(), "spec_yaml: required (the sweep spec as YAML)");
  v1::CancelSweepRequest cancel;
  cancel.set_sweep_id("s-abc");
  cancel.set_reason(std::string(1025, 'r'));
  EXPECT_EQ(ValidateRequest(cancel).message(), "reason: at most 1024 characters; got 1025");
  v1::GetTrialRequest trial;
  trial.set_trial_id("t");
  trial.set_max_points(-5);
  EXPECT_EQ(ValidateRequest(trial).message(), "max_points: must be >= 0 (0: every point); got -5");
  v1::TellTrialRequest tell;
  tell.set_trial_id("t");
  tell.set_state(static_cast<v1::TrialState>(77));
  EXPECT_EQ(ValidateRequest(tell).message(), "state: 77 is not a trial state");
  v1::EnqueueTrialRequest enqueue;
  enqueue.set_sweep_id("s-abc");
  for (int i = 0; i < 10001; ++i) enqueue.add_params();
  EXPECT_EQ(ValidateRequest(enqueue).message(), "params: at most 10000; got 10001");
}

// Every RPC, over real gRPC, with a request that fails its validation: INVALID_ARGUMENT, and the
// message names the field.
TEST(ApiRequestsTest, EveryRpcRefusesAnInvalidRequestOverGrpc) {
  char tmpl[] = "/tmp/api-requests-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir + "/sweepd.db";
  auto server = SchedulerServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  auto stub = v1::SweepService::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));
  struct Case {
    const char* rpc;
    std::function<grpc::Status(grpc::ClientContext*)> call;
    const char* field;
  };
  const std::vector<Case> cases = {
      {"CreateSweep",
       [&](grpc::ClientContext* c) {
         v1::CreateSweepResponse r;
         return stub->CreateSweep(c, {}, &r);
       },
       "spec_yaml"},
      {"GetSweep",
       [&](grpc::ClientContext* c) {
         v1::GetSweepResponse r;
         return stub->GetSweep(c, {}, &r);
       },
       "sweep_id"},
      {"ListSweeps",
       [&](grpc::ClientContext* c) {
         v1::ListSweepsRequest q;
         q.set_limit(-1);
         v1::ListSweepsResponse r;
         return stub->ListSweeps(c, q, &r);
       },
       "limit"},
      {"PauseSweep",
       [&](grpc::ClientContext* c) {
         v1::PauseSweepResponse r;
         return stub->PauseSweep(c, {}, &r);
       },
       "sweep_id"},
      {"ResumeSweep",
       [&](grpc::ClientContext* c) {
         v1::ResumeSweepResponse r;
         return stub->ResumeSweep(c, {}, &r);
       },
       "sweep_id"},
      {"CancelSweep",
       [&](grpc::ClientContext* c) {
         v1::CancelSweepResponse r;
         return stub->CancelSweep(c, {}, &r);
       },
       "sweep_id"},
      {"ListTrials",
       [&](grpc::ClientContext* c) {
         v1::ListTrialsResponse r;
         return stub->ListTrials(c, {}, &r);
       },
       "sweep_id"},
      {"GetTrial",
       [&](grpc::ClientContext* c) {
         v1::GetTrialResponse r;
         return stub->GetTrial(c, {}, &r);
       },
       "trial_id"},
      {"WatchSweep",
       [&](grpc::ClientContext* c) {
         auto reader = stub->WatchSweep(c, {});
         v1::Event e;
         while (reader->Read(&e)) {
         }
         return reader->Finish();
       },
       "sweep_id"},
      {"EnqueueTrial",
       [&](grpc::ClientContext* c) {
         v1::EnqueueTrialResponse r;
         return stub->EnqueueTrial(c, {}, &r);
       },
       "sweep_id"},
      {"AskTrial",
       [&](grpc::ClientContext* c) {
         v1::AskTrialResponse r;
         return stub->AskTrial(c, {}, &r);
       },
       "sweep_id"},
      {"ReportTrial",
       [&](grpc::ClientContext* c) {
         v1::ReportTrialResponse r;
         return stub->ReportTrial(c, {}, &r);
       },
       "trial_id"},
      {"TellTrial",
       [&](grpc::ClientContext* c) {
         v1::TellTrialResponse r;
         return stub->TellTrial(c, {}, &r);
       },
       "trial_id"},
      {"ExportSweep",
       [&](grpc::ClientContext* c) {
         v1::ExportSweepResponse r;
         return stub->ExportSweep(c, {}, &r);
       },
       "sweep_id"},
      {"ReleaseAgent",
       [&](grpc::ClientContext* c) {
         v1::ReleaseAgentResponse r;
         return stub->ReleaseAgent(c, {}, &r);
       },
       "agent_id"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.rpc);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status status = c.call(&context);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(std::string(c.field) + ":"));
  }
  // ListAgents takes any request; it answers.
  grpc::ClientContext context;
  v1::ListAgentsResponse agents;
  EXPECT_TRUE(stub->ListAgents(&context, {}, &agents).ok());
  server->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sweepd::scheduler
