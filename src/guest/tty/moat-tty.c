// moat-tty: the agent's hands on one container terminal.
//
// crun hands a container's (or exec'd process's) terminal over as runc does: it connects to
// the unix socket named by --console-socket and sends the pty master as SCM_RIGHTS ancillary
// data. Node can neither receive a descriptor nor set a window size (no recvmsg, no ioctl), so
// the agent starts this program first, one per terminal, and talks to it over plain streams:
//
//   moat-tty SOCKET
//   fd 0  bytes for the terminal (the process's input), from the agent. At end of file the
//         terminal's end-of-file character (VEOF) is written if the terminal is in canonical
//         mode, so a program reading its terminal line by line sees end of file, as it would
//         without a terminal (two of them after a partial line: the first ends the line).
//   fd 1  the terminal's output, to the agent.
//   fd 3  control, both ways: "ready\n" is written once SOCKET listens; "ROWS COLUMNS\n" lines
//         are read and set as the window size (TIOCSWINSZ; the kernel sends the terminal's
//         foreground process group SIGWINCH). End of file on it before the terminal arrived
//         means crun is gone without sending one (it failed early): moat-tty exits 0.
//
// It accepts one connection on SOCKET, takes one descriptor from it, removes SOCKET, and relays
// until the terminal hangs up (no process holds its slave side any more) and the output read
// so far is written out; then it exits 0. Errors go to stderr, and the exit status is 1.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#define BUFFER_BYTES 65536
#define CONTROL_LINE_MAX 64
#define CONTROL_FD 3

static const char *socket_path;

static void fail(const char *format, ...) {
  va_list arguments;
  va_start(arguments, format);
  dprintf(2, "moat-tty %s: ", socket_path);
  vdprintf(2, format, arguments);
  dprintf(2, "\n");
  va_end(arguments);
  exit(1);
}

static int listen_on(const char *path) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof address.sun_path) fail("socket path too long");
  strcpy(address.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket: %s", strerror(errno));
  if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0) fail("bind: %s", strerror(errno));
  if (listen(fd, 1) != 0) fail("listen: %s", strerror(errno));
  return fd;
}

/**
 * Waits for crun's connection while reading control bytes into `control` (a resize may come
 * early); exits if the control stream ends first. crun connects before it exits, so when both
 * are ready at once the connection wins.
 */
static void wait_for_connection(int listener, char *control, size_t *control_length, size_t control_size) {
  for (;;) {
    struct pollfd fds[2] = {{.fd = listener, .events = POLLIN}, {.fd = CONTROL_FD, .events = POLLIN}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fail("poll: %s", strerror(errno));
    }
    if (fds[0].revents) return;
    if (fds[1].revents) {
      ssize_t got = read(CONTROL_FD, control + *control_length, control_size - *control_length);
      if (got == 0 || (got < 0 && errno != EINTR)) {
        unlink(socket_path);
        exit(0);
      }
      if (got > 0) *control_length += (size_t)got;
      if (*control_length == control_size) *control_length = 0; // a line too long to be a size: dropped
    }
  }
}

/** Accepts crun's connection and takes the one descriptor it sends: the pty master. */
static int receive_master(int listener) {
  int connection;
  do connection = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  while (connection < 0 && errno == EINTR);
  if (connection < 0) fail("accept: %s", strerror(errno));
  close(listener);
  unlink(socket_path);
  char name[256];
  struct iovec payload = {.iov_base = name, .iov_len = sizeof name};
  union {
    struct cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr message = {.msg_iov = &payload, .msg_iovlen = 1, .msg_control = control.bytes, .msg_controllen = sizeof control.bytes};
  ssize_t got;
  do got = recvmsg(connection, &message, MSG_CMSG_CLOEXEC);
  while (got < 0 && errno == EINTR);
  if (got < 0) fail("recvmsg: %s", strerror(errno));
  close(connection);
  struct cmsghdr *header = CMSG_FIRSTHDR(&message);
  if (!header || header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS || header->cmsg_len != CMSG_LEN(sizeof(int))) {
    fail("the console socket's message carried no descriptor");
  }
  int master;
  memcpy(&master, CMSG_DATA(header), sizeof master);
  if (message.msg_flags & MSG_CTRUNC) fail("the console socket's message carried more than one descriptor");
  if (!isatty(master)) fail("the descriptor received is not a terminal");
  return master;
}

/** Applies each complete "ROWS COLUMNS" line in `line`; returns how many bytes were used. */
static size_t apply_lines(int master, char *line, size_t length) {
  size_t used = 0;
  for (;;) {
    char *end = memchr(line + used, '\n', length - used);
    if (!end) break;
    *end = '\0';
    unsigned rows, columns;
    char extra;
    if (sscanf(line + used, "%u %u%c", &rows, &columns, &extra) == 2 && rows <= 0xffff && columns <= 0xffff) {
      struct winsize size = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)columns};
      if (ioctl(master, TIOCSWINSZ, &size) != 0) dprintf(2, "moat-tty %s: TIOCSWINSZ: %s\n", socket_path, strerror(errno));
    } else {
      dprintf(2, "moat-tty %s: control line not understood\n", socket_path);
    }
    used = (size_t)(end - line) + 1;
  }
  return used;
}

