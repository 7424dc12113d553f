// sweep-trial-shim: the parent of one trial's command, so the trial can outlive its agent.
//
//   sweep-trial-shim EXIT_FILE KEEP_FD -- PROGRAM [ARGS...]
//
// The agent starts this (in a new session, stdout a pipe to the agent) instead of the command
// itself. It keeps the pipe's read end open (KEEP_FD), so when the agent dies the trial's writes
// to stdout do not fail with EPIPE: they wait in the pipe until a restarted agent opens it again
// through /proc/<shim pid>/fd/KEEP_FD. It runs the command as its child, waits for it, and
// records how it ended in EXIT_FILE ("exit N" or "signal N"): a restarted agent is not the
// trial's parent and could not learn that otherwise. Then it ends the same way, so an agent
// that is its parent sees the command's own status.
//
// Plain POSIX, no other dependency: it stays small in every trial's process tree.

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

namespace {

void Ignore(int) {}

void RecordExit(const char* exit_file, const std::string& text) {
  const std::string tmp = std::string(exit_file) + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  const bool written = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (written) rename(tmp.c_str(), exit_file);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5 || strcmp(argv[3], "--") != 0) {
    fprintf(stderr, "usage: sweep-trial-shim EXIT_FILE KEEP_FD -- PROGRAM [ARGS...]\n");
    return 127;
  }
  const char* exit_file = argv[1];
  const int keep_fd = atoi(argv[2]);
  // Held here, not handed to the command.
  if (keep_fd > 2) fcntl(keep_fd, F_SETFD, FD_CLOEXEC);
  // Stop signals go to the whole process group: the command gets them; the shim must outlive
  // it to record its end. Caught (not ignored), so the command starts with the defaults.
  struct sigaction action {};
  action.sa_handler = Ignore;
  sigemptyset(&action.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) {
    sigaction(sig, &action, nullptr);
  }
  // Signals wait until the child has its default handlers: a stop sent between fork and exec
  // must reach the command, not the shim's handler in the child.
  sigset_t all, previous;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &previous);
  const pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "sweep-trial-shim: fork: %s\n", strerror(errno));
    return 127;
  }
  if (child == 0) {
    for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) signal(sig, SIG_DFL);
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    execvp(argv[4], &argv[4]);
    fprintf(stderr, "sweep-trial-shim: cannot run %s: %s\n", argv[4], strerror(errno));
    _exit(127);
  }
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return 127;
  }
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    RecordExit(exit_file, "signal " + std::to_string(sig) + "\n");
    signal(sig, SIG_DFL);
    sigset_t unblock;
    sigemptyset(&unblock);
    sigaddset(&unblock, sig);
    sigprocmask(SIG_UNBLOCK, &unblock, nullptr);
    raise(sig);
    return 128 + sig;  // a signal whose default is not to terminate
  }
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 127;
  RecordExit(exit_file, "exit " + std::to_string(code) + "\n");
  return code;
}
