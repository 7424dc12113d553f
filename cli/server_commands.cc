// sweepctl commands that talk to sweepd over gRPC, and `run`, which embeds one.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/command.h"
#include "cli/json_output.h"
#include "cli/table.h"
#include "common/logging.h"
#include "common/security.h"
#include "common/spec_parser.h"
#include "common/state_names.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "scheduler/server.h"
#include "sweepd/v1/sweep_service.grpc.pb.h"
#include "worker/agent.h"
#include "worker/python_path.h"

namespace sweepd::cli {
namespace {

using Json = nlohmann::ordered_json;
using google::protobuf::util::TimeUtil;

std::string SchedulerAddress(const ParsedArgs& args) {
  if (!args.Get("scheduler").empty()) return args.Get("scheduler");
  const char* env = std::getenv("SWEEPD_ADDR");
  return env != nullptr && *env != '\0' ? env : "127.0.0.1:7777";
}

class Client {
 public:
  explicit Client(const ParsedArgs& args) : address_(SchedulerAddress(args)) {
    double seconds = 10;
    if (!args.Get("timeout").empty()) (void)absl::SimpleAtod(args.Get("timeout"), &seconds);
    timeout_ms_ = static_cast<int64_t>(seconds * 1000);
    std::string ca = args.Get("tls-ca");
    if (ca.empty()) {
      const char* env = std::getenv("SWEEPD_TLS_CA");
      if (env != nullptr) ca = env;
    }
    auto credentials = MakeChannelCredentials({.ca = ca});
    if (!credentials.ok()) setup_error_ = std::string(credentials.status().message());
    if (const char* token = std::getenv("SWEEPD_TOKEN"); token != nullptr) token_ = token;
    stub_ = v1::SweepService::NewStub(grpc::CreateChannel(
        address_, credentials.ok() ? *credentials : grpc::InsecureChannelCredentials()));
  }

  // A context with the call's deadline.
  std::unique_ptr<grpc::ClientContext> Context() const {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(timeout_ms_));
    if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
    return context;
  }

  // For a stream that lasts as long as the sweep: the token, no deadline.
  std::unique_ptr<grpc::ClientContext> StreamContext() const {
    auto context = std::make_unique<grpc::ClientContext>();
    if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
    return context;
  }

  // One line for a failed call, naming what to fix.
  std::string Explain(const grpc::Status& status) const {
    if (!setup_error_.empty()) return setup_error_;
    switch (status.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
        // sweepd's own answers (its store cannot write) start with "sweepd "; gRPC's own
        // (refused, no route, closed) mean it was not reached.
        if (absl::StartsWith(status.error_message(), "sweepd ")) return status.error_message();
        return absl::StrCat("cannot reach sweepd at ", address_,
                            " (is it running? start it with `sweepd`, or pass --scheduler / set "
                            "SWEEPD_ADDR; if it serves TLS, pass --tls-ca)");
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        if (absl::StartsWith(status.error_message(), "sweepd ")) return status.error_message();
        return absl::StrCat("sweepd at ", address_, " did not answer within the --timeout");
      default:
        return status.error_message();
    }
  }

  v1::SweepService::Stub& stub() { return *stub_; }
  const std::string& address() const { return address_; }

