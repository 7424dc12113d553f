#include "common/file_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace sweepd {

absl::StatusOr<FileLock> FileLock::Acquire(const std::string& path, const std::string& holder) {
  // O_NOFOLLOW: a link planted at the lock's path must not make us truncate what it points to.
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open lock file ", path, ": ", std::strerror(errno)));
  }
  int rc;
  do {
    rc = flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      close(fd);
      std::string who = ReadHolder(path);
      if (who.empty()) who = "another process";
      return absl::FailedPreconditionError(absl::StrCat("in use by ", who, " (lock ", path, ")"));
    }
    if (err == ENOLCK || err == ENOSYS || err == EOPNOTSUPP || err == EINVAL) {
      // This filesystem has no locks: work without one rather than not at all.
      FileLock unlocked(path, fd);
      unlocked.held_ = false;
      unlocked.why_not_held_ = std::strerror(err);
      if (auto st = unlocked.SetHolder(holder); !st.ok()) return st;
      return unlocked;
    }
    close(fd);
    return absl::InternalError(absl::StrCat("cannot lock ", path, ": ", std::strerror(err)));
  }
  FileLock lock(path, fd);
  if (auto st = lock.SetHolder(holder); !st.ok()) return st;
  return lock;
}

FileLock::FileLock(FileLock&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      held_(other.held_),
      why_not_held_(std::move(other.why_not_held_)) {}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    held_ = other.held_;
    why_not_held_ = std::move(other.why_not_held_);
  }
  return *this;
}

FileLock::~FileLock() {
  if (fd_ >= 0) close(fd_);  // closing the last descriptor releases the flock
}

absl::Status FileLock::SetHolder(const std::string& holder) {
  const std::string text = holder + "\n";
  if (ftruncate(fd_, 0) != 0 ||
      pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    return absl::InternalError(
        absl::StrCat("cannot write lock file ", path_, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

std::string FileLock::ReadHolder(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return std::string(absl::StripAsciiWhitespace(text.str()));
}

}  // namespace sweepd
