#pragma once

// sweepd's web face: the dashboard (a page and its scripts, embedded in the binary), its JSON API
// under /api/v1 (documented in docs/dashboard.md), live events by server-sent events, and
// Prometheus's /metrics. Served by cpp-httplib (Debian's libcpp-httplib-dev) on its own threads.
//
// Reads go through SweepApi and the store's read pool, as the gRPC API's do, so opening the page
// never blocks the engine thread or the store's writer; a page left open costs one thread and a
// store read per change.
//
// Who may call (the gRPC API's rules): plaintext on loopback only, where every local user may;
// with TLS (--tls-cert/--tls-key) and a token, every API call needs the token, as
// `Authorization: Bearer T` or the cookie the page's sign-in sets. Changes (POST) also need the
// header `X-Sweepd-Request: 1`, which a page of another origin cannot send without a CORS
// preflight that sweepd never grants; and on plaintext loopback the Host header must name
// loopback, so a DNS-rebinding page cannot read the API either.
//
// Thread-safe.

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/security.h"
#include "scheduler/sweep_api.h"

namespace httplib {
class Server;
}

namespace sweepd::scheduler {

struct HttpOptions {
  // host:port; port 0 picks a free one.
  std::string listen = "127.0.0.1:7778";
  // cert and key: HTTPS (needed off loopback). ca is not used: browsers have no agent certs.
  TlsFiles tls;
  std::string token;
};

class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpOptions& options,
                                                           SweepApi* api);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // "http://127.0.0.1:7778/" (https with TLS), with the port chosen.
  const std::string& url() const { return url_; }
  // Ends live streams and stops serving; waits for the server thread.
  void Shutdown();

 private:
  HttpServer(const HttpOptions& options, SweepApi* api);
  void Route();

  const HttpOptions options_;
  SweepApi* const api_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string url_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> live_streams_{0};
};

// The text of sweepd's /metrics (Prometheus exposition format): trials by state, reports taken
// in and acknowledged, store commit latency, engine queue depth, agents by state, GPU
// utilisation, GPU-hours used and saved per live sweep.
absl::StatusOr<std::string> RenderPrometheusMetrics(SweepApi& api);

}  // namespace sweepd::scheduler
