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
#include "common/status_macros.h"
#include "scheduler/agent_messages.h"
#include "scheduler/api_requests.h"

namespace sweepd::scheduler {
namespace {

// How long an API call waits for its change to be durable before it answers UNAVAILABLE (the
// change stays queued and is stored when the store recovers).
constexpr double kDurableWithinSeconds = 30;

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
  return Serve(*context, *request, [&]() -> absl::Status {
    RETURN_IF_ERROR(StoreWritable());
    ASSIGN_OR_RETURN(*response, engine_->CreateSweep(*request));
    auto stored = LoadSweep(response->sweep().id());
    if (stored.ok()) *response->mutable_sweep() = std::move(*stored);
    return absl::OkStatus();
  });
}

grpc::Status SweepServiceImpl::GetSweep(grpc::ServerContext* context,
                                        const v1::GetSweepRequest* request,
                                        v1::GetSweepResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(*response->mutable_sweep(), LoadSweep(request->sweep_id()));
    response->set_warning(StoreWarning());
    return absl::OkStatus();
  });
}

grpc::Status SweepServiceImpl::ListSweeps(grpc::ServerContext* context,
                                          const v1::ListSweepsRequest* request,
                                          v1::ListSweepsResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const int64_t offset, PageOffset(request->page_token()));
    const int64_t limit = request->limit() == 0 ? 100 : request->limit();
    std::vector<v1::SweepState> states;
    for (int s : request->states()) states.push_back(static_cast<v1::SweepState>(s));
    ASSIGN_OR_RETURN(auto sweeps, store_->ListSweeps(states, limit + 1, offset));
    for (size_t i = 0; i < sweeps.size() && static_cast<int64_t>(i) < limit; ++i) {
      *response->add_sweeps() = std::move(sweeps[i]);
    }
    if (static_cast<int64_t>(sweeps.size()) > limit) {
      response->set_next_page_token(std::to_string(offset + limit));
    }
    response->set_warning(StoreWarning());
    return absl::OkStatus();
  });
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

// Pause, resume and cancel answer once the change is durable (acknowledged = on disk).
grpc::Status SweepServiceImpl::PauseSweep(grpc::ServerContext* context,
                                          const v1::PauseSweepRequest* request,
                                          v1::PauseSweepResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    RETURN_IF_ERROR(StoreWritable());
    ASSIGN_OR_RETURN(auto sweep, engine_->PauseSweep(request->sweep_id()));
    return Durable(request->sweep_id(), std::move(sweep), response->mutable_sweep());
  });
}

grpc::Status SweepServiceImpl::ResumeSweep(grpc::ServerContext* context,
                                           const v1::ResumeSweepRequest* request,
                                           v1::ResumeSweepResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    RETURN_IF_ERROR(StoreWritable());
    ASSIGN_OR_RETURN(auto sweep, engine_->ResumeSweep(request->sweep_id()));
    return Durable(request->sweep_id(), std::move(sweep), response->mutable_sweep());
  });
}

grpc::Status SweepServiceImpl::CancelSweep(grpc::ServerContext* context,
                                           const v1::CancelSweepRequest* request,
                                           v1::CancelSweepResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    RETURN_IF_ERROR(StoreWritable());
    ASSIGN_OR_RETURN(auto sweep, engine_->CancelSweep(request->sweep_id(), request->reason()));
    return Durable(request->sweep_id(), std::move(sweep), response->mutable_sweep());
  });
}

absl::Status SweepServiceImpl::Durable(const std::string& sweep_id, v1::Sweep changed,
                                       v1::Sweep* out) {
  RETURN_IF_ERROR(store_->Flush(kDurableWithinSeconds));
  auto stored = LoadSweep(sweep_id);
  *out = stored.ok() ? std::move(*stored) : std::move(changed);
  return absl::OkStatus();
}

grpc::Status SweepServiceImpl::ListTrials(grpc::ServerContext* context,
                                          const v1::ListTrialsRequest* request,
                                          v1::ListTrialsResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(const int64_t offset, PageOffset(request->page_token()));
    store::TrialQuery query{.sweep_public_id = request->sweep_id(),
                            .sort_metric = request->sort_metric(),
                            .sort_by_last = request->sort_by_last(),
                            .descending = request->descending(),
                            .limit = request->limit() == 0 ? 100 : request->limit(),
                            .offset = offset};
    for (int s : request->states()) query.states.push_back(static_cast<v1::TrialState>(s));
    ASSIGN_OR_RETURN(auto page, store_->ListTrials(query));
    for (auto& t : page.trials) *response->add_trials() = std::move(t);
    response->set_total(page.total);
    if (offset + response->trials_size() < page.total) {
      response->set_next_page_token(std::to_string(offset + response->trials_size()));
    }
    return absl::OkStatus();
  });
}

