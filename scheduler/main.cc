// sweepd: the scheduler daemon.

#include <signal.h>

#include <cstdio>
#include <fstream>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/daemon.h"
#include "common/flag_names.h"
#include "common/logging.h"
#include "scheduler/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:7777",
          "host:port to serve on; loopback by default (port 0 picks a free one)");
ABSL_FLAG(std::string, db, "sweepd.db", "the SQLite store");
ABSL_FLAG(std::string, log_level, "info", "trace, debug, info, warn, error");
ABSL_FLAG(int, stop_grace, 30,
          "seconds between telling a trial to stop and SIGTERM, and SIGTERM and SIGKILL");
ABSL_FLAG(std::string, synchronous, "full",
          "full (acknowledged writes survive power loss) or normal (they survive crashes)");
ABSL_FLAG(double, agent_timeout, 30,
          "seconds an agent may be silent or away before its trials are lost and requeued");
ABSL_FLAG(double, reattach_window, 600,
          "seconds after a restart that running trials wait for their agents to reattach them");
ABSL_FLAG(std::string, tls_cert, "", "PEM certificate chain: serve TLS (needed off loopback)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA whose client certificates agents must present (mutual TLS; the certificate's "
          "common name is the agent id)");
ABSL_FLAG(std::string, token_file, "",
          "file holding the API token clients must send (default $SWEEPD_TOKEN; TLS only)");
ABSL_FLAG(std::string, address_file, "", "write the address served on to this file once ready");
ABSL_FLAG(std::string, http, "auto",
          "host:port of the web dashboard and Prometheus /metrics; auto: --listen's host and "
          "port + 1 (a free port when --listen's is 0); off: none. Off loopback it needs "
          "--tls-cert and --tls-key, and the token when one is set");
ABSL_FLAG(std::string, dashboard_url_file, "", "write the dashboard's URL to this file once ready");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the sweepd scheduler daemon.\nUsage: sweepd [--listen HOST:PORT] [--db PATH]");
  sweepd::ShowOwnFlagsInHelp();
  sweepd::NormalizeFlagNames(argc, argv);
  absl::ParseCommandLine(argc, argv);
  sweepd::SetUpDaemonLogging(absl::GetFlag(FLAGS_log_level));

  // The main thread waits for the shutdown signals below.
  sigset_t signals = sweepd::BlockShutdownSignals();

  const std::string sync = absl::GetFlag(FLAGS_synchronous);
  if (sync != "full" && sync != "normal") {
    std::cerr << "sweepd: --synchronous: '" << sync << "' is not allowed; full or normal\n";
    return 2;
  }
  for (auto [name, value] : {std::pair{"agent_timeout", absl::GetFlag(FLAGS_agent_timeout)},
                             std::pair{"reattach_window", absl::GetFlag(FLAGS_reattach_window)}}) {
    if (!(value > 0 && value <= 7 * 24 * 3600)) {
      std::cerr << "sweepd: --" << name << ": must be > 0 and at most a week (604800 s); got "
                << value << "\n";
      return 2;
    }
  }
  if (absl::GetFlag(FLAGS_stop_grace) < 0 || absl::GetFlag(FLAGS_stop_grace) > 3600) {
    std::cerr << "sweepd: --stop_grace: must be 0 to 3600 seconds\n";
    return 2;
  }
  sweepd::scheduler::ServerOptions options{
      .listen = absl::GetFlag(FLAGS_listen),
      .db_path = absl::GetFlag(FLAGS_db),
      .synchronous =
          sync == "full" ? sweepd::store::Synchronous::kFull : sweepd::store::Synchronous::kNormal,
      .engine = {.stop_grace_seconds = absl::GetFlag(FLAGS_stop_grace),
                 .agent_timeout_seconds = absl::GetFlag(FLAGS_agent_timeout),
                 .reattach_seconds = absl::GetFlag(FLAGS_reattach_window)},
      .tls = {.cert = absl::GetFlag(FLAGS_tls_cert),
              .key = absl::GetFlag(FLAGS_tls_key),
              .ca = absl::GetFlag(FLAGS_tls_ca)}};
  auto token = sweepd::LoadToken(absl::GetFlag(FLAGS_token_file));
  if (!token.ok()) {
    std::cerr << "sweepd: " << token.status().message() << "\n";
    return 2;
  }
  options.token = *token;
  if (const std::string http = absl::GetFlag(FLAGS_http); http == "auto") {
    const size_t colon = options.listen.rfind(':');
    int port = 0;
    if (colon != std::string::npos && absl::SimpleAtoi(options.listen.substr(colon + 1), &port)) {
      options.http_listen = absl::StrCat(options.listen.substr(0, colon), ":",
                                         port == 0 || port == 65535 ? 0 : port + 1);
      options.http_optional = true;
    }
  } else if (http != "off" && !http.empty()) {
    options.http_listen = http;
  }
  auto server = sweepd::scheduler::SchedulerServer::Start(options);
  if (!server.ok()) {
    std::cerr << "sweepd: " << server.status().message() << "\n";
    return 1;
  }
  if (options.tls.enabled()) {
    spdlog::info("sweepd listening on {} with TLS (store {}); agents {}; API calls {}",
                 (*server)->address(), options.db_path,
                 options.tls.ca.empty() ? "need the token" : "need a certificate from --tls-ca",
                 options.token.empty() ? "need no token (set SWEEPD_TOKEN or --token-file)"
                                       : "need the token");
  } else {
    spdlog::info(
        "sweepd listening on {} (store {}), plaintext: loopback only; give --tls-cert "
        "and --tls-key to serve other hosts",
        (*server)->address(), options.db_path);
  }
  if (!(*server)->dashboard_url().empty()) {
    spdlog::info("dashboard at {} (Prometheus metrics at {}metrics)", (*server)->dashboard_url(),
                 (*server)->dashboard_url());
  }
  if (const std::string path = absl::GetFlag(FLAGS_dashboard_url_file); !path.empty()) {
    std::ofstream(path + ".tmp") << (*server)->dashboard_url() << "\n";
    std::rename((path + ".tmp").c_str(), path.c_str());
  }
  if (const std::string path = absl::GetFlag(FLAGS_address_file); !path.empty()) {
    std::ofstream(path + ".tmp") << (*server)->address() << "\n";
    std::rename((path + ".tmp").c_str(), path.c_str());
  }
  int received = 0;
  sigwait(&signals, &received);
  spdlog::info("signal {}: shutting down", received);
  (*server)->Shutdown();
  spdlog::info("sweepd stopped");
  return 0;
}
