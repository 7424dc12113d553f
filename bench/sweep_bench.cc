// End-to-end scheduler benchmark: a real sweepd process (durable store), and in this process
// simulated agents that speak the agent protocol (no trial processes). Prints acknowledged
// reports/s, sweepd's CPU-seconds per 100k reports, dispatch latency (a slot frees -> the next
// Assign arrives) and stop latency (cancel decided -> Stop arrives at the agent). Not a test.
//
// With --dashboard-pages N, N browsers (Debian's Chromium through tests/dashboard/browse.js)
// keep the sweep's dashboard open and live while the reports flow, and print how responsive
// the page stayed (gaps between its animation frames): run it with 0 and with N side by side.
// On a small machine the browser competes with sweepd for the CPUs; --dashboard-pollers N makes
// the requests a live page makes (its event stream, the sweep every second, running trials and
// their curves every 3 s) from this process instead, which measures what a page costs sweepd
// when the browser runs on the user's own machine.
//
// Usage: sweep_bench [--agents 64] [--slots 16] [--seconds 5] [--reports-per-batch 16]
//                    [--dir bench-data] [--sweepd PATH] [--dashboard-pages 0]
//                    [--dashboard-pollers 0]

#include <grpcpp/grpcpp.h>
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sweepd/v1/agent_service.grpc.pb.h"
#include "sweepd/v1/sweep_service.grpc.pb.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using namespace sweepd;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

enum class Phase { kReports, kDispatch, kStop, kDone };

struct Shared {
  std::atomic<Phase> phase{Phase::kReports};
  std::atomic<int64_t> acked_reports{0};
  Clock::time_point cancel_at;
  std::mutex mu;
  std::vector<double> dispatch_ms;
  std::vector<double> stop_ms;
};

class SimulatedAgent {
 public:
  SimulatedAgent(std::shared_ptr<grpc::Channel> channel, int index, int slots, int per_batch,
                 Shared* shared)
      : stub_(v1::AgentService::NewStub(channel)),
        index_(index),
        slots_(slots),
        per_batch_(per_batch),
        shared_(shared) {}

  void Start() {
    stream_ = stub_->Connect(&context_);
    v1::AgentMessage hello;
    auto* reg = hello.mutable_register_();
    reg->set_agent_id("bench-" + std::to_string(index_));
    reg->set_hostname("bench");
    for (int i = 0; i < slots_; ++i) reg->add_gpus()->set_index(i);
    Write(hello);
    reader_ = std::thread([this] { ReadLoop(); });
  }

  // Sends report batches for every trial it runs, a few in flight per trial.
  void ReportLoop() {
    while (shared_->phase == Phase::kReports) {
      std::vector<std::string> trials;
      {
        std::lock_guard<std::mutex> lock(mu_);
        for (auto& [id, t] : trials_) {
          if (t.in_flight < 4) trials.push_back(id);
        }
      }
      if (trials.empty()) {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait_for(lock, std::chrono::milliseconds(5));
        continue;
      }
      for (const auto& id : trials) {
        v1::AgentMessage message;
        auto* batch = message.mutable_metric_batch();
        batch->set_trial_id(id);
        {
          std::lock_guard<std::mutex> lock(mu_);
          auto& t = trials_[id];
          batch->set_first_seq(t.next_seq);
          for (int i = 0; i < per_batch_; ++i) {
            auto* r = batch->add_reports();
            r->set_seq(t.next_seq + i);
            r->set_step(t.next_seq + i);
            (*r->mutable_metrics())["loss"] = 1.0 / static_cast<double>(t.next_seq + i + 1);
            (*r->mutable_metrics())["acc"] = 0.5;
          }
          t.next_seq += per_batch_;
          ++t.in_flight;
        }
        Write(message);
      }
    }
  }

