#include "scheduler/grpc_services.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/logging.h"
#include "common/metric_name.h"
#include "common/security.h"
#include "scheduler/agent_messages.h"

namespace sweepd::scheduler {
namespace {

// Page tokens are offsets, opaque to clients.
absl::StatusOr<int64_t> PageOffset(const std::string& token) {
  if (token.empty()) return 0;
  int64_t offset = 0;
  if (!absl::SimpleAtoi(token, &offset) || offset < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token: '", token.substr(0, 40), "' is not a token this server gave"));
  }
  return offset;
}

// How long an API call waits for its change to be durable before it answers UNAVAILABLE (the
// change stays queued and is stored when the store recovers).
constexpr double kDurableWithinSeconds = 30;

absl::Status CheckId(const std::string& field, const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": required"));
  if (id.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": at most 64 characters"));
  }
  return absl::OkStatus();
}

// The engine's side of one agent stream: an outbox drained by a writer thread, so the engine
// never blocks on the network.
class StreamChannel final : public AgentChannel {
 public:
  StreamChannel(grpc::ServerContext* context,
                grpc::ServerReaderWriter<v1::SchedulerMessage, v1::AgentMessage>* stream)
      : context_(context), stream_(stream), writer_([this] { WriteLoop(); }) {}

  ~StreamChannel() override { Finish(); }

  // Closes the stream and waits for the writer thread: after this the stream is not touched, so
  // the handler may return even while the engine still holds this channel.
  // `cancel` false: the stream is left to end with the handler's own status (a refusal the
  // agent must read), instead of CANCELLED.
  void Finish(bool cancel = true) {
    if (cancel) {
      Close();
    } else {
      {
        std::lock_guard<std::mutex> lock(mu_);
        closed_ = true;
      }
      cv_.notify_one();
    }
    std::lock_guard<std::mutex> lock(join_mu_);
    if (writer_.joinable()) writer_.join();
  }

  void Send(v1::SchedulerMessage message) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      outbox_.push_back(std::move(message));
    }
    cv_.notify_one();
  }

  void Close() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      closed_ = true;
    }
    cv_.notify_one();
    context_->TryCancel();  // the handler's Read() returns and the stream ends
  }

 private:
  void WriteLoop() {
    while (true) {
      v1::SchedulerMessage message;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return closed_ || !outbox_.empty(); });
        if (outbox_.empty()) return;  // closed and drained
        message = std::move(outbox_.front());
        outbox_.pop_front();
      }
      if (!stream_->Write(message)) {
        Close();
        return;
      }
    }
  }

  grpc::ServerContext* const context_;
  grpc::ServerReaderWriter<v1::SchedulerMessage, v1::AgentMessage>* const stream_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<v1::SchedulerMessage> outbox_;
  bool closed_ = false;
  std::mutex join_mu_;
  std::thread writer_;
};

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // The message travels in a metadata header, which clients refuse past 8 KiB by default ("received
  // initial metadata size exceeds limit", hiding the real error): cut it well below.
  constexpr size_t kMaxMessageBytes = 4096;
  std::string message(status.message());
  if (message.size() > kMaxMessageBytes) {
    size_t cut = kMaxMessageBytes;
    while (cut > 0 && (static_cast<unsigned char>(message[cut]) & 0xC0) == 0x80) --cut;
    message =
        absl::StrCat(message.substr(0, cut), "... (", message.size() - cut, " more bytes cut)");
  }
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::move(message));
}

absl::StatusOr<v1::Sweep> SweepServiceImpl::LoadSweep(const std::string& id) {
  auto sweep = store_->GetSweep(id);
  if (!sweep.ok()) return sweep.status();
  if (auto search = CreateSearchMethod(sweep->spec()); search.ok()) {
    if (auto size = (*search)->Size()) sweep->set_total_trials(*size);
  }
  if (sweep->total_trials() == 0) {
    int64_t cap = sweep->spec().run_cap();
    if (sweep->spec().budget().max_trials() > 0) {
      cap = cap > 0 ? std::min(cap, sweep->spec().budget().max_trials())
                    : sweep->spec().budget().max_trials();
    }
    sweep->set_total_trials(cap);
  }
  if (sweep->state() == v1::SWEEP_STATE_RUNNING) {
    sweep->set_stalled(engine_->StallReason(sweep->id()));
  }
  return sweep;
}

