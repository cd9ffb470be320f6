// moat-jail: runs one VMM (QEMU) confined, the one way moat starts QEMU (docs/security.md).
//
//   moat-jail [--keep-fds N] [--throwaway-taps M] [--pidfile PATH] [--ro PATH]... [--rw PATH]... [--rslave PATH]...
//             [--9p-proxy EXPORT]... [--9p-proxy-ro EXPORT]... [--9p-helper PATH]
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
// - with --throwaway-taps M, makes M taps (IFF_VNET_HDR) in its own new network namespace and
//   gives them to QEMU as the M descriptors after the N kept ones: the backends of a VM
//   template's NICs while it is built, so that they negotiate the checksum and segmentation
//   offloads a clone's real taps (moat-tap-exec.c, also IFF_VNET_HDR) then carry. Nothing else
//   is in that namespace: they carry no traffic and go with QEMU;
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
//
// --9p-proxy EXPORT (once per 9p device) serves a 9p export from a file server of its own
// instead of QEMU's built-in one: the launcher makes a socket pair per device; QEMU gets one
// end as descriptor 3 + N + M + i (after the N kept ones and the M throwaway taps, in the order given: QEMU's
// `-fsdev proxy,sock_fd=`), and a helper process (--9p-helper, default QEMU 7.2's
// virtfs-proxy-helper, run as `HELPER -n -f 3 -p EXPORT`) the other end as descriptor 3. Each
// helper is jailed like the program (same pid namespace, so it dies with QEMU; a mount
// namespace of its own with /usr and EXPORT only, as --rslave; no network), as root with only
// what a file server acting for every owner needs (HELPER_CAPS: no CAP_MKNOD, CAP_FSETID,
// CAP_SETFCAP, CAP_SYS_ADMIN...), no_new_privs, and a seccomp filter that refuses (EPERM)
// set-uid and set-gid bits in the modes of chmod, fchmod, fchmodat, creat, open and openat
// with O_CREAT or O_TMPFILE, and mknod, and mknod of character and block devices. So a guest
// cannot make a set-id file or a device node on the host through its shares (docs/security.md).
// QEMU then needs no access to files at all: EXPORT is not in its jail. --9p-proxy-ro is the
// same for an export that stays empty and read-only (a VM template's), as --ro: no mount is
// made on the host.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <stddef.h>
#include <sys/socket.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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
#define MAX_PROXIES 4
/** Where the launcher keeps its own descriptors, above every number it hands out. */
#define HIGH_FD 100
#define DEFAULT_9P_HELPER "/usr/lib/qemu/virtfs-proxy-helper"
/** The 9p proxy helper's capabilities: chroot into its export, act as each request's owner. */
static const char HELPER_CAPS[] = "chown,dac_override,dac_read_search,fowner,setgid,setuid,sys_chroot";
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
    [CAP_SYS_CHROOT] = "sys_chroot",
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
  fprintf(stderr, "moat-jail: %s\nusage: moat-jail [--keep-fds N] [--throwaway-taps M] [--pidfile PATH] [--ro PATH]... [--rw PATH]... [--rslave PATH]... [--9p-proxy EXPORT]... [--9p-proxy-ro EXPORT]... [--9p-helper PATH] [--caps NAME,...|none] [--uid UID --gid GID] -- PROGRAM ARG...\n", why);
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

#define SECCOMP_ARG_LOW(n) (offsetof(struct seccomp_data, args) + (n) * sizeof(__u64)) // little endian
#define SECCOMP_MAX 160
struct filter {
  struct sock_filter code[SECCOMP_MAX];
  unsigned short length;
};

static void emit(struct filter *filter, struct sock_filter instruction) {
  if (filter->length < SECCOMP_MAX) filter->code[filter->length] = instruction;
  filter->length++;
}

/**
 * One syscall's check: refuse a mode (argument `mode_arg`) with S_ISUID or S_ISGID, only when
 * the flags (argument `flags_arg`, or -1) create a file; and, if `devices`, a mode that makes a
 * character or block device. Jumps are relative, so each block ends in its own returns.
 */
static void mode_rule(struct filter *f, int nr, int mode_arg, int flags_arg, int devices) {
  emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
  unsigned short skip = f->length;
  emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 0));
  int creates = -1;
  if (flags_arg >= 0) {
    emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SECCOMP_ARG_LOW(flags_arg)));
    creates = f->length;
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, O_CREAT | (O_TMPFILE & ~O_DIRECTORY), 0, 0));
  }
  emit(f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SECCOMP_ARG_LOW(mode_arg)));
  unsigned short setid = f->length;
  emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, S_ISUID | S_ISGID, 0, 0));
  int chr = -1, blk = -1;
  if (devices) {
    emit(f, (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, S_IFMT));
    chr = f->length;
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, S_IFCHR, 0, 0));
    blk = f->length;
    emit(f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, S_IFBLK, 0, 0));
  }
  unsigned short allow = f->length;
  emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  unsigned short deny = f->length;
  emit(f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
  if (f->length > SECCOMP_MAX) return;
  f->code[skip].jf = (unsigned char)(f->length - skip - 1);
  if (creates >= 0) f->code[creates].jf = (unsigned char)(allow - creates - 1);
  f->code[setid].jt = (unsigned char)(deny - setid - 1);
  if (chr >= 0) f->code[chr].jt = (unsigned char)(deny - chr - 1);
  if (blk >= 0) f->code[blk].jt = (unsigned char)(deny - blk - 1);
}

