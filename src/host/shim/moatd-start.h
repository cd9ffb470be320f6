// Finding and starting moatd from C: the state root, whether moatd answers, starting it.
// Shared by containerd-shim-moat-v2's `start` and the per-task relay (task-relay.c).
#ifndef MOAT_MOATD_START_H
#define MOAT_MOATD_START_H

#include <stddef.h>

// The socket moatd serves containerd's Task service on, under the state root (src/host/shim/index.ts).
#define TASK_SOCKET "containerd-task.sock"

// Prints "containerd-shim-moat-v2: WHAT PATH: strerror(errno)" and exits 1.
void shim_die(const char *what, const char *path);

// The directory this executable is in: dist/bin, beside dist/bundle.
void shim_self_dir(char *out, size_t size);

// [runtime] state_root of the configuration the CLI would read (MOAT_CONFIG, else the first
// system configuration that exists), else /run/moat. Exits 1 with a message if that
// configuration is invalid.
void shim_state_root(char *out, size_t size);

// True when something accepts connections on the unix socket at `path`.
int shim_answers(const char *path);

// Makes sure moatd answers on `socket_path`, starting it (own session, output in
// <root>/moatd.log) if not, and waiting up to `timeout_ms`. Starts are serialized by a lock
// on <root>/moatd.lock, so that shims and relays racing here start one moatd, not several.
// Returns 0 once it answers, -1 if it did not within the time (errno is not meaningful).
int shim_ensure_daemon(const char *root, const char *socket_path, int timeout_ms);

#endif
