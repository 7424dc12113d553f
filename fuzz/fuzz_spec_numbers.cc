// Numbers in a sweep spec, where issue 14 found wrong answers: int64 bounds that went through
// doubles (9223372036854775807 became its negative), integers beyond int64 that silently became
// floats, and a q of 1e-320 that passed and then gave null samples. The input's lines fill the
// numeric fields of a parameter; a spec the parser accepts must give finite samples, integers
// where the parameter is integer, inside its bounds, and survive its own normal form exactly.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/param_space.h"
#include "common/spec_format.h"
#include "common/spec_parser.h"
#include "scheduler/search/random_search.h"

namespace {

const char* const kDistributions[] = {
    "int_uniform",          "uniform", "q_uniform", "log_uniform_values",
    "q_log_uniform_values", "normal",  "q_normal",  "log_normal",
    "q_log_normal",         "beta",    "q_beta",    "categorical"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string distribution = kDistributions[data[0] % std::size(kDistributions)];
  std::vector<std::string> fields =
      absl::StrSplit(std::string(reinterpret_cast<const char*>(data + 1), size - 1), '\n');
  fields.resize(4);
  for (auto& f : fields) {
    if (f.size() > 400 || f.find_first_of("{}[]:,#&*!|>'\"%@`\r") != std::string::npos) return 0;
  }
  std::string yaml = absl::StrCat(
      "program: t.py\nmethod: random\nparameters:\n  w:\n    distribution: ", distribution, "\n");
  if (distribution == "categorical") {
    absl::StrAppend(&yaml, "    values: [", fields[0].empty() ? "0" : fields[0], ", ",
                    fields[1].empty() ? "1" : fields[1], "]\n");
  } else {
    const char* names[] = {"min", "max", "q", "mu"};
    for (int i = 0; i < 4; ++i) {
      if (!fields[i].empty()) absl::StrAppend(&yaml, "    ", names[i], ": ", fields[i], "\n");
    }
  }
  auto parsed = sweepd::ParseSweepSpec(yaml);
  if (!parsed.ok()) return 0;
  // Its normal form parses to itself.
  const auto normal = sweepd::SpecToJson(parsed->spec);
  auto again = sweepd::ParseSweepSpec(sweepd::JsonToYaml(normal));
  if (!again.ok() || sweepd::SpecToJson(again->spec) != normal) __builtin_trap();
  // Samples are finite, integer when the parameter is, and within integer bounds.
  const auto leaves = sweepd::LeafParameters(parsed->spec);
  if (leaves.size() != 1) __builtin_trap();
  const sweepd::v1::Parameter& leaf = *leaves[0];
  sweepd::RandomSearch search(parsed->spec);
  for (uint64_t n = 0; n < 16; ++n) {
    for (const auto& p : search.Sample(n)) {
      const auto value = nlohmann::json::parse(p.value_json(), nullptr, false);
      if (value.is_discarded()) __builtin_trap();
      // null is a value a categorical may list (W&B takes `values: [null, 1]`); nowhere else.
      if (value.is_null() && leaf.distribution() != sweepd::v1::CATEGORICAL) __builtin_trap();
      if (value.is_number_float() && !std::isfinite(value.get<double>())) __builtin_trap();
      if (leaf.integer() && leaf.distribution() != sweepd::v1::CATEGORICAL) {
        if (!value.is_number_integer()) __builtin_trap();
        if (leaf.distribution() == sweepd::v1::INT_UNIFORM) {
          const auto v = value.get<int64_t>();
          if (static_cast<double>(v) < leaf.min() || static_cast<double>(v) > leaf.max()) {
            __builtin_trap();
          }
        }
      }
    }
  }
  return 0;
}
