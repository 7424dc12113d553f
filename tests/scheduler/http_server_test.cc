// The dashboard's HTTP API and /metrics on a real sweepd (SchedulerServer: a real SQLite file,
// real gRPC and HTTP on loopback). The sweep's trials come through the gRPC ask/tell API, and
// every answer over HTTP is checked against what was told over gRPC; /metrics is parsed by
// Prometheus's reference parser (python prometheus_client).

#include "scheduler/http_server.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/str_cat.h"
#include "scheduler/server.h"
#include "sweepd/v1/sweep_service.grpc.pb.h"
#include "tests/testing/subprocess.h"

namespace sweepd::scheduler {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr char kSpec[] = R"(name: http-test
program: train.py
method: random
metric: {name: loss, goal: minimize}
parameters:
  lr: {min: 0.001, max: 0.1}
  opt: {values: [sgd, adam]}
run_cap: 10
)";

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/http-server-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ServerOptions options;
    options.listen = "127.0.0.1:0";
    options.db_path = dir_ + "/sweepd.db";
    options.http_listen = "127.0.0.1:0";
    auto server = SchedulerServer::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = v1::SweepService::NewStub(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
    const std::string url = server_->dashboard_url();
    ASSERT_THAT(url, HasSubstr("http://127.0.0.1:"));
    http_ = std::make_unique<httplib::Client>(url.substr(0, url.size() - 1));
    http_->set_read_timeout(30);
  }
  void TearDown() override {
    http_.reset();
    if (server_) server_->Shutdown();
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  // An external sweep with three trials told over gRPC: trial k reports loss 1/(k+1) + 1/step
  // for steps 1..5 and ends with its last value.
  std::string MakeSweep() {
    grpc::ClientContext c1;
    v1::CreateSweepRequest create;
    create.set_spec_yaml(kSpec);
    create.set_external(true);
    v1::CreateSweepResponse created;
    EXPECT_TRUE(stub_->CreateSweep(&c1, create, &created).ok());
    const std::string id = created.sweep().id();
    for (int k = 0; k < 3; ++k) {
      grpc::ClientContext c2;
      v1::AskTrialRequest ask;
      ask.set_sweep_id(id);
      v1::AskTrialResponse asked;
      EXPECT_TRUE(stub_->AskTrial(&c2, ask, &asked).ok());
      trial_ids_.push_back(asked.trial().id());
      for (int step = 1; step <= 5; ++step) {
        grpc::ClientContext c3;
        v1::ReportTrialRequest report;
        report.set_trial_id(asked.trial().id());
        report.set_step(step);
        (*report.mutable_metrics())["loss"] = 1.0 / (k + 1) + 1.0 / step;
        v1::ReportTrialResponse reported;
        EXPECT_TRUE(stub_->ReportTrial(&c3, report, &reported).ok());
      }
      grpc::ClientContext c4;
      v1::TellTrialRequest tell;
      tell.set_trial_id(asked.trial().id());
      tell.set_value(1.0 / (k + 1) + 0.2);
      v1::TellTrialResponse told;
      EXPECT_TRUE(stub_->TellTrial(&c4, tell, &told).ok());
    }
    return id;
  }

  Json GetJson(const std::string& path, int expect_status = 200) {
    auto res = http_->Get(path.c_str());
    EXPECT_TRUE(res) << path;
    if (!res) return Json();
    EXPECT_EQ(res->status, expect_status) << path << ": " << res->body;
    return Json::parse(res->body, nullptr, false);
  }

  std::string dir_;
  std::unique_ptr<SchedulerServer> server_;
  std::unique_ptr<v1::SweepService::Stub> stub_;
  std::unique_ptr<httplib::Client> http_;
  std::vector<std::string> trial_ids_;
};

TEST_F(HttpServerTest, ThePageAndItsScriptsAreServedFromTheBinary) {
  auto page = http_->Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_THAT(page->get_header_value("Content-Type"), HasSubstr("text/html"));
  EXPECT_THAT(page->body, HasSubstr("/assets/uPlot.iife.min.js"));
  for (const char* asset : {"/assets/uPlot.iife.min.js", "/assets/uPlot.min.css", "/assets/app.js",
                            "/assets/charts.js", "/assets/app.css"}) {
    auto res = http_->Get(asset);
    ASSERT_TRUE(res) << asset;
    EXPECT_EQ(res->status, 200) << asset;
    EXPECT_GT(res->body.size(), 1000u) << asset;
  }
  // No CDN: nothing the page loads comes from another host.
  EXPECT_EQ(page->body.find("https://"), std::string::npos);
  EXPECT_EQ(GetJson("/assets/nope.js", 404)["code"], "NOT_FOUND");
}

