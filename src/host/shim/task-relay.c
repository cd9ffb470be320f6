// The per-task relay (task-relay.h). One process per containerd task, single-threaded around
// poll(2). Each connection containerd opens (one; a restarted containerd opens another) is
// paired with a connection to moatd's Task socket, and frames go through as they are, after
// their header is checked (payload ≤ 4 MiB, a known type) and, for requests, their method read.
//
// When moatd goes away, the relay dials again (and starts moatd if it does not answer within a
// second, as `start` does), then sends again the requests that were in flight and are safe to
// repeat; the others are answered UNAVAILABLE, since moatd may have carried them out. Garbage
// from either side closes that side's connection. containerd's Shutdown (sent once it is done
// with the task, after Delete, or after a failed Create) is answered here and ends the relay,
// which removes its socket.
//
// A relay whose containerd is gone ends by itself once nothing can need it any more (issue
// 13: one outlived its containerd by an hour, since only Shutdown ended it): with no
// containerd connected, it ends when its task is gone (the sandbox's state directory,
// <root>/<id>, which moatd keeps from Create to the task's delete, no longer exists, after a
// containerd had connected) or when nobody can reach it (its socket was removed or replaced).
// While the task exists it stays, as runc's shim does: a restarted containerd reconnects to it.
// An inotify watch on the state root wakes it for those removals; nothing is polled.
#define _GNU_SOURCE
#include "task-relay.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "moatd-start.h"
#include "ttrpc-frame.h"

#define TASK_SERVICE "containerd.task.v2.Task"
// containerd holds one connection; a restarted containerd opens another before the old one is seen closed.
#define MAX_LINKS 8
#define MAX_IN_FLIGHT 128
// A peer that takes no bytes for this long is treated as gone (a write never blocks the relay for longer).
#define SEND_TIMEOUT_MS 10000
// moatd gets this long to come back by itself (a supervisor restarting it) before the relay starts it.
#define REDIAL_MS 1000
#define REDIAL_STEP_MS 100
// A restarted moatd adopts every sandbox before it listens.
#define RESTART_TIMEOUT_MS 60000
#define RESEND_ATTEMPTS 3

// A request sent to moatd and not answered yet; `frame` is kept only when it is safe to repeat.
struct in_flight {
  uint32_t stream;
  char method[24];
  unsigned char *frame;
  size_t size;
};

// containerd's connection and the moatd connection paired with it.
struct link {
  int client, upstream;
  struct ttrpc_reader from_client, from_upstream;
  struct in_flight pending[MAX_IN_FLIGHT];
  int count;
};

static struct {
  const char *root, *id, *path;
  char daemon_socket[PATH_MAX + 32];
  int listener, log;
  // The state root's removals (of the task's state directory, of the relay's socket, of the root itself); -1 without.
  int watch;
  // The socket this relay bound (its device and inode): a socket of the same name that is not it means another relay took the name.
  dev_t socket_dev;
  ino_t socket_ino;
  // Whether a containerd has connected: before that, the task's state directory does not exist yet.
  int served;
  struct link links[MAX_LINKS];
} relay;

static volatile sig_atomic_t stopping;

static void on_signal(int number) {
  (void)number;
  stopping = 1;
}

// A line in containerd's log for this shim (the bundle's `log` FIFO), if containerd reads it.
static void relay_log(const char *format, ...) {
  if (relay.log < 0) return;
  char line[768];
  int n = snprintf(line, sizeof line, "moat task relay %s: ", relay.id);
  va_list args;
  va_start(args, format);
  n += vsnprintf(line + n, sizeof line - (size_t)n - 1, format, args);
  va_end(args);
  if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
  line[n++] = '\n';
  if (write(relay.log, line, (size_t)n) < 0) {} // a log line nobody can take is dropped
}

static void sleep_ms(int ms) {
  struct timespec step = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
  nanosleep(&step, NULL);
}

