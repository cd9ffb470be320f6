// containerd-shim-moat-v2: the front end containerd runs for every task of runtime type
// io.containerd.moat.v2. moatd serves the Task service itself, so `start` only has to
//   1. hand moatd this task's bootstrap arguments (namespace, TTRPC_ADDRESS, …) by writing
//      them to <bundle>/moat-shim (moatd reads them at Task.Create),
//   2. make sure moatd answers on <state root>/containerd-task.sock, starting it if not,
//   3. write <bundle>/address (containerd re-reads it after a restart) and print the address.
// It is C because it runs for every container and must take a few ms, where a Node process
// takes ~60 ms to start here (docs/design.md, "The containerd shim"). containerd 1.6 also runs
// `delete` after every task, and waits for it: when there is nothing to clean (no sandbox
// state directory for the id, nothing mounted at <bundle>/rootfs) it is answered here too.
// Everything else (a `delete` with something left, `-v`) goes to the Node shim,
// dist/bundle/shim.mjs.
//
// The state root is the configuration's [runtime] state_root, read from MOAT_CONFIG or
// /etc/moat/configuration.toml with a one-key scan (a basic "…" string on one line), else
// /run/moat: the same rule moatd applies with its full TOML parser.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_STATE_ROOT "/run/moat"
#define SYSTEM_CONFIG "/etc/moat/configuration.toml"
#define TASK_SOCKET "containerd-task.sock"
#define START_TIMEOUT_MS 10000

static void die(const char *what, const char *path) {
  fprintf(stderr, "containerd-shim-moat-v2: %s %s: %s\n", what, path, strerror(errno));
  exit(1);
}

// The directory this executable is in: dist/bin, beside dist/bundle.
static void self_dir(char *out, size_t size) {
  ssize_t n = readlink("/proc/self/exe", out, size - 1);
  if (n < 0) die("readlink", "/proc/self/exe");
  out[n] = '\0';
  char *slash = strrchr(out, '/');
  if (slash) *slash = '\0';
}

// Execs node on the Node shim with our own arguments, for the subcommands that are not `start`.
static void exec_node_shim(int argc, char **argv) {
  char dir[PATH_MAX], script[PATH_MAX + 32];
  self_dir(dir, sizeof dir);
  snprintf(script, sizeof script, "%s/../bundle/shim.mjs", dir);
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) die("calloc", "arguments");
  args[0] = "node";
  args[1] = script;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  execvp("node", args);
  die("exec", "node");
}

// state_root from the [runtime] table of the configuration file, if it names one.
static void state_root(char *out, size_t size) {
  snprintf(out, size, "%s", DEFAULT_STATE_ROOT);
  const char *path = getenv("MOAT_CONFIG");
  if (!path || !*path) path = SYSTEM_CONFIG;
  FILE *file = fopen(path, "r");
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

static int answers(const char *socket_path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket", socket_path);
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path);
  int ok = connect(fd, (struct sockaddr *)&address, sizeof address) == 0;
  close(fd);
  return ok;
}

// Starts moatd in its own session, its output in <state root>/moatd.log; it outlives us.
static void spawn_daemon(const char *root) {
  char dir[PATH_MAX], script[PATH_MAX + 32], log_path[PATH_MAX + 16];
  self_dir(dir, sizeof dir);
  snprintf(script, sizeof script, "%s/../bundle/moatd.mjs", dir);
  snprintf(log_path, sizeof log_path, "%s/moatd.log", root);
  mkdir(root, 0711);
  pid_t pid = fork();
  if (pid < 0) die("fork", "moatd");
  if (pid > 0) return;
  setsid();
  int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  // containerd reads our stdout to its end: moatd must not hold it.
  if (null < 0 || log < 0 || dup2(null, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0) _exit(127);
  execlp("node", "node", script, "--root", root, (char *)NULL);
  _exit(127);
}

static void write_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) die("open", path);
  size_t length = strlen(text);
  if (write(fd, text, length) != (ssize_t)length) die("write", path);
  close(fd);
}

// A flag value goes into a line of <bundle>/moat-shim: it must not hold a newline.
static const char *line_safe(const char *value) {
  if (strchr(value, '\n')) {
    fprintf(stderr, "containerd-shim-moat-v2: an argument holds a newline\n");
    exit(1);
  }
  return value;
}

// A protobuf varint.
static size_t put_varint(unsigned char *out, unsigned long long value) {
  size_t n = 0;
  do {
    out[n++] = (unsigned char)((value & 0x7f) | (value > 0x7f ? 0x80 : 0));
    value >>= 7;
  } while (value);
  return n;
}

