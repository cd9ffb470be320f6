/*
 * moat-fs-checks: does a directory behave as a local Linux file system for what programs do
 * (issue 15), and can a root guest mint privilege on the host through it (issue 13)? Run inside
 * a container (built static, copied into the bundle or image), on its root file system or a
 * volume. One line per check, so that the same program gives runc's, gVisor's and each moat
 * share mode's answers side by side:
 *
 *   moat-fs-checks checks DIR     <name> pass | <name> fail <step>: <error> (errno N)
 *   moat-fs-checks attacks DIR    <name> refused <step>: <error> (errno N) | <name> done <what the guest sees>
 *
 * Every check works in its own fresh subdirectory of DIR and leaves it behind only on failure.
 * Attacks leave what they made, named attack-*, for the host to inspect (the test checks that
 * nothing there carries a set-id bit, is a device node, or has an owner the guest chose). An
 * attack that is "done" in the guest is not a failure by itself: what counts is the host side.
 * Exit status: 0 when every line was printed (checks may fail), 2 on bad arguments.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

static char base[4096];
static char step[256];

/* The failing step of the check in progress, for its line. */
#define STEP(...) (void)(snprintf(step, sizeof step, __VA_ARGS__) < 0)
#define TRY(cond, ...) do { STEP(__VA_ARGS__); if (!(cond)) return errno ? errno : EIO; } while (0)
/* A read-back that differs from what was written: not an errno of the call, so EDOM marks it. */
#define EXPECT(cond, ...) do { STEP(__VA_ARGS__); if (!(cond)) { errno = EDOM; return EDOM; } } while (0)

static const char *path(const char *name) {
	static char buffers[4][4096];
	static int next;
	char *out = buffers[next++ % 4];
	/* A name too long for the buffer is cut: the check then fails on a name it did not ask for. */
	if (snprintf(out, 4096, "%s/%s", base, name) >= 4096) out[0] = 0;
	return out;
}

static int write_all(const char *file, const char *text) {
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) return -1;
	ssize_t n = write(fd, text, strlen(text));
	close(fd);
	return n == (ssize_t)strlen(text) ? 0 : -1;
}

/* Reads a small file's text, up to its first line end. */
static int read_text(const char *file, char *out, size_t size) {
	int fd = open(file, O_RDONLY);
	if (fd < 0) return -1;
	ssize_t n = read(fd, out, size - 1);
	close(fd);
	if (n < 0) return -1;
	out[n] = 0;
	out[strcspn(out, "\n")] = 0;
	return 0;
}

static int check_unix_socket(void) {
	const char *name = path("sock");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	TRY(strlen(name) < sizeof addr.sun_path, "path too long for a socket");
	strcpy(addr.sun_path, name);
	int server = socket(AF_UNIX, SOCK_STREAM, 0);
	TRY(server >= 0, "socket");
	TRY(bind(server, (struct sockaddr *)&addr, sizeof addr) == 0, "bind");
	TRY(listen(server, 1) == 0, "listen");
	struct stat st;
	TRY(lstat(name, &st) == 0, "lstat");
	EXPECT(S_ISSOCK(st.st_mode), "lstat: not a socket (mode %o)", st.st_mode);
	int client = socket(AF_UNIX, SOCK_STREAM, 0);
	TRY(client >= 0, "socket");
	TRY(connect(client, (struct sockaddr *)&addr, sizeof addr) == 0, "connect");
	int accepted = accept(server, NULL, NULL);
	TRY(accepted >= 0, "accept");
	TRY(write(client, "x", 1) == 1, "write");
	char c = 0;
	TRY(read(accepted, &c, 1) == 1, "read");
	EXPECT(c == 'x', "read back");
	close(accepted), close(client), close(server);
	TRY(unlink(name) == 0, "unlink");
	return 0;
}

