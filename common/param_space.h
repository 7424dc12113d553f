#pragma once

// Views of a spec's parameter space shared by the parser, the search methods and the CLI.
// Stateless functions; safe from any thread.

#include <cstdint>
#include <string>
#include <vector>

#include "sweepd/v1/spec.pb.h"

namespace sweepd {

// Grids larger than this are refused: nobody runs ten million trials, and it bounds memory.
inline constexpr int64_t kMaxGridPoints = 10'000'000;

// Leaf parameters (no groups) in spec order, depth first: the ones a trial gets values for.
std::vector<const v1::Parameter*> LeafParameters(const v1::SweepSpec& spec);

// How many values grid search enumerates for a leaf: values for constant and categorical,
// every integer for int_uniform, every multiple of q for q_uniform; 0 when continuous.
int64_t GridValueCount(const v1::Parameter& leaf);

// The index-th grid value of a leaf (0 <= index < GridValueCount), as JSON text.
std::string GridValue(const v1::Parameter& leaf, int64_t index);

// Product of the leaves' grid value counts; -1 when some leaf is continuous; saturates at
// kMaxGridPoints + 1.
int64_t GridSize(const v1::SweepSpec& spec);

// round(x / q) * q, rounded to 15 significant digits so 0.1 * 3 prints as 0.3 while integers
// up to 10^15 stay exact.
double QuantizeToStep(double x, double q);

}  // namespace sweepd