// containerd.task.v2.DeleteResponse{exit_status: 137, exited_at: now}, as `delete` answers.
static void print_delete_response(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  unsigned char timestamp[32], message[64];
  size_t t = 0, m = 0;
  timestamp[t++] = 0x08; // Timestamp.seconds, varint
  t += put_varint(timestamp + t, (unsigned long long)now.tv_sec);
  timestamp[t++] = 0x10; // Timestamp.nanos, varint
  t += put_varint(timestamp + t, (unsigned long long)now.tv_nsec);
  message[m++] = 0x10; // DeleteResponse.exit_status = 2, varint
  m += put_varint(message + m, 137);
  message[m++] = 0x1a; // DeleteResponse.exited_at = 3, length-delimited
  message[m++] = (unsigned char)t;
  memcpy(message + m, timestamp, t);
  m += t;
  if (fwrite(message, 1, m, stdout) != m) exit(1);
}

// True when `delete` has nothing to do: moatd has no sandbox of that id (its state directory
// exists from create to delete) and no rootfs is mounted in the bundle.
static int nothing_to_delete(const char *id, const char *bundle) {
  if (!*id || strchr(id, '/') || strcmp(id, ".") == 0 || strcmp(id, "..") == 0) return 0;
  char root[PATH_MAX], path[2 * PATH_MAX];
  state_root(root, sizeof root);
  snprintf(path, sizeof path, "%s/%s", root, id);
  struct stat state, bundle_stat, rootfs_stat;
  if (lstat(path, &state) == 0 || errno != ENOENT) return 0;
  snprintf(path, sizeof path, "%s/rootfs", bundle);
  if (stat(path, &rootfs_stat) != 0) return errno == ENOENT;
  // A mount point has another device than its parent (an overlay gets its own).
  return stat(bundle, &bundle_stat) == 0 && bundle_stat.st_dev == rootfs_stat.st_dev;
}

int main(int argc, char **argv) {
  const char *namespace = "", *address = "", *publish_binary = "", *id = "", *bundle = ".";
  const char *command = argc > 1 ? argv[argc - 1] : "";
  if (strcmp(command, "start") != 0 && strcmp(command, "delete") != 0) exec_node_shim(argc, argv);
  for (int i = 1; i + 1 < argc; i++) {
    const char *flag = argv[i];
    if (flag[0] == '-' && flag[1] == '-') flag++; // Go's flag package takes -x and --x alike
    if (strcmp(flag, "-namespace") == 0) namespace = argv[++i];
    else if (strcmp(flag, "-address") == 0) address = argv[++i];
    else if (strcmp(flag, "-publish-binary") == 0) publish_binary = argv[++i];
    else if (strcmp(flag, "-id") == 0) id = argv[++i];
    else if (strcmp(flag, "-bundle") == 0) bundle = argv[++i];
  }
  if (strcmp(command, "delete") == 0) {
    if (!nothing_to_delete(id, bundle)) exec_node_shim(argc, argv);
    print_delete_response();
    return 0;
  }
  const char *ttrpc_address = getenv("TTRPC_ADDRESS");
  char bootstrap[4 * PATH_MAX + 256];
  snprintf(bootstrap, sizeof bootstrap, "id=%s\nnamespace=%s\naddress=%s\nttrpc_address=%s\npublish_binary=%s\n", line_safe(id), line_safe(namespace),
           line_safe(address), line_safe(ttrpc_address ? ttrpc_address : ""), line_safe(publish_binary));
  write_file("moat-shim", bootstrap);

  char root[PATH_MAX], socket_path[PATH_MAX + 32];
  state_root(root, sizeof root);
  snprintf(socket_path, sizeof socket_path, "%s/%s", root, TASK_SOCKET);
  if (strlen(socket_path) >= sizeof ((struct sockaddr_un *)0)->sun_path) {
    errno = ENAMETOOLONG;
    die("socket path", socket_path);
  }
  if (!answers(socket_path)) {
    spawn_daemon(root);
    struct timespec step = {.tv_sec = 0, .tv_nsec = 10 * 1000 * 1000};
    for (int waited = 0; !answers(socket_path); waited += 10) {
      if (waited >= START_TIMEOUT_MS) {
        fprintf(stderr, "containerd-shim-moat-v2: moatd did not answer on %s within %d ms; see %s/moatd.log\n", socket_path, START_TIMEOUT_MS, root);
        return 1;
      }
      nanosleep(&step, NULL);
    }
  }
  char reply[PATH_MAX + 64];
  snprintf(reply, sizeof reply, "unix://%s", socket_path);
  write_file("address", reply);
  printf("%s\n", reply);
  return 0;
}