/** The 9p proxy helper's seccomp filter (the header comment); needs no_new_privs set first. */
static int forbid_setid_and_devices(void) {
#ifndef __x86_64__
#error "the 9p helper's seccomp filter is written for x86_64 syscall numbers"
#endif
  struct filter f = {.length = 0};
  // Another ABI (i386 by int 0x80) would have other numbers: the process is killed.
  emit(&f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)));
  emit(&f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  emit(&f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  // x32 syscalls (numbers with bit 30) reach the same code with other numbers: refused.
  emit(&f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
  emit(&f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1));
  emit(&f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
  mode_rule(&f, SYS_chmod, 1, -1, 0);
  mode_rule(&f, SYS_fchmod, 1, -1, 0);
  mode_rule(&f, SYS_fchmodat, 2, -1, 0);
  mode_rule(&f, 452 /* fchmodat2, Linux 6.6 */, 2, -1, 0);
  mode_rule(&f, SYS_creat, 1, -1, 0);
  mode_rule(&f, SYS_open, 2, 1, 0);
  mode_rule(&f, SYS_openat, 3, 2, 0);
  mode_rule(&f, SYS_mknod, 1, -1, 1);
  mode_rule(&f, SYS_mknodat, 2, -1, 1);
  // capset: success, unchanged (jail(), above).
  emit(&f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
  emit(&f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_capset, 0, 1));
  emit(&f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 0));
  // openat2 takes its mode in a structure a filter cannot read: ENOSYS, and glibc's open
  // does not use it.
  emit(&f, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)));
  emit(&f, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 437 /* openat2 */, 0, 1));
  emit(&f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS));
  emit(&f, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  if (f.length > SECCOMP_MAX) {
    errno = E2BIG;
    return fail("build the seccomp filter", NULL);
  }
  struct sock_fprog program = {.len = f.length, .filter = f.code};
  if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0) != 0) return fail("install the seccomp filter", NULL);
  return 0;
}

/**
 * Makes `count` taps with a virtio-net header in the (new, empty) network namespace this process
 * is in, on descriptors `first`, `first` + 1, ... (not close-on-exec: QEMU keeps them).
 */
static int throwaway_taps(int first, int count) {
  for (int i = 0; i < count; i++) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd < 0) return fail("open", "/dev/net/tun");
    struct ifreq request;
    memset(&request, 0, sizeof request);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_TUN_EXCL;
    snprintf(request.ifr_name, sizeof request.ifr_name, "throwaway%d", i & 0xff);
    if (ioctl(fd, TUNSETIFF, &request) != 0) return fail("create tap", request.ifr_name);
    // dup2 clears close-on-exec; a descriptor already in place keeps it, so it is cleared.
    if (fd == first + i) {
      if (fcntl(fd, F_SETFD, 0) != 0) return fail("keep tap", request.ifr_name);
    } else {
      if (dup2(fd, first + i) < 0) return fail("place tap", request.ifr_name);
      close(fd);
    }
  }
  return 0;
}

/** The child: pid 1 of the new pid namespace; builds the jail and execs PROGRAM, or returns 127. */
static int jail(struct bind *binds, int nbinds, int keep_fds, unsigned long long caps, long uid, long gid, int go, char **program, int file_server, int taps_at, int taps) {
  if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET) != 0) return fail("unshare mount, ipc, uts and network namespaces", NULL);
  if (taps > 0 && throwaway_taps(taps_at, taps) != 0) return 127;
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
  // virtfs-proxy-helper sets its own capabilities with libcap-ng, asking for CAP_MKNOD and
  // CAP_FSETID, which the kernel refuses (EPERM) to a process without them: the filter
  // answers its capset with success and changes nothing. The helper also raises
  // CAP_DAC_OVERRIDE again after each switch to a request's uid; with NO_SETUID_FIXUP the
  // switch keeps the effective set instead (the same file capabilities, never more).
  if (file_server && prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED, 0, 0, 0) != 0) return fail("set the securebits", NULL);
  if (drop_privileges(caps, cap_last, uid, gid) != 0) return 127;
  if (file_server && forbid_setid_and_devices() != 0) return 127;
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

