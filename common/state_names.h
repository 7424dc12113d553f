#pragma once

// Lowercase names of trial and sweep states as events, logs, exports and the CLI print them
// ("running"), and back. Stateless; safe from any thread.

#include <optional>
#include <string>

#include "sweepd/v1/resources.pb.h"

namespace sweepd {

std::string TrialStateName(v1::TrialState state);
std::string SweepStateName(v1::SweepState state);
std::optional<v1::TrialState> ParseTrialState(const std::string& name);

}  // namespace sweepd
