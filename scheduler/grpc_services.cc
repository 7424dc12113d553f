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

grpc::Status SweepServiceImpl::CreateSweep(grpc::ServerContext* context,
                                           const v1::CreateSweepRequest* request,
                                           v1::CreateSweepResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.CreateSweep(*request, response); });
}

grpc::Status SweepServiceImpl::GetSweep(grpc::ServerContext* context,
                                        const v1::GetSweepRequest* request,
                                        v1::GetSweepResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.GetSweep(*request, response); });
}

grpc::Status SweepServiceImpl::ListSweeps(grpc::ServerContext* context,
                                          const v1::ListSweepsRequest* request,
                                          v1::ListSweepsResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.ListSweeps(*request, response); });
}

// Pause, resume and cancel answer once the change is durable (acknowledged = on disk).
grpc::Status SweepServiceImpl::PauseSweep(grpc::ServerContext* context,
                                          const v1::PauseSweepRequest* request,
                                          v1::PauseSweepResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.PauseSweep(*request, response); });
}

grpc::Status SweepServiceImpl::ResumeSweep(grpc::ServerContext* context,
                                           const v1::ResumeSweepRequest* request,
                                           v1::ResumeSweepResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.ResumeSweep(*request, response); });
}

grpc::Status SweepServiceImpl::CancelSweep(grpc::ServerContext* context,
                                           const v1::CancelSweepRequest* request,
                                           v1::CancelSweepResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.CancelSweep(*request, response); });
}

grpc::Status SweepServiceImpl::ListTrials(grpc::ServerContext* context,
                                          const v1::ListTrialsRequest* request,
                                          v1::ListTrialsResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.ListTrials(*request, response); });
}

grpc::Status SweepServiceImpl::GetTrial(grpc::ServerContext* context,
                                        const v1::GetTrialRequest* request,
                                        v1::GetTrialResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.GetTrial(*request, response); });
}

grpc::Status SweepServiceImpl::WatchSweep(grpc::ServerContext* context,
                                          const v1::WatchSweepRequest* request,
                                          grpc::ServerWriter<v1::Event>* writer) {
  return Serve(*context, *request, [&]() -> absl::Status {
    return api_.WatchSweep(
        *request, [&](const v1::Event& e) { return writer->Write(e); },
        [&] { return context->IsCancelled(); });
  });
}

// The calls that change a trial answer once the change is durable.
grpc::Status SweepServiceImpl::EnqueueTrial(grpc::ServerContext* context,
                                            const v1::EnqueueTrialRequest* request,
                                            v1::EnqueueTrialResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.EnqueueTrial(*request, response); });
}

grpc::Status SweepServiceImpl::AskTrial(grpc::ServerContext* context,
                                        const v1::AskTrialRequest* request,
                                        v1::AskTrialResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.AskTrial(*request, response); });
}

grpc::Status SweepServiceImpl::ReportTrial(grpc::ServerContext* context,
                                           const v1::ReportTrialRequest* request,
                                           v1::ReportTrialResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.ReportTrial(*request, response); });
}

grpc::Status SweepServiceImpl::TellTrial(grpc::ServerContext* context,
                                         const v1::TellTrialRequest* request,
                                         v1::TellTrialResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.TellTrial(*request, response); });
}

grpc::Status SweepServiceImpl::ExportSweep(grpc::ServerContext* context,
                                           const v1::ExportSweepRequest* request,
                                           v1::ExportSweepResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.ExportSweep(*request, response); });
}

grpc::Status SweepServiceImpl::ListAgents(grpc::ServerContext* context,
                                          const v1::ListAgentsRequest* request,
                                          v1::ListAgentsResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.ListAgents(*request, response); });
}

grpc::Status SweepServiceImpl::ReleaseAgent(grpc::ServerContext* context,
                                            const v1::ReleaseAgentRequest* request,
                                            v1::ReleaseAgentResponse* response) {
  return Serve(*context, *request,
               [&]() -> absl::Status { return api_.ReleaseAgent(*request, response); });
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
