#pragma once

// Method pbt's exploit step on the agent: a new trial starts from a copy of another trial's
// checkpoint. Stateless; safe from any thread.

#include <cstdint>
#include <filesystem>

#include "absl/status/statusor.h"

namespace sweepd::worker {

// Copies the checkpoint at `step` from the folder `from` into `to` (which exists) and returns how
// many files it copied:
// - the Python client's files of that step (ckpt-<step>-*) when `from` has any such files;
// - else, when `from` has none of the client's files at all, every file in it (a script that
//   names its own files; sub-folders included);
// - an error naming the steps it has when it has client files, but none of `step`.
// The client's files are hard-linked where the filesystem allows (no bytes copied, and the source
// may drop its name at any time after; the client never rewrites a file in place), a script's
// own files byte-copied through a temporary name. Files `to` already has are kept, and 0 is
// returned when it already holds the step's client files. An empty source folder is an error.
absl::StatusOr<int> CloneCheckpoint(const std::filesystem::path& from,
                                    const std::filesystem::path& to, int64_t step);

}  // namespace sweepd::worker
