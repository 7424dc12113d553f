#pragma once

// A test cluster of real processes on loopback: one sweepd and N sweep-agent processes, driven
// through sweepctl. For the end-to-end tests only.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/subprocess.h"

namespace sweepd::testing {

using Json = nlohmann::json;

inline std::string ReadFileText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// An int64 field of proto JSON (a string there, absent when zero).
inline int64_t Int(const Json& object, const std::string& key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return 0;
  if (it->is_string()) return std::stoll(it->get<std::string>());
  return it->get<int64_t>();
}

// Trial processes whose command line contains `marker`; the sweep-trial-shim parent of each
// trial's command is not counted (it lives exactly as long as its command).
inline int CountProcessesWith(const std::string& marker) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = ReadFileText(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    const std::string stat = ReadFileText(entry.path() / "stat");
    const bool zombie = stat.find(") Z ") != std::string::npos;
    const bool shim = cmdline.find("sweep-trial-shim") != std::string::npos;
    if (!zombie && !shim && cmdline.find(marker) != std::string::npos) ++count;
  }
  return count;
}

// Options of a test cluster's agents.
struct ClusterOptions {
  int agents = 2;
  int slots = 1;
  // Extra flags for every agent, and environment assignments (NAME=value) it starts with.
  std::vector<std::string> agent_flags;
  std::vector<std::string> agent_env;
  // Extra flags for sweepd, and environment assignments (NAME=value) it starts with.
  std::vector<std::string> sweepd_flags;
  std::vector<std::string> sweepd_env;
  // sweepd's --stop_grace: seconds from "stop" (said through report()) to SIGTERM, and from
  // SIGTERM to SIGKILL. Tests that check a script heard "stop" need more than the default, or
  // a script slow to reach its next report() under load is killed first.
  int sweepd_stop_grace = 1;
  // Extra flags for every sweepctl call (e.g. --tls-ca).
  std::vector<std::string> sweepctl_flags;
  // Agent i presents DIR/agent-i.pem and .key (mutual TLS) when set.
  std::string agent_cert_dir;
  // The agents' code dir (default: the test scripts).
  std::string code_dir;
  // Each agent appends its acknowledgements to DIR/ack-I.log (--ack-log).
  bool agent_ack_logs = false;
};

class Cluster {
 public:
  explicit Cluster(int agents = 2, int slots = 1)
      : Cluster(ClusterOptions{.agents = agents, .slots = slots}) {}

  explicit Cluster(ClusterOptions options) : options_(std::move(options)) {
    const int agents = options_.agents;
    std::string pattern = (std::filesystem::temp_directory_path() / "sweepd-e2e-XXXXXX").string();
    dir_ = mkdtemp(pattern.data());
    StartSweepd("127.0.0.1:0");
    for (int i = 0; i < agents; ++i) agents_.push_back(StartAgent(i));
    EXPECT_TRUE(agents == 0 || WaitFor(
                                   [&] {
                                     auto r = Sweepctl({"agents", "--output", "json"});
                                     return r.exit_code == 0 &&
                                            Json::parse(r.out, nullptr, false).size() ==
                                                static_cast<size_t>(agents);
                                   },
                                   60000));
  }

