#include "scheduler/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/logging.h"
#include "common/prometheus.h"
#include "common/state_names.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "scheduler/dashboard_assets.h"
#include "scheduler/param_importance.h"
#include "scheduler/server.h"

namespace sweepd::scheduler {
namespace {

using Json = nlohmann::json;

// Threads answering requests. httplib gives a connection a thread for its whole keep-alive life
// and each open page holds one for its live stream, so streams are capped well below this (a
// page past the cap is told 429 and retries its stream later) and idle connections are closed
// after a few seconds.
constexpr int kHttpThreads = 32;
constexpr int kMaxLiveStreams = 16;
constexpr int kKeepAliveSeconds = 5;
// Deepest JSON a request body may nest (an enqueue's values): nlohmann's dump() recurses, so a
// body nested half a million deep would overflow the stack.
constexpr int kMaxJsonDepth = 32;
// Points one curves answer may carry (trials x points per curve): bounds its memory.
constexpr int64_t kMaxCurvePoints = 2'000'000;
constexpr char kTokenCookie[] = "sweepd_token";

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

void SendJson(httplib::Response& res, const Json& body, int status = 200) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body.dump(-1, ' ', false, Json::error_handler_t::replace),
                  "application/json; charset=utf-8");
}

// An error as {"error": ..., "code": ...}: the page shows `error` as it is.
void SendError(httplib::Response& res, const absl::Status& status) {
  SendJson(
      res,
      {{"error", std::string(status.message())}, {"code", absl::StatusCodeToString(status.code())}},
      HttpStatusOf(status.code()));
}

// A proto answer in proto3's JSON mapping (the gRPC API's messages, field for field).
void SendProto(httplib::Response& res, const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = false;
  if (auto st = google::protobuf::util::MessageToJsonString(message, &json, options); !st.ok()) {
    SendError(res, absl::InternalError(absl::StrCat("encoding the answer: ", st.ToString())));
    return;
  }
  res.set_header("Cache-Control", "no-store");
  res.set_content(json, "application/json; charset=utf-8");
}

// Runs an API call and answers with its response or its error.
template <typename Response, typename Call>
void Answer(httplib::Response& res, Call call) {
  Response response;
  if (auto st = call(&response); !st.ok()) {
    SendError(res, st);
    return;
  }
  SendProto(res, response);
}

// A whole-number query parameter within [low, high]; `fallback` when absent.
absl::StatusOr<int64_t> IntParam(const httplib::Request& req, const char* name, int64_t fallback,
                                 int64_t low, int64_t high) {
  if (!req.has_param(name)) return fallback;
  const std::string text = req.get_param_value(name);
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < low || value > high) {
    return absl::InvalidArgumentError(absl::StrCat("query parameter ", name, ": '", text,
                                                   "' is not allowed; give a whole number from ",
                                                   low, " to ", high));
  }
  return value;
}

absl::StatusOr<bool> BoolParam(const httplib::Request& req, const char* name) {
  if (!req.has_param(name)) return false;
  const std::string text = absl::AsciiStrToLower(req.get_param_value(name));
  if (text == "1" || text == "true") return true;
  if (text == "0" || text == "false") return false;
  return absl::InvalidArgumentError(
      absl::StrCat("query parameter ", name, ": '", text, "' is not allowed; true or false"));
}

// `state=...` values, each state once and in one order: the store caches a statement per
// distinct SQL text, so `running,running,...` must not make a new one per request.
template <typename State>
std::vector<State> Canonical(std::vector<State> states) {
  std::sort(states.begin(), states.end());
  states.erase(std::unique(states.begin(), states.end()), states.end());
  return states;
}

// `state=running&state=completed` (or comma-separated) as trial states.
absl::StatusOr<std::vector<v1::TrialState>> TrialStates(const httplib::Request& req) {
  std::vector<v1::TrialState> states;
  const size_t n = req.get_param_value_count("state");
  for (size_t i = 0; i < n; ++i) {
    for (absl::string_view name : absl::StrSplit(req.get_param_value("state", i), ',')) {
      if (name.empty()) continue;
      auto state = ParseTrialState(std::string(name));
      if (!state) {
        return absl::InvalidArgumentError(absl::StrCat(
            "query parameter state: '", name,
            "' is not a trial state; queued, assigned, running, completed, pruned, failed, "
            "lost, canceled or paused"));
      }
      states.push_back(*state);
    }
  }
  return Canonical(std::move(states));
}

