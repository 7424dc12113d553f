#include "common/state_names.h"

#include <cctype>
#include <string_view>

namespace sweepd {
namespace {

// The enum's name without its prefix, lowercased: TRIAL_STATE_RUNNING -> running.
std::string Lowercase(const std::string& name, size_t prefix) {
  if (name.size() <= prefix) return "unknown";
  std::string out = name.substr(prefix);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string TrialStateName(v1::TrialState state) {
  if (state == v1::TRIAL_STATE_UNSPECIFIED || !v1::TrialState_IsValid(state)) return "unknown";
  return Lowercase(v1::TrialState_Name(state), sizeof("TRIAL_STATE_") - 1);
}

std::string SweepStateName(v1::SweepState state) {
  if (state == v1::SWEEP_STATE_UNSPECIFIED || !v1::SweepState_IsValid(state)) return "unknown";
  return Lowercase(v1::SweepState_Name(state), sizeof("SWEEP_STATE_") - 1);
}

std::optional<v1::TrialState> ParseTrialState(const std::string& name) {
  for (int s = v1::TRIAL_STATE_QUEUED; s <= v1::TrialState_MAX; ++s) {
    if (TrialStateName(static_cast<v1::TrialState>(s)) == name) {
      return static_cast<v1::TrialState>(s);
    }
  }
  return std::nullopt;
}

std::optional<v1::SweepState> ParseSweepState(const std::string& name) {
  for (int s = v1::SweepState_MIN; s <= v1::SweepState_MAX; ++s) {
    if (v1::SweepState_IsValid(s) && s != v1::SWEEP_STATE_UNSPECIFIED &&
        SweepStateName(static_cast<v1::SweepState>(s)) == name) {
      return static_cast<v1::SweepState>(s);
    }
  }
  return std::nullopt;
}

std::string AgentStateName(v1::AgentState state) {
  std::string name = v1::AgentState_Name(state);
  constexpr std::string_view kPrefix = "AGENT_STATE_";
  if (name.rfind(kPrefix, 0) == 0) name.erase(0, kPrefix.size());
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

}  // namespace sweepd
