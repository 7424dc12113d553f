#include "worker/gpu_monitor.h"

#include <dlfcn.h>
#include <sys/wait.h>

#include <cstdio>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace sweepd::worker {
namespace {

// The few NVML types and entry points the agent uses, declared here so that building needs no
// CUDA headers (their layout is NVML's stable C ABI).
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
struct nvmlMemory_t {
  unsigned long long total, free, used;
};
struct nvmlUtilization_t {
  unsigned int gpu, memory;
};
constexpr nvmlReturn_t kNvmlSuccess = 0;

class NvmlMonitor final : public GpuMonitor {
 public:
  static absl::StatusOr<std::unique_ptr<GpuMonitor>> Open(const std::string& library) {
    void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      return absl::NotFoundError(absl::StrCat("NVML: cannot load ", library, ": ", dlerror()));
    }
    auto monitor = std::unique_ptr<NvmlMonitor>(new NvmlMonitor(handle));
    if (auto st = monitor->Bind(); !st.ok()) return st;
    if (monitor->init_() != kNvmlSuccess) {
      return absl::NotFoundError("NVML: nvmlInit failed (no driver loaded?)");
    }
    monitor->initialised_ = true;
    return monitor;
  }

  ~NvmlMonitor() override {
    if (initialised_) shutdown_();
    dlclose(handle_);
  }

  std::string Source() const override { return "nvml"; }

  absl::StatusOr<std::vector<v1::Gpu>> Read() override {
    unsigned int count = 0;
    if (get_count_(&count) != kNvmlSuccess) return absl::UnavailableError("NVML: device count");
    std::vector<v1::Gpu> gpus;
    for (unsigned int i = 0; i < count; ++i) {
      nvmlDevice_t device = nullptr;
      if (get_handle_(i, &device) != kNvmlSuccess) continue;
      v1::Gpu gpu;
      gpu.set_index(static_cast<int32_t>(i));
      char text[96] = {0};
      if (get_uuid_(device, text, sizeof(text)) == kNvmlSuccess) gpu.set_uuid(text);
      std::fill(std::begin(text), std::end(text), 0);
      if (get_name_(device, text, sizeof(text)) == kNvmlSuccess) gpu.set_name(text);
      nvmlMemory_t memory{};
      if (get_memory_(device, &memory) == kNvmlSuccess) {
        gpu.set_memory_total_bytes(static_cast<int64_t>(memory.total));
        gpu.set_memory_used_bytes(static_cast<int64_t>(memory.used));
      }
      nvmlUtilization_t utilization{};
      if (get_utilization_(device, &utilization) == kNvmlSuccess) {
        gpu.set_utilization_percent(utilization.gpu);
      }
      gpus.push_back(std::move(gpu));
    }
    return gpus;
  }

 private:
  explicit NvmlMonitor(void* handle) : handle_(handle) {}

  template <typename F>
  absl::Status Load(F*& fn, const char* name) {
    fn = reinterpret_cast<F*>(dlsym(handle_, name));
    if (fn == nullptr) return absl::NotFoundError(absl::StrCat("NVML: no symbol ", name));
    return absl::OkStatus();
  }

  absl::Status Bind() {
    for (auto st :
         {Load(init_, "nvmlInit_v2"), Load(shutdown_, "nvmlShutdown"),
          Load(get_count_, "nvmlDeviceGetCount_v2"),
          Load(get_handle_, "nvmlDeviceGetHandleByIndex_v2"), Load(get_uuid_, "nvmlDeviceGetUUID"),
          Load(get_name_, "nvmlDeviceGetName"), Load(get_memory_, "nvmlDeviceGetMemoryInfo"),
          Load(get_utilization_, "nvmlDeviceGetUtilizationRates")}) {
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }

  void* handle_;
  bool initialised_ = false;
  nvmlReturn_t (*init_)() = nullptr;
  nvmlReturn_t (*shutdown_)() = nullptr;
  nvmlReturn_t (*get_count_)(unsigned int*) = nullptr;
  nvmlReturn_t (*get_handle_)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*get_uuid_)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*get_name_)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*get_memory_)(nvmlDevice_t, nvmlMemory_t*) = nullptr;
  nvmlReturn_t (*get_utilization_)(nvmlDevice_t, nvmlUtilization_t*) = nullptr;
};

class NvidiaSmiMonitor final : public GpuMonitor {
 public:
  explicit NvidiaSmiMonitor(std::string binary) : binary_(std::move(binary)) {}