TEST_F(HttpServerTest, ReadsAnswerWhatWasToldOverGrpc) {
  const std::string id = MakeSweep();
  Json sweeps = GetJson("/api/v1/sweeps");
  ASSERT_EQ(sweeps["sweeps"].size(), 1u);
  EXPECT_EQ(sweeps["sweeps"][0]["id"], id);

  Json sweep = GetJson("/api/v1/sweeps/" + id)["sweep"];
  EXPECT_EQ(sweep["counts"]["completed"], "3");  // proto3 JSON: int64 as a string
  EXPECT_DOUBLE_EQ(sweep["bestValue"].get<double>(), 1.0 / 3 + 0.2);

  Json trials = GetJson("/api/v1/sweeps/" + id + "/trials?limit=2");
  EXPECT_EQ(trials["trials"].size(), 2u);
  EXPECT_EQ(trials["total"], "3");
  ASSERT_TRUE(trials.contains("nextPageToken"));
  Json rest = GetJson("/api/v1/sweeps/" + id +
                      "/trials?limit=2&page_token=" + trials["nextPageToken"].get<std::string>());
  EXPECT_EQ(rest["trials"].size(), 1u);
  // By number: the order paging a live sweep needs.
  Json by_number = GetJson("/api/v1/sweeps/" + id + "/trials?order=number&state=completed");
  ASSERT_EQ(by_number["trials"].size(), 3u);
  EXPECT_EQ(by_number["total"], "3");
  for (int k = 0; k < 3; ++k) EXPECT_EQ(by_number["trials"][k]["id"], trial_ids_[k]);

  // Every curve, page by page, with the values reported.
  Json first = GetJson("/api/v1/sweeps/" + id + "/curves?limit=2");
  EXPECT_EQ(first["total_trials"], 3);
  EXPECT_EQ(first["next_from"], 2);
  ASSERT_EQ(first["trials"].size(), 2u);
  const Json& c1 = first["trials"][1];
  EXPECT_EQ(c1["id"], trial_ids_[1]);
  EXPECT_EQ(c1["state"], "completed");
  // 5 reports, then the told final value at the last step reported.
  EXPECT_EQ(c1["steps"], Json({1, 2, 3, 4, 5, 5}));
  ASSERT_EQ(c1["values"].size(), 6u);
  EXPECT_DOUBLE_EQ(c1["values"][5].get<double>(), 0.5 + 0.2);
  EXPECT_DOUBLE_EQ(c1["values"][0].get<double>(), 0.5 + 1.0);
  Json second = GetJson("/api/v1/sweeps/" + id + "/curves?from=2&limit=2&max_points=2");
  EXPECT_EQ(second["next_from"], -1);
  ASSERT_EQ(second["trials"].size(), 1u);
  EXPECT_EQ(second["trials"][0]["steps"].size(), 2u);  // downsampled: first and last

  Json trial = GetJson("/api/v1/trials/" + trial_ids_[0]);
  EXPECT_EQ(trial["trial"]["id"], trial_ids_[0]);
  EXPECT_FALSE(trial["events"].empty());
  EXPECT_EQ(trial["logs"]["stdout"]["here"], false);  // ask/tell trials have no workdir

  Json importance = GetJson("/api/v1/sweeps/" + id + "/importance");
  EXPECT_EQ(importance["trials"], 3);
  EXPECT_THAT(importance["method"].get<std::string>(), HasSubstr("functional ANOVA"));
  EXPECT_EQ(importance["params"].size(), 2u);

  Json agents = GetJson("/api/v1/agents?all=true");
  EXPECT_TRUE(agents.is_object());
}

