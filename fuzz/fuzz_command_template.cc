// The command template on arbitrary templates and parameter values: validation and expansion
// must answer or refuse, never crash; every expanded item is one argv string (no splitting).
// Input: lines; the first 4 are template items, the rest name=value_json parameters.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/command_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16 * 1024) return 0;
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  std::vector<std::string> command;
  std::vector<sweepd::v1::TrialParam> params;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i < 4) {
      (void)sweepd::CommandTokenWarning(lines[i]);
      command.push_back(lines[i]);
      continue;
    }
    const size_t eq = lines[i].find('=');
    if (eq == std::string::npos) continue;
    sweepd::v1::TrialParam p;
    p.set_name(lines[i].substr(0, eq));
    p.set_value_json(lines[i].substr(eq + 1));
    if (i % 2 == 0) {
      for (const auto& key : absl::StrSplit(p.name(), '.')) p.add_keys(std::string(key));
    }
    params.push_back(std::move(p));
  }
  sweepd::CommandContext context{
      .program = "train.py",
      .args_json_file = "params.json",
      .getenv = [](const std::string& name) -> std::optional<std::string> {
        if (name.size() % 2 == 0) return std::nullopt;
        return "value-of-" + name;
      }};
  auto argv = sweepd::ExpandCommand(command, params, context);
  (void)argv;
  for (const auto& p : params) (void)sweepd::PythonStr(p.value_json());
  (void)sweepd::NestedParamsJson(params);
  return 0;
}