  // Frees slots one at a time and times how long the next Assign takes.
  void DispatchLoop(int rounds) {
    for (int i = 0; i < rounds; ++i) {
      std::string victim;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return !trials_.empty(); });
        victim = trials_.begin()->first;
        trials_.erase(trials_.begin());
        waiting_assign_ = true;
        freed_at_ = Clock::now();
      }
      v1::AgentMessage exited;
      exited.mutable_trial_exited()->set_trial_id(victim);
      exited.mutable_trial_exited()->set_wall_seconds(1);
      Write(exited);
      std::unique_lock<std::mutex> lock(mu_);
      if (!cv_.wait_for(lock, std::chrono::seconds(10), [&] { return !waiting_assign_; })) {
        std::fprintf(stderr, "agent %d: no assign within 10 s\n", index_);
        return;
      }
    }
  }

  size_t running() {
    std::lock_guard<std::mutex> lock(mu_);
    return trials_.size();
  }

  void Finish() {
    context_.TryCancel();
    if (reader_.joinable()) reader_.join();
  }

 private:
  struct Trial {
    int64_t next_seq = 0;
    int in_flight = 0;
  };

  void Write(const v1::AgentMessage& message) {
    std::lock_guard<std::mutex> lock(write_mu_);
    stream_->Write(message);
  }

  void ReadLoop() {
    v1::SchedulerMessage message;
    while (stream_->Read(&message)) {
      if (message.has_assign()) {
        v1::AgentMessage started;
        started.mutable_trial_started()->set_trial_id(message.assign().trial_id());
        Write(started);
        std::lock_guard<std::mutex> lock(mu_);
        trials_[message.assign().trial_id()];
        if (waiting_assign_) {
          waiting_assign_ = false;
          std::lock_guard<std::mutex> shared_lock(shared_->mu);
          shared_->dispatch_ms.push_back(Ms(Clock::now() - freed_at_));
        }
        cv_.notify_all();
      } else if (message.has_ack()) {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = trials_.find(message.ack().trial_id());
        if (it != trials_.end()) {
          if (it->second.in_flight > 0) --it->second.in_flight;
          if (shared_->phase == Phase::kReports) shared_->acked_reports += per_batch_;
        }
        cv_.notify_all();
      } else if (message.has_stop() && shared_->phase == Phase::kStop) {
        {
          std::lock_guard<std::mutex> shared_lock(shared_->mu);
          shared_->stop_ms.push_back(Ms(Clock::now() - shared_->cancel_at));
        }
        v1::AgentMessage exited;
        exited.mutable_trial_exited()->set_trial_id(message.stop().trial_id());
        exited.mutable_trial_exited()->set_stopped_by_scheduler(true);
        Write(exited);
      }
    }
    stream_->Finish();
  }

  std::unique_ptr<v1::AgentService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::SchedulerMessage>> stream_;
  std::mutex write_mu_;
  std::thread reader_;
  const int index_, slots_, per_batch_;
  Shared* const shared_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Trial> trials_;
  bool waiting_assign_ = false;
  Clock::time_point freed_at_;
};

}  // namespace

