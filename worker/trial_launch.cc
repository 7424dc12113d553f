#include "worker/trial_launch.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/command_template.h"

extern char** environ;

namespace sweepd::worker {

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string entry(*e);
    const size_t eq = entry.find('=');
    if (eq != std::string::npos) env[entry.substr(0, eq)] = entry.substr(eq + 1);
  }
  return env;
}

absl::StatusOr<LaunchPlan> PlanLaunch(const v1::Assign& assign, const std::string& trial_dir,
                                      const std::string& socket_path,
                                      const LaunchContext& context) {
  LaunchPlan plan;
  // The code dir as the kernel sees it: where `program` must lie and where commands run.
  const std::string code_dir = assign.code_dir().empty() ? context.code_dir : assign.code_dir();
  std::error_code base_ec;
  const auto base = std::filesystem::weakly_canonical(std::filesystem::absolute(code_dir), base_ec);
  std::string program = assign.program();
  if (!program.empty()) {
    // The program must be inside the code dir: a spec cannot make the agent run (or name)
    // anything else on the node, through "..", an absolute path or a symlink.
    std::error_code path_ec = base_ec;
    const auto resolved = std::filesystem::weakly_canonical(base / program, path_ec);
    const auto inside = resolved.lexically_relative(base);
    if (path_ec || inside.empty() || *inside.begin() == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("program '", program, "' is outside the code dir ", base.string()));
    }
    if (!std::filesystem::exists(resolved)) {
      return absl::NotFoundError(
          absl::StrCat("program '", program, "' not found in ", base.string()));
    }
    program = resolved.string();
  }
  const std::vector<v1::TrialParam> params(assign.params().begin(), assign.params().end());
  plan.params_json = NestedParamsJson(params);
  plan.params_file = trial_dir + "/params.json";
  nlohmann::ordered_json flat = nlohmann::ordered_json::object();
  for (const auto& p : params) {
    auto v = nlohmann::ordered_json::parse(p.value_json(), nullptr, false);
    flat[p.name()] = v.is_discarded() ? nlohmann::ordered_json(p.value_json()) : v;
  }

  auto& env = plan.env;
  env = context.base_env;
  // GPUs and the gang, before the command is expanded: ${envvar:SWEEP_NNODES} and the others
  // may appear in it (the torchrun launcher uses them).
  const std::string gpus = absl::StrJoin(assign.gpu_indices(), ",");
  env["SWEEP_GPUS"] = gpus;
  if (context.has_gpus) {
    env["CUDA_VISIBLE_DEVICES"] = gpus;
    // CUDA numbers GPUs fastest-first unless told otherwise; NVML and nvidia-smi by PCI bus.
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID";
  }
  const v1::Gang& gang = assign.gang();
  const int node_rank = gang.node_rank();
  plan.nnodes = std::max(1, gang.nnodes());
  const int nproc = std::max(1, assign.gpu_indices_size());
  plan.master_port = gang.master_port();
  if (node_rank == 0 && plan.master_port == 0 && context.free_port) {
    plan.master_port = context.free_port();
  }
  plan.master_addr = gang.master_addr().empty() ? context.advertise_address : gang.master_addr();
  env["SWEEP_NNODES"] = std::to_string(plan.nnodes);
  env["SWEEP_NODE_RANK"] = std::to_string(node_rank);
  env["SWEEP_GPUS_PER_NODE"] = std::to_string(context.has_gpus ? assign.gpu_indices_size() : 0);
  env["SWEEP_NPROC_PER_NODE"] = std::to_string(nproc);
  env["MASTER_ADDR"] = plan.master_addr;
  env["MASTER_PORT"] = std::to_string(plan.master_port);
  env["WORLD_SIZE"] = std::to_string(plan.nnodes * nproc);
  // Checkpoints outlive the attempt: on the spec's shared folder, or in the trial's folder on
  // this node (a retry elsewhere then starts over). Set before the command is expanded, so
  // `--ckpt=${envvar:SWEEP_CHECKPOINT_DIR}` works.
  plan.checkpoint_dir =
      assign.checkpoint_dir().empty()
          ? absl::StrCat(trial_dir, "/checkpoint")
          : absl::StrCat(assign.checkpoint_dir(), "/", assign.sweep_id(), "/", assign.trial_id());
  env["SWEEP_CHECKPOINT_DIR"] = plan.checkpoint_dir;
  if (assign.has_resume_step()) env["SWEEP_RESUME_STEP"] = std::to_string(assign.resume_step());
  CommandContext expand{.interpreter = context.interpreter,
                        .program = program,
                        .args_json_file = plan.params_file,
                        .getenv = [&env](const std::string& name) -> std::optional<std::string> {
                          auto it = env.find(name);
                          if (it == env.end()) return std::nullopt;
                          return it->second;
                        }};
  const std::vector<std::string> command(assign.command().begin(), assign.command().end());
  auto argv = ExpandCommand(command, params, expand);
  if (!argv.ok()) return absl::InvalidArgumentError(argv.status().message());
  plan.argv = std::move(*argv);

  env["SWEEP_ID"] = assign.sweep_id();
  env["SWEEP_TRIAL_ID"] = assign.trial_id();
  env["SWEEP_PARAMS_JSON"] =
      flat.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  env["SWEEP_SOCKET"] = socket_path;
  env["SWEEP_ATTEMPT"] = std::to_string(std::max(1, assign.attempt()));
  // Its own folder (logs, params.json, checkpoints of its own) wherever the command runs.
  env["SWEEP_TRIAL_DIR"] = trial_dir;
  for (const auto& [k, v] : assign.env()) env[k] = v;
  if (!context.python_path.empty()) {
    auto it = env.find("PYTHONPATH");
    env["PYTHONPATH"] = it == env.end() || it->second.empty()
                            ? context.python_path
                            : absl::StrCat(context.python_path, ":", it->second);
  }
  // Python buffers stdout when it is a pipe; metric lines should arrive as printed.
  env.emplace("PYTHONUNBUFFERED", "1");
  // Where W&B's agent runs commands: the code dir, so `python -m pkg.train`, `src/train.py`
  // and relative data paths work as under `wandb agent`; or the trial's folder on request.
  plan.run_dir = assign.run_in_trial_dir() ? trial_dir : base.string();
  return plan;
}

}  // namespace sweepd::worker
