#pragma once

// W&B's command template: the macros `${env} ${interpreter} ${program} ${args} ...` that turn a
// spec's `command` and a trial's parameters into an argv. Stateless; safe from any thread.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sweepd/v1/resources.pb.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd {

// Checks one token of a command template: every `${...}` is a known macro, list macros
// (`${args}` and friends) stand alone, `${envvar:NAME}` names a valid variable.
absl::Status ValidateCommandToken(absl::string_view token);

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

// The parameters as one JSON object, nested by the dots of their names
// (`{"optimizer": {"lr": 0.1}}`): what `${args_json}` and `${args_json_file}` carry.
std::string NestedParamsJson(const std::vector<v1::TrialParam>& params);

}  // namespace sweepd
