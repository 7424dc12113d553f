#pragma once

// What an Assign becomes on this node, before any process starts: the program resolved inside
// the code dir, W&B's command template expanded, and the environment the trial sees (SWEEP_*,
// CUDA_VISIBLE_DEVICES, and torchrun's rendezvous variables for gangs). Pure: it reads the
// file system (to resolve the program) but writes nothing and starts nothing, so every rule is
// testable without a process.
//
// Thread safety: PlanLaunch is a free function; its inputs are read only.

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sweepd/v1/agent_service.pb.h"

namespace sweepd::worker {

// What the agent brings to every launch.
struct LaunchContext {
  // `program` resolves against this unless the Assign names a code dir (sweepctl run).
  std::string code_dir = ".";
  std::string interpreter = "python3";
  // A folder put first on PYTHONPATH (the `sweepd` reporting package); empty: none.
  std::string python_path;
  // Whether the slots are GPUs (CUDA_VISIBLE_DEVICES is set) or CPU slots.
  bool has_gpus = false;
  // MASTER_ADDR when this node leads a gang and the Assign names none.
  std::string advertise_address;
  // The agent's own environment, which trials inherit.
  std::map<std::string, std::string> base_env;
  // A free TCP port for node 0's rendezvous (MASTER_PORT), when the Assign names none.
  std::function<int()> free_port;
};

struct LaunchPlan {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  // Where the command runs: the code dir, or the trial's folder (run_in_trial_dir).
  std::string run_dir;
  // What params.json holds (nested, as W&B's config): ${args_json_file} points at it.
  std::string params_json;
  std::string params_file;
  // The gang's rendezvous, as node 0 tells sweepd.
  std::string master_addr;
  int master_port = 0;
  int nnodes = 1;
  // SWEEP_CHECKPOINT_DIR: the trial's checkpoint folder, kept across its attempts.
  std::string checkpoint_dir;
};

// Plans the trial of `assign` in `trial_dir` (its folder, absolute), reporting on
// `socket_path`. Errors: INVALID_ARGUMENT when the spec is at fault (the program lies outside
// the code dir, the command cannot be expanded): any node would refuse it, so no node is blamed;
// NOT_FOUND when the program is not on this node.
absl::StatusOr<LaunchPlan> PlanLaunch(const v1::Assign& assign, const std::string& trial_dir,
                                      const std::string& socket_path, const LaunchContext& context);

// The process's environment as a map (what LaunchContext::base_env usually holds).
std::map<std::string, std::string> ProcessEnvironment();

}  // namespace sweepd::worker