grpc::Status SweepServiceImpl::CreateSweep(grpc::ServerContext* context,
                                           const v1::CreateSweepRequest* request,
                                           v1::CreateSweepResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (request->spec_yaml().empty()) {
    return ToGrpc(absl::InvalidArgumentError("spec_yaml: required (the sweep spec as YAML)"));
  }
  if (auto st = StoreWritable(); !st.ok()) return ToGrpc(st);
  auto created = engine_->CreateSweep(*request);
  if (!created.ok()) return ToGrpc(created.status());
  *response = std::move(*created);
  auto stored = LoadSweep(response->sweep().id());
  if (stored.ok()) *response->mutable_sweep() = std::move(*stored);
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::GetSweep(grpc::ServerContext* context,
                                        const v1::GetSweepRequest* request,
                                        v1::GetSweepResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("sweep_id", request->sweep_id()); !st.ok()) return ToGrpc(st);
  auto sweep = LoadSweep(request->sweep_id());
  if (!sweep.ok()) return ToGrpc(sweep.status());
  *response->mutable_sweep() = std::move(*sweep);
  response->set_warning(StoreWarning());
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::ListSweeps(grpc::ServerContext* context,
                                          const v1::ListSweepsRequest* request,
                                          v1::ListSweepsResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (request->limit() < 0 || request->limit() > 1000) {
    return ToGrpc(absl::InvalidArgumentError(
        absl::StrCat("limit: must be 0 (default 100) to 1000; got ", request->limit())));
  }
  auto offset = PageOffset(request->page_token());
  if (!offset.ok()) return ToGrpc(offset.status());
  const int64_t limit = request->limit() == 0 ? 100 : request->limit();
  std::vector<v1::SweepState> states;
  for (int s : request->states()) {
    if (!v1::SweepState_IsValid(s) || s == v1::SWEEP_STATE_UNSPECIFIED) {
      return ToGrpc(absl::InvalidArgumentError(absl::StrCat("states: ", s, " is not a state")));
    }
    states.push_back(static_cast<v1::SweepState>(s));
  }
  auto sweeps = store_->ListSweeps(states, limit + 1, *offset);
  if (!sweeps.ok()) return ToGrpc(sweeps.status());
  for (size_t i = 0; i < sweeps->size() && static_cast<int64_t>(i) < limit; ++i) {
    *response->add_sweeps() = std::move((*sweeps)[i]);
  }
  if (static_cast<int64_t>(sweeps->size()) > limit) {
    response->set_next_page_token(std::to_string(*offset + limit));
  }
  response->set_warning(StoreWarning());
  return grpc::Status::OK;
}

absl::Status SweepServiceImpl::StoreWritable() const {
  const store::StoreHealth health = store_->Health();
  if (!health.degraded) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(
      "sweepd cannot write its store (", health.error,
      "); changes are refused until it can (free space on the store's disk). Nothing was "
      "changed."));
}

std::string SweepServiceImpl::StoreWarning() const {
  const store::StoreHealth health = store_->Health();
  if (!health.degraded) return "";
  return absl::StrCat("sweepd cannot write its store since ",
                      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                                       absl::FromUnixMicros(health.since_us), absl::UTCTimeZone()),
                      " (", health.error,
                      "): nothing new is stored or acknowledged until it can; free space on its "
                      "disk");
}