static int check_fifo(void) {
	const char *name = path("fifo");
	TRY(mkfifo(name, 0600) == 0, "mkfifo");
	struct stat st;
	TRY(lstat(name, &st) == 0 && S_ISFIFO(st.st_mode), "lstat");
	int fd = open(name, O_RDWR | O_NONBLOCK);
	TRY(fd >= 0, "open");
	TRY(write(fd, "y", 1) == 1, "write");
	char c = 0;
	TRY(read(fd, &c, 1) == 1, "read");
	EXPECT(c == 'y', "read back");
	close(fd);
	return 0;
}

static int check_hard_links(void) {
	const char *a = path("a"), *b = path("b");
	struct stat st;
	TRY(write_all(a, "link") == 0, "create");
	TRY(link(a, b) == 0, "link");
	TRY(stat(a, &st) == 0, "stat");
	EXPECT(st.st_nlink == 2, "link count %lu, not 2", (unsigned long)st.st_nlink);
	struct stat other;
	TRY(stat(b, &other) == 0, "stat");
	EXPECT(other.st_ino == st.st_ino, "the two names have different inodes");
	TRY(unlink(a) == 0, "unlink");
	TRY(stat(b, &st) == 0, "stat");
	EXPECT(st.st_nlink == 1, "link count %lu after unlink, not 1", (unsigned long)st.st_nlink);
	return 0;
}

static int check_rename_over(void) {
	char text[64];
	TRY(write_all(path("new"), "new") == 0 && write_all(path("old"), "old") == 0, "create");
	int fd = open(path("old"), O_RDONLY);
	TRY(fd >= 0, "open old");
	TRY(rename(path("new"), path("old")) == 0, "rename");
	TRY(read_text(path("old"), text, sizeof text) == 0, "read");
	EXPECT(strcmp(text, "new") == 0, "read \"%s\" after rename, not \"new\"", text);
	ssize_t n = read(fd, text, sizeof text - 1);
	TRY(n >= 0, "read the replaced file through its open descriptor");
	text[n] = 0;
	EXPECT(strcmp(text, "old") == 0, "the open descriptor reads \"%s\", not the replaced \"old\"", text);
	close(fd);
	TRY(mkdir(path("d1"), 0755) == 0 && mkdir(path("d2"), 0755) == 0, "mkdir");
	TRY(rename(path("d1"), path("d2")) == 0, "rename a directory over an empty one");
	return 0;
}

static int check_symlinks(void) {
	char target[64];
	TRY(write_all(path("target"), "via link") == 0, "create");
	TRY(symlink("target", path("link")) == 0, "symlink");
	ssize_t n = readlink(path("link"), target, sizeof target - 1);
	TRY(n >= 0, "readlink");
	target[n] = 0;
	EXPECT(strcmp(target, "target") == 0, "readlink gives \"%s\"", target);
	TRY(read_text(path("link"), target, sizeof target) == 0, "open through the link");
	EXPECT(strcmp(target, "via link") == 0, "read through the link");
	struct stat st;
	TRY(lstat(path("link"), &st) == 0 && S_ISLNK(st.st_mode), "lstat");
	/* kubelet's ConfigMap update: a symlink to a directory, swapped by renaming a new one over it. */
	TRY(mkdir(path("v1"), 0755) == 0 && mkdir(path("v2"), 0755) == 0, "mkdir");
	TRY(write_all(path("v1/key"), "one") == 0 && write_all(path("v2/key"), "two") == 0, "create");
	TRY(symlink("v1", path("data")) == 0 && symlink("v2", path("data.new")) == 0, "symlink");
	TRY(read_text(path("data/key"), target, sizeof target) == 0, "read through data");
	TRY(rename(path("data.new"), path("data")) == 0, "rename a symlink over a symlink");
	TRY(read_text(path("data/key"), target, sizeof target) == 0, "read through data");
	EXPECT(strcmp(target, "two") == 0, "after the swap, data/key reads \"%s\"", target);
	return 0;
}

