// ReportBuffer without sockets or sweepd: numbering, acknowledgement, the spill file, taking a
// trial over with an unknown sequence. The rule every test holds it to is sweepd's: reports go
// out in unbroken seq order, each once per stream, and an acknowledgement covers all before it.

#include "worker/report_buffer.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace sweepd::worker {
namespace {

class ReportBufferTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/report-buffer-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  ReportBuffer::Options Options(size_t in_memory, uint64_t spill_bytes = uint64_t{1} << 30) {
    return {.trial_id = "s-test-0001",
            .spill_path = dir_ + "/.unacked-reports",
            .max_in_memory = in_memory,
            .max_spill_bytes = spill_bytes};
  }
  static v1::Report Step(int64_t step) {
    v1::Report r;
    r.set_step(step);
    (*r.mutable_metrics())["loss"] = 1.0 / static_cast<double>(step + 1);
    return r;
  }
  // Sends everything sendable, acknowledging each batch; returns the seqs and steps in order.
  static std::vector<std::pair<int64_t, int64_t>> Drain(ReportBuffer& buffer, size_t batch = 4) {
    std::vector<std::pair<int64_t, int64_t>> out;
    while (true) {
      v1::MetricBatch b;
      if (!buffer.Next(batch, &b)) break;
      EXPECT_EQ(b.trial_id(), "s-test-0001");
      EXPECT_EQ(b.first_seq(), b.reports(0).seq());
      for (const auto& r : b.reports()) out.emplace_back(r.seq(), r.step());
      buffer.MarkSent(b);
      buffer.Ack(b.reports(b.reports_size() - 1).seq());
    }
    return out;
  }

  std::string dir_;
};

TEST_F(ReportBufferTest, NumbersFromTheAssignedFirstSeqAndSendsEachOncePerStream) {
  ReportBuffer buffer(Options(100));
  buffer.StartAt(5);
  for (int i = 0; i < 3; ++i) buffer.Add(Step(i));
  v1::MetricBatch batch;
  ASSERT_TRUE(buffer.Next(10, &batch));
  ASSERT_EQ(batch.reports_size(), 3);
  EXPECT_EQ(batch.first_seq(), 5);
  EXPECT_EQ(batch.reports(2).seq(), 7);
  buffer.MarkSent(batch);
  v1::MetricBatch again;
  EXPECT_FALSE(buffer.Next(10, &again)) << "sent reports are not sent twice on one stream";
  buffer.Ack(6);
  EXPECT_EQ(buffer.in_memory(), 1u);
  EXPECT_EQ(buffer.in_flight(), 1u);
  EXPECT_EQ(buffer.acked_seq(), 6);
  // A new stream: what is unacknowledged goes out again, from the oldest.
  buffer.Rewind();
  v1::MetricBatch resent;
  ASSERT_TRUE(buffer.Next(10, &resent));
  EXPECT_EQ(resent.first_seq(), 7);
  EXPECT_EQ(resent.reports_size(), 1);
  buffer.MarkSent(resent);
  buffer.Ack(7);
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(buffer.last_seq(), 7);
}

TEST_F(ReportBufferTest, ReportsPastTheMemoryBoundSpillAndComeBackInOrder) {
  ReportBuffer buffer(Options(3));
  buffer.StartAt(0);
  for (int i = 0; i < 50; ++i) buffer.Add(Step(i));
  EXPECT_EQ(buffer.in_memory(), 3u);
  EXPECT_EQ(buffer.spilled(), 47);
  EXPECT_TRUE(buffer.spill_used());
  const auto sent = Drain(buffer);
  ASSERT_EQ(sent.size(), 50u);
  for (int64_t i = 0; i < 50; ++i) {
    EXPECT_EQ(sent[static_cast<size_t>(i)].first, i);
    EXPECT_EQ(sent[static_cast<size_t>(i)].second, i);
  }
  EXPECT_TRUE(buffer.empty());
  // All back in memory: the file starts over.
  EXPECT_EQ(std::filesystem::file_size(dir_ + "/.unacked-reports"), 0u);
  EXPECT_EQ(buffer.dropped(), 0);
}

