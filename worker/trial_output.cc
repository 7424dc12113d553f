#include "worker/trial_output.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace sweepd::worker {

absl::StatusOr<std::unique_ptr<TrialOutput>> TrialOutput::Start(int fd, Options options) {
  MetricLineParser parser(options.metric_pattern);
  if (!parser.pattern_error().empty()) {
    LogWarn({.trial = options.trial_id}, "{}", parser.pattern_error());
  }
  std::unique_ptr<TrialOutput> output(new TrialOutput(fd, std::move(options), std::move(parser)));
  if (pipe2(output->stop_pipe_, O_CLOEXEC | O_NONBLOCK) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  output->log_ = fopen(output->options_.log_path.c_str(), output->options_.append ? "ab" : "wb");
  if (output->log_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", output->options_.log_path, ": ", std::strerror(errno)));
  }
  if (output->options_.append) {
    fseek(output->log_, 0, SEEK_END);
    const long size = ftell(output->log_);
    output->logged_ = size > 0 ? static_cast<uint64_t>(size) : 0;
    output->log_full_said_ = output->logged_ >= output->options_.max_log_bytes;
  }
  TrialOutput* raw = output.get();
  output->thread_ = std::thread([raw] { raw->ReadLoop(); });
  return output;
}

TrialOutput::TrialOutput(int fd, Options options, MetricLineParser parser)
    : fd_(fd), options_(std::move(options)), parser_(std::move(parser)) {}

TrialOutput::~TrialOutput() {
  abandoned_ = true;
  if (stop_pipe_[1] >= 0) (void)!write(stop_pipe_[1], "x", 1);
  room_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (int fd : stop_pipe_) {
    if (fd >= 0) close(fd);
  }
  if (fd_ >= 0) close(fd_);
  if (log_ != nullptr) fclose(log_);
}

void TrialOutput::Abandon() {
  if (abandoned_.exchange(true)) return;
  (void)!write(stop_pipe_[1], "x", 1);
  room_.notify_all();
}

std::vector<MetricLineParser::Parsed> TrialOutput::Take(size_t max) {
  std::vector<MetricLineParser::Parsed> taken;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!queue_.empty() && taken.size() < max) {
      taken.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
  }
  if (!taken.empty()) room_.notify_all();
  return taken;
}

void TrialOutput::WriteLog(const char* data, size_t size) {
  const uint64_t max = options_.max_log_bytes;
  const size_t room =
      logged_ < max ? static_cast<size_t>(std::min<uint64_t>(max - logged_, size)) : 0;
  if (room > 0) {
    fwrite(data, 1, room, log_);
    logged_ += room;
  }
  // Said once, as soon as a byte is dropped (also when an earlier write filled it exactly).
  if (room < size && !log_full_said_) {
    log_full_said_ = true;
    fprintf(log_, "\n[sweep-agent: stdout.log reached %llu bytes; the rest is not kept]\n",
            static_cast<unsigned long long>(max));
    LogWarn({.trial = options_.trial_id},
            "stdout.log reached {} bytes (--max-log-mb); the rest is not kept", max);
  }
}

void TrialOutput::HandleLine(absl::string_view line) {
  if (!parsing_) return;
  auto parsed = parser_.Parse(line);
  if (!parsed) return;
  std::unique_lock<std::mutex> lock(mu_);
  // Backpressure: the loop takes reports every turn; a trial printing metrics faster than that
  // waits here, and then on its own full pipe.
  room_.wait(lock, [&] { return queue_.size() < options_.max_queued || abandoned_; });
  if (abandoned_) return;
  const bool was_empty = queue_.empty();
  queue_.push_back(std::move(*parsed));
  lock.unlock();
  if (was_empty && options_.wake) options_.wake();
}

void TrialOutput::ReadLoop() {
  char buf[65536];
  while (!abandoned_) {
    pollfd fds[2] = {{.fd = fd_, .events = POLLIN, .revents = 0},
                     {.fd = stop_pipe_[0], .events = POLLIN, .revents = 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (abandoned_) break;
    const ssize_t n = read(fd_, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      break;
    }
    if (n == 0) break;  // every writer is gone
    bytes_read_ += static_cast<uint64_t>(n);
    WriteLog(buf, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t i = 0; i < static_cast<size_t>(n) && !abandoned_; ++i) {
      if (buf[i] != '\n') continue;
      const absl::string_view piece(buf + start, i - start);
      if (pending_.empty() && !line_cut_) {
        HandleLine(piece);  // the common case: a whole line in this chunk, no copy
      } else {
        if (!line_cut_) {
          const absl::string_view kept = piece.substr(0, kMaxParsedLineBytes - pending_.size());
          pending_.append(kept.data(), kept.size());
        }
        HandleLine(pending_);
        pending_.clear();
        line_cut_ = false;
      }
      start = i + 1;
    }
    // The line not ended yet: keep what is searched of it, no more (a line of 500 MiB costs
    // 4 KiB here).
    const absl::string_view rest(buf + start, static_cast<size_t>(n) - start);
    if (!rest.empty() && !line_cut_) {
      const size_t keep = std::min(rest.size(), kMaxParsedLineBytes - pending_.size());
      pending_.append(rest.data(), keep);
      if (keep < rest.size()) {
        line_cut_ = true;
        if (!long_line_said_) {
          long_line_said_ = true;
          LogInfo({.trial = options_.trial_id},
                  "a stdout line is longer than {} bytes: only its first {} are searched "
                  "for metrics",
                  kMaxParsedLineBytes, kMaxParsedLineBytes);
        }
      }
    }
    fflush(log_);
  }
  if (abandoned_) {
    LogWarn({.trial = options_.trial_id},
            "its stdout is still held open by a process outside the trial's control; "
            "stopped reading it after {} bytes: what came after is not logged or parsed",
            bytes_read_.load());
  } else if (!pending_.empty()) {
    HandleLine(pending_);  // the last line, without its newline
  }
  pending_.clear();
  fflush(log_);
  finished_ = true;
  if (options_.wake) options_.wake();
}

}  // namespace sweepd::worker
