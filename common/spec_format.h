#pragma once

// The normalised form of a validated spec, for `sweepctl validate --output yaml|json` and
// exports: W&B's layout with every default filled in and every distribution explicit.
// Stateless functions; safe from any thread.

#include <nlohmann/json.hpp>
#include <string>

#include "sweepd/v1/spec.pb.h"

namespace sweepd {

nlohmann::ordered_json SpecToJson(const v1::SweepSpec& spec);

// Block-style YAML of a JSON value (keys in order).
std::string JsonToYaml(const nlohmann::ordered_json& value);

}  // namespace sweepd