static int with_send_timeout(int fd) {
  struct timeval timeout = {.tv_sec = SEND_TIMEOUT_MS / 1000, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  return fd;
}

static int dial(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  size_t length = strlen(path); // moatd's socket is shorter than the relay's, whose length `start` checked
  if (length >= sizeof address.sun_path) length = sizeof address.sun_path - 1;
  memcpy(address.sun_path, path, length);
  if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0) {
    close(fd);
    return -1;
  }
  return with_send_timeout(fd);
}

// Wait, State, Stats, Pids and Connect change nothing: moatd may see them twice.
static int safe_to_repeat(const char *method) {
  static const char *const safe[] = {"Wait", "State", "Stats", "Pids", "Connect"};
  for (size_t i = 0; i < sizeof safe / sizeof *safe; i++)
    if (strcmp(method, safe[i]) == 0) return 1;
  return 0;
}

static void drop_pending(struct link *link, int index) {
  free(link->pending[index].frame);
  link->pending[index] = link->pending[--link->count];
}

static void close_upstream(struct link *link) {
  if (link->upstream >= 0) close(link->upstream);
  link->upstream = -1;
  ttrpc_reader_reset(&link->from_upstream);
}

static void close_link(struct link *link) {
  close_upstream(link);
  if (link->client >= 0) close(link->client);
  link->client = -1;
  ttrpc_reader_reset(&link->from_client);
  while (link->count > 0) drop_pending(link, 0);
}

// Dials moatd, and starts it when it does not come back by itself. 0 when connected.
static int reconnect(struct link *link) {
  for (int waited = 0; !stopping; waited += REDIAL_STEP_MS) {
    if ((link->upstream = dial(relay.daemon_socket)) >= 0) return 0;
    if (waited >= REDIAL_MS) break;
    sleep_ms(REDIAL_STEP_MS);
  }
  if (stopping) return -1;
  relay_log("moatd does not answer on %s; starting it", relay.daemon_socket);
  if (shim_ensure_daemon(relay.root, relay.daemon_socket, RESTART_TIMEOUT_MS) < 0) return -1;
  return (link->upstream = dial(relay.daemon_socket)) >= 0 ? 0 : -1;
}

static void fail_request(struct link *link, uint32_t stream, const char *method, const char *why) {
  char message[512];
  snprintf(message, sizeof message, "moat task relay: Task.%s: %s (see %s/moatd.log)", method, why, relay.root);
  if (ttrpc_write_status(link->client, stream, TTRPC_UNAVAILABLE, message) < 0) close_link(link);
}

// moatd's connection closed: dial again at once (moatd must come back to relay the task's
// output and exits, whether or not containerd is asking anything). After garbage, no request
// is sent again and the next request dials, so that a broken moatd cannot keep the relay busy.
static void upstream_lost(struct link *link, int garbage) {
  close_upstream(link);
  for (int i = link->count - 1; i >= 0 && link->client >= 0; i--) {
    struct in_flight *request = &link->pending[i];
    if (garbage) fail_request(link, request->stream, request->method, "moatd sent a malformed frame");
    else if (!request->frame) fail_request(link, request->stream, request->method, "moatd went away while serving it; not sent again, as it may have taken effect");
    else continue;
    if (link->client >= 0) drop_pending(link, i);
  }
  if (garbage || link->client < 0) return;
  for (int attempt = 0; attempt < RESEND_ATTEMPTS && reconnect(link) == 0; attempt++) {
    int sent = 0;
    while (sent < link->count && ttrpc_write_all(link->upstream, link->pending[sent].frame, link->pending[sent].size) == 0) sent++;
    if (sent == link->count) {
      relay_log("moatd answers again; %d request(s) sent again", sent);
      return;
    }
    close_upstream(link);
  }
  while (link->count > 0 && link->client >= 0) {
    fail_request(link, link->pending[0].stream, link->pending[0].method, "moatd did not come back");
    if (link->client >= 0) drop_pending(link, 0);
  }
}

static int is(const char *text, size_t length, const char *expected) {
  return length == strlen(expected) && memcmp(text, expected, length) == 0;
}

