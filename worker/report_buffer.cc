#include "worker/report_buffer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/logging.h"

namespace sweepd::worker {

ReportBuffer::ReportBuffer(Options options) : options_(std::move(options)) {}

ReportBuffer::~ReportBuffer() {
  if (spill_fd_ >= 0) close(spill_fd_);
}

void ReportBuffer::StartAt(int64_t first_seq) {
  seq_known_ = true;
  next_seq_ = first_seq_ = std::max<int64_t>(0, first_seq);
  acked_seq_ = first_seq_ - 1;
}

void ReportBuffer::WaitForSequence() { seq_known_ = false; }

void ReportBuffer::ContinueAt(int64_t next_seq) {
  if (seq_known_) return;
  StartAt(next_seq);
  for (auto& report : unacked_) report.set_seq(next_seq_++);
}

void ReportBuffer::Add(v1::Report report) {
  if (!seq_known_) {
    // Numbered only once sweepd answers; until then they cannot go to the spill file.
    if (unacked_.size() >= options_.max_in_memory) {
      if (dropped_++ == 0) {
        LogError({.trial = options_.trial_id},
                 "{} reports wait for sweepd to take this trial back; dropping the "
                 "oldest",
                 unacked_.size());
      }
      unacked_.pop_front();
    }
    report.set_seq(-1);
    unacked_.push_back(std::move(report));
    return;
  }
  report.set_seq(next_seq_++);
  if (spilled_ > 0 || unacked_.size() >= options_.max_in_memory) {
    Spill(report);
    return;
  }
  unacked_.push_back(std::move(report));
}

void ReportBuffer::Ack(int64_t seq) {
  acked_seq_ = std::max(acked_seq_, seq);
  while (!unacked_.empty() && unacked_.front().seq() <= seq) {
    unacked_.pop_front();
    if (sent_ > 0) --sent_;
  }
  Refill();
}

void ReportBuffer::Clear() {
  seq_known_ = true;
  unacked_.clear();
  sent_ = 0;
  spilled_ = 0;
  spill_read_ = spill_size_ = 0;
  if (spill_fd_ >= 0) (void)!ftruncate(spill_fd_, 0);
}

bool ReportBuffer::Next(size_t max, v1::MetricBatch* batch) const {
  if (!seq_known_ || sent_ >= unacked_.size()) return false;
  batch->set_trial_id(options_.trial_id);
  batch->set_first_seq(unacked_[sent_].seq());
  const size_t end = std::min(unacked_.size(), sent_ + max);
  for (size_t i = sent_; i < end; ++i) *batch->add_reports() = unacked_[i];
  return true;
}

void ReportBuffer::MarkSent(const v1::MetricBatch& batch) {
  sent_ = std::min(unacked_.size(), sent_ + static_cast<size_t>(batch.reports_size()));
}

void ReportBuffer::Rewind() { sent_ = 0; }

void ReportBuffer::Spill(const v1::Report& report) {
  if (spill_fd_ < 0) {
    spill_fd_ =
        open(options_.spill_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0600);
    if (spill_fd_ < 0) {
      LogError({.trial = options_.trial_id},
               "cannot open {}: {}; reports past {} in memory are dropped", options_.spill_path,
               std::strerror(errno), options_.max_in_memory);
    } else {
      LogWarn({.trial = options_.trial_id},
              "{} reports unacknowledged; keeping newer ones in {} until sweepd "
              "acknowledges",
              unacked_.size(), options_.spill_path);
    }
  }
  const std::string bytes = report.SerializeAsString();
  const uint32_t size = static_cast<uint32_t>(bytes.size());
  std::string record(reinterpret_cast<const char*>(&size), sizeof(size));
  record += bytes;
  bool kept =
      spill_fd_ >= 0 && spill_size_ - spill_read_ + record.size() <= options_.max_spill_bytes;
  if (kept &&
      write(spill_fd_, record.data(), record.size()) != static_cast<ssize_t>(record.size())) {
    // A short write (disk full) must not leave half a record for the reader.
    (void)!ftruncate(spill_fd_, static_cast<off_t>(spill_size_));
    kept = false;
  }
  if (!kept) {
    if (dropped_++ == 0) {
      LogError({.trial = options_.trial_id},
               "cannot keep more unacknowledged reports (spill file {}, {} bytes): "
               "dropping new ones until sweepd acknowledges",
               options_.spill_path, spill_size_);
    }
    // Its seq is given back: sweepd takes reports only in unbroken seq order.
    --next_seq_;
    return;
  }
  spill_size_ += record.size();
  ++spilled_;
}

void ReportBuffer::Refill() {
  while (spilled_ > 0 && unacked_.size() < options_.max_in_memory) {
    uint32_t size = 0;
    if (pread(spill_fd_, &size, sizeof(size), static_cast<off_t>(spill_read_)) != sizeof(size)) {
      break;
    }
    v1::Report report;
    std::string bytes;
    const bool fits = size <= spill_size_ - spill_read_ - sizeof(size);
    if (fits) bytes.resize(size);
    if (!fits ||
        pread(spill_fd_, bytes.data(), size, static_cast<off_t>(spill_read_ + sizeof(size))) !=
            static_cast<ssize_t>(size) ||
        !report.ParseFromString(bytes) || report.seq() != NextSpilledSeq()) {
      // Lost (the file was damaged). The seqs they held are given back, so what comes next
      // follows on without a gap (sweepd takes reports only in unbroken order).
      LogError({.trial = options_.trial_id}, "{} is unreadable at offset {}; {} reports lost",
               options_.spill_path, spill_read_, spilled_);
      next_seq_ = NextSpilledSeq();
      spilled_ = 0;
      spill_read_ = spill_size_;
      break;
    }
    spill_read_ += sizeof(size) + size;
    --spilled_;
    unacked_.push_back(std::move(report));
  }
  if (spilled_ == 0 && spill_fd_ >= 0 && spill_read_ > 0) {
    // All back in memory: start the file over.
    (void)!ftruncate(spill_fd_, 0);
    spill_read_ = spill_size_ = 0;
  }
}

}  // namespace sweepd::worker
