#pragma once

// The agent's end of its stream to sweepd: connects (TLS and token as configured), sends the
// Register the agent builds for each connection, hands every message sweepd sends to the agent,
// and reconnects with a doubling backoff (0.2 s up to max_backoff_seconds) whenever the stream
// ends, until stopped. A clash of ids on the very first registration (another live agent holds
// this id) is final: retrying would only fight the other agent.
//
// Thread safety: one connection thread of its own, started by Start(); Send, Stop,
// FinishAfterThisStream and the accessors are safe from any thread.

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "sweepd/v1/agent_service.grpc.pb.h"

namespace sweepd::worker {

struct ConnectionOptions {
  std::string scheduler;
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::string token;  // sent as "authorization: Bearer TOKEN" when set
  double max_backoff_seconds = 10;
};

class SchedulerConnection {
 public:
  struct Callbacks {
    // Builds the Register message for each connection (what the agent runs changes).
    std::function<v1::AgentMessage()> hello;
    // Each message sweepd sends, on the connection thread.
    std::function<void(v1::SchedulerMessage)> on_message;
    // sweepd refused the first registration for good (ALREADY_EXISTS: the id is taken); the
    // connection thread ends after this.
    std::function<void(absl::Status)> on_refused;
  };
  SchedulerConnection(ConnectionOptions options, Callbacks callbacks);
  ~SchedulerConnection();
  SchedulerConnection(const SchedulerConnection&) = delete;
  SchedulerConnection& operator=(const SchedulerConnection&) = delete;

  void Start();
  // Ends the stream now and stops reconnecting; Join() then returns promptly.
  void Stop();
  void Join();
  // Writes on the current stream; false when there is none (the message is not sent).
  bool Send(const v1::AgentMessage& message);
  // The goodbye was sent: sweepd ends the stream once it has read it; no reconnecting after.
  void FinishAfterThisStream() { finishing_ = true; }
  // Whether a stream is up now.
  bool Connected();
  // Bumps on every registration: reports sent on an earlier stream may have been lost.
  int64_t generation() const { return generation_.load(); }

 private:
  void Loop();
  // Waits `backoff` seconds (less if stopped) and doubles it.
  void Backoff(double& backoff);

  const ConnectionOptions options_;
  const Callbacks callbacks_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> finishing_{false};
  std::atomic<int64_t> generation_{0};
  std::atomic<bool> ever_registered_{false};

  mutable std::mutex mu_;
  std::unique_ptr<grpc::ClientContext> context_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<grpc::ClientReaderWriter<v1::AgentMessage, v1::SchedulerMessage>> stream_
      ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace sweepd::worker
