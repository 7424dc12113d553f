#pragma once

// `--output json` for every sweepctl command: one schema, documented in docs/cli.md.
// Protobuf's own JSON printer writes 64-bit integers as strings ("completed": "60"), enum values
// as their proto names (TRIAL_STATE_RUNNING) and leaves out zero values; scripts want numbers,
// the words the tables show ("running"), and every field. So this walks the message itself:
// - integers and doubles are JSON numbers (NaN and infinities, which JSON lacks, are null);
// - enums are the table's word: the value's name without the enum's prefix, lowercased
//   (TRIAL_STATE_RUNNING -> "running", GOAL_MAXIMIZE -> "maximize"); unspecified -> null;
// - every singular scalar is present, zero or not; an unset `optional` scalar or message is
//   left out; repeated fields are arrays (possibly empty), maps objects;
// - timestamps are RFC 3339 strings in UTC;
// - a sweep's `spec` is its normal form, the same document `sweepctl validate --output json`
//   prints (W&B's key names).

#include <google/protobuf/message.h>

#include <nlohmann/json.hpp>

namespace sweepd::cli {

nlohmann::ordered_json ProtoToJson(const google::protobuf::Message& message);

}  // namespace sweepd::cli
