// sweep-agent: the worker daemon on each node.

#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/daemon.h"
#include "common/flag_names.h"
#include "common/logging.h"
#include "worker/agent.h"
#include "worker/python_path.h"

ABSL_FLAG(std::string, scheduler, "",
          "sweepd's address (default $SWEEPD_ADDR, else 127.0.0.1:7777)");
ABSL_FLAG(int, slots, 1, "trials this node runs at once when it has no GPUs (CPU slots)");
ABSL_FLAG(std::string, gpus, "",
          "GPUs to offer, by CUDA index (e.g. 0,1,2,3; default: every GPU discovery finds)");
ABSL_FLAG(std::string, gpu_discovery, "auto",
          "how GPUs are found: auto (NVML, then nvidia-smi), nvml, nvidia-smi, or none");
ABSL_FLAG(std::string, advertise_address, "",
          "address other nodes reach this one at, for multi-node trials (default: the hostname)");
ABSL_FLAG(std::string, workdir, "sweepd-work",
          "this agent's own folder: trials' logs and state in WORKDIR/<sweep>/<trial>/, and its "
          "identity; one agent per workdir (a second one is refused)");
ABSL_FLAG(std::string, code_dir, ".", "folder `program` resolves against");
ABSL_FLAG(std::string, agent_id, "",
          "name of this agent, unique among sweepd's agents (default: <host>-<hash of the "
          "workdir>, kept in the workdir so restarts keep it)");
ABSL_FLAG(std::string, interpreter, "",
          "what ${interpreter} expands to (default $SWEEPD_PYTHON, else python3)");
ABSL_FLAG(std::string, python_path, "",
          "folder with the sweepd Python package, put on trials' PYTHONPATH (default: the one "
          "shipped with this binary)");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error");
ABSL_FLAG(std::string, tls_ca, "", "PEM CA that signed sweepd's certificate: connect with TLS");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate of this agent (common name = its agent id), for mutual TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(int64_t, max_log_mb, 1024, "MiB of each trial's stdout kept in its stdout.log");
ABSL_FLAG(int64_t, max_buffered_reports, 10000,
          "unacknowledged reports kept in memory per trial; more wait in a file in its workdir");
ABSL_FLAG(int64_t, max_spill_mb, 1024,
          "MiB of unacknowledged reports kept on disk per trial (past it, new ones are dropped)");
ABSL_FLAG(bool, drain, false,
          "on SIGTERM/SIGINT, let running trials finish (no new ones), then deregister and exit; "
          "without it they are stopped and sweepd retries them elsewhere. A second signal stops "
          "them at once");
ABSL_FLAG(double, drain_timeout, 0,
          "with --drain: stop the trials still running after this many seconds (0: no limit)");
ABSL_FLAG(int, stop_grace, 10,
          "seconds a trial stopped by the agent's shutdown has between SIGTERM and SIGKILL");
ABSL_FLAG(bool, trial_cgroups, true,
          "run each trial in a cgroup (v2) of its own where the agent can create them, so it ends "
          "with every process it started and its CPU time and peak memory are logged; "
          "--notrial-cgroups: never (the agent then kills what trials leave behind as their "
          "subreaper)");