absl::StatusOr<std::vector<v1::SweepState>> SweepStates(const httplib::Request& req) {
  std::vector<v1::SweepState> states;
  const size_t n = req.get_param_value_count("state");
  for (size_t i = 0; i < n; ++i) {
    for (absl::string_view name : absl::StrSplit(req.get_param_value("state", i), ',')) {
      if (name.empty()) continue;
      const auto state = ParseSweepState(std::string(name));
      if (!state) {
        return absl::InvalidArgumentError(
            absl::StrCat("query parameter state: '", name,
                         "' is not a sweep state; running, paused, finished, canceled or failed"));
      }
      states.push_back(*state);
    }
  }
  return Canonical(std::move(states));
}

std::string CookieValue(const httplib::Request& req, absl::string_view name) {
  for (absl::string_view part : absl::StrSplit(req.get_header_value("Cookie"), ';')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::ConsumePrefix(&part, name) && absl::ConsumePrefix(&part, "=")) {
      return std::string(part);
    }
  }
  return "";
}

// The last `max_bytes` of a file on this host, cut at a line start; nothing when it is not here.
// Regular files only, never through a symlink and never blocking: the path comes from what an
// agent reported, and a FIFO named stdout.log would hold a request thread for ever.
std::optional<std::string> TailOf(const std::string& path, int64_t max_bytes) {
  if (path.empty()) return std::nullopt;
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return std::nullopt;
  }
  const int64_t size = st.st_size;
  const int64_t from = std::max<int64_t>(0, size - max_bytes);
  std::string text(static_cast<size_t>(size - from), '\0');
  ssize_t got = ::pread(fd, text.data(), text.size(), from);
  ::close(fd);
  text.resize(got > 0 ? static_cast<size_t>(got) : 0);
  if (from > 0) {
    const size_t newline = text.find('\n');
    if (newline != std::string::npos) text.erase(0, newline + 1);
  }
  return text;
}

// The host part of a Host header ("localhost:7778", "[::1]:7778").
std::string HostName(absl::string_view host) {
  if (absl::StartsWith(host, "[")) {
    const size_t close = host.find(']');
    return std::string(host.substr(1, close == host.npos ? host.npos : close - 1));
  }
  return std::string(host.substr(0, host.rfind(':')));
}

// "localhost", or a literal address in 127.0.0.0/8 or ::1 (not a name that merely starts with
// "127.": 127.0.0.1.evil.example is a DNS-rebinding page's own name).
bool IsLoopbackHostName(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return ::inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

// How deep a JSON text nests (brackets outside strings).
int JsonDepth(absl::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// Where an SSE stream stands: the last event sent and the engine's event counter seen.
struct StreamState {
  std::string sweep_id;
  int64_t after = 0;
  int64_t seen = -1;
  std::chrono::steady_clock::time_point last_write = std::chrono::steady_clock::now();
};

}  // namespace

HttpServer::HttpServer(const HttpOptions& options, SweepApi* api) : options_(options), api_(api) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpOptions& options,
                                                              SweepApi* api) {
  RETURN_IF_ERROR(CheckListenAddress(options.listen, "--http"));
  const bool tls = !options.tls.cert.empty() || !options.tls.key.empty();
  if (!tls && !IsLoopbackAddress(options.listen)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--http ", options.listen,
        " is not a loopback address; serving the dashboard to other hosts needs TLS (--tls-cert "
        "and --tls-key)"));
  }
  std::unique_ptr<HttpServer> server(new HttpServer(options, api));
  if (tls) {
    if (options.tls.cert.empty() || options.tls.key.empty()) {
      return absl::InvalidArgumentError("the dashboard's TLS needs both --tls-cert and --tls-key");
    }
    auto ssl =
        std::make_unique<httplib::SSLServer>(options.tls.cert.c_str(), options.tls.key.c_str());
    if (!ssl->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat("the dashboard cannot use --tls-cert ",
                                                     options.tls.cert, " and --tls-key ",
                                                     options.tls.key,
                                                     " (unreadable, or not a "
                                                     "matching PEM certificate and key)"));
    }
    server->server_ = std::move(ssl);
  } else {
    server->server_ = std::make_unique<httplib::Server>();
  }
  server->server_->new_task_queue = [] { return new httplib::ThreadPool(kHttpThreads); };
  server->server_->set_keep_alive_timeout(kKeepAliveSeconds);
  // Without SO_REUSEPORT (httplib sets it by default on Linux): a second sweepd on a dashboard
  // port already served must fail to bind, not share the port and get half the connections.
  server->server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server->server_->set_read_timeout(30);
  server->server_->set_payload_max_length(1 << 20);
  server->Route();

  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  int port = 0;
  if (!absl::SimpleAtoi(options.listen.substr(options.listen.rfind(':') + 1), &port)) port = 0;
  const std::string bind_host =
      absl::StartsWith(host, "[") ? host.substr(1, host.size() - 2) : host;
  if (port == 0) {
    port = server->server_->bind_to_any_port(bind_host);
    if (port < 0) port = 0;
  } else if (!server->server_->bind_to_port(bind_host, port)) {
    port = 0;
  }
  if (port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "--http ", options.listen,
        ": cannot listen there (the port is in use, or the host is not an address of this "
        "machine)"));
  }
  server->url_ = absl::StrCat(tls ? "https://" : "http://", host, ":", port, "/");
  server->thread_ = std::thread([s = server.get()] { s->server_->listen_after_bind(); });
  // httplib's stop() does nothing until the server runs: wait for it, so a Shutdown right after
  // Start cannot leave the thread in accept() for ever.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!server->server_->is_running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!server->server_->is_running()) {
    return absl::InternalError("the dashboard's server did not start within 10 s");
  }
  return server;
}

