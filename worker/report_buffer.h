#pragma once

// A trial's metric reports from the moment the agent numbers them until sweepd acknowledges them
// as durable. Reports carry consecutive sequence numbers (sweepd takes them only in unbroken
// order, and an acknowledgement covers every report up to its seq). The newest `max_in_memory`
// unacknowledged reports wait in memory; past that (sweepd away, or its store unable to commit)
// they go to a spill file, up to `max_spill_bytes`, and come back as acknowledgements make room.
// A report that cannot be kept gives its seq back, so what follows never leaves a gap.
//
// A trial taken over after the agent restarted does not know its next seq until sweepd says
// (Registered.next_seqs): until ContinueAt, its reports wait unnumbered, in memory only.
//
// Sending: Next returns the unsent reports as a batch; Rewind makes everything unacknowledged
// unsent again (a new stream, or acknowledgements that did not come).
//
// Thread safety: none; the agent's trial loop owns each buffer.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>

#include "sweepd/v1/agent_service.pb.h"

namespace sweepd::worker {

class ReportBuffer {
 public:
  struct Options {
    std::string trial_id;    // for log lines
    std::string spill_path;  // created on first use
    size_t max_in_memory = 10000;
    uint64_t max_spill_bytes = uint64_t{1} << 30;
  };

  explicit ReportBuffer(Options options);
  ~ReportBuffer();
  ReportBuffer(const ReportBuffer&) = delete;
  ReportBuffer& operator=(const ReportBuffer&) = delete;

  // Numbering starts at `first_seq` (Assign.first_seq): a trial this agent started.
  void StartAt(int64_t first_seq);
  // Numbering is unknown until ContinueAt: a trial taken over after a restart.
  void WaitForSequence();
  // sweepd says the next report is `next_seq`: waiting reports are numbered from it. Does
  // nothing when the numbering is already known.
  void ContinueAt(int64_t next_seq);
  bool seq_known() const { return seq_known_; }

  // Numbers `report` and keeps it until acknowledged.
  void Add(v1::Report report);
  // sweepd has made every report up to `seq` durable.
  void Ack(int64_t seq);
  // sweepd has given the trial up: nothing of it is wanted any more.
  void Clear();

  // The unsent reports (at most `max`) as one batch of `trial_id`; false when none are unsent
  // or the numbering is unknown. MarkSent(batch) once it went out.
  bool Next(size_t max, v1::MetricBatch* batch) const;
  void MarkSent(const v1::MetricBatch& batch);
  // Everything unacknowledged counts as unsent again.
  void Rewind();

  // Nothing unacknowledged, in memory or spilled.
  bool empty() const { return unacked_.empty() && spilled_ == 0; }
  // Reports sent and not yet acknowledged.
  size_t in_flight() const { return sent_; }
  size_t in_memory() const { return unacked_.size(); }
  int64_t spilled() const { return spilled_; }
  int64_t dropped() const { return dropped_; }
  // The first seq of this run of the trial (Assign.first_seq, or what sweepd continued at).
  int64_t first_seq() const { return first_seq_; }
  int64_t last_seq() const { return seq_known_ ? next_seq_ - 1 : -1; }
  // Everything up to this is durable at sweepd (-1 when unknown).
  int64_t acked_seq() const {
    if (!seq_known_) return -1;
    return unacked_.empty() ? next_seq_ - 1 : unacked_.front().seq() - 1;
  }
  const std::string& spill_path() const { return options_.spill_path; }
  bool spill_used() const { return spill_fd_ >= 0; }

 private:
  void Spill(const v1::Report& report);
  void Refill();
  // The seq the oldest spilled report carries: the one after what is in memory.
  int64_t NextSpilledSeq() const {
    return unacked_.empty() ? acked_seq_ + 1 : unacked_.back().seq() + 1;
  }

  const Options options_;
  std::deque<v1::Report> unacked_;  // in seq order; the oldest unacknowledged reports
  size_t sent_ = 0;                 // how many of unacked_ went out on this stream
  bool seq_known_ = true;
  int64_t next_seq_ = 0;
  int64_t first_seq_ = 0;
  int64_t acked_seq_ = -1;  // the highest seq sweepd acknowledged
  // Newer reports past max_in_memory, in seq order, as length-prefixed Report messages in the
  // spill file from spill_read_ on.
  int spill_fd_ = -1;
  int64_t spilled_ = 0;
  uint64_t spill_read_ = 0, spill_size_ = 0;
  int64_t dropped_ = 0;
};

}  // namespace sweepd::worker
