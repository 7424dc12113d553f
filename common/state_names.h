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
std::optional<v1::SweepState> ParseSweepState(const std::string& name);
// "connected", "quarantined", ... (the enum's name without its prefix, in lower case).
std::string AgentStateName(v1::AgentState state);

}  // namespace sweepd
