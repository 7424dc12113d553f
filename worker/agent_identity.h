#pragma once

// Who an agent is, and that it is the only one using its workdir.
//
// An agent's id must be unique without any flag (several agents per host are normal: one per
// GPU or CPU slot group) and stable across its own restarts (a restarted agent takes its trials
// over by id). So the default id is derived from the host and the workdir and written into the
// workdir; a restart on the same workdir reads it back. Beside it lives a random key that the
// agent sends with its registration: sweepd lets a new stream take over a connected agent's id
// only when it brings the same key (the same agent, restarted before its old stream ended).
//
// One agent per workdir: an exclusive lock (common/file_lock.h), taken before anything in the
// workdir is touched, so a second agent on it is refused at start and never races the first.
//
// Thread safety: free functions without shared state; ClaimWorkdir runs once, at start.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "common/file_lock.h"

namespace sweepd::worker {

struct AgentIdentity {
  std::string agent_id;
  // 32 hex digits; proves "the same workdir" to sweepd, never shown.
  std::string key;
  // Where the identity was made: a copy of the workdir elsewhere (another path or host: `cp -r`,
  // a cloned image) is another agent and gets a new key (and id, unless --agent-id names one).
  std::string hostname;
  std::string workdir;
};

// The default id for a workdir on this host: "<hostname>-<6 hex digits of the workdir's
// absolute path>", at most 64 characters.
std::string DerivedAgentId(const std::string& hostname, const std::string& absolute_workdir);

// Whether `id` is a usable agent id (letters, digits, '.', '_', '-'; 1 to 64; no "..").
bool ValidAgentId(const std::string& id);

// Locks `workdir` for this process (creating it and `.sweep-agent/`), then loads the identity
// kept there or makes one: `requested_id` when given (--agent-id), else the one kept, else a
// derived one. FAILED_PRECONDITION, naming the holder, when another agent has the workdir.
struct WorkdirClaim {
  FileLock lock;
  AgentIdentity identity;
};
absl::StatusOr<WorkdirClaim> ClaimWorkdir(const std::string& workdir,
                                          const std::string& requested_id,
                                          const std::string& hostname);

}  // namespace sweepd::worker
