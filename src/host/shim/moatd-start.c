// Finding and starting moatd from C (moatd-start.h). The state root follows the rule moatd
// applies with its full TOML parser, read here with a one-key scan (a basic "…" string on one
// line).
#define _GNU_SOURCE
#include "moatd-start.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_STATE_ROOT "/run/moat"
#define SYSTEM_CONFIG "/etc/moat/configuration.toml"

void shim_die(const char *what, const char *path) {
  fprintf(stderr, "containerd-shim-moat-v2: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

void shim_self_dir(char *out, size_t size) {
  ssize_t n = readlink("/proc/self/exe", out, size - 1);
  if (n < 0) shim_die("readlink", "/proc/self/exe");
  out[n] = '\0';
  char *slash = strrchr(out, '/');
  if (slash) *slash = '\0';
}

void shim_state_root(char *out, size_t size) {
  snprintf(out, size, "%s", DEFAULT_STATE_ROOT);
  const char *path = getenv("MOAT_CONFIG");
  if (!path || !*path) path = SYSTEM_CONFIG;
  FILE *file = fopen(path, "re");
  if (!file) return;
  char line[4096];
  int in_runtime = 0;
  while (fgets(line, sizeof line, file)) {
    char *p = line + strspn(line, " \t");
    if (*p == '[') {
      in_runtime = strncmp(p, "[runtime]", 9) == 0;
      continue;
    }
    if (!in_runtime || strncmp(p, "state_root", 10) != 0) continue;
    p += 10 + strspn(p + 10, " \t");
    if (*p != '=') continue;
    p += 1 + strspn(p + 1, " \t");
    if (*p != '"') continue;
    char *end = strchr(p + 1, '"');
    if (end && (size_t)(end - p - 1) < size) snprintf(out, size, "%.*s", (int)(end - p - 1), p + 1);
  }
  fclose(file);
}

int shim_answers(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof address.sun_path, "%s", path);
  int ok = connect(fd, (struct sockaddr *)&address, sizeof address) == 0;
  close(fd);
  return ok;
}

// Starts moatd in its own session, its output in <root>/moatd.log. It is forked twice so that
// it is never our child: it outlives us, and a relay that started it leaves no zombie when it dies.
static int spawn_daemon(const char *root) {
  char dir[PATH_MAX], script[PATH_MAX + 32], log_path[PATH_MAX + 16];
  shim_self_dir(dir, sizeof dir);
  snprintf(script, sizeof script, "%s/../bundle/moatd.mjs", dir);
  snprintf(log_path, sizeof log_path, "%s/moatd.log", root);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid > 0) {
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
  }
  if (fork() != 0) _exit(0); // the intermediate child; the grandchild goes on (a failed fork shows as a timeout)
  setsid();
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  // containerd reads the shim's stdout to its end: moatd must not hold it.
  if (null < 0 || log < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0) _exit(127);
  // moatd hands what it holds to every QEMU and virtiofsd: nothing of the caller's (moatd-launch.c says why).
  close_range(3, ~0U, 0);
  execlp("node", "node", script, "--root", root, (char *)NULL);
  _exit(127);
}

int shim_ensure_daemon(const char *root, const char *socket_path, int timeout_ms) {
  if (shim_answers(socket_path)) return 0;
  mkdir(root, 0711);
  char lock_path[PATH_MAX + 16];
  snprintf(lock_path, sizeof lock_path, "%s/moatd.lock", root);
  int lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  // Without the lock (a read-only root), starting unserialized is still better than not starting.
  if (lock >= 0) flock(lock, LOCK_EX);
  int result = 0;
  if (!shim_answers(socket_path)) {
    result = spawn_daemon(root);
    struct timespec step = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
    for (int waited = 0; result == 0 && !shim_answers(socket_path); waited += 10) {
      if (waited >= timeout_ms) result = -1;
      else nanosleep(&step, NULL);
    }
  }
  if (lock >= 0) close(lock); // releases the flock
  return result;
}
