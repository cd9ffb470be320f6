// moat-standin: the host process that stands for a container running in a VM.
//
// Callers of an OCI runtime (conmon, containerd's runc shim) expect `create --pid-file` to
// name a host process that is the container: they wait for it and take its exit status, and
// its stdio is the container's. In moat the container runs in a guest, so `moat create` starts
// this small program with the caller's stdio instead; it relays stdin, stdout and stderr to
// and from moatd over one unix socket and exits with the container's exit status. It is C,
// not Node, because there is one per container: it costs about 1 MB and starts in about 1 ms.
//
// Usage: moat-standin [--new-netns] [--tty | --console-socket PATH] SOCKET|-
//   --new-netns  first unshare a new network namespace (the spec asks for one without a path)
//   -            the socket path is read from fd 4 until its end (moat create starts the
//                stand-in before it asks moatd to create the container; see socket_from_fd)
// Wire format (both ways): u8 type, u32 big-endian payload length (at most 1 MiB), payload.
//   to moatd:   1 HELLO (u32 pid), 2 STDIN (bytes), 3 STDIN_EOF, 4 SIGNAL (u32 number),
//               5 RESIZE (u16 rows, u16 columns)
//   from moatd: 16 STDOUT (bytes), 17 STDERR (bytes), 18 EXIT (i32 exit status)
// The TypeScript side is src/host/daemon/stdio-relay.ts; moatd sends nothing before the HELLO.
// When the connection drops (moatd restarting), the stand-in connects again for up to 30 s and
// says HELLO again; bytes in flight at that moment may be lost. A write that finds the
// connection closed first reads what moatd sent before closing (read_what_was_sent).
//
// Terminals (the process has one in the guest, where the guest's pty does echo, line editing,
// CRLF and signal keys, so the host side is raw, or each would happen twice):
//   --console-socket PATH  as runc does for conmon: a new pty pair; the master goes to the unix
//     socket PATH in one message (payload: the pty's name; the descriptor as SCM_RIGHTS); the
//     slave, in raw mode, becomes this process's controlling terminal and stdio. Whoever holds
//     the master sets its window size (TIOCSWINSZ), and the kernel tells this process with
//     SIGWINCH. fd 3 gets "ok\n" once the master is sent, or the error, and is closed; after
//     an error the process is killed (nobody would hold its terminal) and the stand-in exits 125.
//   --tty  stdin is a person's terminal: raw while the stand-in runs, restored at exit.
// Either way the window size is sent as RESIZE after each HELLO and on every SIGWINCH.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

enum {
  HELLO = 1, STDIN_DATA = 2, STDIN_EOF = 3, SIGNAL = 4, RESIZE = 5,
  STDOUT_DATA = 16, STDERR_DATA = 17, EXIT = 18,
};
#define MAX_PAYLOAD (1u << 20)
#define LOST_DAEMON_STATUS 255
#define NO_TERMINAL_STATUS 125
#define REPORT_FD 3
#define SOCKET_FD 4
#define RECONNECT_TRIES 300
#define RECONNECT_PAUSE_US 100000

static volatile sig_atomic_t pending_signal;
// One frame's payload at a time (MAX_PAYLOAD bytes), allocated first thing in main.
static char *frame_buffer;
static volatile sig_atomic_t window_changed;

static void on_signal(int number) { pending_signal = number; }
static void on_window_change(int number) { (void)number; window_changed = 1; }

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

static int handle_frame(int daemon, char *buffer);

/**
 * moatd closed the connection while this stand-in was writing to it: a process that exited at
 * once has its output, its exit status and the close sent together. What moatd sent before
 * closing is still there to read: it is handled now (an EXIT among it ends the stand-in with
 * that status) before the connection counts as lost (issue 13, the soak's EPIPE).
 */
static void read_what_was_sent(int daemon) {
  struct pollfd ready = {.fd = daemon, .events = POLLIN};
  while (poll(&ready, 1, 0) > 0 && (ready.revents & POLLIN) && handle_frame(daemon, frame_buffer) == 0) {}
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
    if (connect(fd, (struct sockaddr *)&address, sizeof address) == 0) {
      if (send_u32(fd, HELLO, (uint32_t)getpid()) == 0) return fd;
      int saved = errno;
      read_what_was_sent(fd);
      errno = saved;
    }
    close(fd);
  }
  return -1;
}

