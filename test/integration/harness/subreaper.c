// subreaper: runs a command as conmon does for an OCI runtime: as a child subreaper, so that
// a process the command leaves behind (the container's stand-in after `moat create`) is
// re-parented here. Reports on fd 3, which the command does not inherit:
//   "command <exit status>" when the command exits, then
//   "orphan <pid> <exit status>" for each left-behind process once it exits.
//   subreaper COMMAND [ARGS...]
#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int exit_status(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

int main(int argc, char **argv) {
  if (argc < 2 || prctl(PR_SET_CHILD_SUBREAPER, 1) != 0 || fcntl(3, F_SETFD, FD_CLOEXEC) != 0) return 125;
  pid_t command = fork();
  if (command == 0) {
    execvp(argv[1], argv + 1);
    return 127;
  }
  int status;
  if (waitpid(command, &status, 0) < 0) return 126;
  dprintf(3, "command %d\n", exit_status(status));
  pid_t orphan;
  while ((orphan = wait(&status)) > 0) dprintf(3, "orphan %d %d\n", (int)orphan, exit_status(status));
  return 0;
}