/** Applies the complete lines in the control buffer and keeps the rest for the next read. */
static void apply_resizes(int master, char *control, size_t *length, size_t size) {
  size_t used = apply_lines(master, control, *length);
  memmove(control, control + used, *length - used);
  *length -= used;
  if (*length == size) *length = 0; // a line too long to be a size: dropped
}

/** The input that tells a canonical-mode reader its input has ended (see the top). */
static size_t end_of_file_input(int master, char last_byte, char *into) {
  struct termios settings;
  if (tcgetattr(master, &settings) != 0 || !(settings.c_lflag & ICANON) || settings.c_cc[VEOF] == _POSIX_VDISABLE) return 0;
  size_t length = 0;
  if (last_byte != '\0' && last_byte != '\n' && last_byte != '\r') into[length++] = (char)settings.c_cc[VEOF];
  into[length++] = (char)settings.c_cc[VEOF];
  return length;
}

static void set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) fail("fcntl %d: %s", fd, strerror(errno));
}

int main(int argc, char **argv) {
  if (argc != 2) {
    dprintf(2, "usage: moat-tty SOCKET\n");
    return 2;
  }
  socket_path = argv[1];
  signal(SIGPIPE, SIG_IGN);
  int listener = listen_on(socket_path);
  if (write(CONTROL_FD, "ready\n", 6) != 6) fail("write ready: %s", strerror(errno));
  char control[CONTROL_LINE_MAX];
  size_t control_length = 0;
  wait_for_connection(listener, control, &control_length, sizeof control);
  int master = receive_master(listener);
  apply_resizes(master, control, &control_length, sizeof control);
  set_nonblocking(master);
  set_nonblocking(0);
  set_nonblocking(1);

  static char input[BUFFER_BYTES], output[BUFFER_BYTES];
  size_t input_length = 0, input_offset = 0, output_length = 0, output_offset = 0;
  int input_open = 1, control_open = 1, hung_up = 0;
  char last_input = '\0';
  while (!hung_up || output_length > 0) {
    // A descriptor is watched only while there is room for what it gives, or something for it:
    // a hung-up master reports POLLHUP whatever is asked, and must not spin the loop.
    short master_events = (short)((output_length == 0 ? POLLIN : 0) | (input_length > 0 ? POLLOUT : 0));
    struct pollfd fds[4] = {
        {.fd = input_open && input_length == 0 ? 0 : -1, .events = POLLIN},
        {.fd = hung_up || master_events == 0 ? -1 : master, .events = master_events},
        {.fd = output_length > 0 ? 1 : -1, .events = POLLOUT},
        {.fd = control_open ? CONTROL_FD : -1, .events = POLLIN},
    };
    if (poll(fds, 4, -1) < 0) {
      if (errno == EINTR) continue;
      fail("poll: %s", strerror(errno));
    }
    // Sizes first: a resize sent before some input then takes effect before that input.
    if (fds[3].revents) {
      ssize_t got = read(CONTROL_FD, control + control_length, sizeof control - control_length);
      if (got > 0) {
        control_length += (size_t)got;
        apply_resizes(master, control, &control_length, sizeof control);
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        control_open = 0;
      }
    }
    if (fds[0].revents) {
      ssize_t got = read(0, input, sizeof input);
      if (got > 0) {
        input_length = (size_t)got;
        input_offset = 0;
        last_input = input[got - 1];
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        input_open = 0;
        input_length = end_of_file_input(master, last_input, input);
        input_offset = 0;
      }
    }
    if (fds[1].revents & POLLOUT && input_length > 0) {
      ssize_t written = write(master, input + input_offset, input_length);
      if (written > 0) {
        input_offset += (size_t)written;
        input_length -= (size_t)written;
      } else if (written < 0 && errno != EAGAIN && errno != EINTR) {
        input_length = 0; // the terminal is going away; its hang-up ends the relay below
      }
    }
    if (fds[1].revents & (POLLIN | POLLHUP | POLLERR) && output_length == 0) {
      ssize_t got = read(master, output, sizeof output);
      if (got > 0) {
        output_length = (size_t)got;
        output_offset = 0;
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        hung_up = 1; // EIO: every slave descriptor is closed, and what they wrote was read
      }
    }
    if (fds[2].revents) {
      ssize_t written = write(1, output + output_offset, output_length);
      if (written > 0) {
        output_offset += (size_t)written;
        output_length -= (size_t)written;
      } else if (written < 0 && errno != EAGAIN && errno != EINTR) {
        fail("write output: %s", strerror(errno)); // the agent is gone
      }
    }
  }
  return 0;
}