HttpServer::~HttpServer() { Shutdown(); }

void HttpServer::Shutdown() {
  if (stopping_.exchange(true)) return;
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

void HttpServer::Route() {
  const bool tls = !options_.tls.cert.empty();
  const bool need_token = tls && !options_.token.empty();
  httplib::Server& s = *server_;

  // Who may call, before any route runs.
  s.set_pre_routing_handler([this, tls, need_token](const httplib::Request& req,
                                                    httplib::Response& res) {
    using R = httplib::Server::HandlerResponse;
    if (!tls) {
      // Plaintext is loopback only; a page that rebinds its own name to 127.0.0.1 must not read
      // the API with the user's browser.
      const std::string host = HostName(req.get_header_value("Host"));
      if (!IsLoopbackHostName(host)) {
        SendError(res, absl::PermissionDeniedError(absl::StrCat(
                           "Host '", host, "' is not loopback; open the dashboard as ", url_)));
        return R::Handled;
      }
    }
    if (req.method == "POST" && req.get_header_value("X-Sweepd-Request") != "1") {
      SendError(res, absl::PermissionDeniedError(
                         "changes need the header X-Sweepd-Request: 1 (the dashboard sends it)"));
      return R::Handled;
    }
    const bool open = req.path == "/" || absl::StartsWith(req.path, "/assets/") ||
                      req.path == "/login" || req.path == "/favicon.ico";
    if (!need_token || open) return R::Unhandled;
    std::string presented = CookieValue(req, kTokenCookie);
    if (const std::string auth = req.get_header_value("Authorization");
        absl::StartsWith(auth, "Bearer ")) {
      presented = auth.substr(7);
    }
    if (presented.empty() || !ConstantTimeEquals(presented, options_.token)) {
      SendError(res,
                absl::UnauthenticatedError(
                    presented.empty() ? "this sweepd needs its token: sign in on the page, or send "
                                        "Authorization: Bearer TOKEN"
                                      : "wrong token"));
      return R::Handled;
    }
    return R::Unhandled;
  });

  // The page and its files.
  s.Get(R"(/|/assets/[A-Za-z0-9._-]+)", [](const httplib::Request& req, httplib::Response& res) {
    const DashboardAsset* asset = FindDashboardAsset(req.path);
    if (asset == nullptr) {
      SendError(res, absl::NotFoundError(absl::StrCat("no file ", req.path)));
      return;
    }
    res.set_header("Cache-Control", req.path == "/" ? "no-cache" : "max-age=3600");
    res.set_content(reinterpret_cast<const char*>(asset->data), asset->size, asset->content_type);
  });
  s.Post("/login", [this, need_token](const httplib::Request& req, httplib::Response& res) {
    if (!need_token) {
      SendJson(res, {{"ok", true}});
      return;
    }
    const std::string token = req.get_param_value("token");
    if (token.empty() || !ConstantTimeEquals(token, options_.token)) {
      SendError(res, absl::UnauthenticatedError("wrong token"));
      return;
    }
    res.set_header("Set-Cookie", absl::StrCat(kTokenCookie, "=", token,
                                              "; Path=/; HttpOnly; Secure; SameSite=Strict"));
    SendJson(res, {{"ok", true}});
  });

  // ---- Reads.
  s.Get("/api/v1/sweeps", [this](const httplib::Request& req, httplib::Response& res) {
    Answer<v1::ListSweepsResponse>(res, [&](v1::ListSweepsResponse* out) -> absl::Status {
      v1::ListSweepsRequest request;
      ASSIGN_OR_RETURN(auto states, SweepStates(req));
      for (auto state : states) request.add_states(state);
      ASSIGN_OR_RETURN(int64_t limit, IntParam(req, "limit", 100, 1, 1000));
      request.set_limit(static_cast<int32_t>(limit));
      request.set_page_token(req.get_param_value("page_token"));
      return api_->ListSweeps(request, out);
    });
  });
  s.Get(R"(/api/v1/sweeps/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    Answer<v1::GetSweepResponse>(res, [&](v1::GetSweepResponse* out) {
      v1::GetSweepRequest request;
      request.set_sweep_id(req.matches[1]);
      return api_->GetSweep(request, out);
    });
  });
  s.Get(R"(/api/v1/sweeps/([^/]+)/trials)",
        [this](const httplib::Request& req, httplib::Response& res) {
          Answer<v1::ListTrialsResponse>(res, [&](v1::ListTrialsResponse* out) -> absl::Status {
            v1::ListTrialsRequest request;
            request.set_sweep_id(req.matches[1]);
            ASSIGN_OR_RETURN(auto states, TrialStates(req));
            for (auto state : states) request.add_states(state);
            request.set_sort_metric(req.get_param_value("sort_metric"));
            ASSIGN_OR_RETURN(bool by_last, BoolParam(req, "sort_by_last"));
            ASSIGN_OR_RETURN(bool descending, BoolParam(req, "descending"));
            const std::string order = req.get_param_value("order");
            if (!order.empty() && order != "number" && order != "metric") {
              return absl::InvalidArgumentError(absl::StrCat("query parameter order: '", order,
                                                             "' is not allowed; metric or number"));
            }
            request.set_by_number(order == "number");
            request.set_sort_by_last(by_last);
            request.set_descending(descending);
            ASSIGN_OR_RETURN(int64_t limit, IntParam(req, "limit", 100, 1, 10000));
            request.set_limit(static_cast<int32_t>(limit));
            request.set_page_token(req.get_param_value("page_token"));
            return api_->ListTrials(request, out);
          });
        });
  s.Get(R"(/api/v1/sweeps/([^/]+)/curves)",
        [this](const httplib::Request& req, httplib::Response& res) {
          auto page = [&]() -> absl::StatusOr<store::CurvePage> {
            ASSIGN_OR_RETURN(int64_t from, IntParam(req, "from", 0, 0, kMaxTrialsPerSweep));
            ASSIGN_OR_RETURN(int64_t limit, IntParam(req, "limit", 500, 1, 5000));
            ASSIGN_OR_RETURN(int64_t points, IntParam(req, "max_points", 200, 1, 10000));
            if (limit * points > kMaxCurvePoints) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "limit x max_points: ", limit, " x ", points, " is more than ", kMaxCurvePoints,
                  " points in one answer; page with from= and a smaller limit"));
            }
            const std::string metric = req.get_param_value("metric");
            if (metric.size() > 256) {
              return absl::InvalidArgumentError("query parameter metric: at most 256 bytes");
            }
            ASSIGN_OR_RETURN(auto states, TrialStates(req));
            return api_->store().SweepCurves(req.matches[1].str(), metric, from, limit,
                                             static_cast<int>(points), states);
          }();
          if (!page.ok()) {
            SendError(res, page.status());
            return;
          }
          Json trials = Json::array();
          for (const auto& c : page->curves) {
            Json values = Json::array();
            for (double v : c.values) {
              values.push_back(std::isfinite(v) ? Json(v) : Json(nullptr));
            }
            trials.push_back({{"id", c.trial_id},
                              {"number", c.number},
                              {"state", TrialStateName(c.state)},
                              {"steps", c.steps},
                              {"values", std::move(values)}});
          }
          SendJson(res, {{"trials", std::move(trials)},
                         {"next_from", page->next_number},
                         {"total_trials", page->total_trials}});
        });
  s.Get(R"(/api/v1/sweeps/([^/]+)/importance)", [this](const httplib::Request& req,
                                                       httplib::Response& res) {
    // Completed trials only (as Optuna's importances): a pruned trial's value is not its
    // objective.
    std::vector<v1::Trial> trials;
    std::vector<double> objective;
    std::string token;
    do {
      v1::ListTrialsRequest request;
      request.set_sweep_id(req.matches[1]);
      request.add_states(v1::TRIAL_STATE_COMPLETED);
      request.set_limit(10000);
      request.set_page_token(token);
      v1::ListTrialsResponse page;
      if (auto st = api_->ListTrials(request, &page); !st.ok()) {
        SendError(res, st);
        return;
      }
      for (auto& t : *page.mutable_trials()) {
        objective.push_back(t.has_last_value() ? t.last_value() : NAN);
        trials.push_back(std::move(t));
      }
      token = page.next_page_token();
    } while (!token.empty());
    const ImportanceResult result = EstimateImportance(trials, objective);
    Json params = Json::array();
    for (const auto& p : result.params) {
      params.push_back({{"name", p.name},
                        {"importance", p.importance},
                        {"explained", p.explained},
                        {"groups", p.groups}});
    }
    SendJson(res,
             {{"method", result.method}, {"trials", result.trials}, {"params", std::move(params)}});
  });
  s.Get(R"(/api/v1/trials/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    v1::GetTrialResponse detail;
    auto st = [&]() -> absl::Status {
      v1::GetTrialRequest request;
      request.set_trial_id(req.matches[1]);
      ASSIGN_OR_RETURN(int64_t points, IntParam(req, "max_points", 1000, 1, 100000));
      request.set_max_points(static_cast<int32_t>(points));
      const size_t n = req.get_param_value_count("metric");
      for (size_t i = 0; i < n; ++i) request.add_metric_names(req.get_param_value("metric", i));
      return api_->GetTrial(request, &detail);
    }();
    if (!st.ok()) {
      SendError(res, st);
      return;
    }
    std::string json;
    google::protobuf::util::JsonPrintOptions print;
    (void)google::protobuf::util::MessageToJsonString(detail, &json, print);
    Json body = Json::parse(json, nullptr, false);
    // The logs, when the trial ran on this host (sweepctl run, or an agent beside sweepd).
    const std::string& workdir = detail.trial().workdir();
    Json logs = Json::object();
    for (const char* name : {"stdout", "stderr"}) {
      const std::string path = absl::StrCat(workdir, "/", name, ".log");
      auto tail = workdir.empty() ? std::nullopt : TailOf(path, 16 << 10);
      logs[name] = {{"path", workdir.empty() ? "" : path},
                    {"here", tail.has_value()},
                    {"tail", tail.value_or("")}};
    }
    body["logs"] = std::move(logs);
    SendJson(res, body);
  });
  s.Get("/api/v1/agents", [this](const httplib::Request& req, httplib::Response& res) {
    Answer<v1::ListAgentsResponse>(res, [&](v1::ListAgentsResponse* out) -> absl::Status {
      v1::ListAgentsRequest request;
      ASSIGN_OR_RETURN(bool all, BoolParam(req, "all"));
      request.set_all(all);
      return api_->ListAgents(request, out);
    });
  });

  // Live: the sweep's events as server-sent events, durable ones only, resuming after
  // Last-Event-ID (the browser sends it when it reconnects) or ?after=.
  s.Get(R"(/api/v1/sweeps/([^/]+)/events)", [this](const httplib::Request& req,
                                                   httplib::Response& res) {
    auto state = std::make_shared<StreamState>();
    state->sweep_id = req.matches[1];
    std::string after_text = req.get_header_value("Last-Event-ID");
    if (after_text.empty()) after_text = req.get_param_value("after");
    if (after_text == "latest") {
      // From now on: a page that has just loaded the sweep needs no replay of its history.
      auto latest = api_->store().LatestEventId(state->sweep_id);
      if (!latest.ok()) {
        SendError(res, latest.status());
        return;
      }
      state->after = *latest;
    } else if (!after_text.empty() &&
               (!absl::SimpleAtoi(after_text, &state->after) || state->after < 0)) {
      SendError(res,
                absl::InvalidArgumentError(absl::StrCat(
                    "after: '", after_text, "' is not an event id (a whole number, or latest)")));
      return;
    }
    v1::GetSweepRequest probe;
    probe.set_sweep_id(state->sweep_id);
    v1::GetSweepResponse sweep;
    if (auto st = api_->GetSweep(probe, &sweep); !st.ok()) {
      SendError(res, st);
      return;
    }
    if (live_streams_.fetch_add(1) >= kMaxLiveStreams) {
      live_streams_.fetch_sub(1);
      SendError(res, absl::ResourceExhaustedError(
                         "too many live pages are open; this one tries again later"));
      return;
    }
    res.set_header("Cache-Control", "no-store");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, state](size_t, httplib::DataSink& sink) {
          if (stopping_.load()) return false;
          if (state->seen < 0) {
            state->seen = api_->engine().WaitForEvents(-1, 0);
            // Where this stream starts (the page resumes from it if the stream drops).
            const std::string hello =
                absl::StrCat("retry: 2000\nid: ", state->after,
                             "\nevent: hello\ndata: {\"after\":", state->after, "}\n\n");
            if (!sink.write(hello.data(), hello.size())) return false;
          }
          auto events = api_->store().ListEvents(state->sweep_id, state->after, 500);
          if (!events.ok()) return false;
          for (const auto& e : *events) {
            std::string json;
            (void)google::protobuf::util::MessageToJsonString(e, &json);
            const std::string frame =
                absl::StrCat("id: ", e.id(), "\nevent: sweep\ndata: ", json, "\n\n");
            if (!sink.write(frame.data(), frame.size())) return false;
            state->after = e.id();
            state->last_write = std::chrono::steady_clock::now();
          }
          if (events->size() == 500) return true;
          // A comment now and then keeps proxies from closing an idle stream and tells a
          // closed one apart.
          if (std::chrono::steady_clock::now() - state->last_write > std::chrono::seconds(15)) {
            const std::string ping = ": ping\n\n";
            if (!sink.write(ping.data(), ping.size())) return false;
            state->last_write = std::chrono::steady_clock::now();
          }
          state->seen = api_->engine().WaitForEvents(state->seen, 1000);
          return !stopping_.load();
        },
        [this](bool) { live_streams_.fetch_sub(1); });
  });

  // ---- Changes (answered once durable, as the gRPC API's).
  s.Post(R"(/api/v1/sweeps/([^/]+)/(pause|resume|cancel))",
         [this](const httplib::Request& req, httplib::Response& res) {
           const std::string id = req.matches[1];
           const std::string verb = req.matches[2];
           if (verb == "pause") {
             Answer<v1::PauseSweepResponse>(res, [&](v1::PauseSweepResponse* out) {
               v1::PauseSweepRequest request;
               request.set_sweep_id(id);
               return api_->PauseSweep(request, out);
             });
           } else if (verb == "resume") {
             Answer<v1::ResumeSweepResponse>(res, [&](v1::ResumeSweepResponse* out) {
               v1::ResumeSweepRequest request;
               request.set_sweep_id(id);
               return api_->ResumeSweep(request, out);
             });
           } else {
             Answer<v1::CancelSweepResponse>(res, [&](v1::CancelSweepResponse* out) {
               v1::CancelSweepRequest request;
               request.set_sweep_id(id);
               request.set_reason(req.has_param("reason") ? req.get_param_value("reason")
                                                          : "canceled from the dashboard");
               return api_->CancelSweep(request, out);
             });
           }
         });
  // Enqueue: the body is {"params": {"lr": 0.01, "optimizer": "adam"}}.
  s.Post(R"(/api/v1/sweeps/([^/]+)/trials)", [this](const httplib::Request& req,
                                                    httplib::Response& res) {
    Answer<v1::EnqueueTrialResponse>(res, [&](v1::EnqueueTrialResponse* out) -> absl::Status {
      if (JsonDepth(req.body) > kMaxJsonDepth) {
        return absl::InvalidArgumentError(
            absl::StrCat("the body nests deeper than ", kMaxJsonDepth, " levels"));
      }
      const Json body = Json::parse(req.body, nullptr, false);
      if (!body.is_object() || !body.contains("params") || !body["params"].is_object()) {
        return absl::InvalidArgumentError("the body must be JSON {\"params\": {NAME: VALUE, ...}}");
      }
      v1::EnqueueTrialRequest request;
      request.set_sweep_id(req.matches[1]);
      for (const auto& [name, value] : body["params"].items()) {
        auto* p = request.add_params();
        p->set_name(name);
        p->set_value_json(value.dump());
      }
      return api_->EnqueueTrial(request, out);
    });
  });
  s.Post(R"(/api/v1/agents/([^/]+)/release)",
         [this](const httplib::Request& req, httplib::Response& res) {
           Answer<v1::ReleaseAgentResponse>(res, [&](v1::ReleaseAgentResponse* out) {
             v1::ReleaseAgentRequest request;
             request.set_agent_id(req.matches[1]);
             return api_->ReleaseAgent(request, out);
           });
         });

  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    auto text = RenderPrometheusMetrics(*api_);
    if (!text.ok()) {
      res.status = 503;
      res.set_content(absl::StrCat("# ", text.status().message(), "\n"), "text/plain");
      return;
    }
    res.set_content(*text, "text/plain; version=0.0.4; charset=utf-8");
  });

  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404 && res.body.empty()) {
      SendError(res, absl::NotFoundError(absl::StrCat("no such page or API: ", req.method, " ",
                                                      req.path, " (see docs/dashboard.md)")));
    }
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    SendError(res, absl::InternalError("the request failed inside sweepd; see its log"));
  });
}

