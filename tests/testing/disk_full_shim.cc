// An LD_PRELOAD library that makes the disk look full, on demand, for tests of storage faults.
//
// While the file named by $SWEEPD_DISK_FULL_FLAG exists, every write to a file whose path contains
// $SWEEPD_DISK_FULL_PATH (e.g. "/sweepd.db": the database, its WAL and shm) fails with ENOSPC, as
// on a full filesystem; other files (logs, pipes, sockets) are untouched. Removing the flag file
// gives the space back. Real processes, real SQLite, real errno: only the disk's answer is faked.

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

namespace {

bool DiskFull(int fd) {
  static const char* flag = getenv("SWEEPD_DISK_FULL_FLAG");
  static const char* part = getenv("SWEEPD_DISK_FULL_PATH");
  if (flag == nullptr || part == nullptr || access(flag, F_OK) != 0) return false;
  char link[64];
  snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
  char path[4096];
  const ssize_t n = readlink(link, path, sizeof(path) - 1);
  if (n <= 0) return false;
  path[n] = '\0';
  return strstr(path, part) != nullptr;
}

template <typename Fn>
Fn Next(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" {

ssize_t write(int fd, const void* buf, size_t count) {
  static auto next = Next<ssize_t (*)(int, const void*, size_t)>("write");
  if (DiskFull(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return next(fd, buf, count);
}

ssize_t pwrite(int fd, const void* buf, size_t count, off_t offset) {
  static auto next = Next<ssize_t (*)(int, const void*, size_t, off_t)>("pwrite");
  if (DiskFull(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return next(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void* buf, size_t count, off64_t offset) {
  static auto next = Next<ssize_t (*)(int, const void*, size_t, off64_t)>("pwrite64");
  if (DiskFull(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return next(fd, buf, count, offset);
}

ssize_t writev(int fd, const struct iovec* iov, int iovcnt) {
  static auto next = Next<ssize_t (*)(int, const struct iovec*, int)>("writev");
  if (DiskFull(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return next(fd, iov, iovcnt);
}

int fallocate(int fd, int mode, off_t offset, off_t len) {
  static auto next = Next<int (*)(int, int, off_t, off_t)>("fallocate");
  if (DiskFull(fd)) {
    errno = ENOSPC;
    return -1;
  }
  return next(fd, mode, offset, len);
}

}  // extern "C"