static int check_chmod(void) {
	struct stat st;
	TRY(write_all(path("f"), "mode") == 0, "create");
	TRY(chmod(path("f"), 0640) == 0, "chmod");
	TRY(stat(path("f"), &st) == 0, "stat");
	EXPECT((st.st_mode & 07777) == 0640, "mode %o after chmod 0640", st.st_mode & 07777);
	TRY(mkdir(path("d"), 0700) == 0 && chmod(path("d"), 01777) == 0, "chmod a directory 1777");
	TRY(stat(path("d"), &st) == 0, "stat");
	EXPECT((st.st_mode & 07777) == 01777, "directory mode %o after chmod 1777", st.st_mode & 07777);
	return 0;
}

static int check_chown(void) {
	struct stat st;
	/* As root a container changes owners (a database chowns its data directory); as anyone
	 * else, only to its own uid and one of its groups, which must work too. */
	uid_t uid = geteuid() == 0 ? 1234 : geteuid();
	gid_t gid = geteuid() == 0 ? 2345 : getegid();
	TRY(write_all(path("f"), "owner") == 0, "create");
	TRY(chown(path("f"), uid, gid) == 0, "chown %u:%u", uid, gid);
	TRY(stat(path("f"), &st) == 0, "stat");
	EXPECT(st.st_uid == uid && st.st_gid == gid, "owner %u:%u after chown %u:%u", st.st_uid, st.st_gid, uid, gid);
	TRY(symlink("f", path("l")) == 0 && lchown(path("l"), uid, gid) == 0, "lchown a symlink");
	return 0;
}

static int check_xattr(void) {
	char value[32];
	TRY(write_all(path("f"), "xattr") == 0, "create");
	TRY(setxattr(path("f"), "user.moat", "v1", 2, 0) == 0, "setxattr user.moat");
	ssize_t n = getxattr(path("f"), "user.moat", value, sizeof value);
	TRY(n >= 0, "getxattr");
	EXPECT(n == 2 && memcmp(value, "v1", 2) == 0, "getxattr gives %zd bytes", n);
	char list[256];
	n = listxattr(path("f"), list, sizeof list);
	TRY(n >= 0, "listxattr");
	int found = 0;
	for (char *name = list; name < list + n; name += strlen(name) + 1) found |= strcmp(name, "user.moat") == 0;
	EXPECT(found, "listxattr does not list user.moat");
	TRY(removexattr(path("f"), "user.moat") == 0, "removexattr");
	return 0;
}

static int check_utimensat(void) {
	struct timespec times[2] = { { .tv_sec = 1000000000, .tv_nsec = 123456789 }, { .tv_sec = 1200000000, .tv_nsec = 987654321 } };
	struct stat st;
	TRY(write_all(path("f"), "time") == 0, "create");
	TRY(utimensat(AT_FDCWD, path("f"), times, 0) == 0, "utimensat");
	TRY(stat(path("f"), &st) == 0, "stat");
	EXPECT(st.st_atim.tv_sec == times[0].tv_sec && st.st_mtim.tv_sec == times[1].tv_sec && st.st_mtim.tv_nsec == times[1].tv_nsec,
	       "times read back %ld.%09ld / %ld.%09ld", (long)st.st_atim.tv_sec, st.st_atim.tv_nsec, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	TRY(symlink("f", path("l")) == 0 && utimensat(AT_FDCWD, path("l"), times, AT_SYMLINK_NOFOLLOW) == 0, "utimensat a symlink");
	return 0;
}

static int check_flock(void) {
	TRY(write_all(path("f"), "lock") == 0, "create");
	int a = open(path("f"), O_RDWR), b = open(path("f"), O_RDWR);
	TRY(a >= 0 && b >= 0, "open");
	TRY(flock(a, LOCK_EX | LOCK_NB) == 0, "flock");
	errno = 0;
	EXPECT(flock(b, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK, "a second open file took the same lock");
	TRY(flock(a, LOCK_UN) == 0 && flock(b, LOCK_EX | LOCK_NB) == 0, "flock after unlock");
	close(a), close(b);
	return 0;
}

/* Whether a child process sees the file's record lock as held by someone else. */
static int lock_held_elsewhere(const char *file) {
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(file, O_RDWR);
		struct flock probe = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
		_exit(fd >= 0 && fcntl(fd, F_SETLK, &probe) != 0 && (errno == EAGAIN || errno == EACCES) ? 0 : 1);
	}
	int status = 0;
	if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static int check_fcntl_lock(void) {
	TRY(write_all(path("f"), "record") == 0, "create");
	int fd = open(path("f"), O_RDWR);
	TRY(fd >= 0, "open");
	struct flock lock = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = 10 };
	TRY(fcntl(fd, F_SETLK, &lock) == 0, "F_SETLK");
	EXPECT(lock_held_elsewhere(path("f")) == 1, "another process could take the same record lock");
	struct flock ofd = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 10 };
	TRY(fcntl(fd, F_OFD_SETLK, &ofd) == 0, "F_OFD_SETLK on another range");
	close(fd);
	return 0;
}

