// moat-jail: runs one VMM (QEMU) confined, the one way moat starts QEMU (docs/security.md).
//
//   moat-jail [--keep-fds N] [--pidfile PATH] [--ro PATH]... [--rw PATH]... [--rslave PATH]...
//             [--caps NAME,NAME... | --caps none] [--uid UID --gid GID] -- PROGRAM ARG...
//
// The launcher stays outside and does only what needs the host: it makes a new pid namespace
// and forks. The child is pid 1 there and becomes PROGRAM (QEMU), after it:
// - enters new mount, ipc, uts and network namespaces (QEMU needs no network: its taps come
//   as open descriptors, every socket it uses is a unix socket reached by path);
// - builds a root of its own: a tmpfs holding only /usr read-only (QEMU, its libraries and
//   firmware), /dev/null, /dev/zero, /dev/random, /dev/urandom, a /proc showing QEMU's own
//   process directory and nothing else (subset=pid), and the paths named by --ro,
//   --rw and --rslave, each at its own path, then pivot_root into it and drops the host's
//   tree; the tmpfs is then made read-only;
// - keeps descriptors 0, 1, 2 and the N after them (taps) and no other;
// - drops every capability but those --caps names from the bounding, inheritable and ambient
//   sets (root then gets just those on exec), or switches to --uid/--gid with none at all;
// - sets no_new_privs; and execs PROGRAM, which adds its own seccomp filter (QEMU's -sandbox).
// The launcher writes the child's pid as the host sees it to --pidfile before the child may
// exec (QEMU's own -pidfile would say 1), forwards the polite signals to it and exits as it
// exits (the same code, or killed by the same signal): the caller's child process ends when
// QEMU ends. The child dies with the launcher (PR_SET_PDEATHSIG), so killing either ends
// both. Any failure before exec is one line on stderr ("moat-jail: <what> <path>: <errno>")
// and exit status 127.
//
// --rslave PATH is for a directory the host keeps mounting into while the VM runs (a 9p
// export): the launcher makes it a shared mount in the host's namespace (a bind onto itself
// if it is not a mount point yet; the caller's unmounting of everything under its state
// directory removes it), and the jail's copy is its slave, so later host mounts reach QEMU.
// The copy is read-only; the shares mounted in it keep their own flags.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <unistd.h>

#define MAX_BINDS 64
#define MAX_KEEP_FDS 64
/** Where the new root is assembled, inside the jail's own mount namespace only. */
#define NEW_ROOT "/tmp"

enum bind_kind { BIND_RO, BIND_RW, BIND_RSLAVE };
struct bind {
  const char *path;
  enum bind_kind kind;
  int fd; // O_PATH, opened before anything is mounted over the host's tree
};

static const char *const CAP_NAMES[] = {
    [CAP_CHOWN] = "chown",
    [CAP_DAC_OVERRIDE] = "dac_override",
    [CAP_DAC_READ_SEARCH] = "dac_read_search",
    [CAP_FOWNER] = "fowner",
    [CAP_FSETID] = "fsetid",
    [CAP_KILL] = "kill",
    [CAP_SETGID] = "setgid",
    [CAP_SETUID] = "setuid",
    [CAP_MKNOD] = "mknod",
    [CAP_SYS_RESOURCE] = "sys_resource",
    [CAP_IPC_LOCK] = "ipc_lock",
};
static const char *const DEVICES[] = {"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"};
static const char *const USR_LINKS[] = {"/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"};

static int fail(const char *what, const char *path) {
  fprintf(stderr, "moat-jail: %s%s%s: %s\n", what, path ? " " : "", path ? path : "", strerror(errno));
  return 127;
}

static int usage(const char *why) {
  fprintf(stderr, "moat-jail: %s\nusage: moat-jail [--keep-fds N] [--pidfile PATH] [--ro PATH]... [--rw PATH]... [--rslave PATH]... [--caps NAME,...|none] [--uid UID --gid GID] -- PROGRAM ARG...\n", why);
  return 127;
}

static int parse_caps(const char *list, unsigned long long *mask) {
  *mask = 0;
  if (strcmp(list, "none") == 0) return 0;
  char *copy = strdup(list);
  if (!copy) return -1;
  for (char *save = NULL, *name = strtok_r(copy, ",", &save); name; name = strtok_r(NULL, ",", &save)) {
    int found = -1;
    for (size_t i = 0; i < sizeof CAP_NAMES / sizeof CAP_NAMES[0]; i++) {
      if (CAP_NAMES[i] && strcmp(CAP_NAMES[i], name) == 0) found = (int)i;
    }
    if (found < 0) {
      fprintf(stderr, "moat-jail: --caps: unknown capability %s\n", name);
      free(copy);
      return -1;
    }
    *mask |= 1ULL << found;
  }
  free(copy);
  return 0;
}