grpc::Status SweepServiceImpl::PauseSweep(grpc::ServerContext* context,
                                          const v1::PauseSweepRequest* request,
                                          v1::PauseSweepResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("sweep_id", request->sweep_id()); !st.ok()) return ToGrpc(st);
  if (auto st = StoreWritable(); !st.ok()) return ToGrpc(st);
  auto sweep = engine_->PauseSweep(request->sweep_id());
  if (!sweep.ok()) return ToGrpc(sweep.status());
  if (auto st = store_->Flush(kDurableWithinSeconds); !st.ok())
    return ToGrpc(st);  // acknowledged = durable
  auto stored = LoadSweep(request->sweep_id());
  *response->mutable_sweep() = stored.ok() ? *stored : *sweep;
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::ResumeSweep(grpc::ServerContext* context,
                                           const v1::ResumeSweepRequest* request,
                                           v1::ResumeSweepResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("sweep_id", request->sweep_id()); !st.ok()) return ToGrpc(st);
  if (auto st = StoreWritable(); !st.ok()) return ToGrpc(st);
  auto sweep = engine_->ResumeSweep(request->sweep_id());
  if (!sweep.ok()) return ToGrpc(sweep.status());
  if (auto st = store_->Flush(kDurableWithinSeconds); !st.ok()) return ToGrpc(st);
  auto stored = LoadSweep(request->sweep_id());
  *response->mutable_sweep() = stored.ok() ? *stored : *sweep;
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::CancelSweep(grpc::ServerContext* context,
                                           const v1::CancelSweepRequest* request,
                                           v1::CancelSweepResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("sweep_id", request->sweep_id()); !st.ok()) return ToGrpc(st);
  if (request->reason().size() > 1024) {
    return ToGrpc(absl::InvalidArgumentError("reason: at most 1024 characters"));
  }
  if (auto st = StoreWritable(); !st.ok()) return ToGrpc(st);
  auto sweep = engine_->CancelSweep(request->sweep_id(), request->reason());
  if (!sweep.ok()) return ToGrpc(sweep.status());
  if (auto st = store_->Flush(kDurableWithinSeconds); !st.ok()) return ToGrpc(st);
  auto stored = LoadSweep(request->sweep_id());
  *response->mutable_sweep() = stored.ok() ? *stored : *sweep;
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::ListTrials(grpc::ServerContext* context,
                                          const v1::ListTrialsRequest* request,
                                          v1::ListTrialsResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("sweep_id", request->sweep_id()); !st.ok()) return ToGrpc(st);
  if (request->limit() < 0 || request->limit() > 10000) {
    return ToGrpc(absl::InvalidArgumentError(
        absl::StrCat("limit: must be 0 (default 100) to 10000; got ", request->limit())));
  }
  if (request->sort_metric().size() > 256) {
    return ToGrpc(absl::InvalidArgumentError("sort_metric: at most 256 characters"));
  }
  auto offset = PageOffset(request->page_token());
  if (!offset.ok()) return ToGrpc(offset.status());
  store::TrialQuery query{.sweep_public_id = request->sweep_id(),
                          .sort_metric = request->sort_metric(),
                          .sort_by_last = request->sort_by_last(),
                          .descending = request->descending(),
                          .limit = request->limit() == 0 ? 100 : request->limit(),
                          .offset = *offset};
  for (int s : request->states()) {
    if (!v1::TrialState_IsValid(s) || s == v1::TRIAL_STATE_UNSPECIFIED) {
      return ToGrpc(absl::InvalidArgumentError(absl::StrCat("states: ", s, " is not a state")));
    }
    query.states.push_back(static_cast<v1::TrialState>(s));
  }
  auto page = store_->ListTrials(query);
  if (!page.ok()) return ToGrpc(page.status());
  for (auto& t : page->trials) *response->add_trials() = std::move(t);
  response->set_total(page->total);
  if (*offset + response->trials_size() < page->total) {
    response->set_next_page_token(std::to_string(*offset + response->trials_size()));
  }
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::GetTrial(grpc::ServerContext* context,
                                        const v1::GetTrialRequest* request,
                                        v1::GetTrialResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("trial_id", request->trial_id()); !st.ok()) return ToGrpc(st);
  if (request->max_points() < 0) {
    return ToGrpc(absl::InvalidArgumentError("max_points: must be >= 0"));
  }
  std::vector<std::string> names(request->metric_names().begin(), request->metric_names().end());
  auto detail = store_->GetTrial(request->trial_id(), names, request->max_points(),
                                 !request->without_metrics());
  if (!detail.ok()) return ToGrpc(detail.status());
  *response->mutable_trial() = std::move(detail->trial);
  for (auto& e : detail->events) *response->add_events() = std::move(e);
  for (auto& c : detail->curves) *response->add_curves() = std::move(c);
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::WatchSweep(grpc::ServerContext* context,
                                          const v1::WatchSweepRequest* request,
                                          grpc::ServerWriter<v1::Event>* writer) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("sweep_id", request->sweep_id()); !st.ok()) return ToGrpc(st);
  if (auto sweep = store_->GetSweep(request->sweep_id()); !sweep.ok()) {
    return ToGrpc(sweep.status());
  }
  int64_t after = std::max<int64_t>(0, request->after_event_id());
  int64_t seen = engine_->WaitForEvents(-1, 0);
  while (!context->IsCancelled()) {
    // Read the "done" state before the events, so the last events are never missed.
    const bool done = engine_->SweepDone(request->sweep_id());
    // The engine's last writes (the final events, the sweep's end state) may still be queued at
    // the store: once they commit, a client reading the store after the stream sees the end.
    if (done) (void)store_->Flush(kDurableWithinSeconds);
    auto events = store_->ListEvents(request->sweep_id(), after, 1000);
    if (!events.ok()) return ToGrpc(events.status());
    for (const auto& e : *events) {
      if (!writer->Write(e)) return grpc::Status::OK;  // client went away
      after = e.id();
    }
    if (events->size() == 1000) continue;
    if (done) return grpc::Status::OK;
    seen = engine_->WaitForEvents(seen, 1000);
  }
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::EnqueueTrial(grpc::ServerContext* context,
                                            const v1::EnqueueTrialRequest* request,
                                            v1::EnqueueTrialResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("sweep_id", request->sweep_id()); !st.ok()) return ToGrpc(st);
  if (request->params_size() > 10000) {
    return ToGrpc(absl::InvalidArgumentError("params: at most 10000"));
  }
  if (auto st = StoreWritable(); !st.ok()) return ToGrpc(st);
  auto trial = engine_->EnqueueTrial(*request);
  if (!trial.ok()) return ToGrpc(trial.status());
  if (auto st = store_->Flush(kDurableWithinSeconds); !st.ok()) return ToGrpc(st);
  *response->mutable_trial() = std::move(*trial);
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::AskTrial(grpc::ServerContext* context,
                                        const v1::AskTrialRequest* request,
                                        v1::AskTrialResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("sweep_id", request->sweep_id()); !st.ok()) return ToGrpc(st);
  if (auto st = StoreWritable(); !st.ok()) return ToGrpc(st);
  auto trial = engine_->AskTrial(request->sweep_id());
  if (!trial.ok()) return ToGrpc(trial.status());
  if (auto st = store_->Flush(kDurableWithinSeconds); !st.ok()) return ToGrpc(st);
  *response->mutable_trial() = std::move(*trial);
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::ReportTrial(grpc::ServerContext* context,
                                           const v1::ReportTrialRequest* request,
                                           v1::ReportTrialResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("trial_id", request->trial_id()); !st.ok()) return ToGrpc(st);
  if (request->step() < 0) return ToGrpc(absl::InvalidArgumentError("step: must be >= 0"));
  if (request->metrics().empty() || request->metrics_size() > 1000) {
    return ToGrpc(absl::InvalidArgumentError("metrics: give 1 to 1000 metrics"));
  }
  for (const auto& [name, value] : request->metrics()) {
    if (auto st = CheckMetricName(name); !st.ok()) {
      return ToGrpc(absl::InvalidArgumentError(absl::StrCat("metrics: ", st.message())));
    }
  }
  if (auto st = StoreWritable(); !st.ok()) return ToGrpc(st);
  auto answer = engine_->ReportTrial(*request);
  if (!answer.ok()) return ToGrpc(answer.status());
  if (auto st = store_->Flush(kDurableWithinSeconds); !st.ok()) return ToGrpc(st);
  *response = std::move(*answer);
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::TellTrial(grpc::ServerContext* context,
                                         const v1::TellTrialRequest* request,
                                         v1::TellTrialResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("trial_id", request->trial_id()); !st.ok()) return ToGrpc(st);
  if (!v1::TrialState_IsValid(request->state())) {
    return ToGrpc(absl::InvalidArgumentError("state: not a trial state"));
  }
  if (auto st = StoreWritable(); !st.ok()) return ToGrpc(st);
  auto trial = engine_->TellTrial(*request);
  if (!trial.ok()) return ToGrpc(trial.status());
  if (auto st = store_->Flush(kDurableWithinSeconds); !st.ok()) return ToGrpc(st);
  *response->mutable_trial() = std::move(*trial);
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::ExportSweep(grpc::ServerContext* context,
                                           const v1::ExportSweepRequest* request,
                                           v1::ExportSweepResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("sweep_id", request->sweep_id()); !st.ok()) return ToGrpc(st);
  auto table = store_->ExportSweep(request->sweep_id());
  if (!table.ok()) return ToGrpc(table.status());
  for (auto& c : table->columns) response->add_columns(std::move(c));
  for (auto& row : table->rows) {
    auto* out = response->add_rows();
    for (auto& cell : row) out->add_cells(std::move(cell));
  }
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::ListAgents(grpc::ServerContext* context,
                                          const v1::ListAgentsRequest* request,
                                          v1::ListAgentsResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  auto agents = engine_->ListAgents(request->all());
  if (!agents.ok()) return ToGrpc(agents.status());
  for (auto& a : *agents) *response->add_agents() = std::move(a);
  return grpc::Status::OK;
}