TEST_F(HttpServerTest, BadRequestsNameTheFieldAndWhatIsAllowed) {
  const std::string id = MakeSweep();
  Json e = GetJson("/api/v1/sweeps/" + id + "/trials?limit=0", 400);
  EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("limit: '0' is not allowed"));
  e = GetJson("/api/v1/sweeps/" + id + "/trials?state=sleeping", 400);
  EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("'sleeping' is not a trial state"));
  e = GetJson("/api/v1/sweeps?state=done", 400);
  EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("'done' is not a sweep state"));
  e = GetJson("/api/v1/sweeps/" + id + "/curves?max_points=x", 400);
  EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("max_points"));
  e = GetJson("/api/v1/sweeps/" + id + "/curves?max_points=0", 400);
  EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("max_points: '0' is not allowed"));
  e = GetJson("/api/v1/sweeps/" + id + "/curves?limit=5000&max_points=1000", 400);
  EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("limit x max_points"));
  e = GetJson("/api/v1/sweeps/" + id + "/trials?order=random", 400);
  EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("order: 'random' is not allowed"));
  e = GetJson("/api/v1/sweeps/s-nosuchid", 404);
  EXPECT_EQ(e["code"], "NOT_FOUND");
  e = GetJson("/api/v1/trials/" + id + "-9999", 404);
  EXPECT_EQ(e["code"], "NOT_FOUND");
  e = GetJson("/api/v1/nothing", 404);
  EXPECT_THAT(e["error"].get<std::string>(), HasSubstr("docs/dashboard.md"));
  // A body that is not the enqueue shape.
  httplib::Headers headers = {{"X-Sweepd-Request", "1"}};
  auto res = http_->Post(("/api/v1/sweeps/" + id + "/trials").c_str(), headers, "[1,2]",
                         "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("{\\\"params\\\""));
  // A body nested deeper than any parameter value needs is refused before it is parsed.
  std::string deep = R"({"params": {"a": )";
  for (int i = 0; i < 100000; ++i) deep += '[';
  res =
      http_->Post(("/api/v1/sweeps/" + id + "/trials").c_str(), headers, deep, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_THAT(res->body, HasSubstr("nests deeper than 32 levels"));
}

TEST_F(HttpServerTest, ChangesNeedTheRequestHeaderAndAreDurableWhenAnswered) {
  grpc::ClientContext c;
  v1::CreateSweepRequest create;
  create.set_spec_yaml(kSpec);
  create.set_external(true);
  v1::CreateSweepResponse created;
  ASSERT_TRUE(stub_->CreateSweep(&c, create, &created).ok());
  const std::string id = created.sweep().id();
  const std::string pause = "/api/v1/sweeps/" + id + "/pause";

  // A form post from another site cannot add the header: refused, nothing changes.
  auto refused = http_->Post(pause.c_str(), "", "application/x-www-form-urlencoded");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 403);
  EXPECT_THAT(refused->body, HasSubstr("X-Sweepd-Request"));
  EXPECT_EQ(server_->store().GetSweep(id)->state(), v1::SWEEP_STATE_RUNNING);

  httplib::Headers headers = {{"X-Sweepd-Request", "1"}};
  auto paused = http_->Post(pause.c_str(), headers, "", "text/plain");
  ASSERT_TRUE(paused);
  EXPECT_EQ(paused->status, 200) << paused->body;
  EXPECT_EQ(Json::parse(paused->body)["sweep"]["state"], "SWEEP_STATE_PAUSED");
  // Answered = stored: a store read sees it.
  EXPECT_EQ(server_->store().GetSweep(id)->state(), v1::SWEEP_STATE_PAUSED);
  // Pausing again is the engine's error, passed on with its code.
  auto again = http_->Post(pause.c_str(), headers, "", "text/plain");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 409) << again->body;

  auto enqueued = http_->Post(("/api/v1/sweeps/" + id + "/trials").c_str(), headers,
                              R"({"params": {"lr": 0.05, "opt": "adam"}})", "application/json");
  ASSERT_TRUE(enqueued);
  ASSERT_EQ(enqueued->status, 200) << enqueued->body;
  const std::string trial_id = Json::parse(enqueued->body)["trial"]["id"];
  auto stored = server_->store().GetTrial(trial_id, {}, 0, false);
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->trial.enqueued());

  auto canceled =
      http_->Post(("/api/v1/sweeps/" + id + "/cancel").c_str(), headers, "", "text/plain");
  ASSERT_TRUE(canceled);
  EXPECT_EQ(canceled->status, 200);
  EXPECT_EQ(server_->store().GetSweep(id)->state(), v1::SWEEP_STATE_CANCELED);
}

