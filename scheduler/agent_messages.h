#pragma once

// Checks of what an agent sends on its stream, before the engine sees it. An agent is a remote
// process: a buggy or hostile one must not be able to make sweepd store garbage or grow without
// bound. A message that fails these checks ends the stream with INVALID_ARGUMENT and changes
// no state. Stateless; safe from any thread.

#include <cstddef>

#include "absl/status/status.h"
#include "sweepd/v1/agent_service.pb.h"

namespace sweepd::scheduler {

inline constexpr size_t kMaxIdBytes = 128;
inline constexpr int kMaxReportsPerBatch = 10'000;
inline constexpr int kMaxMetricsPerReport = 1'000;
inline constexpr size_t kMaxMetricNameBytes = 256;
inline constexpr size_t kMaxTextBytes = 64 * 1024;  // stderr tails, paths
inline constexpr int kMaxGpusPerAgent = 1024;
inline constexpr int kMaxRunningTrials = 4096;

// OK, or INVALID_ARGUMENT naming the field, the value and what is allowed.
absl::Status ValidateAgentMessage(const v1::AgentMessage& message);

}  // namespace sweepd::scheduler
