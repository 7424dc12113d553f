#pragma once

// What the agent knows of its node's GPUs: index, UUID, name, memory, utilisation. Two sources,
// tried in this order by OpenGpuMonitor("auto"):
//   - NVML, loaded at run time with dlopen("libnvidia-ml.so.1"), so nothing GPU-related is
//     needed to build or to run on a CPU node;
//   - `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`, for nodes with the driver's
//     tools but no loadable NVML (some containers).
// Without either, the agent runs CPU slots (--slots) or the GPUs named by --gpus.
//
// Thread safety: a monitor is used from one thread at a time.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sweepd/v1/resources.pb.h"

namespace sweepd::worker {

class GpuMonitor {
 public:
  virtual ~GpuMonitor() = default;
  // "nvml" or "nvidia-smi".
  virtual std::string Source() const = 0;
  // Every GPU of the node, by index, with current memory use and utilisation.
  virtual absl::StatusOr<std::vector<v1::Gpu>> Read() = 0;
};

// NVML through dlopen; NOT_FOUND when the library is absent or initialisation fails.
absl::StatusOr<std::unique_ptr<GpuMonitor>> OpenNvmlMonitor(
    const std::string& library = "libnvidia-ml.so.1");

// nvidia-smi (found on PATH unless `binary` has a slash); NOT_FOUND when it does not run.
absl::StatusOr<std::unique_ptr<GpuMonitor>> OpenNvidiaSmiMonitor(
    const std::string& binary = "nvidia-smi");

// `source`: auto (NVML, then nvidia-smi), nvml, nvidia-smi. NOT_FOUND when none answers.
absl::StatusOr<std::unique_ptr<GpuMonitor>> OpenGpuMonitor(absl::string_view source);

// Parses nvidia-smi's `index, uuid, name, memory.total [MiB], memory.used [MiB],
// utilization.gpu [%]` lines (csv, noheader, nounits). "[N/A]" readings count as 0.
absl::StatusOr<std::vector<v1::Gpu>> ParseNvidiaSmiCsv(absl::string_view text);

// "0,1,3" -> {0, 1, 3}: distinct indices 0..1023, named in errors by `flag`.
absl::StatusOr<std::vector<int>> ParseGpuList(absl::string_view text, absl::string_view flag);

}  // namespace sweepd::worker