TEST_F(HttpServerTest, APageOfAnotherNameForLoopbackCannotReadTheApi) {
  // DNS rebinding: evil.example resolved to 127.0.0.1 sends Host: evil.example.
  for (const char* host : {"evil.example:80", "127.0.0.1.evil.example:7778", "127.evil:1"}) {
    httplib::Headers headers = {{"Host", host}};
    auto res = http_->Get("/api/v1/sweeps", headers);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 403) << host;
    EXPECT_THAT(res->body, HasSubstr("not loopback")) << host;
  }
  for (const char* host : {"localhost:1", "127.0.0.2:1", "[::1]:1"}) {
    httplib::Headers headers = {{"Host", host}};
    auto res = http_->Get("/api/v1/sweeps", headers);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << host;
  }
}

TEST_F(HttpServerTest, LiveEventsArriveAsServerSentEventsAndResumeAfterTheLastId) {
  const std::string id = MakeSweep();
  std::string received;
  auto res =
      http_->Get(("/api/v1/sweeps/" + id + "/events").c_str(), [&](const char* data, size_t n) {
        received.append(data, n);
        // Enough once a trial's completion is in.
        return received.find("\"toState\":\"completed\"") == std::string::npos;
      });
  EXPECT_THAT(received, HasSubstr("retry: 2000"));
  EXPECT_THAT(received, HasSubstr("event: sweep\ndata: {"));
  // The stream starts by saying where it starts (0: from the beginning).
  EXPECT_THAT(received, HasSubstr("id: 0\nevent: hello\ndata: {\"after\":0}"));
  // Resume: after the first event's id, that event is not sent again.
  const size_t sweep_event = received.find("\nevent: sweep\n");
  ASSERT_NE(sweep_event, std::string::npos);
  const size_t id_line = received.rfind("id: ", sweep_event);
  const int64_t first_id = std::stoll(received.substr(id_line + 4));
  std::string resumed;
  http_->Get(("/api/v1/sweeps/" + id + "/events").c_str(),
             httplib::Headers{{"Last-Event-ID", std::to_string(first_id)}},
             [&](const char* data, size_t n) {
               resumed.append(data, n);
               return resumed.find("event: sweep") == std::string::npos;
             });
  EXPECT_THAT(resumed, HasSubstr("id: " + std::to_string(first_id + 1) + "\nevent: sweep\n"));
  EXPECT_EQ(resumed.find("id: " + std::to_string(first_id) + "\nevent: sweep"), std::string::npos);

  // after=latest: no history, only what happens from now on.
  std::mutex mu;
  std::string latest;
  std::thread pauser([&] {
    // Once the stream has said where it starts, a change makes one new event.
    ASSERT_TRUE(testing::WaitFor(
        [&] {
          std::lock_guard<std::mutex> lock(mu);
          return latest.find("event: hello") != std::string::npos;
        },
        30000));
    grpc::ClientContext c;
    v1::PauseSweepRequest pause;
    pause.set_sweep_id(id);
    v1::PauseSweepResponse paused;
    EXPECT_TRUE(stub_->PauseSweep(&c, pause, &paused).ok());
  });
  http_->Get(("/api/v1/sweeps/" + id + "/events?after=latest").c_str(),
             [&](const char* data, size_t n) {
               std::lock_guard<std::mutex> lock(mu);
               latest.append(data, n);
               return latest.find("event: sweep") == std::string::npos;
             });
  pauser.join();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_THAT(latest, HasSubstr("\"toState\":\"paused\""));
  EXPECT_EQ(latest.find("\"toState\":\"completed\""), std::string::npos) << latest;
  EXPECT_EQ(GetJson("/api/v1/sweeps/" + id + "/events?after=x", 400)["code"], "INVALID_ARGUMENT");
}

TEST_F(HttpServerTest, MetricsParseWithPrometheusOwnParserAndCountWhatHappened) {
  const std::string id = MakeSweep();
  auto res = http_->Get("/metrics");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200);
  EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/plain; version=0.0.4"));
  const std::string path = dir_ + "/metrics.txt";
  std::ofstream(path) << res->body;
  // The reference parser: every family and sample as Prometheus reads them.
  const std::string script =
      "import sys, json\n"
      "from prometheus_client.parser import text_string_to_metric_families\n"
      "out = {}\n"
      "for f in text_string_to_metric_families(open(sys.argv[1]).read()):\n"
      "    for s in f.samples:\n"
      "        key = s.name + json.dumps(dict(sorted(s.labels.items())))\n"
      "        out[key] = s.value\n"
      "    out['type:' + f.name] = f.type\n"
      "print(json.dumps(out))\n";
  auto parsed = testing::RunProcess({"/usr/bin/python3", "-c", script, path});
  ASSERT_EQ(parsed.exit_code, 0) << parsed.err << res->body;
  Json m = Json::parse(parsed.out);
  EXPECT_EQ(m["sweepd_trials{\"state\": \"completed\"}"], 3);
  // 3 trials x (5 reports + the told final value, stored as a report).
  EXPECT_EQ(m["sweepd_reports_received_total{}"], 18);
  EXPECT_EQ(m["sweepd_reports_acknowledged_total{}"], 18);
  EXPECT_EQ(m["type:sweepd_store_commit_seconds"], "histogram");
  EXPECT_GT(m["sweepd_store_commit_seconds_count{}"].get<double>(), 0);
  EXPECT_EQ(m["type:sweepd_reports_received"], "counter");
  // The sweep is still running (run_cap 10): it has its own series.
  EXPECT_TRUE(
      m.contains("sweepd_sweep_trials{\"state\": \"completed\", \"sweep\": \"" + id + "\"}"))
      << parsed.out;
}