ABSL_FLAG(std::string, ack_log, "",
          "append each metrics acknowledgement (trial first_seq acked_seq) to this file");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the sweepd worker daemon.\nUsage: sweep-agent --scheduler HOST:PORT [--gpus 0,1 | --slots "
      "N]");
  sweepd::ShowOwnFlagsInHelp();
  sweepd::NormalizeFlagNames(argc, argv);
  absl::ParseCommandLine(argc, argv);
  sweepd::SetUpDaemonLogging(absl::GetFlag(FLAGS_log_level));
  sigset_t signals = sweepd::BlockShutdownSignals();

  sweepd::worker::AgentOptions options;
  options.scheduler = absl::GetFlag(FLAGS_scheduler);
  if (options.scheduler.empty()) {
    const char* env = std::getenv("SWEEPD_ADDR");
    options.scheduler = env != nullptr && *env != '\0' ? env : "127.0.0.1:7777";
  }
  options.slots = absl::GetFlag(FLAGS_slots);
  options.gpus = absl::GetFlag(FLAGS_gpus);
  options.gpu_discovery = absl::GetFlag(FLAGS_gpu_discovery);
  options.advertise_address = absl::GetFlag(FLAGS_advertise_address);
  options.workdir = absl::GetFlag(FLAGS_workdir);
  options.code_dir = absl::GetFlag(FLAGS_code_dir);
  options.agent_id = absl::GetFlag(FLAGS_agent_id);
  options.interpreter = absl::GetFlag(FLAGS_interpreter);
  if (options.interpreter.empty()) {
    const char* env = std::getenv("SWEEPD_PYTHON");
    options.interpreter = env != nullptr && *env != '\0' ? env : "python3";
  }
  options.python_path = absl::GetFlag(FLAGS_python_path);
  options.ack_log = absl::GetFlag(FLAGS_ack_log);
  options.tls = {.cert = absl::GetFlag(FLAGS_tls_cert),
                 .key = absl::GetFlag(FLAGS_tls_key),
                 .ca = absl::GetFlag(FLAGS_tls_ca)};
  if (const char* token = std::getenv("SWEEPD_TOKEN"); token != nullptr) options.token = token;
  if (absl::GetFlag(FLAGS_max_log_mb) < 1 || absl::GetFlag(FLAGS_max_log_mb) > (1 << 20)) {
    std::cerr << "sweep-agent: --max-log-mb: must be 1 to 1048576; got "
              << absl::GetFlag(FLAGS_max_log_mb) << "\n";
    return 2;
  }
  options.max_log_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_max_log_mb)) << 20;
  if (absl::GetFlag(FLAGS_max_buffered_reports) < 1 ||
      absl::GetFlag(FLAGS_max_buffered_reports) > 100'000'000) {
    std::cerr << "sweep-agent: --max-buffered-reports: must be 1 to 100000000; got "
              << absl::GetFlag(FLAGS_max_buffered_reports) << "\n";
    return 2;
  }
  options.max_buffered_reports = static_cast<size_t>(absl::GetFlag(FLAGS_max_buffered_reports));
  if (absl::GetFlag(FLAGS_max_spill_mb) < 0 || absl::GetFlag(FLAGS_max_spill_mb) > (1 << 20)) {
    std::cerr << "sweep-agent: --max-spill-mb: must be 0 to 1048576; got "
              << absl::GetFlag(FLAGS_max_spill_mb) << "\n";
    return 2;
  }
  options.max_spill_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_max_spill_mb)) << 20;
  if (options.python_path.empty()) options.python_path = sweepd::worker::DefaultPythonPath();
  options.trial_shim = sweepd::worker::DefaultTrialShim();
  if (options.trial_shim.empty()) {
    spdlog::warn(
        "sweep-trial-shim is not next to sweep-agent: trials run without it and die "
        "if the agent crashes");
  }
  options.drain = absl::GetFlag(FLAGS_drain);
  options.drain_timeout_seconds = absl::GetFlag(FLAGS_drain_timeout);
  if (!(options.drain_timeout_seconds >= 0 && options.drain_timeout_seconds <= 30 * 24 * 3600)) {
    std::cerr << "sweep-agent: --drain-timeout: must be 0 (no limit) to 2592000 seconds; got "
              << options.drain_timeout_seconds << "\n";
    return 2;
  }
  options.stop_grace_seconds = absl::GetFlag(FLAGS_stop_grace);
  options.trial_cgroups = absl::GetFlag(FLAGS_trial_cgroups);
  if (options.stop_grace_seconds < 0 || options.stop_grace_seconds > 3600) {
    std::cerr << "sweep-agent: --stop-grace: must be 0 to 3600 seconds; got "
              << options.stop_grace_seconds << "\n";
    return 2;
  }

  sweepd::worker::Agent agent(options);
  std::thread signal_waiter([&] {
    int received = 0;
    sigwait(&signals, &received);
    spdlog::info("signal {}: leaving ({}); a second signal stops at once", received,
                 options.drain ? "running trials may finish" : "running trials are stopped");
    agent.Leave();
    sigwait(&signals, &received);
    spdlog::info("signal {} again: stopping now; trials are killed", received);
    agent.Stop();
  });
  signal_waiter.detach();
  if (auto st = agent.Run(); !st.ok()) {
    std::cerr << "sweep-agent: " << st.message() << "\n";
    return 1;
  }
  return 0;
}
