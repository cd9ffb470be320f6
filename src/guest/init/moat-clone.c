// moat-clone: makes a guest restored from a VM template its own (docs/templates.md).
//
// Every VM restored from one template starts with the template's memory: the same kernel
// random state, the same clock, the same hostname. Before any container runs, the agent runs
// this program once with fresh values from the host:
//   1. mixes the host's random bytes (read from stdin) into the kernel's pool and credits
//      them (RNDADDENTROPY), then forces the CRNG to reseed now (RNDRESEEDCRNG): without the
//      reseed, clones would hand out the same "random" bytes until the kernel's next periodic
//      reseed, up to a minute later;
//   2. sets the wall clock (clock_settime), which otherwise resumes from the moment the
//      template was saved;
//   3. sets the guest's hostname.
// Node has none of these calls (ioctl, clock_settime, sethostname), hence C. Built statically
// with the image (image/rootfs/build.sh).
//
// Usage: moat-clone SECONDS NANOSECONDS HOSTNAME < ENTROPY   (16 to 512 bytes of entropy)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MIN_ENTROPY 16
#define MAX_ENTROPY 512

static int fail(const char *what) {
  dprintf(2, "moat-clone: %s: %s\n", what, strerror(errno));
  return 1;
}

static int reseed(const unsigned char *bytes, size_t length) {
  struct {
    struct rand_pool_info info;
    unsigned char buffer[MAX_ENTROPY];
  } pool;
  pool.info.entropy_count = (int)(length * 8);
  pool.info.buf_size = (int)length;
  memcpy(pool.buffer, bytes, length);
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail("open /dev/urandom");
  int failed = ioctl(fd, RNDADDENTROPY, &pool) != 0 ? fail("RNDADDENTROPY") : ioctl(fd, RNDRESEEDCRNG) != 0 ? fail("RNDRESEEDCRNG") : 0;
  close(fd);
  return failed;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    dprintf(2, "usage: moat-clone SECONDS NANOSECONDS HOSTNAME < ENTROPY\n");
    return 2;
  }
  unsigned char entropy[MAX_ENTROPY];
  size_t length = 0;
  for (;;) {
    ssize_t got = read(0, entropy + length, sizeof entropy - length);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return fail("read entropy");
    if (got == 0 || (length += (size_t)got) == sizeof entropy) break;
  }
  if (length < MIN_ENTROPY) {
    dprintf(2, "moat-clone: %zu bytes of entropy, need at least %d\n", length, MIN_ENTROPY);
    return 2;
  }
  if (reseed(entropy, length) != 0) return 1;

  char *end;
  errno = 0;
  long long seconds = strtoll(argv[1], &end, 10);
  long nanoseconds = *end == '\0' ? strtol(argv[2], &end, 10) : -1;
  if (errno != 0 || *end != '\0' || seconds < 0 || nanoseconds < 0 || nanoseconds > 999999999) {
    dprintf(2, "moat-clone: bad time %s.%s\n", argv[1], argv[2]);
    return 2;
  }
  struct timespec now = {.tv_sec = (time_t)seconds, .tv_nsec = nanoseconds};
  if (clock_settime(CLOCK_REALTIME, &now) != 0) return fail("clock_settime");

  size_t name_length = strlen(argv[3]);
  if (name_length == 0 || name_length > 64) {
    dprintf(2, "moat-clone: hostname must be 1 to 64 bytes\n");
    return 2;
  }
  if (sethostname(argv[3], name_length) != 0) return fail("sethostname");
  return 0;
}
