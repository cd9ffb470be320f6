// The agent's channel to the host: relays bytes between the virtio-serial port "agent.0" and
// a fresh unix-socket connection to the agent for each host session.
//
// Why not let Node read the port: Node has no non-blocking handle for a character device, and
// a guest write to a port whose host end is disconnected blocks in the kernel until the next
// host connects, then delivers the old session's bytes to the new one (seen here: a restarted
// moatd got responses to requests it never sent). This relay writes only while the host is
// connected, drops what the agent sends for a session that has ended, and gives every host
// session its own connection to the agent, so a session ends cleanly on both sides.
//
// The guest learns that a host connected from a control message (VIRTIO_CONSOLE_PORT_OPEN),
// which Linux's virtio_console handles in a workqueue, while the host's bytes wake this relay
// straight from the interrupt. QEMU sends the message before the bytes, but the bytes can be
// read first: the port then still reads as hung up. A VM restored from a template meets this on
// every start (its port is open already, and the host connects and sends at once), and the
// relay used to end that session there, dropping the agent's answer: the host waited for an
// answer that never came and the guest went idle (docs/templates.md, "the lost wakeup"). So a
// session whose host the port has not yet shown connected is kept through a hang-up for up to
// OPEN_GRACE_US, for the port-open message to be handled; a session that has seen its host
// connected ends at the first hang-up, as before.
#include "vport-relay.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BUFFER_BYTES 65536
#define WAIT_STEP_US 10000
#define PORT_WAIT_STEPS 1000    // 10 s for the port to appear
#define HOST_POLL_US 20000      // while no host is connected, the port reads as hung up
// How long (guest time) a session started by bytes that came before the port showed its host
// connected waits for it to: a workqueue delay, far longer only on a host starved of CPU.
#define OPEN_GRACE_US 5000000

/** Finds /dev/vportNpM of the port QEMU named `name`, waiting for it to appear. */
static int find_port(const char *name, char *device, size_t size) {
  for (int step = 0; step < PORT_WAIT_STEPS; step++) {
    DIR *ports = opendir("/sys/class/virtio-ports");
    struct dirent *entry;
    while (ports && (entry = readdir(ports))) {
      if (entry->d_name[0] == '.') continue;
      char path[512], found[128] = "";
      snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", entry->d_name);
      int fd = open(path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      ssize_t length = read(fd, found, sizeof found - 1);
      close(fd);
      if (length > 0 && found[length - 1] == '\n') found[length - 1] = '\0';
      if (strcmp(found, name) == 0) {
        snprintf(device, size, "/dev/%s", entry->d_name);
        closedir(ports);
        return 0;
      }
    }
    if (ports) closedir(ports);
    usleep(WAIT_STEP_US);
  }
  return -1;
}

/**
 * Connects to the agent, waiting for it to listen as long as it takes: the relay is not the
 * judge of a slow start (the host's dial_timeout is), and an agent that dies makes moat-init
 * reset the VM anyway. A deadline here, counted in guest time, reset healthy guests that were
 * only slow: 20 cold boots at once on 2 cores under TCG (bench/burst.ts).
 */
static int connect_agent(const char *socket_path) {
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path);
  for (;;) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      dprintf(2, "vport-relay: socket: %s\n", strerror(errno));
      return -1;
    }
    if (connect(fd, (struct sockaddr *)&address, sizeof address) == 0) return fd;
    close(fd);
    usleep(WAIT_STEP_US);
  }
}

/** Writes all of `data` to the port; -1 if the host went away meanwhile (the data is dropped). */
static int write_port(int port, const char *data, size_t length) {
  while (length > 0) {
    struct pollfd ready = {.fd = port, .events = POLLOUT};
    if (poll(&ready, 1, -1) < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (ready.revents & (POLLHUP | POLLERR)) return -1;
    ssize_t written = write(port, data, length);
    if (written < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    data += written;
    length -= (size_t)written;
  }
  return 0;
}

static int write_all(int fd, const char *data, size_t length) {
  while (length > 0) {
    ssize_t written = write(fd, data, length);
    if (written < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    data += written;
    length -= (size_t)written;
  }
  return 0;
}

int vport_relay(const char *port_name, const char *agent_socket) {
  char device[300];
  if (find_port(port_name, device, sizeof device) != 0) {
    dprintf(2, "vport-relay: virtio-serial port %s not found\n", port_name);
    return 1;
  }
  int port = open(device, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (port < 0) {
    dprintf(2, "vport-relay: open %s: %s\n", device, strerror(errno));
    return 1;
  }
  static char buffer[BUFFER_BYTES];
  int agent = -1;
  // Whether the port has shown the current session's host connected (see the top), and how
  // long that session has waited for it through hang-ups.
  int host_seen = 0;
  long waited_us = 0;
  for (;;) {
    struct pollfd fds[2] = {{.fd = port, .events = POLLIN}, {.fd = agent, .events = POLLIN}};
    if (poll(fds, agent >= 0 ? 2 : 1, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    int hung_up = (fds[0].revents & (POLLHUP | POLLERR)) != 0;
    if (fds[0].revents & POLLIN) {
      ssize_t got = read(port, buffer, sizeof buffer);
      if (got > 0) {
        if (agent < 0) {
          if ((agent = connect_agent(agent_socket)) < 0) return 1;
          host_seen = !hung_up;
          waited_us = 0;
        }
        if (write_all(agent, buffer, (size_t)got) < 0) {
          close(agent);
          agent = -1;
        }
        continue;
      }
    }
    if (hung_up) {
      if (agent >= 0 && !host_seen && waited_us < OPEN_GRACE_US) {
        // The host's bytes came before its port-open message was handled: wait for it, and
        // leave the agent's answer unread meanwhile.
        usleep(HOST_POLL_US);
        waited_us += HOST_POLL_US;
        continue;
      }
      if (agent >= 0 && !host_seen) dprintf(2, "vport-relay: a host sent bytes but the port did not show it connected within %d ms; session ended\n", OPEN_GRACE_US / 1000);
      // No host connected: end the agent's session, and look again shortly.
      if (agent >= 0) {
        close(agent);
        agent = -1;
      }
      usleep(HOST_POLL_US);
      continue;
    }
    if (agent >= 0 && !host_seen) {
      host_seen = 1;
      dprintf(2, "vport-relay: the host's bytes overtook its port-open message; waited %ld ms for it\n", waited_us / 1000);
    }
    if (agent >= 0 && fds[1].revents) {
      ssize_t got = read(agent, buffer, sizeof buffer);
      if (got <= 0 || write_port(port, buffer, (size_t)got) < 0) {
        close(agent);
        agent = -1;
      }
    }
  }
}