static int parse_number(const char *text, long max, long *out) {
  char *end;
  errno = 0;
  long value = strtol(text, &end, 10);
  if (errno != 0 || *text == '\0' || *end != '\0' || value < 0 || value > max) return -1;
  *out = value;
  return 0;
}

/** mkdir -p of `path` (absolute) under NEW_ROOT; the last component a file if `file`. */
static int make_target(const char *path, int file, char *target, size_t size) {
  if ((size_t)snprintf(target, size, "%s%s", NEW_ROOT, path) >= size) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *slash = strchr(target + strlen(NEW_ROOT) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
    *slash = '\0';
    int made = mkdir(target, 0755);
    *slash = '/';
    if (made != 0 && errno != EEXIST) return -1;
  }
  if (file) {
    int fd = open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    close(fd);
    return 0;
  }
  return mkdir(target, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/** Bind-mounts the file or directory open at `fd` (O_PATH) at `path` in the new root. */
static int bind_into_root(int fd, const char *path, enum bind_kind kind) {
  struct stat st;
  if (fstat(fd, &st) != 0) return fail("stat", path);
  char target[4096];
  if (make_target(path, !S_ISDIR(st.st_mode), target, sizeof target) != 0) return fail("make mount point for", path);
  char source[64];
  snprintf(source, sizeof source, "/proc/self/fd/%d", fd);
  unsigned long flags = MS_BIND | (kind == BIND_RSLAVE ? MS_REC : 0);
  if (mount(source, target, NULL, flags, NULL) != 0) return fail("bind-mount", path);
  // nosuid everywhere: nothing in the jail may gain privilege by exec (no_new_privs says so
  // too); nodev except on the device nodes themselves.
  // An --rslave export is read-only itself: only the shares mounted in it (mounts of their
  // own, read-write or not) take writes, so a guest cannot plant a symlink or a directory
  // where the host will later mount a share (Kata's CVE-2020-2026).
  unsigned long remount = MS_BIND | MS_REMOUNT | MS_NOSUID | (S_ISCHR(st.st_mode) ? 0 : MS_NODEV) | (kind != BIND_RW ? MS_RDONLY : 0);
  if (mount(NULL, target, NULL, remount, NULL) != 0) return fail("restrict the mount of", path);
  return 0;
}

static int last_cap(void) {
  FILE *file = fopen("/proc/sys/kernel/cap_last_cap", "re");
  int last = CAP_LAST_CAP;
  if (file) {
    if (fscanf(file, "%d", &last) != 1) last = CAP_LAST_CAP;
    fclose(file);
  }
  return last;
}

static int drop_privileges(unsigned long long keep, int cap_last, long uid, long gid) {
  for (int cap = 0; cap <= cap_last; cap++) {
    if (cap < 64 && (keep & (1ULL << cap))) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return fail("drop from the bounding set capability", NULL);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return fail("clear the ambient capabilities", NULL);
  if (uid >= 0) {
    gid_t group = (gid_t)gid;
    if (setgroups(1, &group) != 0) return fail("setgroups", NULL);
    if (setresgid((gid_t)gid, (gid_t)gid, (gid_t)gid) != 0) return fail("setresgid", NULL);
    // No PR_SET_KEEPCAPS: leaving uid 0 clears every capability set.
    if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) != 0) return fail("setresuid", NULL);
  }
  struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (uid < 0) {
    for (int i = 0; i < 2; i++) data[i].effective = data[i].permitted = (unsigned)(keep >> (32 * i));
  }
  if (syscall(SYS_capset, &header, data) != 0) return fail("capset", NULL);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return fail("set no_new_privs", NULL);
  return 0;
}

/** The child: pid 1 of the new pid namespace; builds the jail and execs PROGRAM, or returns 127. */
static int jail(struct bind *binds, int nbinds, int keep_fds, unsigned long long caps, long uid, long gid, int go, char **program) {
  if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET) != 0) return fail("unshare mount, ipc, uts and network namespaces", NULL);
  // Slave, not private: host mounts made later under an --rslave directory still arrive.
  if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) return fail("make the mount tree a slave", "/");
  int cap_last = last_cap();
  // Opened here, in the jail's namespace (a bind's source must be a mount of the caller's
  // namespace), before the new root is mounted over /tmp (a source may be under it).
  for (int i = 0; i < nbinds; i++) {
    binds[i].fd = open(binds[i].path, O_PATH | O_CLOEXEC);
    if (binds[i].fd < 0) return fail("open", binds[i].path);
  }
  int usr = open("/usr", O_PATH | O_CLOEXEC);
  if (usr < 0) return fail("open", "/usr");
  int devices[sizeof DEVICES / sizeof DEVICES[0]];
  for (size_t i = 0; i < sizeof DEVICES / sizeof DEVICES[0]; i++) {
    devices[i] = open(DEVICES[i], O_PATH | O_CLOEXEC);
    if (devices[i] < 0) return fail("open", DEVICES[i]);
  }
  int ld_cache = open("/etc/ld.so.cache", O_PATH | O_CLOEXEC);
  char links[sizeof USR_LINKS / sizeof USR_LINKS[0]][256];
  for (size_t i = 0; i < sizeof USR_LINKS / sizeof USR_LINKS[0]; i++) {
    ssize_t length = readlink(USR_LINKS[i], links[i], sizeof links[i] - 1);
    links[i][length > 0 ? length : 0] = '\0';
  }
  if (mount("tmpfs", NEW_ROOT, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,nr_inodes=256,mode=0755") != 0) return fail("mount the new root on", NEW_ROOT);
  if (bind_into_root(usr, "/usr", BIND_RO) != 0) return 127;
  for (size_t i = 0; i < sizeof DEVICES / sizeof DEVICES[0]; i++) {
    if (bind_into_root(devices[i], DEVICES[i], BIND_RW) != 0) return 127;
  }
  if (ld_cache >= 0 && bind_into_root(ld_cache, "/etc/ld.so.cache", BIND_RO) != 0) return 127;
  for (size_t i = 0; i < sizeof USR_LINKS / sizeof USR_LINKS[0]; i++) {
    // Merged /usr: /lib is a link into it, which the dynamic loader's paths go through.
    char link[64];
    snprintf(link, sizeof link, "%s%s", NEW_ROOT, USR_LINKS[i]);
    if (links[i][0] != '\0' && symlink(links[i], link) != 0) return fail("symlink", link);
  }
  for (int i = 0; i < nbinds; i++) {
    if (bind_into_root(binds[i].fd, binds[i].path, binds[i].kind) != 0) return 127;
  }
  // QEMU's 9p server changes modes through /proc/self/fd (racing symlinks cannot redirect
  // it): a proc of the jail's pid namespace (QEMU alone), with only the process directories
  // (subset=pid: no /proc/sys, /proc/sysrq-trigger, kcore...).
  char proc[64];
  if (make_target("/proc", 0, proc, sizeof proc) != 0) return fail("make mount point for", "/proc");
  if (mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "subset=pid,hidepid=invisible") != 0) return fail("mount proc on", "/proc");
  if (chdir(NEW_ROOT) != 0) return fail("chdir", NEW_ROOT);
  // pivot_root(".", "."): the old root is stacked under the new one, then detached whole.
  if (syscall(SYS_pivot_root, ".", ".") != 0) return fail("pivot_root", NEW_ROOT);
  if (umount2(".", MNT_DETACH) != 0) return fail("detach the host's tree", NULL);
  if (chdir("/") != 0) return fail("chdir", "/");
  if (mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) return fail("make the new root read-only", "/");
  // Every descriptor past the kept ones closes on exec (the go pipe is read before that).
  if (syscall(SYS_close_range, 3 + keep_fds, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */) != 0) return fail("close_range", NULL);
  if (drop_privileges(caps, cap_last, uid, gid) != 0) return 127;
  // Set after the credentials changed (a uid change clears it): from here the child dies
  // with the launcher; a launcher gone already is seen as the pipe's hang-up.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return fail("set the parent-death signal", NULL);
  char byte;
  if (read(go, &byte, 1) != 1) return 127; // the launcher died before it wrote the pid file
  struct pollfd hangup = {.fd = go, .events = POLLIN};
  if (poll(&hangup, 1, 0) > 0 && (hangup.revents & (POLLHUP | POLLERR))) return 127;
  execv(program[0], program);
  return fail("exec", program[0]);
}