static int check_flock_and_fcntl(void) {
	TRY(write_all(path("f"), "both") == 0, "create");
	int fd = open(path("f"), O_RDWR);
	TRY(fd >= 0, "open");
	TRY(flock(fd, LOCK_EX) == 0, "flock");
	/* On a local file system the two kinds of lock are independent (sqlite, dpkg do both). */
	struct flock lock = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
	TRY(fcntl(fd, F_SETLK, &lock) == 0, "F_SETLK after flock");
	close(fd);
	return 0;
}

static int check_mmap_shared(void) {
	int fd = open(path("f"), O_RDWR | O_CREAT, 0644);
	TRY(fd >= 0, "open");
	TRY(ftruncate(fd, 8192) == 0, "ftruncate");
	char *map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	TRY(map != MAP_FAILED, "mmap MAP_SHARED");
	memcpy(map + 4096, "mapped", 6);
	TRY(msync(map, 8192, MS_SYNC) == 0, "msync");
	munmap(map, 8192);
	close(fd);
	char text[16] = { 0 };
	fd = open(path("f"), O_RDONLY);
	TRY(fd >= 0 && pread(fd, text, 6, 4096) == 6, "pread");
	EXPECT(memcmp(text, "mapped", 6) == 0, "a write through the shared mapping is not in the file");
	close(fd);
	return 0;
}

static int check_o_tmpfile(void) {
	int fd = open(base, O_TMPFILE | O_RDWR, 0600);
	TRY(fd >= 0, "open O_TMPFILE");
	TRY(write(fd, "tmp", 3) == 3, "write");
	char proc[64];
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
	TRY(linkat(AT_FDCWD, proc, AT_FDCWD, path("named"), AT_SYMLINK_FOLLOW) == 0, "linkat the unnamed file");
	char text[16];
	TRY(read_text(path("named"), text, sizeof text) == 0, "read");
	EXPECT(strcmp(text, "tmp") == 0, "the linked file reads \"%s\"", text);
	close(fd);
	return 0;
}

static int check_fallocate(void) {
	int fd = open(path("f"), O_RDWR | O_CREAT, 0644);
	TRY(fd >= 0, "open");
	TRY(fallocate(fd, 0, 0, 1 << 20) == 0, "fallocate 1 MiB");
	struct stat st;
	TRY(fstat(fd, &st) == 0, "fstat");
	EXPECT(st.st_size == 1 << 20, "size %lld after fallocate", (long long)st.st_size);
	close(fd);
	return 0;
}

static int check_inotify(void) {
	int fd = inotify_init1(IN_NONBLOCK);
	TRY(fd >= 0, "inotify_init1");
	TRY(inotify_add_watch(fd, base, IN_CREATE | IN_MODIFY | IN_MOVED_TO) >= 0, "inotify_add_watch");
	TRY(write_all(path("seen"), "x") == 0, "create");
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	EXPECT(poll(&pfd, 1, 5000) == 1, "no event within 5 s of a create");
	char events[4096];
	ssize_t n = read(fd, events, sizeof events);
	TRY(n > 0, "read events");
	struct inotify_event *event = (struct inotify_event *)events;
	EXPECT((event->mask & IN_CREATE) && strcmp(event->name, "seen") == 0, "first event is not IN_CREATE of seen");
	close(fd);
	return 0;
}