int main(int argc, char** argv) {
  int agents = 64, slots = 16, per_batch = 16;
  double seconds = 5;
  int dashboard_pages = 0;
  int dashboard_pollers = 0;
  std::string dir = "bench-data";
  std::string sweepd_path =
      (std::filesystem::path(argv[0]).parent_path() / ".." / "scheduler" / "sweepd").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--agents")
      agents = std::stoi(value);
    else if (flag == "--slots")
      slots = std::stoi(value);
    else if (flag == "--seconds")
      seconds = std::stod(value);
    else if (flag == "--reports-per-batch")
      per_batch = std::stoi(value);
    else if (flag == "--dir")
      dir = value;
    else if (flag == "--sweepd")
      sweepd_path = value;
    else if (flag == "--dashboard-pages")
      dashboard_pages = std::stoi(value);
    else if (flag == "--dashboard-pollers")
      dashboard_pollers = std::stoi(value);
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  std::filesystem::create_directories(dir);
  const std::string db = dir + "/sweep_bench.db", address_file = dir + "/sweep_bench.addr";
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db + suffix);
  std::filesystem::remove(address_file);
  const std::string url_file = dir + "/sweep_bench.url";
  std::filesystem::remove(url_file);
  // The dashboard is served in both runs; --dashboard-pages decides whether anyone looks.
  std::vector<std::string> args = {sweepd_path,
                                   "--listen=127.0.0.1:0",
                                   "--db=" + db,
                                   "--address_file=" + address_file,
                                   "--log_level=warn",
                                   "--http=127.0.0.1:0",
                                   "--dashboard_url_file=" + url_file};
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, sweepd_path.c_str(), nullptr, nullptr, cargs.data(), environ) != 0) {
    std::fprintf(stderr, "cannot start %s\n", sweepd_path.c_str());
    return 1;
  }
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (!std::filesystem::exists(address_file) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::string address;
  std::ifstream(address_file) >> address;
  if (address.empty()) {
    std::fprintf(stderr, "sweepd did not start\n");
    kill(pid, SIGKILL);
    return 1;
  }
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto sweeps = v1::SweepService::NewStub(channel);
  v1::CreateSweepRequest create;
  create.set_spec_yaml(
      "program: train.py\nmethod: random\nmetric: {name: loss}\nparameters:\n"
      "  x: {min: 0.0, max: 1.0}\n");
  v1::CreateSweepResponse created;
  {
    grpc::ClientContext ctx;
    auto st = sweeps->CreateSweep(&ctx, create, &created);
    if (!st.ok()) {
      std::fprintf(stderr, "create: %s\n", st.error_message().c_str());
      kill(pid, SIGKILL);
      return 1;
    }
  }
  Shared shared;
  std::vector<std::unique_ptr<SimulatedAgent>> fleet;
  for (int i = 0; i < agents; ++i) {
    // One channel per agent, as separate nodes would have.
    auto agent_channel =
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), [i] {
          grpc::ChannelArguments a;
          a.SetInt("bench.agent", i);
          return a;
        }());
    fleet.push_back(std::make_unique<SimulatedAgent>(agent_channel, i, slots, per_batch, &shared));
    fleet.back()->Start();
  }
  // Every slot filled.
  const auto fill_deadline = Clock::now() + std::chrono::seconds(30);
  auto total_running = [&] {
    size_t n = 0;
    for (auto& a : fleet) n += a->running();
    return n;
  };
  while (total_running() < static_cast<size_t>(agents * slots) && Clock::now() < fill_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::printf("# sweep_bench: %d agents x %d slots = %zu trials running, %d reports per batch\n",
              agents, slots, total_running(), per_batch);

  // The dashboard's pages, open and live through phase 1.
  std::vector<std::thread> pages;
  std::vector<std::string> page_output(static_cast<size_t>(dashboard_pages));
  if (dashboard_pages > 0) {
    std::string url;
    std::ifstream(url_file) >> url;
    for (int i = 0; i < dashboard_pages; ++i) {
      const std::string command = std::string("node ") + SWEEPD_SOURCE_DIR +
                                  "/tests/dashboard/browse.js " + url + " '#/sweeps/" +
                                  created.sweep().id() + "' - --stay " +
                                  std::to_string(static_cast<int>(seconds) + 1) + " 2>&1";
      pages.emplace_back([command, out = &page_output[static_cast<size_t>(i)]] {
        FILE* pipe = popen(command.c_str(), "r");
        char buffer[4096];
        while (pipe && fgets(buffer, sizeof buffer, pipe)) *out += buffer;
        if (pipe) pclose(pipe);
      });
    }
    // Loaded (1,024 trials take well under this) before the reports start.
    std::this_thread::sleep_for(std::chrono::seconds(4));
  }

  std::atomic<bool> polling{true};
  std::atomic<int64_t> polls{0};  // seconds a poller ran
  if (dashboard_pollers > 0) {
    std::string url;
    std::ifstream(url_file) >> url;
    url.pop_back();  // the trailing '/'
    const std::string sweep = "/api/v1/sweeps/" + created.sweep().id();
    for (int i = 0; i < dashboard_pollers; ++i) {
      pages.emplace_back([&, url, sweep] {
        httplib::Client events(url);
        std::thread stream([&] {
          events.Get((sweep + "/events").c_str(),
                     [&](const char*, size_t) { return polling.load(); });
        });
        httplib::Client http(url);
        // As app.js: running trials every 3 s, or every 20 times what the last poll took.
        auto polled_at = Clock::now() - std::chrono::hours(1);
        double poll_ms = 0;
        while (polling.load()) {
          http.Get(sweep.c_str());
          if (Ms(Clock::now() - polled_at) >= std::max(3000.0, 20 * poll_ms)) {
            const auto t0 = Clock::now();
            http.Get((sweep + "/trials?state=running,assigned&limit=10000").c_str());
            http.Get((sweep + "/curves?state=running,assigned&limit=5000&max_points=25").c_str());
            poll_ms = Ms(Clock::now() - t0);
            polled_at = Clock::now();
          }
          polls.fetch_add(1);
          std::this_thread::sleep_for(std::chrono::seconds(1));
        }
        events.stop();
        stream.join();
      });
    }
  }

  // Phase 1: reports.
  const double cpu_before = CpuSeconds(pid);
  const auto start = Clock::now();
  std::vector<std::thread> threads;
  for (auto& a : fleet) threads.emplace_back([&a] { a->ReportLoop(); });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  shared.phase = Phase::kDispatch;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = CpuSeconds(pid) - cpu_before;
  for (auto& t : threads) t.join();
  threads.clear();
  const auto acked = static_cast<double>(shared.acked_reports.load());
  std::printf("reports_acked=%.0f reports/s=%.0f sweepd_cpu_s_per_100k_reports=%.3f\n", acked,
              acked / elapsed, acked > 0 ? cpu / acked * 100000 : 0);
  polling = false;
  for (auto& t : pages) t.join();
  if (dashboard_pollers > 0) {
    std::printf("dashboard_pollers=%d polls=%ld\n", dashboard_pollers,
                static_cast<long>(polls.load()));
  }
  for (size_t i = 0; i < page_output.size(); ++i) {
    // browse.js's JSON: the frame gaps while it stayed open, and any page errors.
    const std::string& out = page_output[i];
    auto field = [&](const std::string& key) {
      const size_t at = out.find("\"" + key + "\":");
      return at == std::string::npos
                 ? std::string("?")
                 : out.substr(at + key.size() + 3,
                              out.find_first_of(",}", at + key.size() + 3) - (at + key.size() + 3));
    };
    std::printf(
        "dashboard_page=%zu frames=%s frame_gap_p50_ms=%s frame_gap_p99_ms=%s "
        "frame_gap_max_ms=%s first_picture_ms=%s live=%s\n",
        i + 1, field("count").c_str(), field("p50Ms").c_str(), field("p99Ms").c_str(),
        field("maxMs").c_str(), field("firstPictureMs").c_str(), field("live").c_str());
  }

  // Phase 2: dispatch latency, 8 slots freed per agent, one at a time.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // let in-flight acks land
  for (auto& a : fleet) threads.emplace_back([&a] { a->DispatchLoop(8); });
  for (auto& t : threads) t.join();
  threads.clear();
  std::printf("dispatch_samples=%zu dispatch_p50_ms=%.2f dispatch_p99_ms=%.2f\n",
              shared.dispatch_ms.size(), Percentile(shared.dispatch_ms, 0.5),
              Percentile(shared.dispatch_ms, 0.99));

  // Phase 3: stop latency: cancel the sweep; every running trial gets Stop.
  shared.phase = Phase::kStop;
  shared.cancel_at = Clock::now();
  {
    v1::CancelSweepRequest cancel;
    cancel.set_sweep_id(created.sweep().id());
    v1::CancelSweepResponse canceled;
    grpc::ClientContext ctx;
    sweeps->CancelSweep(&ctx, cancel, &canceled);
  }
  const auto stop_deadline = Clock::now() + std::chrono::seconds(30);
  while (Clock::now() < stop_deadline) {
    {
      std::lock_guard<std::mutex> lock(shared.mu);
      if (shared.stop_ms.size() >= total_running()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::printf("stop_samples=%zu stop_p50_ms=%.2f stop_p99_ms=%.2f\n", shared.stop_ms.size(),
              Percentile(shared.stop_ms, 0.5), Percentile(shared.stop_ms, 0.99));
  shared.phase = Phase::kDone;
  for (auto& a : fleet) a->Finish();
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  return 0;
}