// A frame from containerd; -1 when it is garbage (the connection is then closed).
static int from_client(struct link *link, struct ttrpc_frame *frame) {
  if (frame->type == TTRPC_DATA) {
    if (link->upstream >= 0 && ttrpc_write_all(link->upstream, frame->bytes, TTRPC_HEADER_BYTES + frame->length) < 0) upstream_lost(link, 0);
    free(frame->bytes);
    return 0;
  }
  const char *service, *method;
  size_t service_length, method_length;
  if (frame->type != TTRPC_REQUEST || ttrpc_request_method(frame->bytes + TTRPC_HEADER_BYTES, frame->length, &service, &service_length, &method, &method_length) < 0) {
    free(frame->bytes);
    return -1;
  }
  struct in_flight request = {.stream = frame->stream, .frame = frame->bytes, .size = TTRPC_HEADER_BYTES + frame->length};
  snprintf(request.method, sizeof request.method, "%.*s", (int)(method_length < sizeof request.method ? method_length : sizeof request.method - 1), method);
  if (is(service, service_length, TASK_SERVICE) && strcmp(request.method, "Shutdown") == 0) {
    // containerd is done with the task (runtime/v2 shim.go sends it only then): so are we.
    free(frame->bytes);
    if (ttrpc_write_empty(link->client, request.stream) < 0) close_link(link);
    stopping = 1;
    return 0;
  }
  if (link->count == MAX_IN_FLIGHT || (link->upstream < 0 && reconnect(link) < 0)) {
    free(frame->bytes);
    fail_request(link, request.stream, request.method, link->count == MAX_IN_FLIGHT ? "too many requests in flight" : "moatd does not answer and could not be started");
    return 0;
  }
  int repeatable = safe_to_repeat(request.method);
  link->pending[link->count++] = request;
  int written = ttrpc_write_all(link->upstream, request.frame, request.size);
  if (!repeatable) {
    free(link->pending[link->count - 1].frame);
    link->pending[link->count - 1].frame = NULL;
  }
  if (written < 0) upstream_lost(link, 0);
  return 0;
}

// A frame from moatd: a response goes to the request it answers, if that is still waiting.
static void from_upstream(struct link *link, struct ttrpc_frame *frame) {
  if (frame->type == TTRPC_REQUEST) {
    free(frame->bytes);
    relay_log("moatd sent a request frame; closing its connection");
    upstream_lost(link, 1);
    return;
  }
  int forward = frame->type == TTRPC_DATA;
  for (int i = 0; i < link->count && !forward; i++) {
    if (link->pending[i].stream != frame->stream) continue;
    drop_pending(link, i);
    forward = 1;
  }
  if (forward && ttrpc_write_all(link->client, frame->bytes, TTRPC_HEADER_BYTES + frame->length) < 0) close_link(link);
  free(frame->bytes);
}

static void pump(struct link *link, int upstream) {
  for (;;) {
    int fd = upstream ? link->upstream : link->client;
    if (fd < 0) return;
    struct ttrpc_frame frame;
    enum ttrpc_read got = ttrpc_read(fd, upstream ? &link->from_upstream : &link->from_client, &frame);
    if (got == TTRPC_READ_MORE) return;
    if (got == TTRPC_READ_FRAME) {
      if (upstream) from_upstream(link, &frame);
      else if (from_client(link, &frame) < 0) got = TTRPC_READ_GARBAGE;
      if (got == TTRPC_READ_FRAME) continue;
    }
    if (got == TTRPC_READ_GARBAGE) relay_log("%s sent a malformed frame; closing its connection", upstream ? "moatd" : "containerd");
    if (!upstream) close_link(link);
    else if (got == TTRPC_READ_GARBAGE) upstream_lost(link, 1);
    else {
      relay_log("moatd closed its connection; dialing again");
      upstream_lost(link, 0);
    }
    return;
  }
}

