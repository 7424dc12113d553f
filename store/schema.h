#pragma once

// The store's schema and its forward migrations. Not thread-safe: run once at open, on the
// writer connection, before anything else uses the file.

#include <cstdint>

#include "absl/status/status.h"
#include "store/sqlite.h"

namespace sweepd::store {

// `PRAGMA application_id`: 'SWPD', so `file` and other tools can tell the database apart.
inline constexpr int64_t kApplicationId = 0x53575044;

// The schema version this binary writes (`PRAGMA user_version`).
int64_t CurrentSchemaVersion();

// Refuses a file that is another application's SQLite database (its application_id, or tables
// without ours) or one written by a newer sweepd. Reads only: run it before anything changes
// the file (even the journal mode), so a refused file is left exactly as it was.
absl::Status CheckStoreIdentity(Connection& db);

// Brings the database to CurrentSchemaVersion(): each migration step and its version bump run
// in one transaction. Refuses a database written by a newer sweepd, or a file that is another
// application's SQLite database.
absl::Status MigrateSchema(Connection& db);

}  // namespace sweepd::store