static struct termios saved_terminal;

static void restore_terminal(void) { tcsetattr(0, TCSADRAIN, &saved_terminal); }

/** Raw mode on `fd` if it is a terminal; a person's terminal is restored at exit. */
static void make_raw(int fd, int restore_at_exit) {
  struct termios settings;
  if (tcgetattr(fd, &settings) != 0) return; // not a terminal: nothing to change
  if (restore_at_exit) {
    saved_terminal = settings;
    atexit(restore_terminal);
  }
  cfmakeraw(&settings);
  tcsetattr(fd, TCSANOW, &settings);
}

/** Sends one message to the socket at `path`: `name` as payload, `fd` as SCM_RIGHTS. */
static int send_descriptor(const char *path, const char *name, int fd) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof address.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  strcpy(address.sun_path, path);
  int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return -1;
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(int))];
  } control = {0};
  struct iovec payload = {.iov_base = (void *)name, .iov_len = strlen(name)};
  struct msghdr message = {.msg_iov = &payload, .msg_iovlen = 1, .msg_control = control.bytes, .msg_controllen = sizeof control.bytes};
  struct cmsghdr *header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(header), &fd, sizeof fd);
  int result = connect(sock, (struct sockaddr *)&address, sizeof address) == 0 && sendmsg(sock, &message, MSG_NOSIGNAL) >= 0 ? 0 : -1;
  int saved = errno;
  close(sock);
  errno = saved;
  return result;
}

/**
 * --console-socket: a new pty pair, the master sent to `path`, the slave (raw) made this
 * process's controlling terminal and stdio. Returns NULL, or what failed (errno holds why).
 */
static const char *hand_over_terminal(const char *path) {
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return "posix_openpt";
  char name[128];
  if (grantpt(master) != 0 || unlockpt(master) != 0 || ptsname_r(master, name, sizeof name) != 0) return "unlockpt";
  // The pty becomes the controlling terminal of a session led by this process, so that its
  // size changes reach this process as SIGWINCH. A stand-in left behind by `moat create` leads
  // its session already (setsid then fails, harmlessly).
  setsid();
  int slave = open(name, O_RDWR | O_CLOEXEC);
  if (slave < 0) return "open the pty's slave";
  if (ioctl(slave, TIOCSCTTY, 0) != 0) return "TIOCSCTTY";
  make_raw(slave, 0);
  if (send_descriptor(path, name, master) != 0) return "send the pty's master";
  close(master);
  for (int fd = 0; fd <= 2; fd++) dup2(slave, fd);
  if (slave > 2) close(slave);
  return NULL;
}

/** Tells moatd the terminal's window size if it changed since it was last told. */
static int send_window_size(int daemon, struct winsize *told) {
  struct winsize size;
  if (ioctl(0, TIOCGWINSZ, &size) != 0 || (size.ws_row == 0 && size.ws_col == 0)) return 0;
  if (size.ws_row == told->ws_row && size.ws_col == told->ws_col) return 0;
  *told = size;
  uint8_t payload[4] = {(uint8_t)(size.ws_row >> 8), (uint8_t)size.ws_row, (uint8_t)(size.ws_col >> 8), (uint8_t)size.ws_col};
  return send_frame(daemon, RESIZE, payload, sizeof payload);
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

/**
 * Reads the socket path moat create writes to SOCKET_FD once moatd has made the container
 * (SOCKET "-"): the stand-in starts first, so that its pid (and its new network namespace)
 * exist before the prestart hooks run. An empty read means the create failed: exit quietly.
 */
static char *socket_from_fd(void) {
  static char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 1];
  size_t length = 0;
  for (;;) {
    ssize_t got = read(SOCKET_FD, path + length, sizeof path - 1 - length);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    length += (size_t)got;
    if (length == sizeof path - 1) break;
  }
  close(SOCKET_FD);
  while (length > 0 && path[length - 1] == '\n') length--;
  path[length] = 0;
  if (length == 0) exit(NO_TERMINAL_STATUS);
  return path;
}