  ~Cluster() {
    // Bounded: a daemon that ignores SIGTERM fails the test by name, instead of hanging it
    // until ctest's timeout says nothing about why.
    for (int pid : agents_) {
      if (pid > 0) kill(pid, SIGTERM);
    }
    for (size_t i = 0; i < agents_.size(); ++i) {
      const int pid = agents_[i];
      if (pid <= 0) continue;
      const bool exited = WaitFor([&] { return waitpid(pid, nullptr, WNOHANG) == pid; }, 60000);
      EXPECT_TRUE(exited) << "agent " << i << " did not exit within 60 s of SIGTERM\n" << Logs();
      if (!exited) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
    if (sweepd_ > 0) {
      const int status = StopSweepd(SIGTERM, 60000);
      EXPECT_TRUE(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
          << "sweepd did not exit cleanly within 60 s of SIGTERM (wait status " << status << ")";
    }
    std::filesystem::remove_all(dir_);
  }

  ProcessResult Sweepctl(std::vector<std::string> args) {
    args.insert(args.begin(), BinaryPath("cli/sweepctl"));
    args.push_back("--scheduler=" + address_);
    for (const auto& f : options_.sweepctl_flags) args.push_back(f);
    return RunProcess(args);
  }

  // Writes a spec into the cluster's folder and submits it; returns the sweep id.
  std::string Submit(const std::string& yaml, bool paused = false, bool external = false) {
    const std::string path = dir_ + "/spec-" + std::to_string(specs_++) + ".yaml";
    std::ofstream(path) << yaml;
    std::vector<std::string> args = {"submit", path};
    if (paused) args.push_back("--paused");
    if (external) args.push_back("--external");
    auto r = Sweepctl(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::string id = r.out;
    while (!id.empty() && id.back() == '\n') id.pop_back();
    return id;
  }

  Json Status(const std::string& sweep) {
    auto r = Sweepctl({"status", sweep, "--output", "json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return Json::parse(r.out, nullptr, false);
  }

  // `sweepctl trials SWEEP --output json`: the trials, newest first (up to 1,000).
  std::vector<Json> Trials(const std::string& sweep) {
    auto r = Sweepctl({"trials", sweep, "--output", "json", "--limit", "1000"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    Json doc = Json::parse(r.out, nullptr, false);
    return doc.contains("trials") ? doc["trials"].get<std::vector<Json>>() : std::vector<Json>{};
  }

  bool WaitForState(const std::string& sweep, const std::string& state, int timeout_ms = 60000) {
    return WaitFor([&] { return Status(sweep).value("state", "") == state; }, timeout_ms);
  }

  // Starts sweepd on `listen` (again: on the address it had) and waits until it serves.
  void StartSweepd(const std::string& listen) {
    const std::string address_file = dir_ + "/address";
    std::filesystem::remove(address_file);
    std::vector<std::string> argv;
    if (!options_.sweepd_env.empty()) {
      argv.push_back("/usr/bin/env");
      for (const auto& e : options_.sweepd_env) argv.push_back(e);
    }
    for (const std::string& a : {BinaryPath("scheduler/sweepd"), "--listen=" + listen,
                                 "--db=" + db(), "--address_file=" + address_file,
                                 "--stop_grace=" + std::to_string(options_.sweepd_stop_grace)}) {
      argv.push_back(a);
    }
    for (const auto& f : options_.sweepd_flags) argv.push_back(f);
    sweepd_ = SpawnProcess(argv, dir_ + "/sweepd.log");
    EXPECT_GT(sweepd_, 0);
    EXPECT_TRUE(WaitFor(
        [&] {
          return std::filesystem::exists(address_file) &&
                 std::filesystem::file_size(address_file) > 0;
        },
        60000))
        << ReadFileText(dir_ + "/sweepd.log");
    std::ifstream(address_file) >> address_;
  }

  // Kills sweepd with `sig` and reaps it (SIGKILL: a crash).
  void KillSweepd(int sig) {
    if (sweepd_ <= 0) return;
    kill(sweepd_, sig);
    waitpid(sweepd_, nullptr, 0);
    sweepd_ = -1;
  }

  // Signals sweepd and waits (at most timeout_ms) for it to exit; its wait status, or -1.
  int StopSweepd(int sig, int timeout_ms) {
    if (sweepd_ <= 0) return -1;
    kill(sweepd_, sig);
    int status = -1;
    const int pid = sweepd_;
    if (!WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout_ms)) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      status = -1;
    }
    sweepd_ = -1;
    return status;
  }

  // A crash and a restart on the same address and store.
  void RestartSweepd() {
    KillSweepd(SIGKILL);
    StartSweepd(address_);
  }

  const std::string& address() const { return address_; }

  // Starts agent `i` (again): agent-i, its own workdir work-i, the test scripts as code dir.
  int StartAgent(int i) {
    std::vector<std::string> argv;
    if (!options_.agent_env.empty()) {
      argv.push_back("/usr/bin/env");
      for (const auto& e : options_.agent_env) argv.push_back(e);
    }
    for (const std::string& a :
         {BinaryPath("worker/sweep-agent"), "--scheduler=" + address_,
          "--slots=" + std::to_string(options_.slots), "--agent_id=agent-" + std::to_string(i),
          "--workdir=" + dir_ + "/work-" + std::to_string(i),
          std::string("--advertise_address=127.0.0.1"),
          "--code_dir=" + (options_.code_dir.empty() ? SourcePath("tests/integration/scripts")
                                                     : options_.code_dir)}) {
      argv.push_back(a);
    }
    for (const auto& f : options_.agent_flags) argv.push_back(f);
    if (!options_.agent_cert_dir.empty()) {
      const std::string base = options_.agent_cert_dir + "/agent-" + std::to_string(i);
      argv.push_back("--tls_cert=" + base + ".pem");
      argv.push_back("--tls_key=" + base + ".key");
    }
    if (options_.agent_ack_logs) {
      argv.push_back("--ack_log=" + dir_ + "/ack-" + std::to_string(i) + ".log");
    }
    const int pid = SpawnProcess(argv, dir_ + "/agent-" + std::to_string(i) + ".log");
    // A failed start must not pass for an agent that is merely slow (RestartAgent's callers
    // then wait out their whole timeout for nothing).
    EXPECT_GT(pid, 0) << "cannot start " << argv[0];
    return pid;
  }

  // Kills agent `i` with `sig` and reaps it.
  void KillAgent(int i, int sig) {
    const int pid = agents_[static_cast<size_t>(i)];
    if (pid <= 0) return;
    kill(pid, sig);
    waitpid(pid, nullptr, 0);
    agents_[static_cast<size_t>(i)] = -1;
  }

  void SignalAgent(int i, int sig) { kill(agents_[static_cast<size_t>(i)], sig); }
  void SignalSweepd(int sig) { kill(sweepd_, sig); }

  // Waits for agent `i` to exit by itself and returns its wait status (-1 on timeout).
  int WaitAgentExit(int i, int timeout_ms) {
    const int pid = agents_[static_cast<size_t>(i)];
    int status = -1;
    const bool exited = WaitFor([&] { return waitpid(pid, &status, WNOHANG) == pid; }, timeout_ms);
    if (!exited) return -1;
    agents_[static_cast<size_t>(i)] = -1;
    return status;
  }

  void RestartAgent(int i) { agents_[static_cast<size_t>(i)] = StartAgent(i); }

  // The agents' list as sweepctl prints it in JSON.
  Json Agents() {
    auto r = Sweepctl({"agents", "--output", "json", "--all"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return Json::parse(r.out, nullptr, false);
  }

  std::string db() const { return dir_ + "/sweepd.db"; }
  const std::string& dir() const { return dir_; }
  std::string Logs() {
    std::string logs = ReadFileText(dir_ + "/sweepd.log");
    for (int i = 0; i < options_.agents; ++i) {
      logs += ReadFileText(dir_ + "/agent-" + std::to_string(i) + ".log");
    }
    return logs;
  }

 private:
  ClusterOptions options_;
  std::string dir_;
  std::string address_;
  int sweepd_ = -1;
  std::vector<int> agents_;
  int specs_ = 0;
};

}  // namespace sweepd::testing
