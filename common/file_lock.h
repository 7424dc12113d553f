#pragma once

// An exclusive, advisory lock on a file (flock), held for the life of the object: one sweepd per
// store file, one sweep-agent per workdir. The kernel drops the lock when the holder exits,
// however it exits (kill -9 included), so a stale lock never blocks a restart. The file also
// says who holds it (a line of text, e.g. "sweepd pid 123 since ..."), so the process refused
// can name the holder.
//
// The descriptor is close-on-exec: children (trials, and their shims that outlive a crashed
// agent) never inherit the lock. Not thread-safe; one owner.

#include <string>

#include "absl/status/statusor.h"

namespace sweepd {

class FileLock {
 public:
  // Takes the lock at `path` (creating the file) without waiting and writes `holder` into it.
  // FAILED_PRECONDITION "in use by <holder's text> (lock <path>)" when another process holds
  // it; other errors name the path.
  static absl::StatusOr<FileLock> Acquire(const std::string& path, const std::string& holder);

  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  // Releases the lock (the file stays, naming the last holder).
  ~FileLock();

  // False when the filesystem cannot lock at all (some NFS, Lustre or FUSE mounts): the file is
  // written, but nothing stops a second holder. The caller says so.
  bool held() const { return held_; }
  // Why it is not held.
  const std::string& why_not_held() const { return why_not_held_; }

  // Rewrites who holds it (e.g. once the address served on is known).
  absl::Status SetHolder(const std::string& holder);
  // The text a holder wrote into `path` (empty when none can be read).
  static std::string ReadHolder(const std::string& path);

  const std::string& path() const { return path_; }

 private:
  FileLock(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}

  std::string path_;
  int fd_ = -1;
  bool held_ = true;
  std::string why_not_held_;
};

}  // namespace sweepd