int main(int argc, char **argv) {
  int tty = 0, new_netns = 0, next = 1;
  const char *console_socket = NULL;
  for (; next < argc - 1; next++) {
    if (strcmp(argv[next], "--tty") == 0) tty = 1;
    else if (strcmp(argv[next], "--new-netns") == 0) new_netns = 1;
    else if (strcmp(argv[next], "--console-socket") == 0 && next + 1 < argc - 1) console_socket = argv[++next];
    else break;
  }
  if (next != argc - 1 || (tty && console_socket)) {
    dprintf(2, "usage: moat-standin [--new-netns] [--tty | --console-socket PATH] SOCKET|-\n");
    return 2;
  }
  // A new network namespace, as runc gives a container whose spec asks for one without a path:
  // the prestart hooks get this process's pid (Docker moves the container's veth into its
  // namespace), and moatd pins that namespace for the sandbox and connects the VM to it.
  if (new_netns && unshare(CLONE_NEWNET) != 0) {
    dprintf(2, "moat-standin: unshare(CLONE_NEWNET): %s\n", strerror(errno));
    return NO_TERMINAL_STATUS;
  }
  const char *socket_path = strcmp(argv[argc - 1], "-") == 0 ? socket_from_fd() : argv[argc - 1];
  // The report descriptor is checked before anything is opened, which could take its number.
  int report = console_socket && fcntl(REPORT_FD, F_GETFD) >= 0 ? REPORT_FD : -1;
  // Every other descriptor the caller left open (conmon's, a shell's) is not ours to hold for
  // the container's life: only stdio and the report descriptor stay.
  close_range(report >= 0 ? REPORT_FD + 1 : REPORT_FD, ~0U, 0);
  signal(SIGPIPE, SIG_IGN);
  frame_buffer = malloc(MAX_PAYLOAD);
  if (!frame_buffer) return LOST_DAEMON_STATUS;
  struct sigaction forward = {.sa_handler = on_signal}; // no SA_RESTART: poll must wake up
  for (int number = 1; number < NSIG; number++) {
    if (number == SIGKILL || number == SIGSTOP || number == SIGCHLD || number == SIGPIPE || number == SIGWINCH) continue;
    sigaction(number, &forward, NULL);
  }
  if (tty || console_socket) {
    struct sigaction resized = {.sa_handler = on_window_change};
    sigaction(SIGWINCH, &resized, NULL);
  }
  int daemon = connect_daemon(socket_path, 1);
  if (daemon < 0) {
    dprintf(2, "moat-standin: connect %s: %s\n", socket_path, strerror(errno));
    return LOST_DAEMON_STATUS;
  }
  if (console_socket) {
    const char *failed = hand_over_terminal(console_socket);
    if (failed) {
      dprintf(2, "moat-standin: --console-socket %s: %s: %s\n", console_socket, failed, strerror(errno));
      if (report >= 0) dprintf(report, "%s: %s\n", failed, strerror(errno));
      send_u32(daemon, SIGNAL, SIGKILL); // nobody would hold the process's terminal
      return NO_TERMINAL_STATUS;
    }
    if (report >= 0) dprintf(report, "ok\n");
  }
  if (report >= 0) close(report);
  if (tty) make_raw(0, 1);
  char *buffer = frame_buffer;
  int stdin_open = 1;
  struct winsize told = {0};
  window_changed = tty || console_socket;
  for (;;) {
    int lost = 0;
    if (pending_signal) {
      int number = pending_signal;
      pending_signal = 0;
      lost = send_u32(daemon, SIGNAL, (uint32_t)number) < 0;
    }
    if (window_changed && !lost) {
      window_changed = 0;
      lost = send_window_size(daemon, &told) < 0;
    }
    struct pollfd fds[2] = {{.fd = daemon, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
    int ready = lost ? 0 : poll(fds, stdin_open ? 2 : 1, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (!lost && fds[0].revents & (POLLIN | POLLHUP | POLLERR)) lost = handle_frame(daemon, buffer) < 0;
    if (lost) {
      read_what_was_sent(daemon);
      close(daemon);
      daemon = connect_daemon(socket_path, RECONNECT_TRIES);
      if (daemon < 0) break;
      told = (struct winsize){0}; // a new moatd connection is told the size again
      window_changed = tty || console_socket;
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
