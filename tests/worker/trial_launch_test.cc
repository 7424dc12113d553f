// What a trial is started with, from an Assign: the environment torchrun's contract and W&B's
// agent give a training script, the command W&B's template expands to, and the refusals that keep
// a spec from running anything outside its code dir. No process is started.

#include "worker/trial_launch.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TrialLaunchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/trial-launch-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    code_ = dir_ + "/code";
    std::filesystem::create_directories(code_);
    std::ofstream(code_ + "/train.py") << "print('loss=1')\n";
    std::ofstream(dir_ + "/outside.py") << "\n";
    context_.code_dir = code_;
    context_.interpreter = "/usr/bin/python3";
    context_.advertise_address = "node-a.lab";
    context_.base_env = {{"PATH", "/usr/bin"}, {"PYTHONPATH", "/opt/lib"}};
    context_.free_port = [this] {
      ++ports_taken_;
      return 29500;
    };
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  v1::Assign Assign(const std::string& program = "train.py") {
    v1::Assign assign;
    assign.set_trial_id("s-abc-0001");
    assign.set_sweep_id("s-abc");
    assign.set_program(program);
    for (const char* t : {"${env}", "${interpreter}", "${program}", "${args}"}) {
      assign.add_command(t);
    }
    auto* lr = assign.add_params();
    lr->set_name("lr");
    lr->set_value_json("0.01");
    assign.set_attempt(2);
    return assign;
  }

  std::string dir_, code_;
  LaunchContext context_;
  int ports_taken_ = 0;
};

