#include "worker/scheduler_connection.h"

#include <algorithm>
#include <chrono>

#include "spdlog/spdlog.h"

namespace sweepd::worker {

SchedulerConnection::SchedulerConnection(ConnectionOptions options, Callbacks callbacks)
    : options_(std::move(options)), callbacks_(std::move(callbacks)) {}

SchedulerConnection::~SchedulerConnection() {
  Stop();
  Join();
}

void SchedulerConnection::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void SchedulerConnection::Stop() {
  stopping_ = true;
  std::lock_guard<std::mutex> lock(mu_);
  if (context_) context_->TryCancel();
}

void SchedulerConnection::Join() {
  if (thread_.joinable()) thread_.join();
}

bool SchedulerConnection::Send(const v1::AgentMessage& message) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!stream_) return false;
  return stream_->Write(message);
}

bool SchedulerConnection::Connected() {
  std::lock_guard<std::mutex> lock(mu_);
  return stream_ != nullptr;
}

void SchedulerConnection::Backoff(double& backoff) {
  for (double waited = 0; waited < backoff && !stopping_; waited += 0.05) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  backoff = std::min(backoff * 2, options_.max_backoff_seconds);
}

void SchedulerConnection::Loop() {
  double backoff = 0.2;
  while (!stopping_) {
    auto channel = grpc::CreateCustomChannel(options_.scheduler, options_.credentials, [] {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30'000);
      args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10'000);
      return args;
    }());
    auto stub = v1::AgentService::NewStub(channel);
    auto context = std::make_unique<grpc::ClientContext>();
    if (!options_.token.empty()) context->AddMetadata("authorization", "Bearer " + options_.token);
    auto stream = stub->Connect(context.get());
    if (!stream->Write(callbacks_.hello())) {
      stream->Finish();
      if (!stopping_) {
        spdlog::warn("cannot reach the scheduler at {}; retrying in {:.1f} s", options_.scheduler,
                     backoff);
      }
      Backoff(backoff);
      continue;
    }
    // Published for writers on other threads; only this thread replaces or reads it.
    auto* reader = stream.get();
    {
      std::lock_guard<std::mutex> lock(mu_);
      context_ = std::move(context);
      stream_ = std::move(stream);
    }
    v1::SchedulerMessage message;
    bool registered = false;
    bool stream_ended = false;
    while (!stopping_) {
      if (!reader->Read(&message)) {
        stream_ended = true;
        break;
      }
      if (message.has_registered() && !registered) {
        registered = true;
        ever_registered_ = true;
        backoff = 0.2;
        spdlog::info("registered with {} as {} (incarnation {})", options_.scheduler,
                     message.registered().agent_id(), message.registered().incarnation());
        ++generation_;
      }
      callbacks_.on_message(std::move(message));
      message = v1::SchedulerMessage();
    }
    grpc::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Stopping with the stream still open (Stop came before this stream was published, so it
      // could not cancel it): Finish would wait for sweepd to end the stream, i.e. for ever.
      if (!stream_ended) context_->TryCancel();
      stream_->WritesDone();
      status = stream_->Finish();
      stream_.reset();
      context_.reset();
    }
    if (stopping_ || finishing_) break;
    if (!registered && status.error_code() == grpc::StatusCode::ALREADY_EXISTS &&
        !ever_registered_) {
      // Another live agent holds this id (two agents given one --agent-id): retrying would
      // only fight it. sweepd left the other one untouched. (Once registered, this agent owns
      // the id: a clash after a reconnect is a stale stream, retried below.)
      callbacks_.on_refused(absl::AlreadyExistsError(status.error_message()));
      break;
    }
    spdlog::warn("stream to the scheduler ended ({}); reconnecting", status.error_message());
    Backoff(backoff);
  }
}

}  // namespace sweepd::worker
