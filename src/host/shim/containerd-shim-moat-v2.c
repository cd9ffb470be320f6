// containerd-shim-moat-v2: the front end containerd runs for every task of runtime type
// io.containerd.moat.v2. moatd serves the Task service itself, so `start` only has to
//   1. hand moatd this task's bootstrap arguments (namespace, TTRPC_ADDRESS, …) by writing
//      them to <bundle>/moat-shim (moatd reads them at Task.Create),
//   2. make sure moatd answers on <state root>/containerd-task.sock, starting it if not,
//   3. fork the task's relay (task-relay.c), which listens on a socket of its own and forwards
//      to moatd, so that containerd's connection outlives a moatd restart,
//   4. write <bundle>/address (containerd re-reads it after a restart) and print the relay's address.
// It is C because it runs for every container and must take a few ms, where a Node process
// takes ~60 ms to start here (docs/design.md, "The containerd shim"). containerd 1.6 also runs
// `delete` after every task, and waits for it: it stops a relay left behind, and when there is
// nothing else to clean (no sandbox state directory for the id, nothing mounted at
// <bundle>/rootfs) it is answered here too. Everything else (a `delete` with something left,
// `-v`) goes to the Node shim, dist/bundle/shim.mjs.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "moatd-start.h"
#include "task-relay.h"
#include "ttrpc-frame.h"

#define START_TIMEOUT_MS 10000

#define die shim_die

// Execs node on the Node shim with our own arguments, for the subcommands that are not `start`.
static void exec_node_shim(int argc, char **argv) {
  char dir[PATH_MAX], script[PATH_MAX + 32];
  shim_self_dir(dir, sizeof dir);
  snprintf(script, sizeof script, "%s/../bundle/shim.mjs", dir);
  char **args = calloc((size_t)argc + 2, sizeof *args);
  if (!args) die("calloc", "arguments");
  args[0] = "node";
  args[1] = script;
  for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
  execvp("node", args);
  die("exec", "node");
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

// containerd.task.v2.DeleteResponse{exit_status: 137, exited_at: now}, as `delete` answers.
static void print_delete_response(void) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  unsigned char timestamp[32], message[64];
  size_t t = 0, m = 0;
  timestamp[t++] = 0x08; // Timestamp.seconds, varint
  t += ttrpc_put_varint(timestamp + t, (unsigned long long)now.tv_sec);
  timestamp[t++] = 0x10; // Timestamp.nanos, varint
  t += ttrpc_put_varint(timestamp + t, (unsigned long long)now.tv_nsec);
  message[m++] = 0x10; // DeleteResponse.exit_status = 2, varint
  m += ttrpc_put_varint(message + m, 137);
  message[m++] = 0x1a; // DeleteResponse.exited_at = 3, length-delimited
  message[m++] = (unsigned char)t;
  memcpy(message + m, timestamp, t);
  m += t;
  if (fwrite(message, 1, m, stdout) != m) exit(1);
}

// True when `delete` has nothing to do: moatd has no sandbox of that id (its state directory
// exists from create to delete) and no rootfs is mounted in the bundle.
static int nothing_to_delete(const char *root, const char *id, const char *bundle) {
  if (!*id || strchr(id, '/') || strcmp(id, ".") == 0 || strcmp(id, "..") == 0) return 0;
  char path[2 * PATH_MAX];
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
  char root[PATH_MAX], relay_path[PATH_MAX + 32];
  shim_state_root(root, sizeof root);
  if (relay_socket_path(root, namespace, id, relay_path, sizeof relay_path) < 0) {
    fprintf(stderr, "containerd-shim-moat-v2: state root %s: too long for the task's relay socket (%s/task-<16 hex>.sock must fit in %zu bytes)\n", root, root,
            sizeof ((struct sockaddr_un *)0)->sun_path - 1);
    return 1;
  }
  if (strcmp(command, "delete") == 0) {
    relay_stop(relay_path); // a relay containerd never sent Shutdown to (a setup that crashed)
    if (!nothing_to_delete(root, id, bundle)) exec_node_shim(argc, argv);
    print_delete_response();
    return 0;
  }
  const char *ttrpc_address = getenv("TTRPC_ADDRESS");
  char bootstrap[4 * PATH_MAX + 256];
  snprintf(bootstrap, sizeof bootstrap, "id=%s\nnamespace=%s\naddress=%s\nttrpc_address=%s\npublish_binary=%s\n", line_safe(id), line_safe(namespace),
           line_safe(address), line_safe(ttrpc_address ? ttrpc_address : ""), line_safe(publish_binary));
  write_file("moat-shim", bootstrap);

  char socket_path[PATH_MAX + 32];
  snprintf(socket_path, sizeof socket_path, "%s/%s", root, TASK_SOCKET);
  if (shim_ensure_daemon(root, socket_path, START_TIMEOUT_MS) < 0) {
    fprintf(stderr, "containerd-shim-moat-v2: moatd did not answer on %s within %d ms; see %s/moatd.log\n", socket_path, START_TIMEOUT_MS, root);
    return 1;
  }
  relay_stop(relay_path); // a relay left by an earlier task of this id whose clean-up never ran
  relay_start(root, id, relay_path);
  char reply[PATH_MAX + 64];
  snprintf(reply, sizeof reply, "unix://%s", relay_path);
  write_file("address", reply);
  printf("%s\n", reply);
  return 0;
}
