#pragma once

// Maps a number in [0, 1) through a parameter's inverse CDF: the one place that knows each
// W&B distribution's law. Random search feeds it pseudo-random numbers, Sobol search
// quasi-random ones. Stateless; safe from any thread.

#include <cstdint>
#include <string>

#include "sweepd/v1/spec.pb.h"

namespace sweepd {

// The value of `leaf` at quantile u (0 <= u < 1), as JSON text (integers stay integers).
std::string ValueAtQuantile(const v1::Parameter& leaf, double u);

// The same as a double (categorical: the index of the chosen value).
double NumericValueAtQuantile(const v1::Parameter& leaf, double u);

// SplitMix64: a strong 64-bit mix, used to derive independent seeds from (seed, index).
uint64_t SplitMix64(uint64_t x);

// 53 random bits of `bits` as a double in [0, 1).
inline double UnitInterval(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

}  // namespace sweepd
