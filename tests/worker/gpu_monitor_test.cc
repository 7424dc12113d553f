// GPU discovery: nvidia-smi's CSV, the --gpus list, and the fallbacks when NVML or nvidia-smi
// are missing (as on every CPU node).

#include "worker/gpu_monitor.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace sweepd::worker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ParseNvidiaSmiCsvTest, ReadsEveryField) {
  auto gpus = ParseNvidiaSmiCsv(
      "0, GPU-1f2e, NVIDIA H200, 143771, 1024, 37\n"
      "1, GPU-3c4d, NVIDIA H200, 143771, [N/A], [N/A]\n");
  ASSERT_TRUE(gpus.ok()) << gpus.status();
  ASSERT_EQ(gpus->size(), 2u);
  EXPECT_EQ((*gpus)[0].index(), 0);
  EXPECT_EQ((*gpus)[0].uuid(), "GPU-1f2e");
  EXPECT_EQ((*gpus)[0].name(), "NVIDIA H200");
  EXPECT_EQ((*gpus)[0].memory_total_bytes(), 143771LL * 1024 * 1024);
  EXPECT_EQ((*gpus)[0].memory_used_bytes(), 1024LL * 1024 * 1024);
  EXPECT_EQ((*gpus)[0].utilization_percent(), 37);
  EXPECT_EQ((*gpus)[1].memory_used_bytes(), 0) << "[N/A] reads as 0";
  EXPECT_EQ((*gpus)[1].utilization_percent(), 0);
}

TEST(ParseNvidiaSmiCsvTest, RejectsMalformedLinesNamingThem) {
  auto short_line = ParseNvidiaSmiCsv("0, GPU-1, H200\n");
  EXPECT_THAT(short_line.status().message(), HasSubstr("line 1: expected 6 fields, got 3"));
  auto bad_index = ParseNvidiaSmiCsv("x, GPU-1, H200, 1, 1, 1\n");
  EXPECT_THAT(bad_index.status().message(), HasSubstr("bad GPU index"));
  auto twice = ParseNvidiaSmiCsv("0, a, H200, 1, 1, 1\n0, b, H200, 1, 1, 1\n");
  EXPECT_THAT(twice.status().message(), HasSubstr("line 2: bad GPU index"));
  auto empty = ParseNvidiaSmiCsv("\n");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(ParseGpuListTest, AcceptsDistinctIndices) {
  auto list = ParseGpuList("0, 1,3", "--gpus");
  ASSERT_TRUE(list.ok());
  EXPECT_THAT(*list, ElementsAre(0, 1, 3));
  EXPECT_THAT(ParseGpuList("0,0", "--gpus").status().message(),
              HasSubstr("--gpus: GPU 0 is named twice"));
  EXPECT_THAT(ParseGpuList("a", "--gpus").status().message(),
              HasSubstr("--gpus: \"a\" is not a GPU index"));
  EXPECT_THAT(ParseGpuList("-1", "--gpus").status().message(), HasSubstr("not a GPU index"));
  EXPECT_THAT(ParseGpuList("", "--gpus").status().message(), HasSubstr("not a GPU index"));
}

TEST(GpuMonitorTest, MissingNvmlAndNvidiaSmiAreNotFound) {
  auto nvml = OpenNvmlMonitor("libnvidia-ml-does-not-exist.so.1");
  EXPECT_EQ(nvml.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(nvml.status().message(), HasSubstr("cannot load"));
  auto smi = OpenNvidiaSmiMonitor("/nonexistent/nvidia-smi");
  EXPECT_EQ(smi.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(OpenGpuMonitor("cuda").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(GpuMonitorTest, NvidiaSmiMonitorRunsTheBinary) {
  char dir_template[] = "/tmp/sweepd-smi-XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string path = dir + "/nvidia-smi";
  std::ofstream(path) << "#!/bin/sh\necho '3, GPU-9, NVIDIA A100, 40960, 512, 88'\n";
  chmod(path.c_str(), 0755);
  auto monitor = OpenNvidiaSmiMonitor(path);
  ASSERT_TRUE(monitor.ok()) << monitor.status();
  EXPECT_EQ((*monitor)->Source(), "nvidia-smi");
  auto gpus = (*monitor)->Read();
  ASSERT_TRUE(gpus.ok());
  ASSERT_EQ(gpus->size(), 1u);
  EXPECT_EQ((*gpus)[0].index(), 3);
  EXPECT_EQ((*gpus)[0].utilization_percent(), 88);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sweepd::worker