absl::StatusOr<std::string> RenderPrometheusMetrics(SweepApi& api) {
  MetricsText m;
  using T = MetricsText::Type;
  const Engine::Stats stats = api.engine().GetStats();
  m.Family("sweepd_reports_received_total", T::kCounter,
           "Metric reports taken in from agents and ask/tell runners.");
  m.Sample({}, static_cast<double>(stats.reports_received));
  m.Family("sweepd_reports_acknowledged_total", T::kCounter,
           "Metric reports stored durably and acknowledged.");
  m.Sample({}, static_cast<double>(stats.reports_acknowledged));
  m.Family("sweepd_metric_batches_refused_total", T::kCounter,
           "Metric batches refused while the store could not commit (agents send them again).");
  m.Sample({}, static_cast<double>(stats.metric_batches_refused));
  m.Family("sweepd_engine_queue_depth", T::kGauge, "Tasks waiting for the engine thread.");
  m.Sample({}, static_cast<double>(stats.queue_depth));
  m.Family("sweepd_store_commit_seconds", T::kHistogram,
           "Time to apply and commit one batch of writes (one transaction, fsync included).");
  m.HistogramSamples({}, api.store().commit_seconds());
  const store::StoreHealth health = api.store().Health();
  m.Family("sweepd_store_degraded", T::kGauge,
           "1 while the store cannot commit (disk full, I/O error).");
  m.Sample({}, health.degraded ? 1 : 0);

  // Sweeps: trials by state summed over all sweeps, and per live sweep its use and savings.
  std::map<std::string, int64_t> trials_by_state;
  std::vector<v1::Sweep> live;
  std::map<std::string, int64_t> sweeps_by_state;
  constexpr int64_t kPage = 1000;
  for (int64_t offset = 0;; offset += kPage) {
    // The store's rows as they are: a scrape needs counts, not SweepApi's derived fields (a
    // search method built per sweep, per scrape).
    ASSIGN_OR_RETURN(auto page, api.store().ListSweeps({}, kPage, offset));
    for (auto& sweep : page) {
      const auto& c = sweep.counts();
      for (auto [name, n] : {std::pair{"queued", c.queued()},
                             {"assigned", c.assigned()},
                             {"running", c.running()},
                             {"completed", c.completed()},
                             {"pruned", c.pruned()},
                             {"failed", c.failed()},
                             {"lost", c.lost()},
                             {"canceled", c.canceled()},
                             {"paused", c.paused()}}) {
        trials_by_state[name] += n;
      }
      ++sweeps_by_state[SweepStateName(sweep.state())];
      if (sweep.state() == v1::SWEEP_STATE_RUNNING || sweep.state() == v1::SWEEP_STATE_PAUSED) {
        live.push_back(std::move(sweep));
      }
    }
    if (static_cast<int64_t>(page.size()) < kPage) break;
  }
  m.Family("sweepd_trials", T::kGauge, "Trials of all sweeps by state.");
  for (const auto& [state, n] : trials_by_state)
    m.Sample({{"state", state}}, static_cast<double>(n));
  m.Family("sweepd_sweeps", T::kGauge, "Sweeps by state.");
  for (const auto& [state, n] : sweeps_by_state)
    m.Sample({{"state", state}}, static_cast<double>(n));
  m.Family("sweepd_sweep_gpu_hours_used", T::kGauge,
           "GPU-hours used by the trials of each running or paused sweep.");
  for (const auto& sweep : live) {
    m.Sample({{"sweep", sweep.id()}, {"name", sweep.spec().name()}},
             sweep.gpu_seconds_used() / 3600);
  }
  m.Family("sweepd_sweep_gpu_hours_saved", T::kGauge,
           "GPU-hours saved by pruning (estimate) in each running or paused sweep.");
  for (const auto& sweep : live) {
    m.Sample({{"sweep", sweep.id()}, {"name", sweep.spec().name()}},
             sweep.gpu_seconds_saved() / 3600);
  }
  m.Family("sweepd_sweep_trials", T::kGauge, "Trials of each running or paused sweep by state.");
  for (const auto& sweep : live) {
    const auto& c = sweep.counts();
    for (auto [name, n] : {std::pair{"queued", c.queued()},
                           {"running", c.running() + c.assigned()},
                           {"completed", c.completed()},
                           {"pruned", c.pruned()},
                           {"failed", c.failed()}}) {
      m.Sample({{"sweep", sweep.id()}, {"state", name}}, static_cast<double>(n));
    }
  }

  // Agents: by state, and each GPU's utilisation and memory from the heartbeats.
  v1::ListAgentsRequest agents_request;
  agents_request.set_all(true);
  v1::ListAgentsResponse agents;
  RETURN_IF_ERROR(api.ListAgents(agents_request, &agents));
  std::map<std::string, int64_t> agents_by_state;
  for (const auto& a : agents.agents()) ++agents_by_state[AgentStateName(a.state())];
  m.Family("sweepd_agents", T::kGauge, "Agents by state.");
  for (const auto& [state, n] : agents_by_state)
    m.Sample({{"state", state}}, static_cast<double>(n));
  m.Family("sweepd_agent_gpu_utilization_ratio", T::kGauge,
           "GPU utilisation (0 to 1) from each connected agent's last heartbeat.");
  for (const auto& a : agents.agents()) {
    if (a.state() == v1::AGENT_STATE_LOST || a.state() == v1::AGENT_STATE_DISCONNECTED) continue;
    for (const auto& g : a.gpus()) {
      if (absl::StartsWith(g.uuid(), "slot-")) continue;  // a CPU slot, not a GPU
      m.Sample({{"agent", a.id()}, {"gpu", std::to_string(g.index())}},
               g.utilization_percent() / 100);
    }
  }
  m.Family("sweepd_agent_gpu_memory_used_bytes", T::kGauge,
           "GPU memory in use from each connected agent's last heartbeat.");
  for (const auto& a : agents.agents()) {
    if (a.state() == v1::AGENT_STATE_LOST || a.state() == v1::AGENT_STATE_DISCONNECTED) continue;
    for (const auto& g : a.gpus()) {
      if (absl::StartsWith(g.uuid(), "slot-")) continue;
      m.Sample({{"agent", a.id()}, {"gpu", std::to_string(g.index())}},
               static_cast<double>(g.memory_used_bytes()));
    }
  }
  m.Family("sweepd_agent_busy_slots", T::kGauge, "Slots (GPUs or CPU slots) running a trial.");
  for (const auto& a : agents.agents()) {
    if (a.state() == v1::AGENT_STATE_LOST || a.state() == v1::AGENT_STATE_DISCONNECTED) continue;
    int64_t busy = 0;
    for (const auto& g : a.gpus()) busy += g.trial_id().empty() ? 0 : 1;
    m.Sample({{"agent", a.id()}}, static_cast<double>(busy));
  }
  return m.text();
}

}  // namespace sweepd::scheduler
