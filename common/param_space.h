#pragma once

// Views of a spec's parameter space shared by the parser, the search methods and the CLI.
// Stateless functions; safe from any thread.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sweepd/v1/resources.pb.h"
#include "sweepd/v1/spec.pb.h"

namespace sweepd {

// Each leaf's place in the run's config as W&B's agent builds it, by flattened path: the
// top-level name, then each nested name (`a: {parameters: {b}}` -> ["a", "b"]; a top-level
// `optimizer.lr` -> ["optimizer.lr"]).
std::map<std::string, std::vector<std::string>> LeafConfigKeys(const v1::SweepSpec& spec);

// Sets each parameter's TrialParam.keys from the spec's tree (what the agent's command template
// needs); parameters the spec does not know keep none.
void SetConfigKeys(const v1::SweepSpec& spec, std::vector<v1::TrialParam>* params);

// Grids larger than this are refused: nobody runs ten million trials, and it bounds memory.
inline constexpr int64_t kMaxGridPoints = 10'000'000;

// Leaf parameters (no groups) in spec order, depth first: the ones a trial gets values for.
std::vector<const v1::Parameter*> LeafParameters(const v1::SweepSpec& spec);

// How many values grid search enumerates for a leaf, as W&B's grid_search.py does: the distinct
// values for constant and categorical (equal as W&B's yaml_hash sees them: dict keys in any
// order, 3.0 == 3), every integer of [min, max] for int_uniform, and numpy's
// arange(min, max, q) for q_uniform (min + k*q below max); 0 when continuous.
int64_t GridValueCount(const v1::Parameter& leaf);

// A constant's or categorical's distinct values (the first of each set of equal ones), in order:
// its grid values, all at once (GridValue finds one at a time).
std::vector<std::string> DistinctValues(const v1::Parameter& leaf);

// A value's JSON text in the form W&B's yaml_hash compares: object keys sorted (at every depth)
// and whole-number floats written as integers. Equal values, equal text.
std::string CanonicalValueJson(const std::string& value_json);

// The index-th grid value of a leaf (0 <= index < GridValueCount), as JSON text.
std::string GridValue(const v1::Parameter& leaf, int64_t index);

// Product of the leaves' grid value counts; -1 when some leaf is continuous; saturates at
// kMaxGridPoints + 1.
int64_t GridSize(const v1::SweepSpec& spec);

// Whether the distribution is a q_* one (values rounded to multiples of `q`).
bool IsQuantised(v1::Distribution distribution);

// Whether method pbt explores the leaf when the spec does not name its hyperparameters: a
// continuous distribution (learning rates, momenta, decays). Integer and categorical leaves are
// often the model's shape, which a copied checkpoint fixes.
bool PbtExploresByDefault(const v1::Parameter& leaf);

// round(x / q) * q, rounded to 15 significant digits so 0.1 * 3 prints as 0.3 while integers
// up to 10^15 stay exact.
double QuantizeToStep(double x, double q);

}  // namespace sweepd