static int check_unlinked_open(void) {
	int fd = open(path("f"), O_RDWR | O_CREAT, 0644);
	TRY(fd >= 0, "open");
	TRY(unlink(path("f")) == 0, "unlink");
	TRY(write(fd, "still", 5) == 5, "write after unlink");
	char text[8] = { 0 };
	TRY(pread(fd, text, 5, 0) == 5, "read after unlink");
	EXPECT(strcmp(text, "still") == 0, "read back after unlink");
	struct stat st;
	TRY(fstat(fd, &st) == 0, "fstat after unlink");
	EXPECT(st.st_nlink == 0, "link count %lu of an unlinked file", (unsigned long)st.st_nlink);
	TRY(ftruncate(fd, 2) == 0, "ftruncate after unlink");
	close(fd);
	return 0;
}

static int check_append_truncate(void) {
	int fd = open(path("f"), O_WRONLY | O_CREAT | O_APPEND, 0644);
	TRY(fd >= 0, "open O_APPEND");
	TRY(write(fd, "ab", 2) == 2 && lseek(fd, 0, SEEK_SET) == 0 && write(fd, "cd", 2) == 2, "write");
	close(fd);
	char text[8];
	TRY(read_text(path("f"), text, sizeof text) == 0, "read");
	EXPECT(strcmp(text, "abcd") == 0, "O_APPEND wrote \"%s\"", text);
	TRY(truncate(path("f"), 1) == 0, "truncate");
	struct stat st;
	TRY(stat(path("f"), &st) == 0, "stat");
	EXPECT(st.st_size == 1, "size %lld after truncate", (long long)st.st_size);
	return 0;
}

static int check_readdir(void) {
	TRY(mkdir(path("d"), 0755) == 0, "mkdir");
	for (int i = 0; i < 50; i++) {
		char name[32];
		snprintf(name, sizeof name, "d/%d", i);
		TRY(write_all(path(name), "") == 0, "create %s", name);
	}
	TRY(unlink(path("d/7")) == 0, "unlink");
	DIR *dir = opendir(path("d"));
	TRY(dir != NULL, "opendir");
	int count = 0;
	for (struct dirent *entry; (entry = readdir(dir));) count += entry->d_name[0] != '.';
	closedir(dir);
	EXPECT(count == 49, "readdir lists %d entries, not 49", count);
	EXPECT(rmdir(path("d")) != 0 && errno == ENOTEMPTY, "rmdir of a non-empty directory");
	return 0;
}

static int check_statfs_fsync(void) {
	struct statfs fs;
	TRY(statfs(base, &fs) == 0, "statfs");
	int fd = open(path("f"), O_WRONLY | O_CREAT, 0644);
	TRY(fd >= 0 && write(fd, "s", 1) == 1, "write");
	TRY(fsync(fd) == 0 && fdatasync(fd) == 0, "fsync");
	TRY(syncfs(fd) == 0, "syncfs");
	close(fd);
	return 0;
}

static int check_copy_range(void) {
	TRY(write_all(path("src"), "0123456789") == 0, "create");
	int in = open(path("src"), O_RDONLY), out = open(path("dst"), O_WRONLY | O_CREAT, 0644);
	TRY(in >= 0 && out >= 0, "open");
	TRY(copy_file_range(in, NULL, out, NULL, 10, 0) == 10, "copy_file_range");
	close(in), close(out);
	char text[16];
	TRY(read_text(path("dst"), text, sizeof text) == 0, "read");
	EXPECT(strcmp(text, "0123456789") == 0, "copied \"%s\"", text);
	return 0;
}

static int check_exec(void) {
	/* A program written into the share and run from it (a build writes then runs its tools). */
	char self[4096];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	TRY(n > 0, "readlink /proc/self/exe");
	self[n] = 0;
	int in = open(self, O_RDONLY), out = open(path("prog"), O_WRONLY | O_CREAT, 0755);
	TRY(in >= 0 && out >= 0, "open");
	for (char chunk[65536]; (n = read(in, chunk, sizeof chunk)) > 0;) TRY(write(out, chunk, n) == n, "write");
	close(in), close(out);
	pid_t pid = fork();
	if (pid == 0) {
		execl(path("prog"), "prog", "--exit-7", (char *)NULL);
		_exit(errno == ETXTBSY ? 126 : 127);
	}
	int status = 0;
	TRY(pid > 0 && waitpid(pid, &status, 0) == pid, "fork");
	EXPECT(WIFEXITED(status) && WEXITSTATUS(status) == 7, "the program written there did not run (status %d)", status);
	return 0;
}

