#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/command.h"
#include "cli/table.h"
#include "common/command_template.h"
#include "common/param_space.h"
#include "common/spec_format.h"
#include "common/spec_parser.h"
#include "scheduler/search/search_method.h"

namespace sweepd::cli {
namespace {

using Json = nlohmann::ordered_json;

absl::StatusOr<std::string> ReadSpecFile(const std::string& path) {
  std::ifstream in(path == "-" ? "/dev/stdin" : path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::string text;
  // Read one byte past the limit so the parser reports the size instead of a truncated file.
  text.resize(kMaxSpecBytes + 1);
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return text;
}

// Reads and parses one file, printing its errors (prefixed with the file) to err.
std::optional<ParsedSpec> LoadSpec(const std::string& path, std::ostream& err) {
  auto text = ReadSpecFile(path);
  if (!text.ok()) {
    err << "sweepctl: " << text.status().message() << "\n";
    return std::nullopt;
  }
  auto parsed = ParseSweepSpec(*text);
  if (!parsed.ok()) {
    for (const auto& line : SpecErrorLines(parsed.status())) {
      err << path << ": " << line << "\n";
    }
    return std::nullopt;
  }
  for (const auto& warning : parsed->warnings) err << path << ": warning: " << warning << "\n";
  return std::move(*parsed);
}

int RunValidate(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  const bool json = args.Get("output") == "json";
  int invalid = 0;
  Json specs = Json::array();
  std::string yaml;
  for (const auto& path : args.positional) {
    auto parsed = LoadSpec(path, err);
    if (!parsed) {
      ++invalid;
      continue;
    }
    Json spec = SpecToJson(parsed->spec);
    if (json) {
      specs.push_back(std::move(spec));
    } else {
      if (args.positional.size() > 1) absl::StrAppend(&yaml, "---\n# ", path, "\n");
      absl::StrAppend(&yaml, JsonToYaml(spec));
    }
  }
  if (json) {
    if (!specs.empty()) out << (args.positional.size() == 1 ? specs[0] : specs).dump(2) << "\n";
  } else {
    out << yaml;
  }
  if (invalid > 0) {
    err << "sweepctl: " << invalid << " of " << args.positional.size()
        << (args.positional.size() == 1 ? " spec is" : " specs are") << " invalid\n";
    return kExitFailure;
  }
  return kExitOk;
}

int RunPreview(const ParsedArgs& args, std::ostream& out, std::ostream& err) {
  int64_t n = 0;
  if (!absl::SimpleAtoi(args.Get("n"), &n) || n < 1 || n > 100000) {
    err << "sweepctl: --n: '" << args.Get("n") << "' is not allowed; a whole number from 1 to "
        << "100000\n";
    return kExitUsage;
  }
  const std::string& path = args.positional[0];
  auto parsed = LoadSpec(path, err);
  if (!parsed) return kExitFailure;
  auto method = CreateSearchMethod(parsed->spec);
  if (!method.ok()) {
    err << path << ": " << method.status().message() << "\n";
    return kExitFailure;
  }
  std::vector<TrialRecord> history;
  std::string stop_reason;
  while (static_cast<int64_t>(history.size()) < n) {
    auto params = (*method)->Propose(history);
    if (!params.ok()) {
      if (params.status().code() != absl::StatusCode::kOutOfRange) {
        err << path << ": " << params.status().message() << "\n";
        return kExitFailure;
      }
      stop_reason = std::string(params.status().message());
      break;
    }
    history.push_back(TrialRecord{.params = std::move(*params)});
  }
  const std::optional<int64_t> total = (*method)->Size();
  const std::string format = args.Get("output");
  const std::vector<std::string> command = LaunchCommand(parsed->spec);
  CommandContext context{.program = parsed->spec.program(),
                         .args_json_file = "params.json",
                         .getenv = [](const std::string& name) -> std::optional<std::string> {
                           return absl::StrCat("${", name, "}");
                         }};
  if (format == "json") {
    Json trials = Json::array();
    for (size_t i = 0; i < history.size(); ++i) {
      Json params = Json::object();
      for (const auto& p : history[i].params) params[p.name()] = Json::parse(p.value_json());
      Json trial = {{"number", i}, {"params", std::move(params)}};
      std::vector<v1::TrialParam> with_keys(history[i].params.begin(), history[i].params.end());
      SetConfigKeys(parsed->spec, &with_keys);  // nested as the agent nests them
      if (auto argv = ExpandCommand(command, with_keys, context); argv.ok()) {
        trial["command"] = *argv;
      }
      trials.push_back(std::move(trial));
    }
    Json doc = {{"method", std::string(SearchMethodName(parsed->spec.method()))},
                {"total", total ? Json(*total) : Json(nullptr)},
                {"trials", std::move(trials)}};
    out << doc.dump(2) << "\n";
    return kExitOk;
  }
  std::vector<std::string> header = {"#"};
  for (const auto* leaf : LeafParameters(parsed->spec)) header.push_back(leaf->path());
  Table table(header);
  for (size_t i = 0; i < history.size(); ++i) {
    std::vector<std::string> row = {std::to_string(i)};
    for (const auto& p : history[i].params) row.push_back(CellText(Json::parse(p.value_json())));
    table.AddRow(std::move(row));
  }
  if (format == "csv") {
    out << table.ToCsv();
    return kExitOk;
  }
  out << "method " << SearchMethodName(parsed->spec.method());
  if (total) out << ": " << *total << " points in total";
  out << "; first " << history.size() << " proposals\n" << table.ToText();
  if (!stop_reason.empty()) out << "(" << stop_reason << ")\n";
  return kExitOk;
}

}  // namespace

std::vector<Command> SpecCommands() {
  return {
      Command{
          .name = "validate",
          .summary = "check sweep specs and print them normalised",
          .usage = "sweepctl validate FILE... [--output yaml|json]",
          .description =
              "Parses each spec (W&B sweep YAML is accepted as it is), reports every error with\n"
              "its key path, and prints the normalised spec: defaults filled in, every\n"
              "distribution explicit. Exit 0 when all are valid, 1 otherwise. FILE may be - for\n"
              "standard input.",
          .flags = {{.name = "output",
                     .value_name = "FORMAT",
                     .help = "output format",
                     .default_value = "yaml",
                     .choices = {"yaml", "json"}}},
          .min_args = 1,
          .max_args = -1,
          .run = RunValidate,
      },
      Command{
          .name = "preview",
          .summary = "show the first parameter sets a sweep would try",
          .usage = "sweepctl preview FILE [--n N] [--output table|json|csv]",
          .description =
              "Runs the spec's search method without running anything and prints the first N\n"
              "parameter sets, with the total for grid search. JSON output also shows each\n"
              "trial's command line.",
          .flags = {{.name = "n", .value_name = "N", .help = "how many", .default_value = "10"},
                    {.name = "output",
                     .value_name = "FORMAT",
                     .help = "output format",
                     .default_value = "table",
                     .choices = {"table", "json", "csv"}}},
          .min_args = 1,
          .max_args = 1,
          .run = RunPreview,
      },
  };
}

}  // namespace sweepd::cli