 private:
  std::string address_;
  int64_t timeout_ms_ = 10'000;
  std::string token_;        // $SWEEPD_TOKEN, sent as a bearer token; never printed
  std::string setup_error_;  // a bad --tls-ca: every call reports it
  std::unique_ptr<v1::SweepService::Stub> stub_;
};

int Fail(std::ostream& err, const std::string& message) {
  err << "sweepctl: " << message << "\n";
  return kExitFailure;
}

Json ToJson(const google::protobuf::Message& message) { return ProtoToJson(message); }

std::string FormatValue(double v) {
  if (std::isnan(v)) return "nan";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string Hours(double gpu_seconds) { return FormatValue(gpu_seconds / 3600.0); }

int64_t Done(const v1::TrialCounts& c) {
  return c.completed() + c.pruned() + c.failed() + c.lost() + c.canceled();
}

int64_t Total(const v1::TrialCounts& c) {
  return Done(c) + c.queued() + c.assigned() + c.running() + c.paused();
}

std::string ProgressBar(int64_t done, int64_t total, int width = 30) {
  if (total <= 0) return "";
  const int filled = static_cast<int>(width * std::min<int64_t>(done, total) / total);
  return absl::StrCat("[", std::string(filled, '#'), std::string(width - filled, '.'), "] ", done,
                      "/", total);
}

void PrintStatus(const v1::Sweep& s, std::ostream& out) {
  const auto& c = s.counts();
  if (!s.stalled().empty()) out << "STALLED   " << s.stalled() << "\n";
  out << "sweep     " << s.id() << (s.spec().name().empty() ? "" : "  (" + s.spec().name() + ")")
      << "\nstate     " << SweepStateName(s.state())
      << (s.reason().empty() ? "" : "  (" + s.reason() + ")") << "\nmethod    "
      << SearchMethodName(s.spec().method()) << "\nmetric    "
      << (s.spec().has_metric()
              ? absl::StrCat(
                    s.spec().metric().name(), " (",
                    s.spec().metric().goal() == v1::GOAL_MAXIMIZE ? "maximize" : "minimize", ")")
              : "none")
      << "\ntrials    " << ProgressBar(Done(c), s.total_trials() > 0 ? s.total_trials() : Total(c))
      << "  queued " << c.queued() << ", running " << c.running() + c.assigned()
      << (c.paused() > 0 ? absl::StrCat(", paused ", c.paused()) : "") << ", completed "
      << c.completed() << ", pruned " << c.pruned() << ", failed " << c.failed() << ", lost "
      << c.lost() << ", canceled " << c.canceled() << "\n";
  if (!s.best_trial_id().empty()) {
    out << "best      " << s.best_trial_id() << "  " << s.spec().metric().name() << "="
        << FormatValue(s.best_value()) << "\n";
  }
  out << "gpu-hours used " << Hours(s.gpu_seconds_used()) << ", saved by pruning "
      << Hours(s.gpu_seconds_saved());
  if (s.gpu_seconds_saved() > 0) {
    out << " ("
        << FormatValue(100 * s.gpu_seconds_saved() / (s.gpu_seconds_used() + s.gpu_seconds_saved()))
        << "% of what running every trial to the end would have cost)";
  }
  out << "\n";
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  std::string text;
  text.resize(kMaxSpecBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

// ---- commands

int RunSubmit(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  const std::string& path = args.positional[0];
  auto text = ReadFile(path);
  if (!text.ok()) return Fail(err, std::string(text.status().message()));
  Client client(args);
  v1::CreateSweepRequest request;
  request.set_spec_yaml(*text);
  request.set_paused(args.Has("paused"));
  request.set_external(args.Has("external"));
  // No spec_dir: on a cluster, `program` resolves against each agent's --code_dir (as W&B's
  // agent resolves it against its working directory).
  v1::CreateSweepResponse response;
  grpc::Status status = client.stub().CreateSweep(client.Context().get(), request, &response);
  if (!status.ok()) {
    if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      for (absl::string_view line : absl::StrSplit(status.error_message(), '\n')) {
        err << path << ": " << line << "\n";
      }
      return kExitFailure;
    }
    return Fail(err, client.Explain(status));
  }
  for (const auto& w : response.warnings()) err << path << ": warning: " << w << "\n";
  if (args.Get("output") == "json") {
    out << ToJson(response.sweep()).dump(2) << "\n";
  } else {
    out << response.sweep().id() << "\n";
  }
  return kExitOk;
}

int RunList(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  v1::ListSweepsRequest request;
  request.set_limit(1000);
  v1::ListSweepsResponse response;
  grpc::Status status = client.stub().ListSweeps(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  if (!response.warning().empty()) err << "sweepctl: warning: " << response.warning() << "\n";
  if (args.Get("output") == "json") {
    Json arr = Json::array();
    for (const auto& s : response.sweeps()) arr.push_back(ToJson(s));
    out << arr.dump(2) << "\n";
    return kExitOk;
  }
  Table table({"SWEEP", "NAME", "STATE", "METHOD", "DONE", "RUNNING", "BEST", "CREATED"});
  for (const auto& s : response.sweeps()) {
    table.AddRow({s.id(), s.spec().name(), SweepStateName(s.state()),
                  std::string(SearchMethodName(s.spec().method())),
                  absl::StrCat(Done(s.counts()), "/", Total(s.counts())),
                  std::to_string(s.counts().running() + s.counts().assigned()),
                  s.best_trial_id().empty() ? "" : FormatValue(s.best_value()),
                  TimeUtil::ToString(s.created_time()).substr(0, 19)});
  }
  out << (args.Get("output") == "csv" ? table.ToCsv() : table.ToText());
  return kExitOk;
}

// The sweep; sweepd's warning (its store cannot write) goes to `warnings` when given.
absl::StatusOr<v1::Sweep> GetSweep(Client& client, const std::string& id,
                                   std::ostream* warnings = nullptr) {
  v1::GetSweepRequest request;
  request.set_sweep_id(id);
  v1::GetSweepResponse response;
  grpc::Status status = client.stub().GetSweep(client.Context().get(), request, &response);
  if (!status.ok())
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), client.Explain(status));
  if (warnings != nullptr && !response.warning().empty()) {
    *warnings << "sweepctl: warning: " << response.warning() << "\n";
  }
  return response.sweep();
}

int RunStatus(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  auto sweep = GetSweep(client, args.positional[0], &err);
  if (!sweep.ok()) return Fail(err, std::string(sweep.status().message()));
  if (args.Get("output") == "json") {
    Json doc = ToJson(*sweep);
    doc.erase("spec_yaml");
    doc["gpu_hours_used"] = sweep->gpu_seconds_used() / 3600.0;
    doc["gpu_hours_saved"] = sweep->gpu_seconds_saved() / 3600.0;
    out << doc.dump(2) << "\n";
  } else {
    PrintStatus(*sweep, out);
  }
  return kExitOk;
}

Table TrialsTable(const std::vector<v1::Trial>& trials, const std::string& metric) {
  std::vector<std::string> header = {"TRIAL", "STATE", metric.empty() ? "BEST" : metric, "LAST",
                                     "STEP"};
  std::vector<std::string> params;
  for (const auto& t : trials) {
    for (const auto& p : t.params()) {
      if (std::find(params.begin(), params.end(), p.name()) == params.end()) {
        params.push_back(p.name());
      }
    }
  }
  for (const auto& p : params) header.push_back(p);
  Table table(header);
  for (const auto& t : trials) {
    std::vector<std::string> row = {t.id(), TrialStateName(t.state()),
                                    t.has_best_value() ? FormatValue(t.best_value()) : "",
                                    t.has_last_value() ? FormatValue(t.last_value()) : "",
                                    t.has_last_value() ? std::to_string(t.last_step()) : ""};
    for (const auto& name : params) {
      std::string cell;
      for (const auto& p : t.params()) {
        if (p.name() == name) cell = CellText(Json::parse(p.value_json(), nullptr, false));
      }
      row.push_back(cell);
    }
    table.AddRow(std::move(row));
  }
  return table;
}

int RunTrials(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  v1::ListTrialsRequest request;
  request.set_sweep_id(args.positional[0]);
  if (args.Has("state")) {
    for (absl::string_view name : absl::StrSplit(args.Get("state"), ',')) {
      auto state = ParseTrialState(std::string(name));
      if (!state) {
        err << "sweepctl trials: --state: '" << name << "' is not a trial state; one of queued, "
            << "assigned, running, completed, pruned, failed, lost, canceled, paused\n";
        return kExitUsage;
      }
      request.add_states(*state);
    }
  }
  request.set_sort_metric(args.Get("sort"));
  request.set_sort_by_last(args.Has("last"));
  request.set_descending(args.Has("reverse"));
  int64_t limit = 100;
  if (args.Has("limit") &&
      (!absl::SimpleAtoi(args.Get("limit"), &limit) || limit < 1 || limit > 10000)) {
    err << "sweepctl trials: --limit: must be 1 to 10000\n";
    return kExitUsage;
  }
  request.set_limit(static_cast<int32_t>(limit));
  v1::ListTrialsResponse response;
  grpc::Status status = client.stub().ListTrials(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  if (args.Get("output") == "json") {
    Json doc = {{"total", response.total()}, {"trials", Json::array()}};
    for (const auto& t : response.trials()) doc["trials"].push_back(ToJson(t));
    out << doc.dump(2) << "\n";
    return kExitOk;
  }
  std::vector<v1::Trial> trials(response.trials().begin(), response.trials().end());
  Table table = TrialsTable(trials, args.Get("sort"));
  out << (args.Get("output") == "csv" ? table.ToCsv() : table.ToText());
  return kExitOk;
}

int RunBest(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  v1::ListTrialsRequest request;
  request.set_sweep_id(args.positional[0]);
  request.set_limit(1);
  v1::ListTrialsResponse response;
  grpc::Status status = client.stub().ListTrials(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  if (response.trials_size() == 0 || !response.trials(0).has_best_value()) {
    return Fail(err, absl::StrCat("sweep ", args.positional[0], " has no trial with a value yet"));
  }
  const v1::Trial& best = response.trials(0);
  if (args.Get("output") == "json") {
    out << ToJson(best).dump(2) << "\n";
    return kExitOk;
  }
  Table table = TrialsTable({best}, "");
  out << (args.Get("output") == "csv" ? table.ToCsv() : table.ToText());
  return kExitOk;
}

int RunTrial(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  v1::GetTrialRequest request;
  request.set_trial_id(args.positional[0]);
  request.set_max_points(200);
  v1::GetTrialResponse response;
  grpc::Status status = client.stub().GetTrial(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  const v1::Trial& t = response.trial();
  // Method pbt: the chain of checkpoints it descends from, nearest first (each ancestor fetched
  // in turn; a chain is as long as the exploit steps on its way, tens at most).
  struct Ancestor {
    v1::Trial trial;
    std::string changes;  // what explore changed from its parent's parameters
  };
  std::vector<Ancestor> lineage;
  for (v1::Trial current = t; !current.parent_trial_id().empty() && lineage.size() < 10'000;) {
    v1::GetTrialRequest parent_request;
    parent_request.set_trial_id(current.parent_trial_id());
    parent_request.set_max_points(1);
    v1::GetTrialResponse parent_response;
    grpc::Status parent_status =
        client.stub().GetTrial(client.Context().get(), parent_request, &parent_response);
    if (!parent_status.ok()) return Fail(err, client.Explain(parent_status));
    std::vector<std::string> changes;
    for (int i = 0; i < current.params_size() && i < parent_response.trial().params_size(); ++i) {
      const auto& mine = current.params(i);
      const auto& theirs = parent_response.trial().params(i);
      if (mine.value_json() != theirs.value_json()) {
        changes.push_back(
            absl::StrCat(mine.name(), " ", theirs.value_json(), " -> ", mine.value_json()));
      }
    }
    lineage.push_back({current, absl::StrJoin(changes, ", ")});
    current = parent_response.trial();
  }
  if (args.Get("output") == "json") {
    Json doc = ToJson(response);
    if (!lineage.empty()) {
      Json chain = Json::array();
      for (const auto& a : lineage) {
        chain.push_back({{"trial_id", a.trial.id()},
                         {"parent_trial_id", a.trial.parent_trial_id()},
                         {"parent_step", a.trial.parent_step()},
                         {"replaced_trial_id", a.trial.replaced_trial_id()},
                         {"changes", a.changes}});
      }
      doc["lineage"] = std::move(chain);
    }
    out << doc.dump(2) << "\n";
    return kExitOk;
  }
  out << "trial     " << t.id() << "\nstate     " << TrialStateName(t.state())
      << (t.reason().empty() ? "" : "  (" + t.reason() + ")") << "\nattempt   " << t.attempt()
      << "\nagent     " << absl::StrJoin(t.agent_ids(), ",") << "\ngpu-hours "
      << Hours(t.gpu_seconds())
      << (t.gpu_seconds_redone() > 0
              ? absl::StrCat(" (", Hours(t.gpu_seconds_redone()), " redone by retries)")
              : "")
      << (t.has_checkpoint_step() ? absl::StrCat("\ncheckpoint step ", t.checkpoint_step()) : "")
      << "\n";
  for (size_t i = 0; i < lineage.size(); ++i) {
    const v1::Trial& a = lineage[i].trial;
    out << (i == 0 ? "lineage   " : "          ") << (i == 0 ? "" : a.id() + ": ") << "copy of "
        << a.parent_trial_id() << " at step " << a.parent_step() << " (replaced "
        << a.replaced_trial_id() << "; "
        << (lineage[i].changes.empty() ? "parameters unchanged" : lineage[i].changes) << ")\n";
  }
  out << "params\n";
  for (const auto& p : t.params()) out << "  " << p.name() << " = " << p.value_json() << "\n";
  if (t.metrics_size() > 0) {
    out << "metrics\n";
    Table table({"  NAME", "LAST", "BEST", "STEP", "REPORTS"});
    for (const auto& m : t.metrics()) {
      table.AddRow({"  " + m.name(), FormatValue(m.last()), FormatValue(m.best()),
                    std::to_string(m.last_step()), std::to_string(m.count())});
    }
    out << table.ToText();
  }
  out << "events\n";
  for (const auto& e : response.events()) {
    out << "  " << TimeUtil::ToString(e.time()).substr(0, 19) << "  " << e.kind() << "  "
        << e.from_state() << (e.to_state().empty() ? "" : " -> " + e.to_state()) << "  "
        << e.message() << "\n";
  }
  if (!t.workdir().empty()) {
    out << "logs      " << t.workdir() << "/stdout.log\n          " << t.workdir()
        << "/stderr.log\n";
  }
  return kExitOk;
}

template <typename Request, typename Response>
int RunSweepAction(const ParsedArgs& args, std::ostream& out, std::ostream& err,
                   grpc::Status (v1::SweepService::Stub::*call)(grpc::ClientContext*,
                                                                const Request&, Response*),
                   const char* verb) {
  Client client(args);
  Request request;
  request.set_sweep_id(args.positional[0]);
  Response response;
  grpc::Status status = (client.stub().*call)(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  if (args.Get("output") == "json") {
    out << ToJson(response.sweep()).dump(2) << "\n";
  } else {
    out << response.sweep().id() << " " << verb << "\n";
  }
  return kExitOk;
}

int RunPause(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  return RunSweepAction<v1::PauseSweepRequest, v1::PauseSweepResponse>(
      args, out, err, &v1::SweepService::Stub::PauseSweep, "paused");
}
int RunResume(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  return RunSweepAction<v1::ResumeSweepRequest, v1::ResumeSweepResponse>(
      args, out, err, &v1::SweepService::Stub::ResumeSweep, "resumed");
}
int RunCancel(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  return RunSweepAction<v1::CancelSweepRequest, v1::CancelSweepResponse>(
      args, out, err, &v1::SweepService::Stub::CancelSweep, "canceled");
}

int RunEnqueue(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  v1::EnqueueTrialRequest request;
  request.set_sweep_id(args.positional[0]);
  for (const auto& assignment : absl::StrSplit(args.Get("param"), '\x1f', absl::SkipEmpty())) {
    const size_t eq = assignment.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      err << "sweepctl enqueue: --param: '" << assignment << "' is not NAME=VALUE\n";
      return kExitUsage;
    }
    auto* p = request.add_params();
    p->set_name(std::string(assignment.substr(0, eq)));
    const std::string value(assignment.substr(eq + 1));
    // A JSON value stays one (0.01, 32, true, [1,2]); anything else is a string.
    auto parsed = Json::parse(value, nullptr, false);
    p->set_value_json(parsed.is_discarded() ? Json(value).dump() : parsed.dump());
  }
  v1::EnqueueTrialResponse response;
  grpc::Status status = client.stub().EnqueueTrial(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  if (args.Get("output") == "json") {
    out << ToJson(response.trial()).dump(2) << "\n";
  } else {
    out << response.trial().id() << "\n";
  }
  return kExitOk;
}

struct WatchOptions {
  // Nothing printed while watching (sweepctl run --output json).
  bool quiet = false;
  // End as soon as the sweep is stalled (sweepctl run: nobody else will fix it), with
  // kExitStalled and the reason in `stalled`.
  bool stop_on_stall = false;
};
// Internal to Watch's callers, never exit codes: the sweep stalled (with stop_on_stall), or
// ended otherwise than finished (canceled, failed).
constexpr int kExitStalled = 3;
constexpr int kExitSweepNotFinished = 4;

// Follows a sweep until it ends: a redrawn status on a terminal, one line per change otherwise.
// If sweepd goes away (a restart), says so and reconnects with backoff; ends only when the
// sweep ends, on an error that reconnecting cannot fix (an unknown sweep), or on Ctrl-C.
int Watch(Client& client, const std::string& sweep_id, std::ostream& out, std::ostream& err,
          WatchOptions options = {}, std::string* stalled = nullptr) {
  const bool tty = isatty(STDOUT_FILENO) != 0 && &out == &std::cout;
  v1::WatchSweepRequest request;
  request.set_sweep_id(sweep_id);
  std::string last_line;
  std::string last_stall;
  auto show = [&](const v1::Sweep& sweep) {
    if (options.quiet) return;
    if (tty) {
      out << "\033[H\033[J";
      PrintStatus(sweep, out);
      out.flush();
      return;
    }
    const auto& c = sweep.counts();
    std::string line = absl::StrCat(
        sweep_id, " ", SweepStateName(sweep.state()), " ",
        ProgressBar(Done(c), sweep.total_trials() > 0 ? sweep.total_trials() : Total(c)),
        " running ", c.running() + c.assigned(),
        sweep.best_trial_id().empty()
            ? ""
            : absl::StrCat(" best ", sweep.spec().metric().name(), "=",
                           FormatValue(sweep.best_value()), " (", sweep.best_trial_id(), ")"));
    if (line != last_line) out << line << "\n" << std::flush;
    last_line = line;
    if (sweep.stalled() != last_stall && !sweep.stalled().empty()) {
      out << sweep_id << " STALLED: " << sweep.stalled() << "\n" << std::flush;
    }
    last_stall = sweep.stalled();
  };
  double backoff = 0.5;
  bool away = false;            // sweepd unreachable; said once, until it is back
  bool connected_once = false;  // before that, an error is a setup problem to report, not wait out
  while (true) {
    auto context = client.StreamContext();
    auto reader = client.stub().WatchSweep(context.get(), request);
    std::optional<v1::Sweep> sweep;
    grpc::Status status;
    auto refresh = [&]() -> bool {
      v1::GetSweepRequest get;
      get.set_sweep_id(sweep_id);
      v1::GetSweepResponse got;
      status = client.stub().GetSweep(client.Context().get(), get, &got);
      if (!status.ok()) return false;
      sweep = got.sweep();
      show(*sweep);
      return true;
    };
    bool stopped_on_stall = false;
    if (refresh()) {
      connected_once = true;
      if (away) {
        err << "sweepctl: sweepd at " << client.address() << " is back; watching again\n";
        away = false;
      }
      backoff = 0.5;
      v1::Event event;
      bool stream_ended = false;
      while (!(options.stop_on_stall && !sweep->stalled().empty())) {
        if (!reader->Read(&event)) {
          stream_ended = true;
          break;
        }
        request.set_after_event_id(event.id());  // a reconnect resumes after it
        if (absl::StartsWith(event.kind(), "trial.state") ||
            absl::StartsWith(event.kind(), "sweep.")) {
          if (!refresh()) break;
        }
      }
      stopped_on_stall = options.stop_on_stall && !sweep->stalled().empty();
      if (!stream_ended) context->TryCancel();  // or Finish would wait for the sweep's end
      const grpc::Status finished = reader->Finish();
      if (status.ok()) status = finished;
    } else {
      context->TryCancel();
      (void)reader->Finish();
    }
    if (stopped_on_stall) {
      if (stalled != nullptr) *stalled = sweep->stalled();
      return kExitStalled;
    }
    if (status.ok()) break;  // the stream ended with the sweep
    const bool transient = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    if (!connected_once || !transient) return Fail(err, client.Explain(status));
    if (!away) {
      err << "sweepctl: lost sweepd at " << client.address() << " (" << status.error_message()
          << "); reconnecting, Ctrl-C to stop watching (the sweep goes on)\n";
      away = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(backoff * 1000)));
    backoff = std::min(backoff * 2, 10.0);
  }
  auto final_state = GetSweep(client, sweep_id);
  if (!final_state.ok()) return Fail(err, std::string(final_state.status().message()));
  show(*final_state);
  return final_state->state() == v1::SWEEP_STATE_FINISHED ? kExitOk : kExitSweepNotFinished;
}

int RunAsk(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  v1::AskTrialRequest request;
  request.set_sweep_id(args.positional[0]);
  v1::AskTrialResponse response;
  grpc::Status status = client.stub().AskTrial(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  const v1::Trial& t = response.trial();
  if (args.Get("output") == "json") {
    Json params = Json::object();
    for (const auto& p : t.params()) params[p.name()] = Json::parse(p.value_json(), nullptr, false);
    out << Json{{"trial", t.id()}, {"params", params}}.dump(2) << "\n";
    return kExitOk;
  }
  out << t.id();
  for (const auto& p : t.params()) {
    out << " " << p.name() << "=" << CellText(Json::parse(p.value_json(), nullptr, false));
  }
  out << "\n";
  return kExitOk;
}

int RunReport(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  v1::ReportTrialRequest request;
  request.set_trial_id(args.positional[0]);
  int64_t step = 0;
  if (!absl::SimpleAtoi(args.Get("step"), &step) || step < 0) {
    err << "sweepctl report: --step: a whole number >= 0 is required\n";
    return kExitUsage;
  }
  request.set_step(step);
  for (absl::string_view metric : absl::StrSplit(args.Get("metric"), '\x1f', absl::SkipEmpty())) {
    const size_t eq = metric.find('=');
    double value = 0;
    if (eq == absl::string_view::npos || eq == 0 ||
        !absl::SimpleAtod(metric.substr(eq + 1), &value)) {
      err << "sweepctl report: --metric: '" << metric << "' is not NAME=NUMBER\n";
      return kExitUsage;
    }
    (*request.mutable_metrics())[std::string(metric.substr(0, eq))] = value;
  }
  if (request.metrics().empty()) {
    err << "sweepctl report: give at least one --metric NAME=NUMBER\n";
    return kExitUsage;
  }
  v1::ReportTrialResponse response;
  grpc::Status status = client.stub().ReportTrial(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  if (args.Get("output") == "json") {
    out << Json{{"continue", response.should_continue()}, {"reason", response.reason()}}.dump()
        << "\n";
  } else {
    out << (response.should_continue() ? "continue" : "stop: " + response.reason()) << "\n";
  }
  return kExitOk;
}

int RunTell(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  v1::TellTrialRequest request;
  request.set_trial_id(args.positional[0]);
  if (args.Has("value")) {
    double value = 0;
    if (!absl::SimpleAtod(args.Get("value"), &value)) {
      err << "sweepctl tell: --value: '" << args.Get("value") << "' is not a number\n";
      return kExitUsage;
    }
    request.set_value(value);
  }
  const std::string state = args.Get("state");
  request.set_state(state == "failed"   ? v1::TRIAL_STATE_FAILED
                    : state == "pruned" ? v1::TRIAL_STATE_PRUNED
                                        : v1::TRIAL_STATE_COMPLETED);
  v1::TellTrialResponse response;
  grpc::Status status = client.stub().TellTrial(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  if (args.Get("output") == "json") {
    out << ToJson(response.trial()).dump(2) << "\n";
  } else {
    out << response.trial().id() << " " << TrialStateName(response.trial().state()) << "\n";
  }
  return kExitOk;
}

int RunWatch(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  const int rc = Watch(client, args.positional[0], out, err);
  return rc == kExitSweepNotFinished ? kExitOk : rc;  // a canceled sweep: still a good watch
}

int RunLogs(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  v1::GetTrialRequest request;
  request.set_trial_id(args.positional[0]);
  request.set_without_metrics(true);
  v1::GetTrialResponse response;
  grpc::Status status = client.stub().GetTrial(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  if (response.trial().workdir().empty()) {
    return Fail(err, absl::StrCat("trial ", args.positional[0], " has not started; no logs yet"));
  }
  const std::string path =
      absl::StrCat(response.trial().workdir(), args.Has("stderr") ? "/stderr.log" : "/stdout.log");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Fail(err, absl::StrCat("cannot read ", path,
                                  " (logs are on the agent's node; run sweepctl logs there)"));
  }
  std::string chunk(65536, '\0');
  while (true) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    out.write(chunk.data(), in.gcount());
    if (in.gcount() > 0) continue;
    out.flush();
    if (!args.Has("follow")) break;
    in.clear();
    auto state = client.stub().GetTrial(client.Context().get(), request, &response);
    const auto s = response.trial().state();
    if (state.ok() && s != v1::TRIAL_STATE_RUNNING && s != v1::TRIAL_STATE_ASSIGNED) {
      in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
      out.write(chunk.data(), in.gcount());
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return kExitOk;
}

int RunAgents(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  if (args.Has("release")) {
    v1::ReleaseAgentRequest request;
    request.set_agent_id(args.Get("release"));
    v1::ReleaseAgentResponse response;
    grpc::Status status = client.stub().ReleaseAgent(client.Context().get(), request, &response);
    if (!status.ok()) return Fail(err, client.Explain(status));
    out << "agent " << response.agent().id() << " released from quarantine\n";
    return kExitOk;
  }
  v1::ListAgentsRequest request;
  request.set_all(args.Has("all"));
  v1::ListAgentsResponse response;
  grpc::Status status = client.stub().ListAgents(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  if (args.Get("output") == "json") {
    Json arr = Json::array();
    for (const auto& a : response.agents()) arr.push_back(ToJson(a));
    out << arr.dump(2) << "\n";
    return kExitOk;
  }
  auto is_gpu = [](const v1::Gpu& g) { return !absl::StartsWith(g.uuid(), "slot-"); };
  Table table({"AGENT", "HOST", "STATE", "RESOURCES", "FREE", "RUNNING", "NOTE"});
  Table gpus({"AGENT", "GPU", "NAME", "UTIL", "MEMORY", "TRIAL"});
  bool any_gpu = false;
  for (const auto& a : response.agents()) {
    const std::string state = AgentStateName(a.state());
    int free = 0, gpu_count = 0;
    for (const auto& g : a.gpus()) {
      if (g.trial_id().empty()) ++free;
      if (!is_gpu(g)) continue;
      ++gpu_count;
      any_gpu = true;
      char util[32], memory[64];
      std::snprintf(util, sizeof(util), "%.0f%%", g.utilization_percent());
      std::snprintf(memory, sizeof(memory), "%.1f/%.1f GiB",
                    static_cast<double>(g.memory_used_bytes()) / (1 << 30),
                    static_cast<double>(g.memory_total_bytes()) / (1 << 30));
      gpus.AddRow({a.id(), std::to_string(g.index()), g.name(), util, memory,
                   g.trial_id().empty() ? "-" : g.trial_id()});
    }
    const std::string resources =
        gpu_count > 0 ? absl::StrCat(gpu_count, " GPU") : absl::StrCat(a.gpus_size(), " slots");
    table.AddRow({a.id(), a.hostname(), state, resources, std::to_string(free),
                  absl::StrJoin(a.running_trial_ids(), ","), a.quarantine_reason()});
  }
  if (args.Get("output") == "csv") {
    out << table.ToCsv();
    return kExitOk;
  }
  out << table.ToText();
  if (any_gpu) out << "\n" << gpus.ToText();
  return kExitOk;
}

int RunExport(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  Client client(args);
  v1::ExportSweepRequest request;
  request.set_sweep_id(args.positional[0]);
  v1::ExportSweepResponse response;
  grpc::Status status = client.stub().ExportSweep(client.Context().get(), request, &response);
  if (!status.ok()) return Fail(err, client.Explain(status));
  std::vector<std::string> columns(response.columns().begin(), response.columns().end());
  if (args.Get("format") == "json") {
    Json rows = Json::array();
    for (const auto& r : response.rows()) {
      Json row = Json::object();
      for (int i = 0; i < r.cells_size() && i < static_cast<int>(columns.size()); ++i) {
        auto v = Json::parse(r.cells(i), nullptr, false);
        row[columns[static_cast<size_t>(i)]] =
            r.cells(i).empty() ? Json(nullptr) : (v.is_discarded() ? Json(r.cells(i)) : v);
      }
      rows.push_back(std::move(row));
    }
    out << rows.dump(2) << "\n";
    return kExitOk;
  }
  Table table(columns);
  for (const auto& r : response.rows()) table.AddRow({r.cells().begin(), r.cells().end()});
  out << table.ToCsv();
  return kExitOk;
}

// Waits until `nodes` agents are connected to the embedded scheduler, or `failed` names why
// one of them stopped (its workdir is in use, ...). Bounded: a minute is far more than an agent
// needs to start, even on a busy machine.
absl::Status WaitForEmbeddedAgents(Client& client, int nodes,
                                   const std::function<std::optional<std::string>()>& failed) {
  for (int waited_ms = 0; waited_ms < 60'000; waited_ms += 20) {
    if (auto why = failed(); why.has_value()) return absl::FailedPreconditionError(*why);
    v1::ListAgentsRequest request;
    v1::ListAgentsResponse response;
    if (client.stub().ListAgents(client.Context().get(), request, &response).ok()) {
      int connected = 0;
      for (const auto& agent : response.agents()) {
        connected += agent.state() == v1::AGENT_STATE_CONNECTED ? 1 : 0;
      }
      if (connected >= nodes) return absl::OkStatus();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::DeadlineExceededError("the embedded agent did not connect within 60 s");
}

// The last failed trial of the sweep: its reason and the end of its stderr, which is what the
// user needs to fix a command that fails (a missing script, a bad argument).
void PrintLastFailure(Client& client, const std::string& sweep_id, std::ostream& err) {
  v1::ListTrialsRequest request;
  request.set_sweep_id(sweep_id);
  request.add_states(v1::TRIAL_STATE_FAILED);
  request.set_limit(10000);
  v1::ListTrialsResponse response;
  if (!client.stub().ListTrials(client.Context().get(), request, &response).ok()) return;
  const v1::Trial* last = nullptr;
  for (const auto& t : response.trials()) {
    if (last == nullptr || t.number() > last->number()) last = &t;
  }
  if (last == nullptr) return;
  err << "last failed trial " << last->id() << ": " << last->reason() << "\n";
  const std::string stderr_path = !last->stderr_path().empty() ? last->stderr_path()
                                  : !last->workdir().empty()   ? last->workdir() + "/stderr.log"
                                                               : "";
  std::ifstream in(stderr_path, std::ios::binary);
  if (!in) return;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(std::move(line));
    if (lines.size() > 20) lines.erase(lines.begin());
  }
  if (lines.empty()) return;
  err << "its stderr (" << stderr_path << "), last " << lines.size() << " lines:\n";
  for (const auto& line : lines) err << "  " << line << "\n";
}

int RunRun(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  const std::string& path = args.positional[0];
  auto text = ReadFile(path);
  if (!text.ok()) return Fail(err, std::string(text.status().message()));
  auto parsed = ParseSweepSpec(*text);
  if (!parsed.ok()) {
    for (const auto& line : SpecErrorLines(parsed.status())) err << path << ": " << line << "\n";
    return kExitFailure;
  }
  int parallel = parsed->spec.parallelism() > 0 ? parsed->spec.parallelism() : 2;
  if (args.Has("parallel") &&
      (!absl::SimpleAtoi(args.Get("parallel"), &parallel) || parallel < 1 || parallel > 1024)) {
    err << "sweepctl run: --parallel: must be 1 to 1024\n";
    return kExitUsage;
  }
  const bool json = args.Get("output") == "json";
  spdlog::set_level(args.Has("verbose") ? spdlog::level::info : spdlog::level::warn);
  std::error_code ec;
  const std::string spec_dir = std::filesystem::absolute(path, ec).parent_path().string();
  std::string http = args.Has("no-http") ? "" : args.Get("http");
  auto server = scheduler::SchedulerServer::Start({.listen = "127.0.0.1:0",
                                                   .db_path = args.Get("db"),
                                                   .engine = {.stop_grace_seconds = 10},
                                                   .http_listen = http});
  if (!server.ok()) return Fail(err, std::string(server.status().message()));
  if (!(*server)->dashboard_url().empty()) {
    // On stderr with --output json, so stdout stays one JSON document.
    (json ? err : out) << "dashboard: " << (*server)->dashboard_url() << "\n";
    (json ? err : out).flush();
  }
  // One embedded agent per node the spec's trials need: a multi-node spec runs on this machine
  // as that many loopback "nodes", each with CPU slots and its own trial folders.
  const int nodes = std::max(1, parsed->spec.resources().nodes());
  const int slots_per_trial = std::max(1, parsed->spec.resources().gpus_per_node());
  const char* python = std::getenv("SWEEPD_PYTHON");
  std::vector<std::unique_ptr<worker::Agent>> agents;
  std::vector<std::thread> agent_threads;
  // What each embedded agent's Run() returned, once it has (e.g. its workdir is in use).
  std::mutex agent_mu;
  std::vector<std::optional<absl::Status>> agent_results(static_cast<size_t>(nodes));
  for (int n = 0; n < nodes; ++n) {
    worker::AgentOptions agent_options{
        .scheduler = (*server)->address(),
        .agent_id = nodes == 1 ? "local" : absl::StrCat("local-", n),
        .slots = std::min(1024, parallel * slots_per_trial),
        .gpu_discovery = nodes == 1 ? "auto" : "none",
        .advertise_address = "127.0.0.1",
        .workdir =
            nodes == 1 ? args.Get("workdir") : absl::StrCat(args.Get("workdir"), "/node-", n),
        .code_dir = spec_dir};
    agent_options.interpreter = python != nullptr && *python != '\0' ? python : "python3";
    agent_options.python_path = worker::DefaultPythonPath();
    agents.push_back(std::make_unique<worker::Agent>(agent_options));
    agent_threads.emplace_back([agent = agents.back().get(), &agent_mu, &agent_results, n] {
      absl::Status st = agent->Run();
      std::lock_guard<std::mutex> lock(agent_mu);
      agent_results[static_cast<size_t>(n)] = std::move(st);
    });
  }
  auto stop_all = [&] {
    // The sweep is over: the agent leaving is expected, not worth a warning.
    if (!args.Has("verbose")) spdlog::set_level(spdlog::level::err);
    for (auto& agent : agents) agent->Stop();
    for (auto& t : agent_threads) t.join();
    (*server)->Shutdown();
  };

  ParsedArgs client_args = args;
  client_args.flags["scheduler"] = (*server)->address();
  Client client(client_args);
  // Every embedded agent registers before the sweep exists, so a stall seen while watching is
  // real: nothing else is coming to run its trials.
  if (auto ready = WaitForEmbeddedAgents(client, nodes,
                                         [&]() -> std::optional<std::string> {
                                           std::lock_guard<std::mutex> lock(agent_mu);
                                           for (const auto& result : agent_results) {
                                             if (result.has_value()) {
                                               return result->ok() ? "the embedded agent stopped"
                                                                   : std::string(result->message());
                                             }
                                           }
                                           return std::nullopt;
                                         });
      !ready.ok()) {
    stop_all();
    return Fail(err, std::string(ready.message()));
  }
  v1::CreateSweepRequest request;
  request.set_spec_yaml(*text);
  request.set_spec_dir(spec_dir);
  v1::CreateSweepResponse created;
  grpc::Status status = client.stub().CreateSweep(client.Context().get(), request, &created);
  if (!status.ok()) {
    stop_all();
    return Fail(err, client.Explain(status));
  }
  for (const auto& w : created.warnings()) err << path << ": warning: " << w << "\n";
  const std::string id = created.sweep().id();
  if (!json) {
    out << "sweep " << id << ": " << parallel << " at a time"
        << (nodes > 1 ? absl::StrCat(", ", nodes, " loopback nodes per trial") : "") << ", store "
        << args.Get("db") << "\n";
  }
  std::string stalled;
  int rc =
      Watch(client, id, json ? err : out, err, {.quiet = json, .stop_on_stall = true}, &stalled);
  if (rc == kExitSweepNotFinished) rc = kExitFailure;
  if (rc == kExitStalled) {
    // Nobody else will run its trials: say why and end it, rather than wait for ever.
    err << "sweepctl run: sweep " << id << " cannot go on: " << stalled << "\n";
    v1::CancelSweepRequest cancel;
    cancel.set_sweep_id(id);
    cancel.set_reason(absl::StrCat("stalled: ", stalled));
    v1::CancelSweepResponse canceled;
    (void)client.stub().CancelSweep(client.Context().get(), cancel, &canceled);
    rc = kExitFailure;
  }
  if (rc != kExitOk) PrintLastFailure(client, id, err);
  auto sweep = GetSweep(client, id);
  v1::ListTrialsRequest best_request;
  best_request.set_sweep_id(id);
  best_request.set_limit(1);
  v1::ListTrialsResponse best;
  client.stub().ListTrials(client.Context().get(), best_request, &best);
  if (json) {
    Json doc = {{"sweep", sweep.ok() ? ToJson(*sweep) : Json(nullptr)}};
    if (sweep.ok()) doc["sweep"].erase("spec_yaml");
    doc["best_trial"] = best.trials_size() > 0 ? ToJson(best.trials(0)) : Json(nullptr);
    out << doc.dump(2) << "\n";
  } else {
    if (sweep.ok()) {
      out << "\n";
      PrintStatus(*sweep, out);
    }
    if (best.trials_size() > 0 && best.trials(0).has_best_value()) {
      out << "\nbest trial\n" << TrialsTable({best.trials(0)}, "").ToText();
    }
  }
  stop_all();
  return rc;
}

std::vector<FlagSpec> ServerFlags(bool output = true, std::vector<FlagSpec> extra = {}) {
  std::vector<FlagSpec> flags = {
      {.name = "scheduler",
       .value_name = "ADDR",
       .help = "sweepd's address (default $SWEEPD_ADDR, else 127.0.0.1:7777)"},
      {.name = "timeout",
       .value_name = "SECONDS",
       .help = "deadline of each call",
       .default_value = "10"},
      {.name = "tls-ca",
       .value_name = "PEM",
       .help = "CA of sweepd's certificate: connect with TLS (default $SWEEPD_TLS_CA); the "
               "token comes from $SWEEPD_TOKEN"}};
  if (output) {
    flags.push_back({.name = "output",
                     .value_name = "FORMAT",
                     .help = "output format",
                     .default_value = "table",
                     .choices = {"table", "json", "csv"}});
  }
  for (auto& f : extra) flags.push_back(std::move(f));
  return flags;
}

}  // namespace

std::vector<Command> ServerCommands() {
  return {
      {.name = "submit",
       .summary = "submit a sweep to sweepd; prints its id",
       .usage = "sweepctl submit FILE [--paused]",
       .description = "Sends the spec to sweepd, which validates it and starts proposing trials.",
       .flags = ServerFlags(
           true, {{.name = "paused", .help = "create it paused"},
                  {.name = "external", .help = "no agents: trials come through ask/report/tell"}}),
       .min_args = 1,
       .max_args = 1,
       .run = RunSubmit},
      {.name = "list",
       .summary = "list sweeps",
       .usage = "sweepctl list",
       .description = "Every sweep, newest first, with its progress and best value.",
       .flags = ServerFlags(),
       .run = RunList},
      {.name = "status",
       .summary = "a sweep's state, trial counts, best trial and GPU-hours",
       .usage = "sweepctl status SWEEP",
       .description = "One sweep's summary.",
       .flags = ServerFlags(),
       .min_args = 1,
       .max_args = 1,
       .run = RunStatus},
      {.name = "trials",
       .summary = "a sweep's trials, best first",
       .usage = "sweepctl trials SWEEP [--state S] [--sort METRIC] [--limit N]",
       .description = "Trials sorted by the sweep metric's best value (or --sort METRIC), best "
                      "first; trials without the metric last.",
       .flags = ServerFlags(
           true,
           {{.name = "state", .value_name = "S[,S]", .help = "only trials in these states"},
            {.name = "sort", .value_name = "METRIC", .help = "sort by this metric"},
            {.name = "last", .help = "sort by the metric's last value, not its best"},
            {.name = "reverse", .help = "worst first"},
            {.name = "limit", .value_name = "N", .help = "at most N", .default_value = "100"}}),
       .min_args = 1,
       .max_args = 1,
       .run = RunTrials},
      {.name = "trial",
       .summary = "one trial: params, state, metrics, events, log paths",
       .usage = "sweepctl trial TRIAL",
       .description = "Everything about one trial. JSON output includes its learning curves.",
       .flags = ServerFlags(),
       .min_args = 1,
       .max_args = 1,
       .run = RunTrial},
      {.name = "best",
       .summary = "the best trial of a sweep",
       .usage = "sweepctl best SWEEP",
       .description = "The trial with the best value of the sweep metric.",
       .flags = ServerFlags(),
       .min_args = 1,
       .max_args = 1,
       .run = RunBest},
      {.name = "pause",
       .summary = "stop proposing trials (running ones go on)",
       .usage = "sweepctl pause SWEEP",
       .description = "No new trials start until `sweepctl resume`.",
       .flags = ServerFlags(),
       .min_args = 1,
       .max_args = 1,
       .run = RunPause},
      {.name = "resume",
       .summary = "resume a paused sweep",
       .usage = "sweepctl resume SWEEP",
       .description = "Trials start again.",
       .flags = ServerFlags(),
       .min_args = 1,
       .max_args = 1,
       .run = RunResume},
      {.name = "cancel",
       .summary = "cancel a sweep and stop its trials",
       .usage = "sweepctl cancel SWEEP",
       .description = "Running trials are told to stop, then get SIGTERM and SIGKILL after the "
                      "grace period.",
       .flags = ServerFlags(),
       .min_args = 1,
       .max_args = 1,
       .run = RunCancel},
      {.name = "enqueue",
       .summary = "queue a trial with given parameters; it runs next",
       .usage = "sweepctl enqueue SWEEP --param NAME=VALUE [--param NAME=VALUE ...]",
       .description = "Values are JSON when they parse as JSON (0.01, 32, true), else strings. "
                      "Parameters not given come from the search method.",
       .flags = ServerFlags(true, {{.name = "param",
                                    .value_name = "NAME=VALUE",
                                    .help = "a parameter value (repeatable)",
                                    .repeatable = true}}),
       .min_args = 1,
       .max_args = 1,
       .run = RunEnqueue},
      {.name = "ask",
       .summary = "ask/tell: a new trial of an --external sweep and its parameters",
       .usage = "sweepctl ask SWEEP [--output json]",
       .description = "For your own runner (a notebook, a Slurm array): the trial runs wherever "
                      "you like; report its progress with `sweepctl report` and end it with "
                      "`sweepctl tell`. Exit 1 when the sweep has nothing left to propose.",
       .flags = ServerFlags(),
       .min_args = 1,
       .max_args = 1,
       .run = RunAsk},
      {.name = "report",
       .summary = "ask/tell: an intermediate value; answers continue or stop (pruned)",
       .usage = "sweepctl report TRIAL --step N --metric NAME=VALUE [--metric ...]",
       .description = "Stores the values and runs the sweep's pruner on them.",
       .flags = ServerFlags(true, {{.name = "step", .value_name = "N", .help = "the step"},
                                   {.name = "metric",
                                    .value_name = "NAME=VALUE",
                                    .help = "a metric value (repeatable)",
                                    .repeatable = true}}),
       .min_args = 1,
       .max_args = 1,
       .run = RunReport},
      {.name = "tell",
       .summary = "ask/tell: end a trial with its final value or state",
       .usage = "sweepctl tell TRIAL --value V [--state completed|failed|pruned]",
       .description = "A completed trial needs its final value of the sweep metric.",
       .flags = ServerFlags(true, {{.name = "value", .value_name = "V", .help = "final value"},
                                   {.name = "state",
                                    .value_name = "STATE",
                                    .help = "how it ended",
                                    .default_value = "completed",
                                    .choices = {"completed", "failed", "pruned"}}}),
       .min_args = 1,
       .max_args = 1,
       .run = RunTell},
      {.name = "watch",
       .summary = "follow a sweep live until it ends",
       .usage = "sweepctl watch SWEEP",
       .description = "A progress bar, trial counts and the best trial, updated as trials change.",
       .flags = ServerFlags(false),
       .min_args = 1,
       .max_args = 1,
       .run = RunWatch},
      {.name = "logs",
       .summary = "a trial's stdout (or --stderr)",
       .usage = "sweepctl logs TRIAL [--follow] [--stderr]",
       .description = "Reads the log files the agent wrote (on the agent's node).",
       .flags = ServerFlags(false, {{.name = "follow", .help = "keep printing until it ends"},
                                    {.name = "stderr", .help = "stderr instead of stdout"}}),
       .min_args = 1,
       .max_args = 1,
       .run = RunLogs},
      {.name = "agents",
       .summary = "list agents and what they run",
       .usage = "sweepctl agents [--all] | sweepctl agents --release AGENT",
       .description =
           "Connected agents (--all: also disconnected ones), their free slots and trials, and "
           "per GPU its utilisation and memory (from NVML or nvidia-smi). An agent whose trials "
           "fail 3 times within 60 s is quarantined (no new trials); --release lifts it.",
       .flags = ServerFlags(
           true,
           {{.name = "all", .help = "include disconnected agents"},
            {.name = "release", .value_name = "AGENT", .help = "lift the quarantine of AGENT"}}),
       .run = RunAgents},
      {.name = "export",
       .summary = "a sweep's trials as CSV or JSON",
       .usage = "sweepctl export SWEEP [--format csv|json]",
       .description = "One row per trial: state, parameters, and each metric's last value.",
       .flags = ServerFlags(false, {{.name = "format",
                                     .value_name = "FORMAT",
                                     .help = "csv or json",
                                     .default_value = "csv",
                                     .choices = {"csv", "json"}}}),
       .min_args = 1,
       .max_args = 1,
       .run = RunExport},
      {.name = "run",
       .summary = "run a whole sweep on this machine (embedded sweepd and agent)",
       .usage = "sweepctl run FILE [--parallel N] [--db PATH] [--output json]",
       .description = "Starts a scheduler and an agent in this process, runs the sweep with "
                      "`program` resolved against the spec's folder, shows its progress, and "
                      "prints the best trial. Exit 0 when the sweep finished.",
       .flags =
           {{.name = "parallel",
             .value_name = "N",
             .help = "trials at once (default: the spec's parallelism, else 2)"},
            {.name = "db", .value_name = "PATH", .help = "the store", .default_value = "sweepd.db"},
            {.name = "workdir",
             .value_name = "DIR",
             .help = "trial folders",
             .default_value = "sweepd-work"},
            {.name = "verbose", .help = "log what the scheduler and agent do"},
            {.name = "http",
             .value_name = "ADDR",
             .help = "serve the live dashboard here while the sweep runs (port 0: a free one)",
             .default_value = "127.0.0.1:0"},
            {.name = "no-http", .help = "no dashboard"},
            {.name = "output",
             .value_name = "FORMAT",
             .help = "output format",
             .default_value = "table",
             .choices = {"table", "json"}}},
       .min_args = 1,
       .max_args = 1,
       .run = RunRun},
  };
}

}  // namespace sweepd::cli
