// Dashboard benchmark: a sweep of --trials trials x --reports reports each (10,000 x 100 by
// default: a million stored reports) in a real store, served by a real sweepd process; then
//   - server-side latency of the API calls the page makes (trials in pages of 5,000, curves in
//     pages of 1,000 downsampled to 100 points, parameter importance), p50/p99 and bytes;
//   - Debian's Chromium (tests/dashboard/browse.js) opening the sweep's page --pages times:
//     milliseconds to the first picture (first page of trials drawn), all trials loaded, and
//     every curve drawn.
// Prints figures; not a test. Usage:
//   dashboard_bench [--trials 10000] [--reports 100] [--pages 3] [--dir bench-data]
//                   [--sweepd PATH]

#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/spec_parser.h"
#include "store/store.h"

extern char** environ;

namespace sweepd::store {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

void Check(const absl::Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, std::string(s.message()).c_str());
    std::exit(1);
  }
}

// A finished sweep: a third of its trials completed after `reports` reports, the rest pruned
// after 10 to `reports` (as Hyperband's rungs cut them), with three parameters and GPU time.
void Fill(const std::string& path, int trials, int reports) {
  auto store = Store::Open({.path = path, .synchronous = Synchronous::kNormal});
  Check(store.status(), "open");
  NewSweep sweep;
  sweep.id = 1;
  sweep.public_id = "s-dashbnch";
  sweep.spec_yaml =
      "name: dashboard-bench\nmethod: random\ncommand: [run]\nmetric: {name: loss}\n"
      "parameters:\n  lr: {min: 0.0001, max: 1.0, distribution: log_uniform_values}\n"
      "  width: {values: [64, 128, 256, 512]}\n  optimizer: {values: [sgd, adam]}\n";
  sweep.spec = ParseSweepSpec(sweep.spec_yaml)->spec;
  sweep.created_us = 1'700'000'000'000'000;
  Check(Store::Wait([&](WriteDone d) { (*store)->CreateSweep(sweep, std::move(d)); }), "sweep");
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<std::future<absl::Status>> pending;
  const char* widths[] = {"64", "128", "256", "512"};
  for (int t = 0; t < trials; ++t) {
    NewTrial trial;
    trial.id = t + 1;
    trial.sweep_id = 1;
    trial.number = t;
    trial.public_id = "s-dashbnch-" + std::to_string(t);
    const double lr = std::pow(10.0, -4 + 4 * u(rng));
    trial.params_json = "{\"lr\":" + std::to_string(lr) + ",\"width\":" + widths[rng() % 4] +
                        ",\"optimizer\":\"" + (rng() % 2 ? "adam" : "sgd") + "\"}";
    trial.state = v1::TRIAL_STATE_RUNNING;
    trial.created_us = sweep.created_us + t * 1'000'000LL;
    (*store)->CreateTrial(std::move(trial), nullptr);
    const bool completed = t % 3 == 0;
    const int n = completed ? reports : 10 + static_cast<int>(rng() % (reports - 9));
    const double quality = std::abs(std::log10(lr) + 2) + 0.3 * u(rng);
    std::vector<MetricReport> batch;
    for (int i = 0; i < n; ++i) {
      batch.push_back({.seq = i,
                       .step = i,
                       .time_us = sweep.created_us + t * 1'000'000LL + i,
                       .metrics = {{"loss", quality + 2.0 / (1.0 + i) + 0.02 * u(rng)}}});
    }
    auto promise = std::make_shared<std::promise<absl::Status>>();
    pending.push_back(promise->get_future());
    (*store)->AppendMetrics(t + 1, std::move(batch),
                            [promise](absl::Status s) { promise->set_value(s); });
    TrialUpdate end{.id = t + 1,
                    .state = completed ? v1::TRIAL_STATE_COMPLETED : v1::TRIAL_STATE_PRUNED,
                    .start_us = sweep.created_us + t * 1'000'000LL,
                    .end_us = sweep.created_us + t * 1'000'000LL + n * 10'000'000LL};
    end.add_gpu_seconds = n * 10.0;
    end.add_gpu_seconds_saved = completed ? 0 : (reports - n) * 10.0;
    (*store)->UpdateTrial(std::move(end), nullptr);
    if (pending.size() > 512) {
      Check(pending.front().get(), "fill");
      pending.erase(pending.begin());
    }
  }
  for (auto& f : pending) Check(f.get(), "fill");
  Check(Store::Wait([&](WriteDone d) {
          (*store)->UpdateSweep({.id = 1, .state = v1::SWEEP_STATE_FINISHED}, std::move(d));
        }),
        "finish");
}

}  // namespace
}  // namespace sweepd::store