TEST_F(ReportBufferTest, ReportsBeyondTheSpillLimitAreDroppedWithoutLeavingAGap) {
  // Room for a few spilled records only.
  ReportBuffer buffer(Options(2, 64));
  buffer.StartAt(0);
  for (int i = 0; i < 20; ++i) buffer.Add(Step(i));
  EXPECT_GT(buffer.dropped(), 0);
  const auto sent = Drain(buffer);
  ASSERT_FALSE(sent.empty());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(sent[i].first, static_cast<int64_t>(i)) << "seqs stay unbroken";
  }
  // The next report follows on from the last one kept.
  buffer.Add(Step(100));
  v1::MetricBatch next;
  ASSERT_TRUE(buffer.Next(10, &next));
  EXPECT_EQ(next.first_seq(), static_cast<int64_t>(sent.size()));
}

TEST_F(ReportBufferTest, ATakenOverTrialWaitsForSweepdsSequenceThenContinuesIt) {
  ReportBuffer buffer(Options(100));
  buffer.WaitForSequence();
  buffer.Add(Step(10));
  buffer.Add(Step(11));
  v1::MetricBatch batch;
  EXPECT_FALSE(buffer.Next(10, &batch)) << "unnumbered reports are not sent";
  EXPECT_EQ(buffer.last_seq(), -1);
  EXPECT_EQ(buffer.acked_seq(), -1);
  buffer.ContinueAt(40);
  buffer.Add(Step(12));
  const auto sent = Drain(buffer);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0], std::make_pair(int64_t{40}, int64_t{10}));
  EXPECT_EQ(sent[2], std::make_pair(int64_t{42}, int64_t{12}));
  // A second ContinueAt (a later re-registration) changes nothing.
  buffer.ContinueAt(7);
  buffer.Add(Step(13));
  v1::MetricBatch later;
  ASSERT_TRUE(buffer.Next(10, &later));
  EXPECT_EQ(later.first_seq(), 43);
}

TEST_F(ReportBufferTest, WhileTheSequenceIsUnknownOnlyTheNewestReportsAreKept) {
  ReportBuffer buffer(Options(2));
  buffer.WaitForSequence();
  for (int i = 0; i < 5; ++i) buffer.Add(Step(i));
  EXPECT_EQ(buffer.in_memory(), 2u);
  EXPECT_EQ(buffer.dropped(), 3);
  EXPECT_FALSE(buffer.spill_used()) << "unnumbered reports never go to the spill file";
  buffer.ContinueAt(0);
  const auto sent = Drain(buffer);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0], std::make_pair(int64_t{0}, int64_t{3}));
  EXPECT_EQ(sent[1], std::make_pair(int64_t{1}, int64_t{4}));
}

TEST_F(ReportBufferTest, ADamagedSpillFileLosesItsReportsButNotTheOrder) {
  ReportBuffer buffer(Options(2));
  buffer.StartAt(0);
  for (int i = 0; i < 6; ++i) buffer.Add(Step(i));
  ASSERT_EQ(buffer.spilled(), 4);
  // Someone overwrote the file.
  {
    std::ofstream damage(dir_ + "/.unacked-reports", std::ios::binary | std::ios::trunc);
    damage << "garbage garbage garbage";
  }
  const auto sent = Drain(buffer, 2);
  // The two in memory went out; the spilled four are lost, their seqs given back.
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[1].first, 1);
  buffer.Add(Step(6));
  v1::MetricBatch next;
  ASSERT_TRUE(buffer.Next(10, &next));
  EXPECT_EQ(next.first_seq(), 2) << "no gap for sweepd to wait on";
}

TEST_F(ReportBufferTest, ClearForgetsEverythingItHeld) {
  ReportBuffer buffer(Options(2));
  buffer.StartAt(0);
  for (int i = 0; i < 6; ++i) buffer.Add(Step(i));
  buffer.Clear();
  EXPECT_TRUE(buffer.empty());
  v1::MetricBatch batch;
  EXPECT_FALSE(buffer.Next(10, &batch));
}

}  // namespace
}  // namespace sweepd::worker
