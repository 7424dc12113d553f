// The agent-stream message handler: arbitrary bytes as an AgentMessage, checked by
// ValidateAgentMessage and, when accepted, handled by a real Engine (with a real store in a
// temporary folder) for a registered agent that runs a real sweep. Nothing may crash, and the
// engine must still answer afterwards.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "scheduler/agent_messages.h"
#include "scheduler/engine.h"
#include "store/store.h"

namespace {

// Swallows what the engine sends to the agent.
class NullChannel final : public sweepd::scheduler::AgentChannel {
 public:
  void Send(sweepd::v1::SchedulerMessage) override {}
  void Close() override {}
};

struct World {
  std::vector<std::string> trial_ids;  // the sweep's first trials, assigned to agent-0
  std::unique_ptr<sweepd::store::Store> store;
  std::unique_ptr<sweepd::scheduler::Engine> engine;
  std::shared_ptr<NullChannel> channel = std::make_shared<NullChannel>();
};

World* MakeWorld() {
  // Invalid UTF-8 in string fields is expected here: no log line per input.
  google::protobuf::SetLogHandler(nullptr);
  auto* world = new World();
  const std::string dir =
      std::filesystem::temp_directory_path() / ("sweepd-fuzz-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto store = sweepd::store::Store::Open(
      {.path = dir + "/fuzz.db", .synchronous = sweepd::store::Synchronous::kNormal});
  if (!store.ok()) __builtin_trap();
  world->store = std::move(*store);
  world->engine = std::make_unique<sweepd::scheduler::Engine>(world->store.get(),
                                                              sweepd::scheduler::EngineOptions{});
  if (!world->engine->Start().ok()) __builtin_trap();
  sweepd::v1::CreateSweepRequest sweep;
  sweep.set_spec_yaml(
      "program: train.py\nmethod: random\nmetric: {name: loss}\nrun_cap: 1000\n"
      "pruner: {type: asha, max_resource: 9}\nparameters:\n  x: {min: 0.0, max: 1.0}\n");
  auto created = world->engine->CreateSweep(sweep);
  if (!created.ok()) __builtin_trap();
  sweepd::v1::Register reg;
  reg.set_agent_id("agent-0");
  for (int i = 0; i < 4; ++i) reg.add_gpus()->set_index(i);
  if (!world->engine->AgentConnected(reg, world->channel).ok()) __builtin_trap();
  (void)world->engine->ListAgents(true);  // scheduling has run: four trials are assigned
  for (int i = 0; i < 8; ++i) {
    char id[64];
    std::snprintf(id, sizeof(id), "%s-%04d", created->sweep().id().c_str(), i);
    world->trial_ids.push_back(id);
  }
  return world;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* world = MakeWorld();
  sweepd::v1::AgentMessage message;
  if (!message.ParseFromArray(data, static_cast<int>(size))) return 0;
  if (!sweepd::scheduler::ValidateAgentMessage(message).ok()) return 0;
  if (message.has_register_() || message.has_deregister()) return 0;  // stream-level, not engine
  // Point the message at one of the sweep's real trials, so the handler's paths are reached.
  auto retarget = [&](std::string* id) {
    *id = world->trial_ids[std::hash<std::string>()(*id) % world->trial_ids.size()];
  };
  if (message.has_metric_batch()) retarget(message.mutable_metric_batch()->mutable_trial_id());
  if (message.has_trial_started()) retarget(message.mutable_trial_started()->mutable_trial_id());
  if (message.has_trial_exited()) retarget(message.mutable_trial_exited()->mutable_trial_id());
  world->engine->AgentMessageReceived("agent-0", std::move(message));
  // A blocking call: the message has been handled, and the engine still answers.
  auto agents = world->engine->ListAgents(true);
  if (!agents.ok() || agents->size() != 1) __builtin_trap();
  return 0;
}
