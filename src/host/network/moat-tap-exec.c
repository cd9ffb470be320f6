// moat-tap-exec: opens taps inside a network namespace, then runs a program (QEMU) outside
// it, holding them.
//
//   moat-tap-exec NETNS-PATH TAP-NAME... -- PROGRAM ARG...
//
// A tap is made in the network namespace of the process that opens /dev/net/tun, and Node
// cannot enter another namespace (setns is per thread; Node has no binding for it). So this
// program joins NETNS-PATH, opens one tap per name there (IFF_TUN_EXCL: a name that exists
// already is an error, never someone else's tap taken over), returns to its own namespace,
// puts the taps on descriptors 3, 4, ... in the order named, and execs PROGRAM (the same
// pid, so QEMU's pid file and the caller's child are QEMU). QEMU gets them as `-netdev
// tap,fd=3`: it needs no network privilege and stays in the host's namespace. The taps are
// not persistent: the kernel removes each one when its last descriptor closes, so a QEMU
// that is killed takes its taps with it (docs/networking.md).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define FIRST_TAP_FD 3
#define MAX_TAPS 16

static int fail(const char *what, const char *name) {
  fprintf(stderr, "moat-tap-exec: %s%s%s: %s\n", what, name ? " " : "", name ? name : "", strerror(errno));
  return 127;
}

int main(int argc, char **argv) {
  int separator = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) {
      separator = i;
      break;
    }
  }
  int taps = separator - 2;
  if (argc < 4 || separator == 0 || separator + 1 >= argc || taps < 1 || taps > MAX_TAPS) {
    fprintf(stderr, "usage: moat-tap-exec NETNS-PATH TAP-NAME... -- PROGRAM ARG... (1 to %d taps)\n", MAX_TAPS);
    return 127;
  }
  int own = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (own < 0) return fail("open", "/proc/self/ns/net");
  int target = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (target < 0) return fail("open", argv[1]);
  if (setns(target, CLONE_NEWNET) != 0) return fail("enter the network namespace", argv[1]);
  int fds[MAX_TAPS];
  for (int i = 0; i < taps; i++) {
    const char *name = argv[2 + i];
    if (strlen(name) >= IFNAMSIZ) {
      errno = ENAMETOOLONG;
      return fail("tap", name);
    }
    fds[i] = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fds[i] < 0) return fail("open", "/dev/net/tun");
    struct ifreq request;
    memset(&request, 0, sizeof request);
    // IFF_VNET_HDR: QEMU (which reads the flag from the descriptor) passes the guest's checksum and segmentation offloads
    // through and sets the tap's (TUNSETOFFLOAD) to what the guest negotiated; a template's
    // NICs negotiated with a tap like this one (moat-jail's throwaway taps).
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL;
    strcpy(request.ifr_name, name);
    if (ioctl(fds[i], TUNSETIFF, &request) != 0) return fail("create tap", name);
  }
  if (setns(own, CLONE_NEWNET) != 0) return fail("return to the network namespace", "/proc/self/ns/net");
  // Moved up from the top, so that no tap lands on a descriptor another one is then put on.
  for (int i = 0; i < taps; i++) {
    int moved = fcntl(fds[i], F_DUPFD_CLOEXEC, FIRST_TAP_FD + MAX_TAPS);
    if (moved < 0) return fail("dup", argv[2 + i]);
    close(fds[i]);
    fds[i] = moved;
  }
  for (int i = 0; i < taps; i++) {
    // dup2 leaves FD_CLOEXEC off the new descriptor: QEMU inherits it.
    if (dup2(fds[i], FIRST_TAP_FD + i) < 0) return fail("dup2", argv[2 + i]);
    close(fds[i]);
  }
  execvp(argv[separator + 1], argv + separator + 1);
  return fail("exec", argv[separator + 1]);
}
