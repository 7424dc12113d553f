#pragma once

// One trial's stdout, read on a thread of its own: kept in stdout.log up to a bound, searched for
// metrics line by line, and handed to the agent's loop in batches. The loop (heartbeats,
// acknowledgements, stops) never reads or parses a trial's output itself, so no trial's output,
// however much of it or however it is shaped, can hold up another trial or the agent.
//
// Bounded work: only the first kMaxParsedLineBytes of a line are searched (RE2, linear in that),
// at most `max_queued` parsed reports wait for the loop (then the reader waits, and the trial's
// writes block on the full pipe, as on a slow terminal), and stdout.log stops at
// `max_log_bytes` with a marker saying so.
//
// Thread safety: every method may be called from any thread.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "worker/report_protocol.h"

namespace sweepd::worker {

class TrialOutput {
 public:
  struct Options {
    std::string trial_id;  // for log lines
    std::string log_path;
    bool append = false;  // a trial taken over after an agent restart continues its log
    uint64_t max_log_bytes = uint64_t{1} << 30;
    std::string metric_pattern;  // empty: the default
    size_t max_queued = 10000;
    // Called (from the reader thread) when reports are waiting or the output has ended.
    std::function<void()> wake;
  };

  // Starts reading `fd` (the pipe's read end; this object owns it from here on, even on error).
  static absl::StatusOr<std::unique_ptr<TrialOutput>> Start(int fd, Options options);
  ~TrialOutput();
  TrialOutput(const TrialOutput&) = delete;
  TrialOutput& operator=(const TrialOutput&) = delete;

  // Up to `max` reports parsed since the last call, oldest first.
  std::vector<MetricLineParser::Parsed> Take(size_t max);
  // Every writer has closed the pipe and every line is parsed (what Take has not taken yet may
  // remain).
  bool Finished() const { return finished_; }
  // Stops reading now (the trial has ended, but something still holds its stdout open): the
  // reader ends, and what it had not read is dropped, said in the log.
  void Abandon();
  // The trial reports through its client: from now on its stdout is only logged.
  void StopParsing() { parsing_ = false; }
  uint64_t bytes_read() const { return bytes_read_; }

 private:
  TrialOutput(int fd, Options options, MetricLineParser parser);
  void ReadLoop();
  void HandleLine(absl::string_view line);
  void WriteLog(const char* data, size_t size);

  const int fd_;
  const Options options_;
  const MetricLineParser parser_;
  int stop_pipe_[2] = {-1, -1};
  FILE* log_ = nullptr;  // reader thread only
  uint64_t logged_ = 0;  // bytes in stdout.log (reader thread only)
  bool log_full_said_ = false;
  std::string pending_;    // a line not ended yet, at most kMaxParsedLineBytes of it
  bool line_cut_ = false;  // the pending line was longer than what is kept of it
  bool long_line_said_ = false;
  std::atomic<bool> parsing_{true};
  std::atomic<bool> finished_{false};
  std::atomic<bool> abandoned_{false};
  std::atomic<uint64_t> bytes_read_{0};
  std::mutex mu_;
  std::condition_variable room_;  // the loop took reports: the reader may queue more
  std::deque<MetricLineParser::Parsed> queue_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace sweepd::worker
