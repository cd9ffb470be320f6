// moat-init: PID 1 of every moat guest.
//
// Node cannot be PID 1: it reaps only the children it spawned, so orphans re-parented to
// PID 1 (a container's daemonised processes, crun's intermediate children) would stay zombies
// forever. This program does the duties only PID 1 has and nothing else:
//   1. mounts the guest's early file systems (proc, sys, dev, cgroup2, tmpfs);
//   2. starts the agent (node /moat/agent.js) in its own session, and the relay between the
//      virtio-serial port agent.0 and the agent's unix socket (vport-relay.c);
//   3. reaps every child that exits, orphans included, and reports each one that is not the
//      agent to the agent as a line "<pid> <exit code> <signal>\n" on the agent's fd 3:
//      container processes become orphans when crun exits, so only PID 1 learns their status;
//   4. on SIGTERM (the agent's Shutdown request) or when the agent or relay dies, syncs and resets the
//      VM, which ends QEMU (-no-reboot), so the host sees QEMU exit, never a guest without an agent.
// It is built statically at image build time (image/rootfs/build.sh).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vport-relay.h"

// The agent listens here (src/guest/agent/main.ts); the relay connects once per host session.
#define AGENT_SOCKET "/run/moat-agent.sock"

static void mount_fs(const char *source, const char *target, const char *type,
                     unsigned long flags, const char *data) {
  // The directory may exist already (it does in the image), or live on a read-only root.
  mkdir(target, 0755);
  if (mount(source, target, type, flags, data) != 0 && errno != EBUSY) {
    dprintf(2, "moat-init: mount %s on %s: %s\n", type, target, strerror(errno));
  }
}

static void early_mounts(void) {
  const unsigned long secure = MS_NOSUID | MS_NODEV | MS_NOEXEC;
  mount_fs("proc", "/proc", "proc", secure, NULL);
  mount_fs("sysfs", "/sys", "sysfs", secure, NULL);
  mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  mount_fs("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
  mount_fs("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  mount_fs("cgroup2", "/sys/fs/cgroup", "cgroup2", secure, NULL);
  mount_fs("run", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
  mount_fs("tmp", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
}

static volatile sig_atomic_t shutdown_requested;

static void request_shutdown(int signal_number) {
  (void)signal_number;
  shutdown_requested = 1;
}

// The write end of the exit-report pipe; the agent reads the other end as its fd 3.
static int exit_report_fd = -1;

// The agent's V8 startup snapshots (image/rootfs/build.sh): Node takes one only on a CPU with
// the features it was built for, so there is one for KVM (the host's CPU) and one for TCG
// (QEMU's `-cpu max`); the host names the accelerator on the kernel command line
// (MOAT_ACCEL=tcg, handed to init as environment). Node exits with NODE_SNAPSHOT_REFUSED when
// it refuses a snapshot anyway; the agent then starts from its script instead.
#define AGENT_SNAPSHOT "/moat/agent.blob"
#define AGENT_SNAPSHOT_TCG "/moat/agent-tcg.blob"
#define NODE_SNAPSHOT_REFUSED 14

static const char *agent_snapshot(void) {
  const char *accel = getenv("MOAT_ACCEL");
  return accel && strcmp(accel, "tcg") == 0 ? AGENT_SNAPSHOT_TCG : AGENT_SNAPSHOT;
}

static pid_t start_agent(int use_snapshot) {
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    dprintf(2, "moat-init: pipe: %s\n", strerror(errno));
    return -1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    signal(SIGTERM, SIG_DFL);
    // The read end becomes the agent's fd 3, open across exec. pipe2 may have returned 3
    // itself, and dup2 onto the same descriptor keeps O_CLOEXEC, so clear it explicitly.
    if (report[0] != 3) dup2(report[0], 3);
    fcntl(3, F_SETFD, 0);
    char *const from_snapshot[] = {"node", "--snapshot-blob", (char *)agent_snapshot(), NULL}; // execve does not write argv
    char *const from_script[] = {"node", "/moat/agent.js", NULL};
    char *const *argv = use_snapshot ? from_snapshot : from_script;
    // MOAT_TRACE comes from the kernel command line (the kernel hands unknown key=value
    // parameters to init as environment): kernel_params = "MOAT_TRACE=ttrpc" traces the agent.
    static char trace[256] = "MOAT_TRACE=";
    const char *wanted = getenv("MOAT_TRACE");
    if (wanted) strncat(trace, wanted, sizeof trace - strlen(trace) - 1);
    char *const envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", "NODE_ENV=production", trace, NULL};
    execve("/usr/bin/node", (char *const *)argv, envp);
    dprintf(2, "moat-init: exec /usr/bin/node: %s\n", strerror(errno));
    _exit(127);
  }
  if (pid < 0) dprintf(2, "moat-init: fork: %s\n", strerror(errno));
  close(report[0]);
  exit_report_fd = report[1];
  // Never block PID 1 on a slow agent: a report that does not fit is dropped, and said so.
  fcntl(exit_report_fd, F_SETFL, O_NONBLOCK);
  return pid;
}

static void report_exit(pid_t pid, int status) {
  char line[64];
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  int signal_number = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  int length = snprintf(line, sizeof line, "%d %d %d\n", (int)pid, code, signal_number);
  if (write(exit_report_fd, line, (size_t)length) != length) {
    dprintf(2, "moat-init: exit report for pid %d dropped: %s\n", (int)pid, strerror(errno));
  }
}

static pid_t start_relay(void) {
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    signal(SIGTERM, SIG_DFL);
    _exit(vport_relay("agent.0", AGENT_SOCKET));
  }
  if (pid < 0) dprintf(2, "moat-init: fork: %s\n", strerror(errno));
  return pid;
}

int main(void) {
  if (getpid() != 1) {
    dprintf(2, "moat-init: must run as PID 1 of a moat guest\n");
    return 1;
  }
  early_mounts();
  // No SA_RESTART: the signal must interrupt wait() below.
  struct sigaction on_term = {.sa_handler = request_shutdown};
  sigaction(SIGTERM, &on_term, NULL);
  int use_snapshot = access(agent_snapshot(), R_OK) == 0;
  pid_t agent = start_agent(use_snapshot);
  pid_t relay = start_relay();
  while (agent > 0 && relay > 0 && !shutdown_requested) {
    int status;
    pid_t pid = wait(&status);
    if (pid == agent && use_snapshot && WIFEXITED(status) && WEXITSTATUS(status) == NODE_SNAPSHOT_REFUSED) {
      dprintf(2, "moat-init: node refused the agent's snapshot; starting it from its script\n");
      use_snapshot = 0;
      agent = start_agent(0);
      continue;
    }
    if (pid == agent || pid == relay) {
      dprintf(2, "moat-init: %s ended (%s %d), resetting the VM\n", pid == agent ? "agent" : "relay",
              WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
      break;
    }
    if (pid > 0) report_exit(pid, status);
    if (pid < 0 && errno != EINTR) break;
  }
  sync();
  // A reset, not a power-off: microvm has no ACPI power button to press, and QEMU runs with
  // -no-reboot, so a reset ends the QEMU process just the same, on every machine type.
  reboot(RB_AUTOBOOT);
  return 0;
}
