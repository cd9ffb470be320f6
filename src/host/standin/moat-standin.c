// moat-standin: the host process that stands for a container running in a VM.
//
// Callers of an OCI runtime (conmon, containerd's runc shim) expect `create --pid-file` to
// name a host process that is the container: they wait for it and take its exit status, and
// its stdio is the container's. In moat the container runs in a guest, so `moat create` starts
// this small program with the caller's stdio instead; it relays stdin, stdout and stderr to
// and from moatd over one unix socket and exits with the container's exit status. It is C,
// not Node, because there is one per container: it costs about 1 MB and starts in about 1 ms.
//
// Usage: moat-standin SOCKET
// Wire format (both ways): u8 type, u32 big-endian payload length (at most 1 MiB), payload.
//   to moatd:   1 HELLO (u32 pid), 2 STDIN (bytes), 3 STDIN_EOF, 4 SIGNAL (u32 number)
//   from moatd: 16 STDOUT (bytes), 17 STDERR (bytes), 18 EXIT (i32 exit status)
// The TypeScript side is src/host/daemon/stdio-relay.ts. When the connection drops (moatd
// restarting), the stand-in connects again for up to 30 s and says HELLO again; bytes in
// flight at that moment may be lost.
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum {
  HELLO = 1, STDIN_DATA = 2, STDIN_EOF = 3, SIGNAL = 4,
  STDOUT_DATA = 16, STDERR_DATA = 17, EXIT = 18,
};
#define MAX_PAYLOAD (1u << 20)
#define LOST_DAEMON_STATUS 255
#define RECONNECT_TRIES 300
#define RECONNECT_PAUSE_US 100000

static volatile sig_atomic_t pending_signal;

static void on_signal(int number) { pending_signal = number; }

static int write_all(int fd, const void *data, size_t length) {
  const char *bytes = data;
  while (length > 0) {
    ssize_t written = write(fd, bytes, length);
    if (written < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    bytes += written;
    length -= (size_t)written;
  }
  return 0;
}

static int read_all(int fd, void *data, size_t length) {
  char *bytes = data;
  while (length > 0) {
    ssize_t got = read(fd, bytes, length);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return -1;
    bytes += got;
    length -= (size_t)got;
  }
  return 0;
}

static int send_frame(int fd, uint8_t type, const void *payload, uint32_t length) {
  uint8_t header[5] = {type, (uint8_t)(length >> 24), (uint8_t)(length >> 16), (uint8_t)(length >> 8), (uint8_t)length};
  if (write_all(fd, header, sizeof header) < 0) return -1;
  return length == 0 ? 0 : write_all(fd, payload, length);
}

static int send_u32(int fd, uint8_t type, uint32_t value) {
  uint8_t payload[4] = {(uint8_t)(value >> 24), (uint8_t)(value >> 16), (uint8_t)(value >> 8), (uint8_t)value};
  return send_frame(fd, type, payload, sizeof payload);
}

/** Connects and says HELLO, trying `tries` times; returns -1 if moatd never answered. */
static int connect_daemon(const char *path, int tries) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof address.sun_path) {
    dprintf(2, "moat-standin: socket path too long: %s\n", path);
    exit(LOST_DAEMON_STATUS);
  }
  strcpy(address.sun_path, path);
  for (int try = 0; try < tries; try++) {
    if (try > 0) usleep(RECONNECT_PAUSE_US);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    if (connect(fd, (struct sockaddr *)&address, sizeof address) == 0 && send_u32(fd, HELLO, (uint32_t)getpid()) == 0) return fd;
    close(fd);
  }
  return -1;
}

/** Handles one frame from moatd; returns -1 when the connection is unusable. */
static int handle_frame(int daemon, char *buffer) {
  uint8_t header[5];
  if (read_all(daemon, header, sizeof header) < 0) return -1;
  uint32_t length = (uint32_t)header[1] << 24 | (uint32_t)header[2] << 16 | (uint32_t)header[3] << 8 | header[4];
  if (length > MAX_PAYLOAD || read_all(daemon, buffer, length) < 0) return -1;
  switch (header[0]) {
  case STDOUT_DATA:
    write_all(1, buffer, length); // a closed stdout is the caller's choice; keep relaying stderr and the exit
    return 0;
  case STDERR_DATA:
    write_all(2, buffer, length);
    return 0;
  case EXIT:
    if (length != 4) return -1;
    exit((int)((uint32_t)(uint8_t)buffer[0] << 24 | (uint32_t)(uint8_t)buffer[1] << 16 | (uint32_t)(uint8_t)buffer[2] << 8 | (uint8_t)buffer[3]) & 0xff);
  default:
    return -1;
  }
}

int main(int argc, char **argv) {
  if (argc != 2) {
    dprintf(2, "usage: moat-standin SOCKET\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction forward = {.sa_handler = on_signal}; // no SA_RESTART: poll must wake up
  for (int number = 1; number < NSIG; number++) {
    if (number == SIGKILL || number == SIGSTOP || number == SIGCHLD || number == SIGPIPE || number == SIGWINCH) continue;
    sigaction(number, &forward, NULL);
  }
  int daemon = connect_daemon(argv[1], 1);
  if (daemon < 0) {
    dprintf(2, "moat-standin: connect %s: %s\n", argv[1], strerror(errno));
    return LOST_DAEMON_STATUS;
  }
  char *buffer = malloc(MAX_PAYLOAD);
  if (!buffer) return LOST_DAEMON_STATUS;
  int stdin_open = 1;
  for (;;) {
    int lost = 0;
    if (pending_signal) {
      int number = pending_signal;
      pending_signal = 0;
      lost = send_u32(daemon, SIGNAL, (uint32_t)number) < 0;
    }
    struct pollfd fds[2] = {{.fd = daemon, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    int ready = lost ? 0 : poll(fds, stdin_open ? 2 : 1, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (!lost && fds[0].revents & (POLLIN | POLLHUP | POLLERR)) lost = handle_frame(daemon, buffer) < 0;
    if (lost) {
      close(daemon);
      daemon = connect_daemon(argv[1], RECONNECT_TRIES);
      if (daemon < 0) break;
      continue;
    }
    if (stdin_open && fds[1].revents) {
      // POLLNVAL: the caller gave no stdin at all, which reads as end of file.
      ssize_t got = fds[1].revents & POLLNVAL ? 0 : read(0, buffer, 64 * 1024);
      if (got < 0 && errno == EINTR) continue;
      if (got > 0) {
        send_frame(daemon, STDIN_DATA, buffer, (uint32_t)got); // a failed send shows as a lost connection at the next poll
      } else {
        stdin_open = 0;
        send_frame(daemon, STDIN_EOF, NULL, 0);
      }
    }
  }
  dprintf(2, "moat-standin: lost the connection to moatd before the container's exit status\n");
  return LOST_DAEMON_STATUS;
}