// With TLS and a token (the gRPC API's rules): HTTPS only, every API call needs the token, as a
// bearer header or the cookie that signing in sets; the page itself loads without it.
TEST(HttpServerTlsTest, OverHttpsEveryApiCallNeedsTheToken) {
  char tmpl[] = "/tmp/http-tls-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  auto made = testing::RunProcess({testing::SourcePath("scripts/gen-certs"), dir});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.db_path = dir + "/sweepd.db";
  options.http_listen = "127.0.0.1:0";
  options.tls = {.cert = dir + "/sweepd.pem", .key = dir + "/sweepd.key"};
  options.token = "s3cret-token";
  auto server = SchedulerServer::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string url = (*server)->dashboard_url();
  ASSERT_THAT(url, HasSubstr("https://127.0.0.1:"));
  httplib::SSLClient https("127.0.0.1", std::stoi(url.substr(url.rfind(':') + 1)));
  https.set_ca_cert_path((dir + "/ca.pem").c_str());
  https.enable_server_certificate_verification(true);

  auto page = https.Get("/");
  ASSERT_TRUE(page) << httplib::to_string(page.error());
  EXPECT_EQ(page->status, 200);
  auto anonymous = https.Get("/api/v1/sweeps");
  ASSERT_TRUE(anonymous);
  EXPECT_EQ(anonymous->status, 401);
  EXPECT_THAT(anonymous->body, HasSubstr("needs its token"));
  EXPECT_EQ(https.Get("/metrics")->status, 401);
  auto wrong = https.Get("/api/v1/sweeps", {{"Authorization", "Bearer nope"}});
  EXPECT_EQ(wrong->status, 401);
  auto bearer = https.Get("/api/v1/sweeps", {{"Authorization", "Bearer s3cret-token"}});
  EXPECT_EQ(bearer->status, 200) << bearer->body;
  // Signing in sets an HttpOnly, Secure, SameSite=Strict cookie that then stands for the token.
  auto bad_login = https.Post("/login", {{"X-Sweepd-Request", "1"}}, "token=nope",
                              "application/x-www-form-urlencoded");
  EXPECT_EQ(bad_login->status, 401);
  auto login = https.Post("/login", {{"X-Sweepd-Request", "1"}}, "token=s3cret-token",
                          "application/x-www-form-urlencoded");
  ASSERT_EQ(login->status, 200);
  const std::string cookie = login->get_header_value("Set-Cookie");
  EXPECT_THAT(cookie, HasSubstr("HttpOnly"));
  EXPECT_THAT(cookie, HasSubstr("Secure"));
  EXPECT_THAT(cookie, HasSubstr("SameSite=Strict"));
  auto with_cookie = https.Get("/api/v1/sweeps", {{"Cookie", cookie.substr(0, cookie.find(';'))}});
  EXPECT_EQ(with_cookie->status, 200);
  (*server)->Shutdown();
  std::filesystem::remove_all(dir);
}

TEST(HttpServerTlsTest, PlaintextOffLoopbackIsRefusedNamingTheFix) {
  auto http = HttpServer::Start({.listen = "0.0.0.0:0"}, nullptr);
  ASSERT_FALSE(http.ok());
  EXPECT_THAT(http.status().message(), HasSubstr("needs TLS (--tls-cert and --tls-key)"));
  auto bad = HttpServer::Start({.listen = "127.0.0.1:99999"}, nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("--http '127.0.0.1:99999'"));
}

}  // namespace
}  // namespace sweepd::scheduler
