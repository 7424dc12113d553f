// A trial's state file, as a restarted agent reads it back: whole states round-trip, and files it
// cannot use (an older agent's line, a damaged file, hostile ids) still give the pid to kill.

#include "worker/trial_state_file.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"

namespace sweepd::worker {
namespace {

class TrialStateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/trial-state-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& text) { std::ofstream(dir_ + "/t") << text; }
  std::string dir_;
};

TEST_F(TrialStateFileTest, AWrittenStateReadsBackWhole) {
  const TrialState state{.trial_id = "s-abc-0001",
                         .sweep_id = "s-abc",
                         .pid = 4242,
                         .start_ticks = 987654321,
                         .keep_fd = 5,
                         .exit_file = "/w/s-abc/s-abc-0001/.exit",
                         .gpu_indices = {2, 3},
                         .node_rank = 1,
                         .attempt = 3,
                         .socket_path = "/run/a/0.sock",
                         .workdir = "/w/s-abc/s-abc-0001",
                         .metric_pattern = "loss=(?P<loss>\\S+)",
                         .cgroup_dir = "/sys/fs/cgroup/x",
                         .client_reported = true,
                         .finished = true,
                         .start_unix = 1767225600.5};
  ASSERT_TRUE(WriteTrialState(dir_ + "/t", state).ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/t.tmp"));
  const ReadTrialStateResult read = ReadTrialState(dir_ + "/t");
  ASSERT_TRUE(read.state.ok()) << read.state.status();
  const TrialState& back = *read.state;
  EXPECT_EQ(back.trial_id, state.trial_id);
  EXPECT_EQ(back.sweep_id, state.sweep_id);
  EXPECT_EQ(back.pid, state.pid);
  EXPECT_EQ(back.start_ticks, state.start_ticks);
  EXPECT_EQ(back.keep_fd, state.keep_fd);
  EXPECT_EQ(back.exit_file, state.exit_file);
  EXPECT_EQ(back.gpu_indices, state.gpu_indices);
  EXPECT_EQ(back.node_rank, state.node_rank);
  EXPECT_EQ(back.attempt, state.attempt);
  EXPECT_EQ(back.socket_path, state.socket_path);
  EXPECT_EQ(back.workdir, state.workdir);
  EXPECT_EQ(back.metric_pattern, state.metric_pattern);
  EXPECT_EQ(back.cgroup_dir, state.cgroup_dir);
  EXPECT_TRUE(back.client_reported);
  EXPECT_TRUE(back.finished);
  EXPECT_DOUBLE_EQ(back.start_unix, state.start_unix);
}

// A file from before attempts were kept reads with attempt 0 ("unknown"), which sweepd accepts.
TEST_F(TrialStateFileTest, AFileWithoutAnAttemptReadsAsUnknown) {
  Write(R"({"trial":"s-abc-0001","sweep":"s-abc","pid":7,"start_ticks":9,"keep_fd":4})");
  const ReadTrialStateResult read = ReadTrialState(dir_ + "/t");
  ASSERT_TRUE(read.state.ok()) << read.state.status();
  EXPECT_EQ(read.state->attempt, 0);
  EXPECT_EQ(read.state->keep_fd, 4);
}

TEST_F(TrialStateFileTest, AnOlderAgentsLineGivesThePidToKill) {
  Write("4242 987654321 0,1\n");
  const ReadTrialStateResult read = ReadTrialState(dir_ + "/t");
  EXPECT_FALSE(read.state.ok());
  EXPECT_EQ(read.pid, 4242);
  EXPECT_EQ(read.start_ticks, 987654321u);
}

TEST_F(TrialStateFileTest, HostileIdsAreRefusedButThePidStillReads) {
  for (const char* id : {"../../etc", "a/b", "", ".hidden", "x..y"}) {
    SCOPED_TRACE(id);
    Write(std::string(R"({"trial":")") + id + R"(","sweep":"s","pid":12,"start_ticks":34})");
    const ReadTrialStateResult read = ReadTrialState(dir_ + "/t");
    EXPECT_FALSE(read.state.ok());
    EXPECT_EQ(read.pid, 12);
    EXPECT_EQ(read.start_ticks, 34u);
  }
}

TEST_F(TrialStateFileTest, ValuesOfTheWrongTypeReadAsAbsentAndNeverThrow) {
  Write(R"({"trial":"t1","sweep":"s","pid":"12","start_ticks":-1.5,"gpus":"0,1",)"
        R"("node_rank":null,"attempt":[2],"finished":"yes","start_unix":"now"})");
  const ReadTrialStateResult read = ReadTrialState(dir_ + "/t");
  ASSERT_TRUE(read.state.ok()) << read.state.status();
  EXPECT_EQ(read.pid, 0);
  EXPECT_TRUE(read.state->gpu_indices.empty());
  EXPECT_EQ(read.state->attempt, 0);
  EXPECT_FALSE(read.state->finished);
  EXPECT_EQ(read.state->start_unix, 0);
}

TEST_F(TrialStateFileTest, AFailedWriteKeepsThePreviousFile) {
  ASSERT_TRUE(WriteTrialState(dir_ + "/t", {.trial_id = "t1", .sweep_id = "s", .pid = 1}).ok());
  // The temporary file cannot be created: a folder is in its way.
  std::filesystem::create_directory(dir_ + "/t.tmp");
  std::ofstream(dir_ + "/t.tmp/x") << "x";
  EXPECT_FALSE(WriteTrialState(dir_ + "/t", {.trial_id = "t1", .sweep_id = "s", .pid = 2}).ok());
  EXPECT_EQ(ReadTrialState(dir_ + "/t").state->pid, 1);
}

TEST_F(TrialStateFileTest, AMissingFileIsNotFound) {
  EXPECT_EQ(ReadTrialState(dir_ + "/none").state.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace sweepd::worker
