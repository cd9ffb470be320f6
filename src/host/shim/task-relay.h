// The per-task relay: a small process, forked off `containerd-shim-moat-v2 start`, that owns
// the socket containerd dials for one task and forwards ttrpc frames between it and moatd, so
// that containerd's connection outlives a moatd restart (docs/design.md, "moatd restarts").
#ifndef MOAT_TASK_RELAY_H
#define MOAT_TASK_RELAY_H

#include <stddef.h>

// <root>/task-<16 hex digits>.sock, named by a hash of namespace and id (a containerd id alone
// is 64 characters, and a unix socket path is capped at 108 bytes). Returns -1 with errno
// ENAMETOOLONG when even that does not fit.
int relay_socket_path(const char *root, const char *namespace, const char *id, char *out, size_t size);

// Forks the relay for task `id` (containerd's log FIFO is `log` in the working directory, the
// bundle). Returns once it listens on `relay_path`; prints why and exits 1 if it cannot.
void relay_start(const char *root, const char *id, const char *relay_path);

// Ends the relay listening on `relay_path`, if one does, and removes the socket: `delete`'s
// clean-up after a task whose relay containerd never shut down (a setup that crashed).
void relay_stop(const char *relay_path);

#endif
