#include "scheduler/search/search_method.h"

#include "absl/strings/str_cat.h"
#include "common/param_space.h"
#include "scheduler/search/grid_search.h"
#include "scheduler/search/pbt.h"
#include "scheduler/search/random_search.h"
#include "scheduler/search/sobol_search.h"
#include "scheduler/search/tpe_search.h"

namespace sweepd {

absl::StatusOr<std::unique_ptr<SearchMethod>> CreateSearchMethod(const v1::SweepSpec& spec) {
  switch (spec.method()) {
    case v1::SEARCH_METHOD_GRID:
      return std::make_unique<GridSearch>(spec);
    case v1::SEARCH_METHOD_RANDOM:
      return std::make_unique<RandomSearch>(spec);
    case v1::SEARCH_METHOD_BAYES:  // the best model-based method sweepd has
    case v1::SEARCH_METHOD_TPE:
      return std::make_unique<TpeSearch>(spec);
    case v1::SEARCH_METHOD_SOBOL:
      return std::make_unique<SobolSearch>(spec);
    case v1::SEARCH_METHOD_PBT:
      return std::make_unique<PopulationBasedTraining>(spec);
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("method: unsupported search method ", static_cast<int>(spec.method())));
  }
}

std::string ParamSetKey(const ParamSet& params) {
  std::string key;
  // Values compared as W&B's grid compares them (yaml_hash): {a: 1, b: 2} == {b: 2, a: 1.0}.
  for (const auto& p : params) {
    absl::StrAppend(&key, p.name(), "=", CanonicalValueJson(p.value_json()), "\n");
  }
  return key;
}

}  // namespace sweepd