grpc::Status SweepServiceImpl::ReleaseAgent(grpc::ServerContext* context,
                                            const v1::ReleaseAgentRequest* request,
                                            v1::ReleaseAgentResponse* response) {
  if (auto st = AuthorizeApiCall(*context, security_.tls, !security_.token.empty()); !st.ok()) {
    return ToGrpc(st);
  }
  if (auto st = CheckId("agent_id", request->agent_id()); !st.ok()) return ToGrpc(st);
  auto agent = engine_->ReleaseAgent(request->agent_id());
  if (!agent.ok()) return ToGrpc(agent.status());
  *response->mutable_agent() = std::move(*agent);
  return grpc::Status::OK;
}

grpc::Status AgentServiceImpl::Connect(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::SchedulerMessage, v1::AgentMessage>* stream) {
  v1::AgentMessage first;
  if (!stream->Read(&first)) return grpc::Status::OK;
  if (first.kind_case() != v1::AgentMessage::kRegister) {
    return ToGrpc(absl::InvalidArgumentError("the first message on a stream must be register"));
  }
  if (auto st = ValidateAgentMessage(first); !st.ok()) return ToGrpc(st);
  if (auto st = AuthorizeAgent(*context, security_.tls, security_.require_agent_cert,
                               first.register_().agent_id());
      !st.ok()) {
    spdlog::warn("refused an agent registering as {}: {}", first.register_().agent_id(),
                 st.message());
    return ToGrpc(st);
  }
  auto channel = std::make_shared<StreamChannel>(context, stream);
  auto registered = engine_->AgentConnected(first.register_(), channel);
  if (!registered.ok()) {
    channel->Finish(/*cancel=*/false);
    return ToGrpc(registered.status());
  }
  const std::string agent_id = registered->agent_id();
  v1::SchedulerMessage reply;
  *reply.mutable_registered() = std::move(*registered);
  channel->Send(std::move(reply));
  v1::AgentMessage message;
  while (stream->Read(&message)) {
    if (auto st = ValidateAgentMessage(message); !st.ok()) {
      // Nothing of it reaches the engine; the agent hears why.
      spdlog::warn("[agent={}] invalid message, closing its stream: {}", agent_id, st.message());
      engine_->AgentDisconnected(agent_id, channel.get());
      channel->Finish();
      return ToGrpc(st);
    }
    switch (message.kind_case()) {
      case v1::AgentMessage::kRegister:
        engine_->AgentDisconnected(agent_id, channel.get());
        channel->Finish();
        return ToGrpc(absl::InvalidArgumentError("register: sent twice on one stream"));
      case v1::AgentMessage::kDeregister:
        engine_->AgentLeft(
            agent_id, channel.get(),
            message.deregister().reason().empty() ? "deregistered" : message.deregister().reason());
        channel->Finish();
        return grpc::Status::OK;
      case v1::AgentMessage::KIND_NOT_SET:
        continue;  // an empty message changes nothing
      default:
        engine_->AgentMessageReceived(agent_id, std::move(message));
        message = v1::AgentMessage();
    }
  }
  engine_->AgentDisconnected(agent_id, channel.get());
  channel->Finish();
  return grpc::Status::OK;
}

}  // namespace sweepd::scheduler