static void accept_client(void) {
  int fd = accept4(relay.listener, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return;
  for (int i = 0; i < MAX_LINKS; i++) {
    struct link *link = &relay.links[i];
    if (link->client >= 0) continue;
    link->client = with_send_timeout(fd);
    relay.served = 1;
    link->upstream = dial(relay.daemon_socket); // when moatd is down, the first request dials again
    return;
  }
  relay_log("more than %d connections at once; refusing one", MAX_LINKS);
  close(fd);
}

// Why a relay with no containerd connected is no longer needed, or NULL while it may be (see the top of this file).
static const char *unneeded(void) {
  for (int i = 0; i < MAX_LINKS; i++)
    if (relay.links[i].client >= 0) return NULL;
  struct stat socket_stat, task_stat;
  if (lstat(relay.path, &socket_stat) != 0 || socket_stat.st_dev != relay.socket_dev || socket_stat.st_ino != relay.socket_ino) return "its socket was removed";
  char task_dir[PATH_MAX + 256];
  snprintf(task_dir, sizeof task_dir, "%s/%s", relay.root, relay.id);
  if (relay.served && lstat(task_dir, &task_stat) != 0 && errno == ENOENT) return "its task is gone and containerd is not connected";
  return NULL;
}

// Reads what the watch has: its events only wake the loop, which then looks at the files themselves.
static void drain_watch(void) {
  char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
  while (read(relay.watch, events, sizeof events) > 0) {}
}

static void run(void) {
  for (int i = 0; i < MAX_LINKS; i++) relay.links[i].client = relay.links[i].upstream = -1;
  while (!stopping) {
    const char *why = unneeded();
    if (why) {
      relay_log("%s; ending", why);
      break;
    }
    struct pollfd fds[2 + 2 * MAX_LINKS];
    int owner[2 + 2 * MAX_LINKS], n = 0;
    fds[n] = (struct pollfd){.fd = relay.listener, .events = POLLIN};
    owner[n++] = -1;
    fds[n] = (struct pollfd){.fd = relay.watch, .events = POLLIN}; // -1 without a watch: poll skips it
    owner[n++] = -1;
    for (int i = 0; i < MAX_LINKS; i++) {
      struct link *link = &relay.links[i];
      if (link->client < 0) continue;
      fds[n] = (struct pollfd){.fd = link->client, .events = POLLIN};
      owner[n++] = 2 * i;
      if (link->upstream < 0) continue;
      fds[n] = (struct pollfd){.fd = link->upstream, .events = POLLIN};
      owner[n++] = 2 * i + 1;
    }
    if (poll(fds, (nfds_t)n, -1) < 0) continue; // EINTR: a signal, checked above
    if (fds[0].revents) accept_client();
    if (fds[1].revents) drain_watch();
    for (int k = 2; k < n && !stopping; k++) {
      if (!fds[k].revents) continue;
      struct link *link = &relay.links[owner[k] / 2];
      int upstream = owner[k] % 2;
      // The pair may have changed meanwhile (closed, dialed again): pump only the descriptor polled.
      if ((upstream ? link->upstream : link->client) == fds[k].fd) pump(link, upstream);
    }
  }
  // Only its own socket: one of the same name made since is another relay's.
  struct stat socket_stat;
  if (lstat(relay.path, &socket_stat) == 0 && socket_stat.st_dev == relay.socket_dev && socket_stat.st_ino == relay.socket_ino) unlink(relay.path);
  close(relay.listener);
  if (relay.watch >= 0) close(relay.watch);
  for (int i = 0; i < MAX_LINKS; i++) close_link(&relay.links[i]);
}

static int listen_on(const char *path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof address.sun_path, "%s", path);
  unlink(path); // a socket left by a relay that was killed (relay_stop found nothing listening)
  if (bind(fd, (struct sockaddr *)&address, sizeof address) < 0 || listen(fd, 16) < 0) {
    int error = errno;
    close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

int relay_socket_path(const char *root, const char *namespace, const char *id, char *out, size_t size) {
  uint64_t hash = 14695981039346656037ULL; // FNV-1a, 64 bits
  for (const char *parts[] = {namespace, "/", id}, **part = parts; part < parts + 3; part++)
    for (const unsigned char *p = (const unsigned char *)*part; *p; p++) hash = (hash ^ *p) * 1099511628211ULL;
  int n = snprintf(out, size, "%s/task-%016llx.sock", root, (unsigned long long)hash);
  if (n < 0 || (size_t)n >= size || (size_t)n >= sizeof ((struct sockaddr_un *)0)->sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return 0;
}

void relay_start(const char *root, const char *id, const char *relay_path) {
  int ready[2];
  if (pipe2(ready, O_CLOEXEC) < 0) shim_die("pipe", "for the task relay");
  pid_t pid = fork();
  if (pid < 0) shim_die("fork", "the task relay");
  if (pid == 0) {
    // The relay: its own session, so that it outlives `start` and is no part of containerd's process group.
    // Only the readiness pipe is kept of what `start` was given (its caller's descriptors are none of the relay's business).
    close_range(3, (unsigned)ready[1] - 1, 0);
    close_range((unsigned)ready[1] + 1, ~0U, 0);
    setsid();
    relay.root = root;
    relay.id = id;
    relay.path = relay_path;
    snprintf(relay.daemon_socket, sizeof relay.daemon_socket, "%s/%s", root, TASK_SOCKET);
    // Listening here, not in `start`, so that SO_PEERCRED on its socket names the relay (relay_stop).
    relay.listener = listen_on(relay_path);
    int error = relay.listener < 0 ? errno : 0;
    struct stat socket_stat = {0};
    if (!error && lstat(relay_path, &socket_stat) != 0) error = errno;
    relay.socket_dev = socket_stat.st_dev;
    relay.socket_ino = socket_stat.st_ino;
    // Removals in the state root wake the relay (unneeded); without a watch it still ends at Shutdown or SIGTERM.
    relay.watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (relay.watch >= 0 && inotify_add_watch(relay.watch, root, IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR) < 0) {
      close(relay.watch);
      relay.watch = -1;
    }
    relay.log = open("log", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    // containerd reads `start`'s stdout and stderr to their end: the relay must not hold them.
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || chdir("/") < 0) error = error ? error : errno;
    if (null > 2) close(null);
    if (write(ready[1], &error, sizeof error) != sizeof error || error) _exit(1);
    close(ready[1]);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction stop = {.sa_handler = on_signal}; // no SA_RESTART: poll returns to see it
    sigaction(SIGTERM, &stop, NULL);
    sigaction(SIGINT, &stop, NULL);
    run();
    _exit(0);
  }
  close(ready[1]);
  int error = -1;
  ssize_t n;
  while ((n = read(ready[0], &error, sizeof error)) < 0 && errno == EINTR) {}
  close(ready[0]);
  if (n != sizeof error || error) {
    errno = n == sizeof error ? error : ECHILD;
    shim_die("task relay: cannot listen on", relay_path);
  }
}

// True while `pid` runs: a zombie (exited, not yet reaped by whoever inherited it) has stopped.
static int alive(pid_t pid) {
  char path[64], stat[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = read(fd, stat, sizeof stat - 1);
  close(fd);
  stat[n > 0 ? n : 0] = '\0';
  const char *state = strrchr(stat, ')');
  return state && state[1] == ' ' && state[2] != 'Z' && state[2] != 'X';
}

void relay_stop(const char *relay_path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof address.sun_path, "%s", relay_path);
  struct ucred peer = {0};
  socklen_t length = sizeof peer;
  if (connect(fd, (struct sockaddr *)&address, sizeof address) == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &length) == 0 && peer.pid > 0) {
    close(fd);
    kill(peer.pid, SIGTERM);
    // Not our child: watch for it to be gone; a relay stuck dialing moatd gets SIGKILL after a second.
    for (int waited = 0; alive(peer.pid); waited += 10) {
      if (waited == 1000) kill(peer.pid, SIGKILL);
      if (waited >= 2000) break;
      sleep_ms(10);
    }
  } else {
    close(fd);
  }
  unlink(relay_path);
}