grpc::Status SweepServiceImpl::GetTrial(grpc::ServerContext* context,
                                        const v1::GetTrialRequest* request,
                                        v1::GetTrialResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    std::vector<std::string> names(request->metric_names().begin(), request->metric_names().end());
    ASSIGN_OR_RETURN(auto detail,
                     store_->GetTrial(request->trial_id(), names, request->max_points(),
                                      !request->without_metrics()));
    *response->mutable_trial() = std::move(detail.trial);
    for (auto& e : detail.events) *response->add_events() = std::move(e);
    for (auto& c : detail.curves) *response->add_curves() = std::move(c);
    return absl::OkStatus();
  });
}

grpc::Status SweepServiceImpl::WatchSweep(grpc::ServerContext* context,
                                          const v1::WatchSweepRequest* request,
                                          grpc::ServerWriter<v1::Event>* writer) {
  return Serve(*context, *request, [&]() -> absl::Status {
    RETURN_IF_ERROR(store_->GetSweep(request->sweep_id()).status());
    int64_t after = std::max<int64_t>(0, request->after_event_id());
    int64_t seen = engine_->WaitForEvents(-1, 0);
    while (!context->IsCancelled()) {
      // Read the "done" state before the events, so the last events are never missed.
      const bool done = engine_->SweepDone(request->sweep_id());
      // The engine's last writes (the final events, the sweep's end state) may still be queued
      // at the store: once they commit, a client reading the store after the stream sees the
      // end.
      if (done) (void)store_->Flush(kDurableWithinSeconds);
      ASSIGN_OR_RETURN(auto events, store_->ListEvents(request->sweep_id(), after, 1000));
      for (const auto& e : events) {
        if (!writer->Write(e)) return absl::OkStatus();  // client went away
        after = e.id();
      }
      if (events.size() == 1000) continue;
      if (done) return absl::OkStatus();
      seen = engine_->WaitForEvents(seen, 1000);
    }
    return absl::OkStatus();
  });
}

// The calls that change a trial answer once the change is durable.
grpc::Status SweepServiceImpl::EnqueueTrial(grpc::ServerContext* context,
                                            const v1::EnqueueTrialRequest* request,
                                            v1::EnqueueTrialResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    RETURN_IF_ERROR(StoreWritable());
    ASSIGN_OR_RETURN(*response->mutable_trial(), engine_->EnqueueTrial(*request));
    return store_->Flush(kDurableWithinSeconds);
  });
}

grpc::Status SweepServiceImpl::AskTrial(grpc::ServerContext* context,
                                        const v1::AskTrialRequest* request,
                                        v1::AskTrialResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    RETURN_IF_ERROR(StoreWritable());
    ASSIGN_OR_RETURN(*response->mutable_trial(), engine_->AskTrial(request->sweep_id()));
    return store_->Flush(kDurableWithinSeconds);
  });
}

grpc::Status SweepServiceImpl::ReportTrial(grpc::ServerContext* context,
                                           const v1::ReportTrialRequest* request,
                                           v1::ReportTrialResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    RETURN_IF_ERROR(StoreWritable());
    ASSIGN_OR_RETURN(*response, engine_->ReportTrial(*request));
    return store_->Flush(kDurableWithinSeconds);
  });
}

grpc::Status SweepServiceImpl::TellTrial(grpc::ServerContext* context,
                                         const v1::TellTrialRequest* request,
                                         v1::TellTrialResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    RETURN_IF_ERROR(StoreWritable());
    ASSIGN_OR_RETURN(*response->mutable_trial(), engine_->TellTrial(*request));
    return store_->Flush(kDurableWithinSeconds);
  });
}

grpc::Status SweepServiceImpl::ExportSweep(grpc::ServerContext* context,
                                           const v1::ExportSweepRequest* request,
                                           v1::ExportSweepResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(auto table, store_->ExportSweep(request->sweep_id()));
    for (auto& c : table.columns) response->add_columns(std::move(c));
    for (auto& row : table.rows) {
      auto* out = response->add_rows();
      for (auto& cell : row) out->add_cells(std::move(cell));
    }
    return absl::OkStatus();
  });
}

grpc::Status SweepServiceImpl::ListAgents(grpc::ServerContext* context,
                                          const v1::ListAgentsRequest* request,
                                          v1::ListAgentsResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(auto agents, engine_->ListAgents(request->all()));
    for (auto& a : agents) *response->add_agents() = std::move(a);
    return absl::OkStatus();
  });
}

grpc::Status SweepServiceImpl::ReleaseAgent(grpc::ServerContext* context,
                                            const v1::ReleaseAgentRequest* request,
                                            v1::ReleaseAgentResponse* response) {
  return Serve(*context, *request, [&]() -> absl::Status {
    ASSIGN_OR_RETURN(*response->mutable_agent(), engine_->ReleaseAgent(request->agent_id()));
    return absl::OkStatus();
  });
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
  // The engine has put Registered first on the stream.
  const std::string agent_id = registered->agent_id();
  v1::AgentMessage message;
  while (stream->Read(&message)) {
    if (auto st = ValidateAgentMessage(message); !st.ok()) {
      // Nothing of it reaches the engine; the agent hears why.
      LogWarn({.agent = agent_id}, "invalid message, closing its stream: {}", st.message());
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
