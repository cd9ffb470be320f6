// moat-task-pid: the host process whose pid a containerd task (or one of its execs) reports.
//
// containerd's clients take a task's pid for a host process that is the task: they check it
// with kill(pid, 0), look up its cgroup in /proc/PID/cgroup, and expect it gone once the
// task has exited, as runc's container process is. In moat the task runs in a guest, and the
// sandbox's QEMU outlives the task until Delete, so moatd starts one of these per process
// instead. It does nothing but exist: it is C, not Node, because there is one per process
// (about 1 MB, about 1 ms to start).
//
// Usage: moat-task-pid [--new-netns | --netns PATH] FIFO
//   --new-netns  first unshare a new network namespace: the task's spec asks for one without a
//                path and has host hooks, which are given this pid and put the task's network
//                (nerdctl's CNI setup) into its namespace, as they would into runc's process's.
//   --netns PATH first enter the network namespace PATH (setns): the spec names one by path and
//                has host hooks, which act on the namespace of the pid they are given, and runc's
//                container process would be in PATH's.
// It makes the FIFO (mode 0600; one left by a holder that was killed is replaced), opens it
// read-write (so it never sees end of file, whoever comes and goes), prints "ready\n" on
// stdout, closes its stdio, and waits. Any byte written to the FIFO ends it: it removes the
// FIFO and exits 0. A restarted moatd finds the FIFO by its path, so the holder needs no
// connection to moatd and outlives moatd's restarts. Every catchable signal is ignored: the
// task's signals go through Task.Kill, and a stray one must not make the task's pid vanish
// while the task runs.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char *what, const char *path) {
  fprintf(stderr, "moat-task-pid: %s %s: %s\n", what, path, strerror(errno));
  return 1;
}

int main(int argc, char **argv) {
  int new_netns = argc == 3 && strcmp(argv[1], "--new-netns") == 0;
  const char *netns = argc == 4 && strcmp(argv[1], "--netns") == 0 ? argv[2] : NULL;
  int skip = new_netns ? 1 : netns ? 2 : 0;
  if (argc != 2 + skip || argv[1 + skip][0] != '/' || (netns && netns[0] != '/')) {
    fprintf(stderr, "usage: moat-task-pid [--new-netns | --netns /ABSOLUTE/NETNS] /ABSOLUTE/FIFO\n");
    return 2;
  }
  const char *path = argv[1 + skip];
  if (new_netns && unshare(CLONE_NEWNET) != 0) {
    fprintf(stderr, "moat-task-pid: unshare(CLONE_NEWNET): %s\n", strerror(errno));
    return 1;
  }
  if (netns) {
    int fd = open(netns, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail("cannot open network namespace", netns);
    // CLONE_NEWNET: setns refuses a file that is not a network namespace (EINVAL).
    if (setns(fd, CLONE_NEWNET) != 0) return fail("cannot enter network namespace", netns);
    close(fd);
  }
  for (int number = 1; number < NSIG; number++) {
    if (number != SIGKILL && number != SIGSTOP) signal(number, SIG_IGN);
  }
  if (mkfifo(path, 0600) != 0) {
    if (errno != EEXIST || unlink(path) != 0 || mkfifo(path, 0600) != 0) return fail("cannot make FIFO", path);
  }
  int fifo = open(path, O_RDWR | O_CLOEXEC);
  if (fifo < 0) {
    unlink(path);
    return fail("cannot open FIFO", path);
  }
  if (write(STDOUT_FILENO, "ready\n", 6) != 6) {
    unlink(path);
    return fail("cannot report ready for", path);
  }
  // Nothing else is held: not moatd's pipe (it would keep moatd's reader open), not a terminal.
  int null = open("/dev/null", O_RDWR);
  if (null >= 0) {
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    if (null > STDERR_FILENO) close(null);
  }
  if (chdir("/") != 0) { /* nothing holds the directory it was started in; harmless if it fails */ }
  char byte;
  for (;;) {
    ssize_t got = read(fifo, &byte, 1);
    if (got == 1) break;
    if (got < 0 && errno != EINTR) break; // cannot happen on a FIFO we hold open for writing too
  }
  unlink(path);
  return 0;
}