  std::string Source() const override { return "nvidia-smi"; }

  absl::StatusOr<std::vector<v1::Gpu>> Read() override {
    // A fixed command line: the binary name comes from the agent's own configuration.
    const std::string command =
        absl::StrCat("'", binary_,
                     "' --query-gpu=index,uuid,name,memory.total,memory.used,utilization.gpu "
                     "--format=csv,noheader,nounits 2>/dev/null");
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) return absl::NotFoundError("nvidia-smi: cannot start");
    std::string output;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0 && output.size() < (1 << 20)) {
      output.append(buf, n);
    }
    const int status = pclose(pipe);
    if (status != 0) {
      return absl::NotFoundError(absl::StrCat("nvidia-smi: exited with status ",
                                              WIFEXITED(status) ? WEXITSTATUS(status) : status));
    }
    return ParseNvidiaSmiCsv(output);
  }

 private:
  std::string binary_;
};

double ReadingOrZero(absl::string_view field) {
  double v = 0;
  return absl::SimpleAtod(absl::StripAsciiWhitespace(field), &v) ? v : 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<GpuMonitor>> OpenNvmlMonitor(const std::string& library) {
  return NvmlMonitor::Open(library);
}

absl::StatusOr<std::unique_ptr<GpuMonitor>> OpenNvidiaSmiMonitor(const std::string& binary) {
  if (binary.find('\'') != std::string::npos) {
    return absl::InvalidArgumentError("nvidia-smi path must not contain a quote");
  }
  auto monitor = std::make_unique<NvidiaSmiMonitor>(binary);
  auto gpus = monitor->Read();
  if (!gpus.ok()) return gpus.status();
  if (gpus->empty()) return absl::NotFoundError("nvidia-smi: no GPUs listed");
  return std::unique_ptr<GpuMonitor>(std::move(monitor));
}

absl::StatusOr<std::unique_ptr<GpuMonitor>> OpenGpuMonitor(absl::string_view source) {
  if (source == "nvml") return OpenNvmlMonitor();
  if (source == "nvidia-smi") return OpenNvidiaSmiMonitor();
  if (source != "auto") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--gpu-discovery: must be auto, nvml, nvidia-smi or none; got \"", source, "\""));
  }
  auto nvml = OpenNvmlMonitor();
  if (nvml.ok()) return nvml;
  auto smi = OpenNvidiaSmiMonitor();
  if (smi.ok()) return smi;
  return absl::NotFoundError(absl::StrCat(nvml.status().message(), "; ", smi.status().message()));
}

absl::StatusOr<std::vector<v1::Gpu>> ParseNvidiaSmiCsv(absl::string_view text) {
  std::vector<v1::Gpu> gpus;
  std::set<int> seen;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    if (fields.size() != 6) {
      return absl::InvalidArgumentError(absl::StrCat("nvidia-smi line ", line_number,
                                                     ": expected 6 fields, got ", fields.size(),
                                                     ": \"", line, "\""));
    }
    int index = 0;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(fields[0]), &index) || index < 0 ||
        index > 1023 || !seen.insert(index).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("nvidia-smi line ", line_number, ": bad GPU index \"", fields[0], "\""));
    }
    v1::Gpu gpu;
    gpu.set_index(index);
    gpu.set_uuid(std::string(absl::StripAsciiWhitespace(fields[1])));
    gpu.set_name(std::string(absl::StripAsciiWhitespace(fields[2])));
    constexpr double kMiB = 1024.0 * 1024.0;
    gpu.set_memory_total_bytes(static_cast<int64_t>(ReadingOrZero(fields[3]) * kMiB));
    gpu.set_memory_used_bytes(static_cast<int64_t>(ReadingOrZero(fields[4]) * kMiB));
    gpu.set_utilization_percent(ReadingOrZero(fields[5]));
    gpus.push_back(std::move(gpu));
  }
  return gpus;
}

absl::StatusOr<std::vector<int>> ParseGpuList(absl::string_view text, absl::string_view flag) {
  std::vector<int> out;
  std::set<int> seen;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    int index = -1;
    if (!absl::SimpleAtoi(item, &index) || index < 0 || index > 1023) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": \"", item, "\" is not a GPU index (0 to 1023); use e.g. 0,1,2,3"));
    }
    if (!seen.insert(index).second) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": GPU ", index, " is named twice"));
    }
    out.push_back(index);
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, ": no GPU named"));
  return out;
}

}  // namespace sweepd::worker
