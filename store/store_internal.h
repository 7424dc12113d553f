#pragma once

// Store internals shared by store.cc (lifecycle, writer, group commit) and store_queries.cc
// (reads); not for use outside the store. Thread safety: a ReadConnection is used by one thread
// at a time (the Lease holding it); the pool behind Store::AcquireReader is locked.

#include <memory>
#include <string>
#include <unordered_map>

#include "common/status_macros.h"
#include "store/sqlite.h"
#include "store/store.h"

namespace sweepd::store {

// ---------------------------------------------------------------------------------------------
// Read connections: each caches its prepared statements.

class Store::ReadConnection {
 public:
  explicit ReadConnection(std::unique_ptr<Connection> db) : db_(std::move(db)) {}

  // A cached statement for `sql` (which must be a string literal or otherwise stable).
  absl::StatusOr<Statement*> Get(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      ASSIGN_OR_RETURN(Statement stmt, db_->Prepare(sql));
      it = cache_.emplace(sql, std::move(stmt)).first;
    }
    it->second.Reset();
    return &it->second;
  }

  Connection& db() { return *db_; }

  // False once SQLite rolled the whole transaction back by itself (it does on SQLITE_FULL,
  // IOERR, NOMEM and some BUSY errors).
  bool InTransaction() const { return sqlite3_get_autocommit(db_->raw()) == 0; }

 private:
  std::unique_ptr<Connection> db_;
  std::unordered_map<std::string, Statement> cache_;
};

class Store::Lease {
 public:
  Lease(Store* store, std::unique_ptr<ReadConnection> reader)
      : store_(store), reader_(std::move(reader)) {}
  Lease(Lease&&) = default;
  ~Lease() {
    if (reader_) store_->ReleaseReader(std::move(reader_));
  }
  ReadConnection& operator*() { return *reader_; }
  ReadConnection* operator->() { return reader_.get(); }

 private:
  Store* store_;
  std::unique_ptr<ReadConnection> reader_;
};

}  // namespace sweepd::store
