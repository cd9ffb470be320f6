// moat-port-relay: the host's end of CRI PortForward into a moat pod (docs/networking.md, "Port
// forwarding"). containerd serves PortForward by dialling localhost:PORT inside the pod's
// network namespace on the host, where with moat nothing listens: the pod runs in the VM.
// This program enters that namespace and listens on 127.0.0.1 and ::1 on a port the kernel
// picks, which it prints; moatd then adds `nat OUTPUT -o lo -d 127.0.0.1 -p tcp -j REDIRECT`
// to it (and the same for ::1), so that every TCP connection to the loopback there comes
// here. For each, the port it was made to (SO_ORIGINAL_DST) goes to moatd on a new connection
// to SOCKET_PATH (a unix socket: its path does not depend on the namespace), moatd answers
// whether the guest's end is connected, and then the bytes are copied both ways, half-closes
// passed on, through one fixed buffer per direction (the kernel's flow control does the
// rest). A connection the guest refused is reset, so that its client sees an error, not an
// empty answer. Node cannot do this itself: setns is per thread.
//
// Usage: moat-port-relay NETNS_PATH SOCKET_PATH
// Prints "ready PORT4 PORT6\n" (PORT6 0 without IPv6 on the loopback) once listening.
// On each unix connection: u16 big-endian port to moatd, then one byte back (0 connected,
// anything else refused), then the connection's bytes. Exits 0 at the end of stdin (moatd
// gone or done with it), and dies with its parent.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_PAIRS 64
#define BUFFER_BYTES 16384
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h, which needs kernel-internal headers).
#define SO_ORIGINAL_DST6 80

enum phase { WAITING, COPYING };

struct direction {
  unsigned char data[BUFFER_BYTES];
  size_t length, offset;
  int ended;    // its source read end-of-file
  int shutdown; // passed on to its destination
};

struct pair {
  int used;
  enum phase phase;
  int tcp, unix_fd;
  // Hung up (POLLHUP): polled only while there is something to read from it or write to it,
  // which makes progress (bytes, end-of-file or an error); otherwise poll would report the
  // hang-up again at once, for ever. Data may still wait in its receive queue.
  int tcp_hup, unix_hup;
  struct direction to_moatd, to_client;
};

static struct pair pairs[MAX_PAIRS];
static const char *socket_path;

/** Closes a client with a reset (SO_LINGER 0): an error for the client, not an empty answer. */
static void reset(int fd) {
  struct linger linger = {.l_onoff = 1, .l_linger = 0};
  (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger);
  close(fd);
}

static void end_pair(struct pair *pair, int abortive) {
  if (abortive) reset(pair->tcp);
  else close(pair->tcp);
  close(pair->unix_fd);
  pair->used = 0;
}

static int listen_on(int family, const char *address, int port) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  int one = 1;
  if (family == AF_INET6) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  struct sockaddr_storage storage = {0};
  socklen_t length;
  if (family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)&storage;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, address, &in->sin_addr);
    length = sizeof *in;
  } else {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&storage;
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, address, &in6->sin6_addr);
    length = sizeof *in6;
  }
  if (bind(fd, (struct sockaddr *)&storage, length) != 0 || listen(fd, 128) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

static int bound_port(int fd) {
  struct sockaddr_storage storage;
  socklen_t length = sizeof storage;
  if (getsockname(fd, (struct sockaddr *)&storage, &length) != 0) return 0;
  return storage.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&storage)->sin_port) : ntohs(((struct sockaddr_in6 *)&storage)->sin6_port);
}

/** The port a redirected connection was made to; 0 if it was not redirected. */
static int original_port(int fd, int family) {
  struct sockaddr_storage storage;
  socklen_t length = sizeof storage;
  if (family == AF_INET) {
    if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &storage, &length) != 0) return 0;
    return ntohs(((struct sockaddr_in *)&storage)->sin_port);
  }
  if (getsockopt(fd, SOL_IPV6, SO_ORIGINAL_DST6, &storage, &length) != 0) return 0;
  return ntohs(((struct sockaddr_in6 *)&storage)->sin6_port);
}

static void take(int listener, int family) {
  int client = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
  if (client < 0) return;
  int port = original_port(client, family);
  struct pair *pair = NULL;
  for (int i = 0; i < MAX_PAIRS && !pair; i++)
    if (!pairs[i].used) pair = &pairs[i];
  if (port == 0 || !pair) { // not redirected (nothing to forward to), or too many at once
    reset(client);
    return;
  }
  int moatd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  strncpy(address.sun_path, socket_path, sizeof address.sun_path - 1);
  unsigned char header[2] = {(unsigned char)(port >> 8), (unsigned char)port};
  // A fresh unix connection takes two bytes at once; moatd is not waited for beyond that.
  if (moatd < 0 || connect(moatd, (struct sockaddr *)&address, sizeof address) != 0 || send(moatd, header, 2, MSG_NOSIGNAL) != 2) {
    if (moatd >= 0) close(moatd);
    reset(client);
    return;
  }
  (void)fcntl(moatd, F_SETFL, fcntl(moatd, F_GETFL) | O_NONBLOCK);
  memset(pair, 0, sizeof *pair);
  pair->used = 1;
  pair->phase = WAITING;
  pair->tcp = client;
  pair->unix_fd = moatd;
}

