// Finding and starting moatd from C (moatd-start.h). The state root is the one the CLI and
// moatd read with their TOML parser: the Node shim is asked once per version of the
// configuration file (~60 ms), and its answer cached under /run/moat-shim, keyed by the
// file's path and checked against its inode, mtime and size, so that a start stays a few ms.
// A one-key scan here once disagreed with the parser (issue 10, item 10: single-quoted
// strings), and the shim and the CLI then talked to different moatds.
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

// The configuration files the CLI and moatd read, in their order (src/host/config/load.ts):
// MOAT_CONFIG if set, else the first of these that exists.
static const char *const SYSTEM_CONFIGS[] = {"/etc/moat/configuration.toml", "/etc/kata-containers/configuration.toml",
                                             "/usr/share/defaults/kata-containers/configuration.toml"};
// Resolved state roots, one file per configuration path: "<stamp>\n<state root>\n".
#define STATE_ROOT_CACHE_DIR "/run/moat-shim"

static unsigned long long fnv1a(const char *text) {
  unsigned long long hash = 1469598103934665603ULL;
  for (const unsigned char *p = (const unsigned char *)text; *p; p++) hash = (hash ^ *p) * 1099511628211ULL;
  return hash;
}

// The cached root when the cache was written for this very file (path, inode, mtime, size).
static int read_cached_root(const char *cache, const char *stamp, char *out, size_t size) {
  FILE *file = fopen(cache, "re");
  if (!file) return -1;
  char line[PATH_MAX + 256], root[PATH_MAX];
  int ok = fgets(line, sizeof line, file) && strcmp(line, stamp) == 0 && fgets(root, sizeof root, file) && root[0] == '/';
  fclose(file);
  if (!ok) return -1;
  root[strcspn(root, "\n")] = '\0';
  if (strlen(root) >= size) return -1;
  snprintf(out, size, "%s", root);
  return 0;
}

static void write_cached_root(const char *cache, const char *stamp, const char *root) {
  char next[PATH_MAX];
  snprintf(next, sizeof next, "%s.%d", cache, (int)getpid());
  mkdir(STATE_ROOT_CACHE_DIR, 0700);
  FILE *file = fopen(next, "we");
  if (!file) return; // no cache: the next start asks node again
  int ok = fprintf(file, "%s%s\n", stamp, root) > 0;
  ok = fclose(file) == 0 && ok;
  if (!ok || rename(next, cache) < 0) unlink(next);
}

// Asks the Node shim (`state-root`), which reads the configuration with the same TOML parser
// and rules as the CLI and moatd. Its errors (an invalid configuration) reach stderr as they are.
static void resolve_with_node(const char *config, char *out, size_t size) {
  char dir[PATH_MAX], script[PATH_MAX + 32];
  shim_self_dir(dir, sizeof dir);
  snprintf(script, sizeof script, "%s/../bundle/shim.mjs", dir);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) < 0) shim_die("pipe for", script);
  pid_t pid = fork();
  if (pid < 0) shim_die("fork for", script);
  if (pid == 0) {
    if (dup2(pipe_fds[1], 1) < 0) _exit(127);
    execlp("node", "node", script, "state-root", (char *)NULL);
    _exit(127);
  }
  close(pipe_fds[1]);
  size_t used = 0;
  ssize_t n;
  while (used + 1 < size && ((n = read(pipe_fds[0], out + used, size - 1 - used)) > 0 || (n < 0 && errno == EINTR))) used += n > 0 ? (size_t)n : 0;
  out[used] = '\0';
  close(pipe_fds[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  out[strcspn(out, "\n")] = '\0';
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || out[0] != '/') {
    fprintf(stderr, "containerd-shim-moat-v2: cannot read [runtime] state_root from %s (see the line above)\n", config);
    exit(1);
  }
}

void shim_state_root(char *out, size_t size) {
  snprintf(out, size, "%s", DEFAULT_STATE_ROOT);
  const char *path = getenv("MOAT_CONFIG");
  if (!path || !*path) {
    path = NULL;
    for (size_t i = 0; i < sizeof SYSTEM_CONFIGS / sizeof *SYSTEM_CONFIGS && !path; i++)
      if (access(SYSTEM_CONFIGS[i], F_OK) == 0) path = SYSTEM_CONFIGS[i];
  }
  if (!path) return;
  struct stat st;
  char real[PATH_MAX];
  if (!realpath(path, real) || stat(real, &st) < 0) shim_die("cannot read the configuration", path);
  char stamp[PATH_MAX + 256], cache[sizeof STATE_ROOT_CACHE_DIR + 24];
  snprintf(stamp, sizeof stamp, "%s %llu %llu %lld.%09ld %lld\n", real, (unsigned long long)st.st_dev, (unsigned long long)st.st_ino, (long long)st.st_mtim.tv_sec,
           st.st_mtim.tv_nsec, (long long)st.st_size);
  snprintf(cache, sizeof cache, "%s/%016llx", STATE_ROOT_CACHE_DIR, fnv1a(real));
  if (read_cached_root(cache, stamp, out, size) == 0) return;
  resolve_with_node(path, out, size);
  write_cached_root(cache, stamp, out);
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
