#pragma once

// A whole scheduler in one object: the store, the engine and the gRPC server. `sweepd` runs one;
// `sweepctl run` embeds one next to an agent. Thread-safe.

#include <grpcpp/grpcpp.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/file_lock.h"
#include "common/security.h"
#include "scheduler/engine.h"
#include "scheduler/grpc_services.h"
#include "scheduler/http_server.h"
#include "store/store.h"

namespace sweepd::scheduler {

struct ServerOptions {
  // host:port; port 0 picks a free one (see SchedulerServer::address()).
  std::string listen = "127.0.0.1:7777";
  std::string db_path = "sweepd.db";
  store::Synchronous synchronous = store::Synchronous::kFull;
  EngineOptions engine;
  // TLS (all empty: plaintext, allowed on loopback only) and the API token (may be empty).
  TlsFiles tls;
  std::string token;
  // The dashboard and /metrics (http_server.h): host:port, or empty for none. Same TLS files
  // and token as the gRPC API.
  std::string http_listen;
  // true: a dashboard that cannot listen (its port is taken) is logged and left off, and sweepd
  // serves on without it (sweepd --http auto); false: it is an error.
  bool http_optional = false;
};

// `listen` must be HOST:PORT or [IPV6]:PORT with a port of 0 to 65535; errors name `flag`.
absl::Status CheckListenAddress(absl::string_view listen, absl::string_view flag);

class SchedulerServer {
 public:
  static absl::StatusOr<std::unique_ptr<SchedulerServer>> Start(const ServerOptions& options);
  ~SchedulerServer();

  // The address clients and agents dial, with the chosen port.
  const std::string& address() const { return address_; }
  // The dashboard's URL ("http://127.0.0.1:7778/"), or empty when it is off.
  std::string dashboard_url() const { return http_ ? http_->url() : ""; }
  // Stops handing out work, ends every stream, waits up to `grace_ms` for calls in flight, then
  // flushes the store.
  void Shutdown(int grace_ms = 2000);

  Engine& engine() { return *engine_; }
  store::Store& store() { return *store_; }

 private:
  SchedulerServer() = default;

  // One scheduler per store file: held from before the store opens until after it closes.
  std::optional<FileLock> store_lock_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<SweepServiceImpl> sweep_service_;
  std::unique_ptr<AgentServiceImpl> agent_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<SweepApi> http_api_;
  std::unique_ptr<HttpServer> http_;
  std::string address_;
  bool shut_down_ = false;
};

}  // namespace sweepd::scheduler
