// What sweepd accepts from an agent's stream: every limit is enforced and named in the error.

#include "scheduler/agent_messages.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::scheduler {
namespace {

using ::testing::HasSubstr;

v1::AgentMessage Batch(int reports, int metrics_per_report, const std::string& name = "loss") {
  v1::AgentMessage m;
  auto* b = m.mutable_metric_batch();
  b->set_trial_id("s-abc-0001");
  for (int i = 0; i < reports; ++i) {
    auto* r = b->add_reports();
    r->set_step(i);
    for (int k = 0; k < metrics_per_report; ++k) {
      (*r->mutable_metrics())[k == 0 ? name : name + std::to_string(k)] = 0.5;
    }
  }
  return m;
}

TEST(AgentMessagesTest, AcceptsWhatAnHonestAgentSends) {
  EXPECT_TRUE(ValidateAgentMessage(Batch(100, 3)).ok());
  v1::AgentMessage reg;
  reg.mutable_register_()->set_agent_id("gpu-node-07");
  reg.mutable_register_()->add_gpus()->set_index(3);
  reg.mutable_register_()->add_running_trials()->set_trial_id("s-abc-0002");
  EXPECT_TRUE(ValidateAgentMessage(reg).ok());
  EXPECT_TRUE(ValidateAgentMessage(v1::AgentMessage()).ok());
}

TEST(AgentMessagesTest, RefusesOversizedBatchesNamingTheLimit) {
  EXPECT_THAT(ValidateAgentMessage(Batch(kMaxReportsPerBatch + 1, 1)).message(),
              HasSubstr("metric_batch.reports: 10001; the limit is 10000"));
  EXPECT_THAT(ValidateAgentMessage(Batch(1, kMaxMetricsPerReport + 1)).message(),
              HasSubstr("1001 in one report; the limit is 1000"));
  EXPECT_THAT(ValidateAgentMessage(Batch(1, 1, std::string(300, 'x'))).message(),
              HasSubstr("a name must have 1 to 256 bytes; got 300"));
  EXPECT_THAT(ValidateAgentMessage(Batch(1, 1, "")).message(), HasSubstr("got 0"));
  v1::AgentMessage negative = Batch(1, 1);
  negative.mutable_metric_batch()->set_first_seq(-5);
  EXPECT_THAT(ValidateAgentMessage(negative).message(), HasSubstr("first_seq: must be >= 0"));
  negative = Batch(1, 1);
  negative.mutable_metric_batch()->mutable_reports(0)->set_step(-1);
  EXPECT_THAT(ValidateAgentMessage(negative).message(), HasSubstr("step: must be >= 0"));
}

TEST(AgentMessagesTest, RefusesIdsThatCouldEscapeAFolder) {
  for (const std::string& id : std::vector<std::string>{"../../etc", "..", ".hidden", "a/b", "",
                                                        std::string(200, 'a'), "x\ny"}) {
    v1::AgentMessage m = Batch(1, 1);
    m.mutable_metric_batch()->set_trial_id(id);
    const auto st = ValidateAgentMessage(m);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_THAT(st.message(), HasSubstr("metric_batch.trial_id")) << id;
  }
}

TEST(AgentMessagesTest, RefusesBadRegistrationsAndExits) {
  v1::AgentMessage reg;
  reg.mutable_register_()->set_agent_id("node");
  EXPECT_THAT(ValidateAgentMessage(reg).message(), HasSubstr("register.gpus"));
  reg.mutable_register_()->add_gpus()->set_index(5000);
  EXPECT_THAT(ValidateAgentMessage(reg).message(), HasSubstr("index 5000 is outside 0..1023"));
  v1::AgentMessage exited;
  exited.mutable_trial_exited()->set_trial_id("s-abc-0001");
  exited.mutable_trial_exited()->set_stderr_tail(std::string(kMaxTextBytes + 1, 'e'));
  EXPECT_THAT(ValidateAgentMessage(exited).message(), HasSubstr("stderr_tail: is 65537 bytes"));
  exited.mutable_trial_exited()->clear_stderr_tail();
  exited.mutable_trial_exited()->set_wall_seconds(-1);
  EXPECT_THAT(ValidateAgentMessage(exited).message(), HasSubstr("wall_seconds"));
  v1::AgentMessage started;
  started.mutable_trial_started()->set_trial_id("s-abc-0001");
  started.mutable_trial_started()->set_master_port(70000);
  EXPECT_THAT(ValidateAgentMessage(started).message(), HasSubstr("master_port"));
}

}  // namespace
}  // namespace sweepd::scheduler