struct check { const char *name; int (*run)(void); };

static const struct check checks[] = {
	{ "unix-socket", check_unix_socket },
	{ "fifo", check_fifo },
	{ "hard-links", check_hard_links },
	{ "rename-over", check_rename_over },
	{ "symlinks", check_symlinks },
	{ "chmod", check_chmod },
	{ "chown", check_chown },
	{ "user-xattr", check_xattr },
	{ "utimensat", check_utimensat },
	{ "flock", check_flock },
	{ "fcntl-lock", check_fcntl_lock },
	{ "flock-then-fcntl", check_flock_and_fcntl },
	{ "mmap-shared", check_mmap_shared },
	{ "o-tmpfile", check_o_tmpfile },
	{ "fallocate", check_fallocate },
	{ "inotify", check_inotify },
	{ "unlinked-open", check_unlinked_open },
	{ "append-truncate", check_append_truncate },
	{ "readdir", check_readdir },
	{ "statfs-fsync", check_statfs_fsync },
	{ "copy-file-range", check_copy_range },
	{ "exec-written", check_exec },
};

static void remove_tree(const char *dir) {
	DIR *d = opendir(dir);
	if (!d) return;
	for (struct dirent *entry; (entry = readdir(d));) {
		if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, "..")) continue;
		char child[4096];
		if (snprintf(child, sizeof child, "%s/%s", dir, entry->d_name) >= (int)sizeof child) continue;
		struct stat st;
		if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode)) {
			remove_tree(child);
			rmdir(child);
		} else {
			unlink(child);
		}
	}
	closedir(d);
}

static void report(const char *name, const char *verdict, int error) {
	if (error) printf("%s %s %s: %s (errno %d)\n", name, verdict, step, strerror(error), error);
	else printf("%s %s\n", name, verdict);
	fflush(stdout);
}

static int run_checks(const char *dir) {
	for (size_t i = 0; i < sizeof checks / sizeof checks[0]; i++) {
		if (snprintf(base, sizeof base, "%s/check-%s", dir, checks[i].name) >= (int)sizeof base) return 2;
		remove_tree(base);
		rmdir(base);
		step[0] = 0;
		errno = 0;
		int error = mkdir(base, 0755) == 0 ? checks[i].run() : (STEP("mkdir"), errno);
		report(checks[i].name, error ? "fail" : "pass", error);
		if (!error) {
			remove_tree(base);
			rmdir(base);
		}
	}
	return 0;
}

/* The attacks of issue 13 item 2, as a root guest would try them. Each line says whether the
 * guest's call was refused; the host decides whether anything was minted. */
static void attack(const char *name, int ok, const char *what) {
	if (ok) printf("%s done %s\n", name, what);
	else printf("%s refused %s: %s (errno %d)\n", name, step, strerror(errno), errno);
	fflush(stdout);
}