TEST_F(TrialLaunchTest, WandbsDefaultCommandRunsTheProgramInTheCodeDirWithItsArgs) {
  auto plan = PlanLaunch(Assign(), dir_ + "/trial", dir_ + "/r.sock", context_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_THAT(plan->argv,
              ElementsAre("/usr/bin/env", "/usr/bin/python3",
                          std::filesystem::canonical(code_ + "/train.py").string(), "--lr=0.01"));
  EXPECT_EQ(plan->run_dir, std::filesystem::canonical(code_).string());
  EXPECT_EQ(plan->params_file, dir_ + "/trial/params.json");
  EXPECT_EQ(plan->params_json, R"({"lr":0.01})");
  EXPECT_EQ(plan->env.at("SWEEP_TRIAL_ID"), "s-abc-0001");
  EXPECT_EQ(plan->env.at("SWEEP_ID"), "s-abc");
  EXPECT_EQ(plan->env.at("SWEEP_ATTEMPT"), "2");
  EXPECT_EQ(plan->env.at("SWEEP_SOCKET"), dir_ + "/r.sock");
  EXPECT_EQ(plan->env.at("SWEEP_TRIAL_DIR"), dir_ + "/trial");
  EXPECT_EQ(plan->env.at("SWEEP_PARAMS_JSON"), R"({"lr":0.01})");
  EXPECT_EQ(plan->env.at("PATH"), "/usr/bin") << "the agent's environment is inherited";
  EXPECT_EQ(plan->env.at("PYTHONPATH"), "/opt/lib");
  EXPECT_EQ(plan->env.at("PYTHONUNBUFFERED"), "1");
}

TEST_F(TrialLaunchTest, RunInTrialDirRunsTheCommandInTheTrialsFolder) {
  v1::Assign assign = Assign();
  assign.set_run_in_trial_dir(true);
  auto plan = PlanLaunch(assign, dir_ + "/trial", dir_ + "/r.sock", context_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->run_dir, dir_ + "/trial");
}

// torchrun's contract for node 1 of a 2-node gang with 2 GPUs each: WORLD_SIZE is nnodes times
// nproc_per_node, the rendezvous is node 0's address and port (from the Assign, not chosen
// here), and the trial sees only its GPUs, numbered by PCI bus as NVML and nvidia-smi do.
TEST_F(TrialLaunchTest, AGangsSecondNodeMeetsNodeZeroWithTorchrunsEnvironment) {
  context_.has_gpus = true;
  v1::Assign assign = Assign();
  assign.add_gpu_indices(2);
  assign.add_gpu_indices(3);
  v1::Gang* gang = assign.mutable_gang();
  gang->set_nnodes(2);
  gang->set_node_rank(1);
  gang->set_master_addr("node-0.lab");
  gang->set_master_port(29400);
  auto plan = PlanLaunch(assign, dir_ + "/trial", dir_ + "/r.sock", context_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->env.at("CUDA_VISIBLE_DEVICES"), "2,3");
  EXPECT_EQ(plan->env.at("CUDA_DEVICE_ORDER"), "PCI_BUS_ID");
  EXPECT_EQ(plan->env.at("WORLD_SIZE"), "4");
  EXPECT_EQ(plan->env.at("MASTER_ADDR"), "node-0.lab");
  EXPECT_EQ(plan->env.at("MASTER_PORT"), "29400");
  EXPECT_EQ(plan->env.at("SWEEP_NNODES"), "2");
  EXPECT_EQ(plan->env.at("SWEEP_NODE_RANK"), "1");
  EXPECT_EQ(plan->env.at("SWEEP_NPROC_PER_NODE"), "2");
  EXPECT_EQ(plan->env.at("SWEEP_GPUS_PER_NODE"), "2");
  EXPECT_EQ(plan->env.at("SWEEP_GPUS"), "2,3");
  EXPECT_EQ(ports_taken_, 0) << "only node 0 picks the port";
}

TEST_F(TrialLaunchTest, NodeZeroPicksTheRendezvousPortAndAdvertisesItsAddress) {
  v1::Assign assign = Assign();
  assign.add_gpu_indices(0);
  assign.mutable_gang()->set_nnodes(2);
  auto plan = PlanLaunch(assign, dir_ + "/trial", dir_ + "/r.sock", context_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(ports_taken_, 1);
  EXPECT_EQ(plan->master_port, 29500);
  EXPECT_EQ(plan->master_addr, "node-a.lab");
  EXPECT_EQ(plan->env.at("MASTER_ADDR"), "node-a.lab");
  EXPECT_EQ(plan->env.at("MASTER_PORT"), "29500");
}

TEST_F(TrialLaunchTest, CpuSlotsSetNoCudaDevices) {
  v1::Assign assign = Assign();
  assign.add_gpu_indices(1);
  auto plan = PlanLaunch(assign, dir_ + "/trial", dir_ + "/r.sock", context_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_FALSE(plan->env.contains("CUDA_VISIBLE_DEVICES"));
  EXPECT_EQ(plan->env.at("SWEEP_GPUS_PER_NODE"), "0");
  EXPECT_EQ(plan->env.at("SWEEP_GPUS"), "1") << "the slot it holds";
  EXPECT_EQ(plan->env.at("WORLD_SIZE"), "1");
}

TEST_F(TrialLaunchTest, TheSpecsEnvironmentWinsAndPythonPathGoesFirst) {
  context_.python_path = "/opt/sweepd/python";
  context_.base_env["PYTHONUNBUFFERED"] = "0";
  v1::Assign assign = Assign();
  (*assign.mutable_env())["MASTER_PORT"] = "1234";
  (*assign.mutable_env())["WANDB_MODE"] = "offline";
  auto plan = PlanLaunch(assign, dir_ + "/trial", dir_ + "/r.sock", context_);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->env.at("MASTER_PORT"), "1234");
  EXPECT_EQ(plan->env.at("WANDB_MODE"), "offline");
  EXPECT_EQ(plan->env.at("PYTHONPATH"), "/opt/sweepd/python:/opt/lib");
  EXPECT_EQ(plan->env.at("PYTHONUNBUFFERED"), "0") << "a user's own setting is kept";
}

// A spec cannot make the agent run anything outside its code dir: refused as the spec's fault
// (INVALID_ARGUMENT, so no node is blamed), naming the program and the code dir.
TEST_F(TrialLaunchTest, AProgramOutsideTheCodeDirIsTheSpecsFault) {
  std::filesystem::create_symlink(dir_ + "/outside.py", code_ + "/link.py");
  for (const std::string& program :
       std::vector<std::string>{"../outside.py", dir_ + "/outside.py", "link.py"}) {
    SCOPED_TRACE(program);
    auto plan = PlanLaunch(Assign(program), dir_ + "/trial", dir_ + "/r.sock", context_);
    ASSERT_FALSE(plan.ok());
    EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(plan.status().message(), HasSubstr("'" + program + "' is outside the code dir"));
  }
}

TEST_F(TrialLaunchTest, AMissingProgramIsThisNodesFault) {
  auto plan = PlanLaunch(Assign("missing.py"), dir_ + "/trial", dir_ + "/r.sock", context_);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(plan.status().message(), HasSubstr("'missing.py' not found in"));
}

TEST_F(TrialLaunchTest, ACommandThatCannotBeExpandedIsTheSpecsFault) {
  v1::Assign assign = Assign("");  // ${program} in the command, but no program
  auto plan = PlanLaunch(assign, dir_ + "/trial", dir_ + "/r.sock", context_);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sweepd::worker
