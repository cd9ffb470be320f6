// moat-sys: the system calls the agent needs and Node does not have, as a Node-API addon the
// agent loads (/moat/moat-sys.node, built with the image by image/rootfs/build.sh):
//   mount(source, target, fstype, flags, data) and umount(target): the shares' 9p, virtio-fs,
//     bind and overlay mounts of a container;
//   reseedRandom(entropy): mixes the host's random bytes into the kernel's pool, credited
//     (RNDADDENTROPY), then forces the CRNG to reseed now (RNDRESEEDCRNG): without the reseed,
//     clones of one VM template would hand out the same "random" bytes until the kernel's
//     next periodic reseed, up to a minute later (docs/templates.md);
//   setClock(seconds, nanoseconds) and setHostname(name): a clone's wall clock, which resumes
//     from the moment its template was saved, and its name;
//   netlink(message): sends one rtnetlink request (built by ../agent/netlink.ts, with
//     NLM_F_ACK) and waits for its acknowledgement: the guest's interfaces, addresses, routes
//     and neighbours (docs/networking.md).
// In the agent's own process: under TCG, starting a program for each of these (busybox's
// mount, a C helper) cost ~0.1-0.2 s apiece, most of a container's mounts and of a clone's
// identity (measured, docs/templates.md). Each call is synchronous: a mount or an ioctl does
// not wait on anything the agent's event loop would have to serve.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/random.h>
#include <node_api.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MIN_ENTROPY 16
#define MAX_ENTROPY 512
#define MAX_HOSTNAME 64
// Paths and mount options; the kernel takes at most a page of mount data.
#define MAX_STRING 4096

/** Throws `what[ path]: strerror(errno)` with the errno name as the error's code, and returns NULL. */
static napi_value throw_errno(napi_env env, const char *what, const char *path) {
  char message[MAX_STRING + 128];
  int error = errno;
  snprintf(message, sizeof message, "%s%s%s: %s", what, path ? " " : "", path ? path : "", strerror(error));
  const char *name = strerrorname_np(error);
  napi_throw_error(env, name ? name : "EUNKNOWN", message);
  return NULL;
}

static napi_value throw_usage(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

/** Reads argument `value` as a string into `buffer`; a JavaScript null becomes NULL. 0 on success. */
static int string_or_null(napi_env env, napi_value value, char *buffer, size_t size, char **out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return -1;
  if (type == napi_null) {
    *out = NULL;
    return 0;
  }
  size_t length;
  if (type != napi_string || napi_get_value_string_utf8(env, value, buffer, size, &length) != napi_ok || length >= size - 1) return -1;
  *out = buffer;
  return 0;
}

static int get_args(napi_env env, napi_callback_info info, size_t expected, napi_value *argv) {
  size_t argc = expected;
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == expected ? 0 : -1;
}

static napi_value do_mount(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  static char source[MAX_STRING], target[MAX_STRING], fstype[64], data[MAX_STRING];
  char *source_p, *target_p, *fstype_p, *data_p;
  uint32_t flags;
  if (get_args(env, info, 5, argv) != 0 || string_or_null(env, argv[0], source, sizeof source, &source_p) != 0 ||
      string_or_null(env, argv[1], target, sizeof target, &target_p) != 0 || target_p == NULL ||
      string_or_null(env, argv[2], fstype, sizeof fstype, &fstype_p) != 0 || napi_get_value_uint32(env, argv[3], &flags) != napi_ok ||
      string_or_null(env, argv[4], data, sizeof data, &data_p) != 0) {
    return throw_usage(env, "mount(source | null, target, fstype | null, flags, data | null)");
  }
  return mount(source_p, target_p, fstype_p, flags, data_p) != 0 ? throw_errno(env, "mount", target_p) : NULL;
}

static napi_value do_umount(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  static char target[MAX_STRING];
  char *target_p;
  if (get_args(env, info, 1, argv) != 0 || string_or_null(env, argv[0], target, sizeof target, &target_p) != 0 || target_p == NULL) {
    return throw_usage(env, "umount(target)");
  }
  return umount2(target_p, 0) != 0 ? throw_errno(env, "umount", target_p) : NULL;
}

static napi_value reseed_random(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *bytes;
  size_t length;
  if (get_args(env, info, 1, argv) != 0 || napi_get_buffer_info(env, argv[0], &bytes, &length) != napi_ok) {
    return throw_usage(env, "reseedRandom(entropy: Buffer)");
  }
  if (length < MIN_ENTROPY || length > MAX_ENTROPY) return throw_usage(env, "reseedRandom: 16 to 512 bytes of entropy");
  struct {
    struct rand_pool_info info;
    unsigned char buffer[MAX_ENTROPY];
  } pool;
  pool.info.entropy_count = (int)(length * 8);
  pool.info.buf_size = (int)length;
  memcpy(pool.buffer, bytes, length);
  int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open", "/dev/urandom");
  const char *failed = ioctl(fd, RNDADDENTROPY, &pool) != 0 ? "RNDADDENTROPY" : ioctl(fd, RNDRESEEDCRNG) != 0 ? "RNDRESEEDCRNG" : NULL;
  int error = errno;
  close(fd);
  errno = error;
  return failed ? throw_errno(env, failed, NULL) : NULL;
}

static napi_value set_clock(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int64_t seconds, nanoseconds;
  if (get_args(env, info, 2, argv) != 0 || napi_get_value_int64(env, argv[0], &seconds) != napi_ok ||
      napi_get_value_int64(env, argv[1], &nanoseconds) != napi_ok || seconds < 0 || nanoseconds < 0 || nanoseconds > 999999999) {
    return throw_usage(env, "setClock(seconds >= 0, nanoseconds 0-999999999)");
  }
  struct timespec now = {.tv_sec = (time_t)seconds, .tv_nsec = (long)nanoseconds};
  return clock_settime(CLOCK_REALTIME, &now) != 0 ? throw_errno(env, "clock_settime", NULL) : NULL;
}

static napi_value set_hostname(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char name[MAX_HOSTNAME + 2];
  size_t length;
  if (get_args(env, info, 1, argv) != 0 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &length) != napi_ok || length == 0 || length > MAX_HOSTNAME) {
    return throw_usage(env, "setHostname(name of 1 to 64 bytes)");
  }
  return sethostname(name, length) != 0 ? throw_errno(env, "sethostname", NULL) : NULL;
}

