#pragma once

// W&B's command template: the macros `${env} ${interpreter} ${program} ${args} ...` that turn a
// spec's `command` and a trial's parameters into an argv, with the semantics of W&B's own
// agent (wandb/wandb: wandb_agent.py and sdk/launch/sweeps/utils.py). Stateless; safe from any
// thread.

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sweepd/v1/resources.pb.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd {

// W&B's agent accepts any item, so sweepd does too; this says (for a warning at submit) what an
// item does that its author may not expect: an unknown `${name}` item expands to nothing, and a
// macro inside a longer item (`--cfg=${args_json}`) is passed as written. Empty when neither.
std::string CommandTokenWarning(absl::string_view token);

// The spec's command with its `launcher` applied: for torchrun, the `${interpreter}` item is
// followed by `-m torch.distributed.run` and the rendezvous flags from the agent's SWEEP_NNODES,
// SWEEP_NODE_RANK, SWEEP_NPROC_PER_NODE, MASTER_ADDR and MASTER_PORT.
std::vector<std::string> LaunchCommand(const v1::SweepSpec& spec);

// Names of every macro, for error messages and docs.
const std::vector<absl::string_view>& CommandMacroNames();

struct CommandContext {
  // `${env}`: W&B uses /usr/bin/env.
  std::string env = "/usr/bin/env";
  // `${interpreter}`: the agent's --interpreter flag or SWEEPD_PYTHON, else python3.
  std::string interpreter = "python3";
  // `${program}`: the spec's program, resolved against the code dir.
  std::string program;
  // `${args_json_file}`: where the agent wrote the parameters as JSON.
  std::string args_json_file;
  // `${envvar:NAME}`: looks NAME up; nullopt when unset.
  std::function<std::optional<std::string>(const std::string&)> getenv;
};

// Expands the template for one trial. The result goes to execve as a list: values are never
// split or interpreted by a shell.
absl::StatusOr<std::vector<std::string>> ExpandCommand(
    const std::vector<std::string>& command_template, const std::vector<v1::TrialParam>& params,
    const CommandContext& context);

// A value as Python's str() prints it (W&B formats `${args}` with str()): strings bare,
// True/False/None, lists `[1, 'a']`, dicts `{'k': 1}`, floats in shortest round-trip form.
std::string PythonStr(absl::string_view value_json);

// The run's config as W&B's agent sees it (`command["args"]`): one entry per top-level key, in
// order; a nested parameter's value sits inside its top-level key's dict (TrialParam.keys), a
// top-level one stands under its name as written (dots and all).
std::vector<std::pair<std::string, nlohmann::ordered_json>> WandbRunArgs(
    const std::vector<v1::TrialParam>& params);

// That config as one JSON object (compact): params.json, `${args_json_file}`'s content.
std::string NestedParamsJson(const std::vector<v1::TrialParam>& params);

// JSON as Python's json.dumps writes it (", " and ": " separators, non-ASCII escaped, floats as
// Python's repr, NaN and Infinity): `${args_json}` as W&B's agent passes it.
std::string PythonJsonDumps(const nlohmann::ordered_json& value);

}  // namespace sweepd
