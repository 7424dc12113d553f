// TrialOutput with a real pipe and its real reader thread: what reaches stdout.log, what is
// parsed, and that neither a flood nor a line without end nor a writer that never closes can
// keep the reader (or its owner) waiting.

#include "worker/trial_output.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/testing/subprocess.h"

namespace sweepd::worker {
namespace {

using ::testing::HasSubstr;

struct Pipe {
  int read_end = -1;
  int write_end = -1;
  Pipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    read_end = fds[0];
    write_end = fds[1];
  }
  ~Pipe() { CloseWriter(); }
  void Write(const std::string& s) {
    size_t done = 0;
    while (done < s.size()) {
      const ssize_t n = write(write_end, s.data() + done, s.size() - done);
      ASSERT_GT(n, 0);
      done += static_cast<size_t>(n);
    }
  }
  void CloseWriter() {
    if (write_end >= 0) close(write_end);
    write_end = -1;
  }
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class TrialOutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("trial-output-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(TrialOutputTest, LogsEverythingAndParsesEachLineOnce) {
  Pipe pipe;
  auto output = TrialOutput::Start(pipe.read_end, {.trial_id = "t", .log_path = dir_ + "/out"});
  ASSERT_TRUE(output.ok()) << output.status();
  pipe.Write("hello\nloss=0.5 step=1\nloss=0.");
  pipe.Write("25 step=2\nno metric\nloss=0.125");  // the last line has no newline
  pipe.CloseWriter();
  ASSERT_TRUE(::sweepd::testing::WaitFor([&] { return (*output)->Finished(); }, 30000));
  auto taken = (*output)->Take(100);
  ASSERT_EQ(taken.size(), 3u);
  EXPECT_EQ(taken[0].step, 1);
  EXPECT_EQ(taken[1].step, 2);
  EXPECT_DOUBLE_EQ(taken[1].metrics[0].second, 0.25);
  EXPECT_FALSE(taken[2].step.has_value());
  EXPECT_DOUBLE_EQ(taken[2].metrics[0].second, 0.125);
  EXPECT_TRUE((*output)->Take(100).empty());
  output->reset();
  EXPECT_EQ(ReadAll(dir_ + "/out"),
            "hello\nloss=0.5 step=1\nloss=0.25 step=2\nno metric\nloss=0.125");
}

// The marker is written as soon as a byte is dropped, also when an earlier write had filled the
// log exactly (the issue 14 probe: then it was missing).
TEST_F(TrialOutputTest, AFullLogSaysSoEvenWhenFilledExactly) {
  Pipe pipe;
  auto output = TrialOutput::Start(
      pipe.read_end, {.trial_id = "t", .log_path = dir_ + "/out", .max_log_bytes = 10});
  ASSERT_TRUE(output.ok());
  pipe.Write("0123456789");
  ASSERT_TRUE(::sweepd::testing::WaitFor([&] { return (*output)->bytes_read() == 10; }, 30000));
  pipe.Write("abc\n");
  pipe.CloseWriter();
  ASSERT_TRUE(::sweepd::testing::WaitFor([&] { return (*output)->Finished(); }, 30000));
  output->reset();
  const std::string log = ReadAll(dir_ + "/out");
  EXPECT_EQ(log.substr(0, 10), "0123456789");
  EXPECT_THAT(log, HasSubstr("[sweep-agent: stdout.log reached 10 bytes; the rest is not kept]"));
  EXPECT_EQ(log.find("abc"), std::string::npos);
}

// 64 MiB in one line without a newline, then a metric: the reader keeps 4 KiB of the long line,
// not all of it, and goes on to find the metric.
TEST_F(TrialOutputTest, AHugeLineCostsOnlyItsHead) {
  Pipe pipe;
  auto output = TrialOutput::Start(
      pipe.read_end, {.trial_id = "t", .log_path = dir_ + "/out", .max_log_bytes = 1 << 20});
  ASSERT_TRUE(output.ok());
  const std::string chunk(1 << 20, 'x');
  for (int i = 0; i < 64; ++i) pipe.Write(chunk);
  pipe.Write("\nloss=3\n");
  pipe.CloseWriter();
  ASSERT_TRUE(::sweepd::testing::WaitFor([&] { return (*output)->Finished(); }, 60000));
  auto taken = (*output)->Take(100);
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].metrics[0].first, "loss");
  EXPECT_EQ((*output)->bytes_read(), 64u * (1 << 20) + 8);
  output->reset();
  EXPECT_LE(std::filesystem::file_size(dir_ + "/out"), (1u << 20) + 200);
}

// More parsed reports than the queue holds: the reader waits (backpressure) instead of growing
// without bound, and goes on as they are taken.
TEST_F(TrialOutputTest, TheQueueIsBounded) {
  Pipe pipe;
  auto output = TrialOutput::Start(pipe.read_end,
                                   {.trial_id = "t", .log_path = dir_ + "/out", .max_queued = 10});
  ASSERT_TRUE(output.ok());
  std::thread writer([&] {
    std::string lines;
    for (int i = 0; i < 1000; ++i) lines += "loss=" + std::to_string(i) + "\n";
    pipe.Write(lines);
    pipe.CloseWriter();
  });
  size_t taken = 0;
  double last = -1;
  ASSERT_TRUE(::sweepd::testing::WaitFor(
      [&] {
        auto batch = (*output)->Take(1000);
        EXPECT_LE(batch.size(), 10u);
        for (const auto& p : batch) {
          EXPECT_EQ(p.metrics[0].second, last + 1);  // in order, none lost
          last = p.metrics[0].second;
        }
        taken += batch.size();
        return taken == 1000 && (*output)->Finished();
      },
      60000));
  writer.join();
}

// A writer that never closes the pipe (an escaped child holding stdout): Abandon ends the reader
// at once, and destroying the object does not wait for the writer.
TEST_F(TrialOutputTest, AbandonEndsTheReaderWhileAWriterLingers) {
  Pipe pipe;
  auto output = TrialOutput::Start(pipe.read_end, {.trial_id = "t", .log_path = dir_ + "/out"});
  ASSERT_TRUE(output.ok());
  pipe.Write("loss=1\n");
  ASSERT_TRUE(::sweepd::testing::WaitFor([&] { return (*output)->bytes_read() == 7; }, 30000));
  EXPECT_FALSE((*output)->Finished());
  (*output)->Abandon();
  ASSERT_TRUE(::sweepd::testing::WaitFor([&] { return (*output)->Finished(); }, 30000));
  EXPECT_EQ((*output)->Take(10).size(), 1u);
  output->reset();  // joins the reader: must not block on the open writer
}

// The client reports: stdout is only logged from then on.
TEST_F(TrialOutputTest, StopParsingKeepsLogging) {
  Pipe pipe;
  auto output = TrialOutput::Start(pipe.read_end, {.trial_id = "t", .log_path = dir_ + "/out"});
  ASSERT_TRUE(output.ok());
  (*output)->StopParsing();
  pipe.Write("loss=1\n");
  pipe.CloseWriter();
  ASSERT_TRUE(::sweepd::testing::WaitFor([&] { return (*output)->Finished(); }, 30000));
  EXPECT_TRUE((*output)->Take(10).empty());
  output->reset();
  EXPECT_EQ(ReadAll(dir_ + "/out"), "loss=1\n");
}

}  // namespace
}  // namespace sweepd::worker
