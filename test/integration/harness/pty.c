// pty: the far end of a terminal, for tests, as a person's terminal emulator or conmon holds it.
//   pty console SOCKET           listens on SOCKET as conmon does for `--console-socket`, takes
//                                the one descriptor sent on it (the pty master) and its name
//   pty run ROWS COLUMNS CMD...  runs CMD on a new pty of that size, its controlling terminal
// Then either way: stdin is written to the master, the master's output goes to stdout, and
// each "ROWS COLUMNS" line read on fd 3 sets the master's window size (TIOCSWINSZ), as conmon
// does on a resize. Reports on stderr: "listening", "received NAME". It exits when the master
// hangs up (nothing holds the slave any more): 0, or with run, CMD's exit status.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static void die(const char *what) {
  dprintf(2, "pty: %s: %s\n", what, strerror(errno));
  exit(125);
}

static int console_master(const char *path) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof address.sun_path, "%s", path);
  int listener = socket(AF_UNIX, SOCK_STREAM, 0);
  if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 1) != 0) die("listen");
  dprintf(2, "listening\n");
  int connection = accept(listener, NULL, NULL);
  if (connection < 0) die("accept");
  char name[256] = "";
  char space[CMSG_SPACE(sizeof(int))];
  struct iovec payload = {.iov_base = name, .iov_len = sizeof name - 1};
  struct msghdr message = {.msg_iov = &payload, .msg_iovlen = 1, .msg_control = space, .msg_controllen = sizeof space};
  if (recvmsg(connection, &message, 0) < 0) die("recvmsg");
  struct cmsghdr *header = CMSG_FIRSTHDR(&message);
  if (!header || header->cmsg_type != SCM_RIGHTS) {
    errno = EBADMSG;
    die("no descriptor received");
  }
  int master;
  memcpy(&master, CMSG_DATA(header), sizeof master);
  dprintf(2, "received %s\n", name);
  close(connection);
  close(listener);
  unlink(path);
  return master;
}

static int run_master(unsigned short rows, unsigned short columns, char **command, pid_t *child) {
  int master = posix_openpt(O_RDWR | O_NOCTTY);
  if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) die("posix_openpt");
  struct winsize size = {.ws_row = rows, .ws_col = columns};
  if (ioctl(master, TIOCSWINSZ, &size) != 0) die("TIOCSWINSZ");
  const char *name = ptsname(master);
  *child = fork();
  if (*child < 0) die("fork");
  if (*child == 0) {
    setsid();
    int slave = open(name, O_RDWR);
    if (slave < 0) die("open slave");
    ioctl(slave, TIOCSCTTY, 0);
    dup2(slave, 0);
    dup2(slave, 1);
    dup2(slave, 2);
    close(master);
    execvp(command[0], command);
    die("exec");
  }
  return master;
}

int main(int argc, char **argv) {
  pid_t child = 0;
  int master;
  if (argc == 3 && strcmp(argv[1], "console") == 0) {
    master = console_master(argv[2]);
  } else if (argc >= 5 && strcmp(argv[1], "run") == 0) {
    master = run_master((unsigned short)atoi(argv[2]), (unsigned short)atoi(argv[3]), argv + 4, &child);
  } else {
    dprintf(2, "usage: pty console SOCKET | pty run ROWS COLUMNS CMD...\n");
    return 2;
  }
  char buffer[4096], control[64];
  size_t control_length = 0;
  int input_open = 1, control_open = fcntl(3, F_GETFD) >= 0;
  for (;;) {
    struct pollfd fds[3] = {{.fd = master, .events = POLLIN}, {.fd = input_open ? 0 : -1, .events = POLLIN}, {.fd = control_open ? 3 : -1, .events = POLLIN}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (fds[2].revents) {
      ssize_t got = read(3, control + control_length, sizeof control - control_length - 1);
      if (got <= 0) control_open = 0;
      else control_length += (size_t)got;
      char *end;
      while ((end = memchr(control, '\n', control_length))) {
        struct winsize size = {0};
        if (sscanf(control, "%hu %hu", &size.ws_row, &size.ws_col) == 2 && ioctl(master, TIOCSWINSZ, &size) != 0) die("TIOCSWINSZ");
        control_length -= (size_t)(end + 1 - control);
        memmove(control, end + 1, control_length);
      }
    }
    if (fds[1].revents) {
      ssize_t got = read(0, buffer, sizeof buffer);
      if (got <= 0) input_open = 0;
      else if (write(master, buffer, (size_t)got) != got) die("write master");
    }
    if (fds[0].revents) {
      ssize_t got = read(master, buffer, sizeof buffer);
      if (got <= 0) break; // EIO: the slave side is closed everywhere
      if (write(1, buffer, (size_t)got) != got) die("write stdout");
    }
  }
  if (child == 0) return 0;
  int status;
  if (waitpid(child, &status, 0) < 0) die("waitpid");
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