static pid_t child = -1;

static void forward(int signal) {
  if (child > 0) kill(child, signal);
}

/** Makes `path` a shared mount in the host's namespace (a bind onto itself first if needed). */
static int share_mount(const char *path) {
  // The kernel refuses a propagation change on a path that is not a mount's root (EINVAL).
  if (mount(NULL, path, NULL, MS_SHARED, NULL) == 0) return 0;
  if (errno != EINVAL) return fail("make shared", path);
  if (mount(path, path, NULL, MS_BIND, NULL) != 0) return fail("bind onto itself", path);
  if (mount(NULL, path, NULL, MS_SHARED, NULL) != 0) return fail("make shared", path);
  return 0;
}

static int write_pidfile(const char *path, pid_t pid) {
  char next[4096];
  if ((size_t)snprintf(next, sizeof next, "%s.next", path) >= sizeof next) {
    errno = ENAMETOOLONG;
    return fail("pid file", path);
  }
  int fd = open(next, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail("open", next);
  dprintf(fd, "%d\n", (int)pid);
  if (close(fd) != 0) return fail("write", next);
  if (rename(next, path) != 0) return fail("rename", next);
  return 0;
}

int main(int argc, char **argv) {
  static struct bind binds[MAX_BINDS];
  int nbinds = 0;
  long keep_fds = 0, uid = -1, gid = -1;
  const char *pidfile = NULL;
  unsigned long long caps = 0;
  int i = 1;
  for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
    const char *option = argv[i];
    if (i + 1 >= argc) return usage("an option lacks its value");
    const char *value = argv[++i];
    if (strcmp(option, "--ro") == 0 || strcmp(option, "--rw") == 0 || strcmp(option, "--rslave") == 0) {
      if (nbinds == MAX_BINDS) return usage("too many paths");
      if (value[0] != '/' || strstr(value, "/..") || strstr(value, "//")) return usage("a path is not absolute and plain");
      binds[nbinds++] = (struct bind){value, option[2] == 'r' && option[3] == 'o' ? BIND_RO : option[3] == 'w' ? BIND_RW : BIND_RSLAVE, -1};
    } else if (strcmp(option, "--keep-fds") == 0) {
      if (parse_number(value, MAX_KEEP_FDS, &keep_fds) != 0) return usage("--keep-fds: not a number of descriptors");
    } else if (strcmp(option, "--pidfile") == 0) {
      pidfile = value;
    } else if (strcmp(option, "--caps") == 0) {
      if (parse_caps(value, &caps) != 0) return usage("--caps: not a list of capability names");
    } else if (strcmp(option, "--uid") == 0) {
      if (parse_number(value, 0x7fffffff, &uid) != 0 || uid == 0) return usage("--uid: not a user id other than 0");
    } else if (strcmp(option, "--gid") == 0) {
      if (parse_number(value, 0x7fffffff, &gid) != 0 || gid == 0) return usage("--gid: not a group id other than 0");
    } else {
      return usage("unknown option");
    }
  }
  if (i + 1 >= argc) return usage("no program");
  if ((uid < 0) != (gid < 0)) return usage("--uid and --gid go together");
  if (uid >= 0 && caps != 0) return usage("--caps needs uid 0");
  char **program = argv + i + 1;
  if (program[0][0] != '/') return usage("the program's path must be absolute");
  for (int b = 0; b < nbinds; b++) {
    if (binds[b].kind == BIND_RSLAVE && share_mount(binds[b].path) != 0) return 127;
    if (access(binds[b].path, F_OK) != 0) return fail("find", binds[b].path); // said here, by the launcher, first
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return fail("pipe", NULL);
  if (unshare(CLONE_NEWPID) != 0) return fail("unshare the pid namespace", NULL);
  child = fork();
  if (child < 0) return fail("fork", NULL);
  if (child == 0) {
    close(pipe_fds[1]);
    _exit(jail(binds, nbinds, (int)keep_fds, caps, uid, gid, pipe_fds[0], program));
  }
  close(pipe_fds[0]);
  for (int fd = 3; fd < 3 + keep_fds; fd++) close(fd); // the taps are the child's alone
  struct sigaction action = {.sa_handler = forward};
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  const int forwarded[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
  for (size_t s = 0; s < sizeof forwarded / sizeof forwarded[0]; s++) sigaction(forwarded[s], &action, NULL);
  if (pidfile && write_pidfile(pidfile, child) != 0) {
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    return 127;
  }
  if (write(pipe_fds[1], "g", 1) != 1) return fail("release the jail", NULL);
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return fail("wait", NULL);
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  // Killed: end the same way, without a core file of this launcher.
  int signal = WTERMSIG(status);
  struct rlimit none = {0, 0};
  setrlimit(RLIMIT_CORE, &none);
  struct sigaction fallback = {.sa_handler = SIG_DFL};
  sigemptyset(&fallback.sa_mask);
  sigaction(signal, &fallback, NULL);
  sigset_t unblock;
  sigemptyset(&unblock);
  sigaddset(&unblock, signal);
  sigprocmask(SIG_UNBLOCK, &unblock, NULL);
  raise(signal);
  return 128 + signal;
}