// An rtnetlink request: a few attributes, well under a page; the answer to one is an ack.
#define MAX_NETLINK 4096

static napi_value do_netlink(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  void *bytes;
  size_t length;
  if (get_args(env, info, 1, argv) != 0 || napi_get_buffer_info(env, argv[0], &bytes, &length) != napi_ok) {
    return throw_usage(env, "netlink(message: Buffer)");
  }
  struct nlmsghdr *request = bytes;
  if (length < sizeof *request || length > MAX_NETLINK || request->nlmsg_len != length || !(request->nlmsg_flags & NLM_F_ACK)) {
    return throw_usage(env, "netlink: one message of at most 4096 bytes, its length in its header, asking for an ack");
  }
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return throw_errno(env, "socket", "NETLINK_ROUTE");
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(fd, bytes, length, 0, (struct sockaddr *)&kernel, sizeof kernel) != (ssize_t)length) {
    int error = errno;
    close(fd);
    errno = error;
    return throw_errno(env, "netlink", "send");
  }
  // The kernel answers a request with NLM_F_ACK by one NLMSG_ERROR carrying its errno (0: done).
  for (;;) {
    union {
      struct nlmsghdr header;
      char bytes[MAX_NETLINK];
    } answer;
    ssize_t got = recv(fd, &answer, sizeof answer, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      int error = errno;
      close(fd);
      errno = error;
      return throw_errno(env, "netlink", "receive");
    }
    for (struct nlmsghdr *header = &answer.header; NLMSG_OK(header, (size_t)got); header = NLMSG_NEXT(header, got)) {
      if (header->nlmsg_seq != request->nlmsg_seq || header->nlmsg_type != NLMSG_ERROR) continue;
      struct nlmsgerr *ack = NLMSG_DATA(header);
      close(fd);
      if (ack->error == 0) return NULL;
      errno = -ack->error;
      return throw_errno(env, "netlink", NULL);
    }
  }
}

static void export_function(napi_env env, napi_value exports, const char *name, napi_callback callback) {
  napi_value function;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, callback, NULL, &function);
  napi_set_named_property(env, exports, name, function);
}

static void export_flag(napi_env env, napi_value exports, const char *name, uint32_t value) {
  napi_value number;
  napi_create_uint32(env, value, &number);
  napi_set_named_property(env, exports, name, number);
}

NAPI_MODULE_INIT() {
  export_function(env, exports, "mount", do_mount);
  export_function(env, exports, "umount", do_umount);
  export_function(env, exports, "reseedRandom", reseed_random);
  export_function(env, exports, "setClock", set_clock);
  export_function(env, exports, "setHostname", set_hostname);
  export_function(env, exports, "netlink", do_netlink);
  export_flag(env, exports, "MS_RDONLY", MS_RDONLY);
  export_flag(env, exports, "MS_REMOUNT", MS_REMOUNT);
  export_flag(env, exports, "MS_BIND", MS_BIND);
  return exports;
}
