// moatd-launch: starts moatd as a daemon with only the descriptors it is meant to have.
//
// Usage: moatd-launch LOG PROGRAM [ARG...]
// Forks twice (so that moatd is never the caller's child and leaves no zombie), starts a new
// session, makes stdin /dev/null and stdout and stderr LOG (appended), closes every other
// descriptor, and execs PROGRAM (node, with moatd's bundle and arguments). The launcher exits
// 0 once the first fork is done; whether moatd came up is told by its socket answering.
//
// Why: a process gets every descriptor its parent held without close-on-exec, and Node's spawn
// passes them all on. `moat create` run by conmon holds conmon's; a moatd started from it would
// hold them for its whole life and hand them to every QEMU and virtiofsd it starts (the
// CVE-2024-21626 class: a host descriptor reaching what runs a container). moatd itself opens
// everything close-on-exec (Node and libuv do), so with 0-2 alone its children get only what
// it passes them.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Closes every descriptor from `first` up: close_range(2) where the kernel has it (5.9+), else
// each one /proc/self/fd lists.
static void close_from(int first) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) == 0) return;
#endif
  DIR *dir = opendir("/proc/self/fd");
  if (!dir) return;
  int own = dirfd(dir);
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL) {
    int fd = atoi(entry->d_name);
    if (fd >= first && fd != own) close(fd);
  }
  closedir(dir);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: moatd-launch LOG PROGRAM [ARG...]\n");
    return 2;
  }
  pid_t pid = fork();
  if (pid < 0) {
    perror("moatd-launch: fork");
    return 1;
  }
  if (pid > 0) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
  }
  if (fork() != 0) _exit(0); // the intermediate child; the grandchild goes on (a failed fork shows as moatd not answering)
  setsid();
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int log = open(argv[1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (null < 0 || log < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0) _exit(127);
  close_from(3);
  execv(argv[2], argv + 2);
  dprintf(2, "moatd-launch: exec %s: %s\n", argv[2], strerror(errno));
  _exit(127);
}
