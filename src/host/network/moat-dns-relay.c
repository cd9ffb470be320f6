// moat-dns-relay: the host's end of a sandbox's resolver relay (docs/networking.md, "Docker's
// names"). It enters the sandbox's network namespace and sends each DNS query moatd writes on
// stdin to 127.0.0.11:53 there (Docker's embedded DNS: a socket dockerd opened in that
// namespace, behind a DNAT rule), and writes each answer to stdout. The destination is fixed:
// nothing from the guest chooses an address. Node cannot do this itself (setns is per thread).
//
// Usage: moat-dns-relay NETNS_PATH
// Frames, both ways: u16 big-endian length (1 to 4096), then that many bytes (one DNS message).
// Exits 0 at the end of stdin.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_MESSAGE 4096

static int read_all(int fd, unsigned char *data, size_t length) {
  while (length > 0) {
    ssize_t got = read(fd, data, length);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return -1;
    data += got;
    length -= (size_t)got;
  }
  return 0;
}

static int write_all(int fd, const unsigned char *data, size_t length) {
  while (length > 0) {
    ssize_t written = write(fd, data, length);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return -1;
    data += written;
    length -= (size_t)written;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    dprintf(2, "usage: moat-dns-relay NETNS_PATH\n");
    return 2;
  }
  int netns = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (netns < 0 || setns(netns, CLONE_NEWNET) != 0) {
    dprintf(2, "moat-dns-relay: enter %s: %s\n", argv[1], strerror(errno));
    return 1;
  }
  close(netns);
  int dns = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(53)};
  inet_pton(AF_INET, "127.0.0.11", &server.sin_addr);
  if (dns < 0 || connect(dns, (struct sockaddr *)&server, sizeof server) != 0) {
    dprintf(2, "moat-dns-relay: udp socket to 127.0.0.11:53: %s\n", strerror(errno));
    return 1;
  }
  unsigned char buffer[2 + MAX_MESSAGE];
  for (;;) {
    struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = dns, .events = POLLIN}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (fds[0].revents) {
      if (read_all(0, buffer, 2) != 0) return 0;
      size_t length = (size_t)buffer[0] << 8 | buffer[1];
      if (length == 0 || length > MAX_MESSAGE || read_all(0, buffer + 2, length) != 0) return 0;
      // Nobody listening (ECONNREFUSED) loses the query, as a lost datagram would; the client retries.
      (void)send(dns, buffer + 2, length, 0);
    }
    if (fds[1].revents) {
      ssize_t got = recv(dns, buffer + 2, MAX_MESSAGE, 0);
      if (got <= 0) continue; // a refused earlier send shows here as ECONNREFUSED
      buffer[0] = (unsigned char)(got >> 8);
      buffer[1] = (unsigned char)got;
      if (write_all(1, buffer, (size_t)got + 2) != 0) return 0;
    }
  }
}
