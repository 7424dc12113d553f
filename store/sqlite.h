#pragma once

// A thin RAII layer over the SQLite C API: a connection, prepared statements, and errors as
// absl::Status. A Connection and its Statements belong to one thread at a time.

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace sweepd::store {

// Maps an SQLite result code to a status: BUSY/LOCKED -> UNAVAILABLE, FULL -> RESOURCE_EXHAUSTED,
// IOERR/CORRUPT -> DATA_LOSS, CONSTRAINT -> ALREADY_EXISTS, anything else -> INTERNAL.
// The message is `what: SQLite's reason`. Statuses reach users (API errors, sweepctl), so `what`
// names the file or the step, never SQL text; statements are logged at debug level instead.
absl::Status SqliteStatus(int code, absl::string_view what, sqlite3* db = nullptr);

class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Statement(Statement&& other) noexcept { *this = std::move(other); }
  Statement& operator=(Statement&& other) noexcept;
  ~Statement();

  // Bind by 1-based index. Doubles: NaN is bound as NULL (SQLite turns NaN into NULL anyway).
  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, double value);
  Statement& Bind(int index, absl::string_view value);
  Statement& BindBlob(int index, absl::string_view value);
  Statement& BindNull(int index);
  Statement& Bind(int index, std::optional<double> value) {
    return value ? Bind(index, *value) : BindNull(index);
  }

  // Advances: true while a row is available, false when done; errors as status.
  absl::StatusOr<bool> Step();
  // Steps to completion (for statements without rows).
  absl::Status Run();
  // Resets for reuse and clears bindings.
  void Reset();

  int64_t ColumnInt(int col) const { return sqlite3_column_int64(stmt_, col); }
  double ColumnDouble(int col) const { return sqlite3_column_double(stmt_, col); }
  bool ColumnIsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::optional<double> ColumnOptionalDouble(int col) const {
    return ColumnIsNull(col) ? std::nullopt : std::optional<double>(ColumnDouble(col));
  }
  std::string ColumnText(int col) const;

  bool valid() const { return stmt_ != nullptr; }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

class Connection {
 public:
  enum class Mode { kReadWrite, kReadOnly };

  // Opens (creating when read-write) the database at path with a busy timeout.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const std::string& path, Mode mode);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs one or more statements without results.
  absl::Status Exec(absl::string_view sql);
  // Prepares a statement to keep and reuse.
  absl::StatusOr<Statement> Prepare(absl::string_view sql);
  // A single integer from a query such as `PRAGMA user_version`.
  absl::StatusOr<int64_t> QueryInt(absl::string_view sql);

  int64_t LastInsertRowId() const { return sqlite3_last_insert_rowid(db_); }
  int Changes() const { return sqlite3_changes(db_); }
  // Whether SQLite opened the file read-only: a read-write open of a file this user cannot
  // write (mode, owner, a read-only mount) silently falls back to reading.
  bool ReadOnly() const { return sqlite3_db_readonly(db_, "main") == 1; }
  sqlite3* raw() const { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

}  // namespace sweepd::store