/** `fd` moved to HIGH_FD or above, close-on-exec, out of the range of numbers handed out. */
static int high(int fd) {
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, HIGH_FD);
  close(fd);
  return moved;
}

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
  long keep_fds = 0, taps = 0, uid = -1, gid = -1;
  const char *pidfile = NULL, *helper = DEFAULT_9P_HELPER;
  struct bind proxies[MAX_PROXIES];
  int nproxies = 0;
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
    } else if (strcmp(option, "--9p-proxy") == 0 || strcmp(option, "--9p-proxy-ro") == 0) {
      if (nproxies == MAX_PROXIES) return usage("too many 9p proxies");
      if (value[0] != '/' || strstr(value, "/..") || strstr(value, "//")) return usage("a path is not absolute and plain");
      proxies[nproxies++] = (struct bind){value, option[10] == '\0' ? BIND_RSLAVE : BIND_RO, -1};
    } else if (strcmp(option, "--9p-helper") == 0) {
      if (value[0] != '/') return usage("--9p-helper: the path must be absolute");
      helper = value;
    } else if (strcmp(option, "--keep-fds") == 0) {
      if (parse_number(value, MAX_KEEP_FDS, &keep_fds) != 0) return usage("--keep-fds: not a number of descriptors");
    } else if (strcmp(option, "--throwaway-taps") == 0) {
      if (parse_number(value, 16, &taps) != 0) return usage("--throwaway-taps: not a number of taps (up to 16)");
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
  if (keep_fds + taps + nproxies > MAX_KEEP_FDS) return usage("too many descriptors kept");
  int sockets[MAX_PROXIES][2]; // [0] QEMU's end, [1] the helper's
  for (int p = 0; p < nproxies; p++) {
    if (proxies[p].kind == BIND_RSLAVE && share_mount(proxies[p].path) != 0) return 127;
    if (access(proxies[p].path, F_OK) != 0) return fail("find", proxies[p].path);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sockets[p]) != 0) return fail("socketpair for", proxies[p].path);
    sockets[p][0] = high(sockets[p][0]);
    sockets[p][1] = high(sockets[p][1]);
    if (sockets[p][0] < 0 || sockets[p][1] < 0) return fail("move the socket pair of", proxies[p].path);
  }
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return fail("pipe", NULL);
  pipe_fds[0] = high(pipe_fds[0]);
  pipe_fds[1] = high(pipe_fds[1]);
  if (pipe_fds[0] < 0 || pipe_fds[1] < 0) return fail("move the pipe", NULL);
  if (unshare(CLONE_NEWPID) != 0) return fail("unshare the pid namespace", NULL);
  child = fork(); // the first: pid 1, whose end ends the namespace and every helper in it
  if (child < 0) return fail("fork", NULL);
  if (child == 0) {
    close(pipe_fds[1]);
    for (int p = 0; p < nproxies; p++) {
      // dup2 clears close-on-exec: QEMU keeps these.
      if (dup2(sockets[p][0], 3 + (int)keep_fds + (int)taps + p) < 0) _exit(fail("place the socket of", proxies[p].path));
    }
    _exit(jail(binds, nbinds, (int)keep_fds + (int)taps + nproxies, caps, uid, gid, pipe_fds[0], program, 0, 3 + (int)keep_fds, (int)taps));
  }
  unsigned long long helper_caps = 0;
  if (parse_caps(HELPER_CAPS, &helper_caps) != 0) return 127;
  for (int p = 0; p < nproxies; p++) {
    pid_t server = fork();
    if (server < 0) {
      kill(child, SIGKILL);
      return fail("fork", NULL);
    }
    if (server == 0) {
      close(pipe_fds[1]);
      // The taps are QEMU's alone; the helper has its socket as descriptor 3.
      if (dup2(sockets[p][1], 3) < 0) _exit(fail("place the socket of", proxies[p].path));
      char *argv_helper[] = {(char *)helper, "-n", "-f", "3", "-p", (char *)proxies[p].path, NULL};
      _exit(jail(&proxies[p], 1, 1, helper_caps, -1, -1, pipe_fds[0], argv_helper, 1, 0, 0));
    }
  }
  for (int p = 0; p < nproxies; p++) {
    close(sockets[p][0]);
    close(sockets[p][1]);
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
  // One byte for each process of the jail: QEMU and its helpers.
  for (int p = 0; p <= nproxies; p++) {
    if (write(pipe_fds[1], "g", 1) != 1) return fail("release the jail", NULL);
  }
  // Every child is reaped, helpers too: the namespace's pid 1 (QEMU) does not finish dying
  // while a process of its namespace is an unreaped zombie.
  int status;
  for (;;) {
    pid_t ended = waitpid(-1, &status, 0);
    if (ended == child) break;
    if (ended < 0 && errno != EINTR) return fail("wait", NULL);
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
