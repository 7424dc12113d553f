// sweep-trial-shim: the parent of one trial's command, so the trial can outlive its agent.
//
//   sweep-trial-shim EXIT_FILE KEEP_FD [CGROUP_DIR] -- PROGRAM [ARGS...]
//
// The agent starts this (in a new session, stdout a pipe to the agent) instead of the command
// itself. It keeps the pipe's read end open (KEEP_FD), so when the agent dies the trial's writes
// to stdout do not fail with EPIPE: they wait in the pipe until a restarted agent opens it again
// through /proc/<shim pid>/fd/KEEP_FD. It runs the command as its child, waits for it, and
// records how it ended in EXIT_FILE ("exit N" or "signal N"): a restarted agent is not the
// trial's parent and could not learn that otherwise. Then it ends the same way, so an agent
// that is its parent sees the command's own status.
//
// A trial ends with every process it started. With CGROUP_DIR, the shim moves itself into that
// cgroup before it starts the command, so everything the command starts is in it, and the agent
// kills the cgroup. Either way the shim is a subreaper: a process that leaves the trial's process
// group (setsid, setpgid) and loses its parent is re-parented here, not to init; once the
// command has ended, the shim kills every descendant left before it records the end.
//
// Plain POSIX, no other dependency: it stays small in every trial's process tree.

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

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

// This process's children: /proc/self/task/<tid>/children, or (kernels built without it) a scan
// of /proc for processes whose parent is this one.
std::vector<pid_t> Children() {
  std::vector<pid_t> pids;
  const pid_t self = getpid();
  const std::string list = "/proc/self/task/" + std::to_string(self) + "/children";
  if (FILE* f = fopen(list.c_str(), "r")) {
    for (int pid = 0; fscanf(f, "%d", &pid) == 1;) pids.push_back(pid);
    fclose(f);
    return pids;
  }
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    const int pid = atoi(entry->d_name);
    if (pid <= 1) continue;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE* f = fopen(path, "r");
    if (f == nullptr) continue;
    char buf[512];
    const size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses; the last ')' ends it.
    const char* close_paren = strrchr(buf, ')');
    int ppid = 0;
    char state = 0;
    if (close_paren != nullptr && sscanf(close_paren + 1, " %c %d", &state, &ppid) == 2 &&
        ppid == self) {
      pids.push_back(pid);
    }
  }
  closedir(proc);
  return pids;
}

// Kills every descendant left once the command has ended. As a subreaper the shim becomes the
// parent of every orphan below it, so killing its children and reaping them (which re-parents
// their children here) empties the tree, however its processes regrouped themselves.
void KillDescendants() {
  for (int round = 0; round < 10000; ++round) {
    const std::vector<pid_t> children = Children();
    for (pid_t pid : children) kill(pid, SIGKILL);
    int status = 0;
    pid_t reaped = 0;
    while ((reaped = waitpid(-1, &status, WNOHANG)) > 0) {
    }
    if (reaped < 0 && errno == ECHILD) return;  // none left, alive or dead
    usleep(children.empty() ? 10000 : 1000);    // killed ones are still dying
  }
}

}  // namespace

int main(int argc, char** argv) {
  int dashes = 3;
  const char* cgroup_dir = nullptr;
  if (argc >= 6 && strcmp(argv[3], "--") != 0 && strcmp(argv[4], "--") == 0) {
    cgroup_dir = argv[3];
    dashes = 4;
  }
  if (argc < dashes + 2 || strcmp(argv[dashes], "--") != 0) {
    fprintf(stderr,
            "usage: sweep-trial-shim EXIT_FILE KEEP_FD [CGROUP_DIR] -- PROGRAM [ARGS...]\n");
    return 127;
  }
  char** command = &argv[dashes + 1];
  const char* exit_file = argv[1];
  const int keep_fd = atoi(argv[2]);
  if (cgroup_dir != nullptr) {
    const std::string procs = std::string(cgroup_dir) + "/cgroup.procs";
    const int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "0", 1) != 1) {
      // The agent still kills what it can find (its group, and orphans it adopts).
      fprintf(stderr, "sweep-trial-shim: cannot join cgroup %s: %s\n", cgroup_dir, strerror(errno));
    }
    if (fd >= 0) close(fd);
  }
  prctl(PR_SET_CHILD_SUBREAPER, 1);
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
    execvp(command[0], command);
    fprintf(stderr, "sweep-trial-shim: cannot run %s: %s\n", command[0], strerror(errno));
    _exit(127);
  }
  sigprocmask(SIG_SETMASK, &previous, nullptr);
  int status = 0;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return 127;
  }
  KillDescendants();
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