static int run_attacks(const char *dir) {
	char what[256];
	struct stat st;
	if (snprintf(base, sizeof base, "%s", dir) >= (int)sizeof base) return 2;

	STEP("mknod S_IFCHR 1:3");
	unlink(path("attack-chr"));
	int ok = mknod(path("attack-chr"), S_IFCHR | 0666, makedev(1, 3)) == 0;
	snprintf(what, sizeof what, "guest sees %s", ok && lstat(path("attack-chr"), &st) == 0 && S_ISCHR(st.st_mode) ? "a char device" : "something else");
	attack("mknod-char", ok, what);

	STEP("mknod S_IFBLK 8:0");
	unlink(path("attack-blk"));
	ok = mknod(path("attack-blk"), S_IFBLK | 0666, makedev(8, 0)) == 0;
	snprintf(what, sizeof what, "guest sees %s", ok && lstat(path("attack-blk"), &st) == 0 && S_ISBLK(st.st_mode) ? "a block device" : "something else");
	attack("mknod-block", ok, what);

	static const struct { const char *name, *file; mode_t mode; } setid[] = {
		{ "chmod-setuid", "attack-suid", 04755 },
		{ "chmod-setgid", "attack-sgid", 02755 },
	};
	for (size_t i = 0; i < 2; i++) {
		STEP("create");
		ok = write_all(path(setid[i].file), "#!/bin/sh\nid\n") == 0;
		if (ok) {
			STEP("chmod %o", setid[i].mode);
			ok = chmod(path(setid[i].file), setid[i].mode) == 0;
		}
		snprintf(what, sizeof what, "guest sees mode %o", ok && stat(path(setid[i].file), &st) == 0 ? st.st_mode & 07777 : 0);
		attack(setid[i].name, ok, what);
	}

	STEP("open O_CREAT 04755");
	unlink(path("attack-suid-create"));
	int fd = open(path("attack-suid-create"), O_WRONLY | O_CREAT | O_EXCL, 04755);
	ok = fd >= 0;
	if (ok) close(fd);
	snprintf(what, sizeof what, "guest sees mode %o", ok && stat(path("attack-suid-create"), &st) == 0 ? st.st_mode & 07777 : 0);
	attack("create-setuid", ok, what);

	STEP("create");
	ok = write_all(path("attack-chown"), "owned\n") == 0;
	if (ok) {
		STEP("chown 4242:4242");
		ok = chown(path("attack-chown"), 4242, 4242) == 0;
	}
	memset(&st, 0, sizeof st);
	if (ok) stat(path("attack-chown"), &st);
	snprintf(what, sizeof what, "guest sees owner %u:%u", st.st_uid, st.st_gid);
	attack("chown-foreign", ok, what);

	STEP("create, chown 0:0, chmod 04755");
	ok = write_all(path("attack-root-suid"), "#!/bin/sh\nid\n") == 0 && chown(path("attack-root-suid"), 0, 0) == 0 && chmod(path("attack-root-suid"), 04755) == 0;
	snprintf(what, sizeof what, "guest sees mode %o", ok && stat(path("attack-root-suid"), &st) == 0 ? st.st_mode & 07777 : 0);
	attack("root-setuid", ok, what);

	/* Names that leave the share: resolved by the guest's kernel in the guest's own tree, they
	 * must never reach the host's. The test plants a marker on the host at the path given. */
	const char *marker = getenv("MOAT_ATTACK_HOST_FILE");
	if (marker) {
		char text[256];
		unlink(path("attack-link"));
		STEP("symlink %s, open through it", marker);
		ok = symlink(marker, path("attack-link")) == 0 && read_text(path("attack-link"), text, sizeof text) == 0;
		snprintf(what, sizeof what, "read %.64s", ok ? text : "");
		attack("symlink-out", ok, what);

		char walk[4096] = "";
		if (snprintf(walk, sizeof walk, "%s", dir) >= (int)sizeof walk) return 2;
		for (int i = 0; i < 16; i++) strncat(walk, "/..", sizeof walk - strlen(walk) - 1);
		strncat(walk, marker, sizeof walk - strlen(walk) - 1);
		STEP("open %s", walk);
		ok = read_text(walk, text, sizeof text) == 0;
		snprintf(what, sizeof what, "read %.64s", ok ? text : "");
		attack("dotdot-walk", ok, what);
	}
	return 0;
}

int main(int argc, char **argv) {
	if (argc == 2 && strcmp(argv[1], "--exit-7") == 0) return 7;
	if (argc != 3 || (strcmp(argv[1], "checks") && strcmp(argv[1], "attacks"))) {
		fprintf(stderr, "usage: moat-fs-checks checks|attacks DIR\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	return strcmp(argv[1], "checks") == 0 ? run_checks(argv[2]) : run_attacks(argv[2]);
}