int main(int argc, char** argv) {
  using namespace sweepd::store;
  int trials = 10000, reports = 100, pages = 3;
  std::string dir = "bench-data";
  std::string sweepd_path =
      std::filesystem::path(argv[0]).parent_path().string() + "/../scheduler/sweepd";
  std::string source_dir = SWEEPD_SOURCE_DIR;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--trials") {
      trials = std::stoi(value);
    } else if (flag == "--reports") {
      reports = std::max(10, std::stoi(value));
    } else if (flag == "--pages") {
      pages = std::stoi(value);
    } else if (flag == "--dir") {
      dir = value;
    } else if (flag == "--sweepd") {
      sweepd_path = value;
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  std::filesystem::create_directories(dir);
  const std::string db = dir + "/dashboard_bench.db", url_file = dir + "/dashboard_bench.url";
  for (const char* suffix : {"", "-wal", "-shm", ".lock"}) std::filesystem::remove(db + suffix);
  std::filesystem::remove(url_file);
  const auto fill_start = Clock::now();
  Fill(db, trials, reports);
  std::printf("# dashboard_bench: %d trials, %d reports each for completed ones (fill %.1f s)\n",
              trials, reports, Ms(Clock::now() - fill_start) / 1000);

  std::vector<std::string> args = {sweepd_path,        "--listen=127.0.0.1:0",
                                   "--db=" + db,       "--http=127.0.0.1:0",
                                   "--log_level=warn", "--dashboard_url_file=" + url_file};
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, sweepd_path.c_str(), nullptr, nullptr, cargs.data(), environ) != 0) {
    std::fprintf(stderr, "cannot start %s\n", sweepd_path.c_str());
    return 1;
  }
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  std::string url;
  while (url.empty() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::ifstream(url_file) >> url;
  }
  if (url.empty()) {
    std::fprintf(stderr, "sweepd did not start\n");
    kill(pid, SIGKILL);
    return 1;
  }
  httplib::Client http(url.substr(0, url.size() - 1));
  http.set_read_timeout(120);
  struct Call {
    const char* name;
    std::string path;
    int repeats;
  };
  const std::vector<Call> calls = {
      {"trials_page_5000", "/api/v1/sweeps/s-dashbnch/trials?limit=5000", 10},
      {"curves_page_1000", "/api/v1/sweeps/s-dashbnch/curves?limit=1000&max_points=100", 10},
      {"importance", "/api/v1/sweeps/s-dashbnch/importance", 5},
      {"sweep", "/api/v1/sweeps/s-dashbnch", 20},
      {"metrics", "/metrics", 20}};
  for (const auto& call : calls) {
    std::vector<double> ms;
    size_t bytes = 0;
    for (int i = 0; i < call.repeats; ++i) {
      const auto t0 = Clock::now();
      auto res = http.Get(call.path.c_str());
      ms.push_back(Ms(Clock::now() - t0));
      if (!res || res->status != 200) {
        std::fprintf(stderr, "%s failed\n", call.path.c_str());
        kill(pid, SIGKILL);
        return 1;
      }
      bytes = res->body.size();
    }
    std::printf("api %-18s p50_ms=%.1f p99_ms=%.1f bytes=%zu\n", call.name, Percentile(ms, 0.5),
                Percentile(ms, 0.99), bytes);
  }
  for (int i = 0; i < pages; ++i) {
    const std::string command = "node " + source_dir + "/tests/dashboard/browse.js " + url +
                                " '#/sweeps/s-dashbnch' - 2>&1";
    FILE* out = popen(command.c_str(), "r");
    std::string text;
    char buffer[4096];
    while (out && fgets(buffer, sizeof buffer, out)) text += buffer;
    if (out) pclose(out);
    const Json shown = Json::parse(text, nullptr, false);
    if (!shown.is_object()) {
      std::fprintf(stderr, "browser: %s\n", text.c_str());
      kill(pid, SIGKILL);
      return 1;
    }
    std::printf(
        "page %d first_picture_ms=%d all_trials_ms=%d all_curves_ms=%d curves_drawn=%d "
        "errors=%zu\n",
        i + 1, shown.value("firstPictureMs", 0), shown.value("trialsLoadedMs", 0),
        shown.value("curvesLoadedMs", 0), shown["canvases"]["curves"].value("drawn", 0),
        shown["errors"].size());
  }
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  return 0;
}
