#include "scheduler/server.h"

#include <errno.h>
#include <unistd.h>

#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/logging.h"

namespace sweepd::scheduler {
namespace {

std::string NowText() {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::Now(), absl::UTCTimeZone());
}

}  // namespace

// --listen must be HOST:PORT or [IPV6]:PORT with a port of 0 to 65535. gRPC parses it leniently:
// a port over 65535 wraps (99999 serves on 34463) and a missing one means 443, so a typo would
// serve somewhere nobody looks.
absl::Status CheckListenAddress(absl::string_view listen, absl::string_view flag) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " '", listen, "': ", why,
        "; give HOST:PORT, e.g. 127.0.0.1:7777 or [::1]:7777 (port 0 picks a free one)"));
  };
  absl::string_view host, port;
  if (absl::StartsWith(listen, "[")) {
    const size_t close = listen.find(']');
    if (close == absl::string_view::npos) return bad("no ']' after the IPv6 address");
    host = listen.substr(1, close - 1);
    if (listen.substr(close + 1, 1) != ":") return bad("no port after the IPv6 address");
    port = listen.substr(close + 2);
  } else {
    const size_t colon = listen.rfind(':');
    if (colon == absl::string_view::npos) return bad("no port");
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
    if (host.find(':') != absl::string_view::npos) {
      return bad("an IPv6 address needs brackets");
    }
  }
  if (host.empty()) return bad("no host");
  int value = 0;
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != port.npos ||
      !absl::SimpleAtoi(port, &value) || value > 65535) {
    return bad("the port must be a number from 0 to 65535");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SchedulerServer>> SchedulerServer::Start(
    const ServerOptions& options) {
  std::unique_ptr<SchedulerServer> server(new SchedulerServer());
  if (auto st = CheckListenAddress(options.listen, "--listen"); !st.ok()) return st;
  // Plaintext only on loopback: tokens and trial data never cross a network unencrypted.
  if (!options.tls.enabled() && !IsLoopbackAddress(options.listen)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen ", options.listen,
        " is not a loopback address; serving other hosts needs TLS (--tls-cert, --tls-key, and "
        "--tls-ca for agent certificates; scripts/gen-certs makes a test CA)"));
  }
  auto credentials = MakeServerCredentials(options.tls, options.token);
  if (!credentials.ok()) return credentials.status();
  const SecurityPolicy security{.tls = options.tls.enabled(),
                                .token = options.token,
                                .require_agent_cert = !options.tls.ca.empty()};
  // Two schedulers on one store would both schedule from it: the second is refused, naming the
  // first. The lock lives beside the store so it also guards a store on a shared filesystem
  // opened from one host at a time.
  const std::string holder =
      absl::StrCat(program_invocation_short_name, " pid ", getpid(), " (started ", NowText(), ")");
  auto lock = FileLock::Acquire(options.db_path + ".lock", holder);
  if (!lock.ok()) {
    return absl::Status(lock.status().code(),
                        absl::StrCat("store ", options.db_path, " is ", lock.status().message(),
                                     ": stop that one first, or give this one another --db"));
  }
  if (!lock->held()) {
    spdlog::warn("cannot lock {} on this filesystem ({}): nothing stops a second sweepd on it",
                 lock->path(), lock->why_not_held());
  }
  server->store_lock_ = std::move(*lock);
  auto store = store::Store::Open({.path = options.db_path, .synchronous = options.synchronous});
  if (!store.ok()) {
    return absl::Status(store.status().code(),
                        absl::StrCat("store ", options.db_path, ": ", store.status().message()));
  }
  server->store_ = std::move(*store);
  server->engine_ = std::make_unique<Engine>(server->store_.get(), options.engine);
  if (auto st = server->engine_->Start(); !st.ok()) return st;
  server->sweep_service_ =
      std::make_unique<SweepServiceImpl>(server->engine_.get(), server->store_.get(), security);
  server->agent_service_ = std::make_unique<AgentServiceImpl>(server->engine_.get(), security);

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, *credentials, &port);
  // gRPC sets SO_REUSEPORT by default: a second sweepd on a port already served would share it
  // silently, each getting some of the connections. A port in use must be an error.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.RegisterService(server->sweep_service_.get());
  builder.RegisterService(server->agent_service_.get());
  // Keepalive ~30 s, and let agents ping that often (matching permit settings).
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10'000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.SetMaxReceiveMessageSize(4 << 20);
  // One agent stream plus a few CLI calls per connection: more is a misbehaving client.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 64);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("--listen ", options.listen,
                     ": cannot listen there (the port is in use, or the host is not an address of "
                     "this machine)"));
  }
  const std::string host = options.listen.substr(0, options.listen.rfind(':'));
  server->address_ = absl::StrCat(host, ":", port);
  if (!options.http_listen.empty()) {
    server->http_api_ = std::make_unique<SweepApi>(server->engine_.get(), server->store_.get());
    auto http = HttpServer::Start(
        {.listen = options.http_listen, .tls = options.tls, .token = options.token},
        server->http_api_.get());
    if (http.ok()) {
      server->http_ = std::move(*http);
    } else if (options.http_optional && http.status().code() == absl::StatusCode::kUnavailable) {
      spdlog::warn("no dashboard: {}; give --http HOST:PORT to serve it elsewhere",
                   http.status().message());
    } else {
      return http.status();
    }
  }
  (void)server->store_lock_->SetHolder(absl::StrCat(holder, ", serving on ", server->address_));
  return server;
}

void SchedulerServer::Shutdown(int grace_ms) {
  if (shut_down_) return;
  shut_down_ = true;
  // The engine closes the agent streams first, so Shutdown does not wait on them. Any part may
  // be missing when Start failed half way.
  // The dashboard first: its live streams wait on the engine's events.
  if (http_) http_->Shutdown();
  if (engine_) engine_->Stop();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(grace_ms));
    server_->Wait();
  }
  if (!store_) {
    store_lock_.reset();
    return;
  }
  // Bounded: with the store's disk full this would wait for ever. What is still queued then
  // was never acknowledged; the store gives it a last few seconds as it closes.
  if (auto st = store_->Flush(store_->Degraded() ? 1 : 15); !st.ok()) {
    spdlog::error("flushing the store at shutdown failed: {}", st.message());
  }
  // Closed here, while the engine still exists: writes still queued (a full disk) complete into
  // the engine's callbacks as the store closes.
  store_.reset();
  store_lock_.reset();
}

SchedulerServer::~SchedulerServer() { Shutdown(); }

}  // namespace sweepd::scheduler
