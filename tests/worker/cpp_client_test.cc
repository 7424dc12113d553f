// The header-only C++ client against the real reporting protocol parser behind a real socket.

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdlib>
#include <filesystem>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "include/sweepd/client.h"
#include "worker/report_protocol.h"
#include "worker/trial_process.h"

namespace sweepd::worker {
namespace {

// Serves one connection: parses each request with the agent's parser, answers stop from
// `stop_at` on, and records what it parsed.
class StandInAgent {
 public:
  StandInAgent(const std::string& path, int64_t stop_at) : path_(path), stop_at_(stop_at) {
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listen_fd_, 1), 0);
    thread_ = std::thread([this] { Serve(); });
  }
  ~StandInAgent() {
    Join();
    close(listen_fd_);
    unlink(path_.c_str());
  }
  // Waits for the connection to end (the client closed it); `requests` is complete then.
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  std::vector<ReportRequest> requests;

 private:
  void Serve() {
    const int fd = accept(listen_fd_, nullptr, nullptr);
    std::string pending;
    char buf[4096];
    while (true) {
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) break;
      for (auto& line : SplitLines(pending, buf, static_cast<size_t>(n))) {
        auto req = ParseReportRequest(line);
        std::string reply;
        if (!req.ok()) {
          reply = ErrorReply(req.status().message());
        } else {
          requests.push_back(*req);
          if (req->op == ReportRequest::Op::kCheckpoint && *req->step >= stop_at_) {
            reply = StopReply("preempted: the agent is shutting down", /*preempted=*/true);
          } else if (req->step && *req->step >= stop_at_) {
            reply = StopReply("pruned at rung 1");
          } else {
            reply = ContinueReply();
          }
        }
        (void)!send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
      }
    }
    close(fd);
  }
  std::string path_;
  int64_t stop_at_;
  int listen_fd_;
  std::thread thread_;
};

TEST(CppClientTest, ReportsUntilToldToStop) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("cpp-client-" + std::to_string(getpid())))
          .string();
  setenv("SWEEP_SOCKET", path.c_str(), 1);
  setenv("SWEEP_TRIAL_ID", "s-abc-0003", 1);
  setenv("SWEEP_PARAMS_JSON", R"({"optimizer.lr": 0.01, "name": "adam", "layers": [64, 64]})", 1);
  {
    StandInAgent agent(path, 3);
    {
      sweepd::Client client;
      EXPECT_EQ(client.Param("optimizer.lr"), "0.01");
      EXPECT_EQ(client.Param("name"), "adam");
      EXPECT_EQ(client.Param("layers"), "[64, 64]");
      EXPECT_EQ(client.Param("missing", "7"), "7");
      std::vector<bool> answers;
      for (int step = 0; step < 5; ++step) {
        answers.push_back(client.Report(step, {{"loss", 1.0 / (step + 1)}, {"bad", NAN}}));
      }
      EXPECT_THAT(answers, ::testing::ElementsAre(true, true, true, false, false));
      EXPECT_TRUE(client.ShouldStop());
      EXPECT_EQ(client.StopReason(), "pruned at rung 1");
      client.Finish({{"final", 0.5}});
    }
    // Destroying the client closed the connection, so the stand-in returns.
  }
  unsetenv("SWEEP_SOCKET");
  unsetenv("SWEEP_TRIAL_ID");
  unsetenv("SWEEP_PARAMS_JSON");
}

TEST(CppClientTest, TellsCheckpointsAndHearsPreemption) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("cpp-ckpt-" + std::to_string(getpid()))).string();
  setenv("SWEEP_SOCKET", path.c_str(), 1);
  setenv("SWEEP_TRIAL_ID", "s-abc-0004", 1);
  setenv("SWEEP_CHECKPOINT_DIR", "/shared/ckpt/s-abc/s-abc-0004", 1);
  setenv("SWEEP_RESUME_STEP", "6", 1);
  StandInAgent agent(path, 8);
  {
    sweepd::Client client;
    EXPECT_EQ(sweepd::Client::CheckpointDir(), "/shared/ckpt/s-abc/s-abc-0004");
    EXPECT_EQ(sweepd::Client::ResumeStep(), 6);
    EXPECT_TRUE(client.CheckpointSaved(7));
    EXPECT_FALSE(client.Preempted());
    EXPECT_FALSE(client.CheckpointSaved(8));
    EXPECT_TRUE(client.Preempted());
    EXPECT_TRUE(client.ShouldStop());
  }
  agent.Join();
  const std::vector<ReportRequest>& requests = agent.requests;
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].op, ReportRequest::Op::kCheckpoint);
  EXPECT_EQ(requests[0].step, 7);
  EXPECT_EQ(requests[0].trial_id, "s-abc-0004");
  unsetenv("SWEEP_RESUME_STEP");
  EXPECT_EQ(sweepd::Client::ResumeStep(), -1);
  unsetenv("SWEEP_SOCKET");
  unsetenv("SWEEP_TRIAL_ID");
  unsetenv("SWEEP_CHECKPOINT_DIR");
}

TEST(CppClientTest, OutsideASweepUsesArgumentsAndOnlyLogs) {
  unsetenv("SWEEP_SOCKET");
  unsetenv("SWEEP_PARAMS_JSON");
  const char* argv[] = {"train", "--lr=0.5", "--layers", "3", "--fast"};
  sweepd::Client client(5, const_cast<char**>(argv));
  EXPECT_FALSE(client.in_sweep());
  EXPECT_EQ(client.Param("lr"), "0.5");
  EXPECT_EQ(client.Param("layers"), "3");
  EXPECT_EQ(client.Param("fast"), "true");
  EXPECT_TRUE(client.Report(0, {{"loss", 1.0}}));
}

}  // namespace
}  // namespace sweepd::worker