/** Reads into `to` from `from` when it is empty; 0, or -1 on an error. */
static int fill(int from, struct direction *to) {
  if (to->ended || to->length > to->offset) return 0;
  ssize_t got = recv(from, to->data, BUFFER_BYTES, 0);
  if (got < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
  to->offset = 0;
  to->length = (size_t)got;
  if (got == 0) to->ended = 1;
  return 0;
}

/** Writes what `from` holds to `to`, and passes its end on once it is all written; 0, or -1 on an error. */
static int flush(struct direction *from, int to) {
  if (from->length > from->offset) {
    ssize_t sent = send(to, from->data + from->offset, from->length - from->offset, MSG_NOSIGNAL);
    if (sent < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    from->offset += (size_t)sent;
  }
  if (from->ended && from->offset >= from->length && !from->shutdown) {
    (void)shutdown(to, SHUT_WR);
    from->shutdown = 1;
  }
  return 0;
}

static void step(struct pair *pair, short tcp_events, short unix_events) {
  if ((tcp_events | unix_events) & POLLERR) { // a reset: the other end hears one too
    end_pair(pair, 1);
    return;
  }
  if (tcp_events & POLLHUP) pair->tcp_hup = 1;
  if (unix_events & POLLHUP) pair->unix_hup = 1;
  if (pair->phase == WAITING) {
    if (pair->tcp_hup) { // the client went before the guest's end was there
      end_pair(pair, 1);
      return;
    }
    if (!unix_events) return;
    unsigned char status = 1;
    ssize_t got = recv(pair->unix_fd, &status, 1, 0);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (got != 1 || status != 0) { // refused, or moatd gave up on it
      end_pair(pair, 1);
      return;
    }
    pair->phase = COPYING;
  }
  if (fill(pair->tcp, &pair->to_moatd) != 0 || fill(pair->unix_fd, &pair->to_client) != 0 || flush(&pair->to_moatd, pair->unix_fd) != 0 || flush(&pair->to_client, pair->tcp) != 0) {
    end_pair(pair, 1);
    return;
  }
  if (pair->to_moatd.shutdown && pair->to_client.shutdown) end_pair(pair, 0);
  else if (pair->tcp_hup && pair->unix_hup) end_pair(pair, 1); // both ends gone both ways: nothing more can be delivered
}

int main(int argc, char **argv) {
  if (argc != 3) {
    dprintf(2, "usage: moat-port-relay NETNS_PATH SOCKET_PATH\n");
    return 2;
  }
  // Never outlives moatd, which started it (and stops it with the sandbox).
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() == 1) return 1;
  signal(SIGPIPE, SIG_IGN);
  socket_path = argv[2];
  if (strlen(socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
    dprintf(2, "moat-port-relay: socket path %s is too long\n", socket_path);
    return 2;
  }
  int netns = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (netns < 0 || setns(netns, CLONE_NEWNET) != 0) {
    dprintf(2, "moat-port-relay: enter %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  close(netns);
  int listener4 = listen_on(AF_INET, "127.0.0.1", 0);
  if (listener4 < 0 && errno == EADDRNOTAVAIL) {
    // The namespace's loopback is down (a caller's `ip netns add`, a CNI network without the
    // loopback plugin): nothing in it can dial localhost, so there is nothing to forward.
    printf("no-loopback\n");
    fflush(stdout);
    return 0;
  }
  if (listener4 < 0) {
    dprintf(2, "moat-port-relay: listen on 127.0.0.1 in %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  int port4 = bound_port(listener4);
  // The same port on ::1 where it is free; a namespace without IPv6 on its loopback has none.
  int listener6 = listen_on(AF_INET6, "::1", port4);
  if (listener6 < 0) listener6 = listen_on(AF_INET6, "::1", 0);
  printf("ready %d %d\n", port4, listener6 < 0 ? 0 : bound_port(listener6));
  fflush(stdout);

  struct pollfd fds[3 + 2 * MAX_PAIRS];
  int owner[3 + 2 * MAX_PAIRS];
  for (;;) {
    int count = 0;
    fds[count++] = (struct pollfd){.fd = 0, .events = POLLIN};
    fds[count++] = (struct pollfd){.fd = listener4, .events = POLLIN};
    fds[count++] = (struct pollfd){.fd = listener6, .events = POLLIN}; // -1 is ignored by poll
    for (int i = 0; i < MAX_PAIRS; i++) {
      struct pair *pair = &pairs[i];
      if (!pair->used) continue;
      short tcp = 0, unix_fd = POLLIN;
      if (pair->phase == COPYING) {
        struct direction *up = &pair->to_moatd, *down = &pair->to_client;
        tcp = (short)((!up->ended && up->length <= up->offset ? POLLIN : 0) | (down->length > down->offset ? POLLOUT : 0));
        unix_fd = (short)((!down->ended && down->length <= down->offset ? POLLIN : 0) | (up->length > up->offset ? POLLOUT : 0));
      }
      owner[count] = i;
      fds[count++] = (struct pollfd){.fd = pair->tcp_hup && !tcp ? -1 : pair->tcp, .events = tcp};
      owner[count] = i;
      fds[count++] = (struct pollfd){.fd = pair->unix_hup && !unix_fd ? -1 : pair->unix_fd, .events = unix_fd};
    }
    if (poll(fds, (nfds_t)count, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (fds[0].revents) {
      char byte;
      if (read(0, &byte, 1) <= 0) return 0;
    }
    for (int i = 3; i + 1 < count; i += 2) {
      struct pair *pair = &pairs[owner[i]];
      if (pair->used && (fds[i].revents || fds[i + 1].revents)) step(pair, fds[i].revents, fds[i + 1].revents);
    }
    if (fds[1].revents & POLLIN) take(listener4, AF_INET);
    if (listener6 >= 0 && (fds[2].revents & POLLIN)) take(listener6, AF_INET6);
  }
}
