/*
 * bench/shared-fs's workload, run inside the container (built static, copied into each
 * bundle's root): file I/O on the directory given, timed with CLOCK_MONOTONIC, one
 * "<phase> <ms>" line per phase. A C helper, not a shell script, so that what is timed is the
 * file system and not busybox sh (which, under TCG, would dominate the small-file phases).
 *
 *   fs-work DIR      DIR holds in.bin (64 MiB) and tree/ (10 dirs x 100 files), made by the host
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024 * 1024)
#define BIG_MIB 64
#define SMALL_FILES 1000
#define SMALL_BYTES 1024

static char buffer[MIB];

static double now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what, const char *path) {
	fprintf(stderr, "fs-work: %s %s: ", what, path);
	perror(NULL);
	exit(1);
}

static void write_file(const char *path, size_t bytes, size_t chunk, int sync) {
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) die("open", path);
	for (size_t done = 0; done < bytes; done += chunk)
		if (write(fd, buffer, chunk) != (ssize_t)chunk) die("write", path);
	if (sync && fsync(fd) != 0) die("fsync", path);
	close(fd);
}

static size_t read_file(const char *path) {
	int fd = open(path, O_RDONLY);
	if (fd < 0) die("open", path);
	size_t total = 0;
	ssize_t got;
	while ((got = read(fd, buffer, sizeof buffer)) > 0) total += (size_t)got;
	if (got < 0) die("read", path);
	close(fd);
	return total;
}

/* find/ls -lR: every entry listed and lstat'ed; returns how many. */
static long walk(const char *dir) {
	DIR *d = opendir(dir);
	if (!d) die("opendir", dir);
	long count = 0;
	struct dirent *entry;
	char path[4096];
	while ((entry = readdir(d)) != NULL) {
		if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
		snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
		struct stat st;
		if (lstat(path, &st) != 0) die("lstat", path);
		count++;
		if (S_ISDIR(st.st_mode)) count += walk(path);
	}
	closedir(d);
	return count;
}

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: fs-work DIR\n");
		return 2;
	}
	if (chdir(argv[1]) != 0) die("chdir", argv[1]);
	memset(buffer, 'x', sizeof buffer);
	char path[256];

	double start = now_ms();
	write_file("out.bin", (size_t)BIG_MIB * MIB, MIB, 1);
	printf("write-64MiB %.1f\n", now_ms() - start);

	start = now_ms();
	if (read_file("in.bin") != (size_t)BIG_MIB * MIB) die("short read", "in.bin");
	printf("read-64MiB %.1f\n", now_ms() - start);

	start = now_ms();
	long entries = walk("tree");
	if (entries != 10 + SMALL_FILES) die("unexpected entry count in", "tree");
	printf("walk-1010 %.1f\n", now_ms() - start);

	start = now_ms();
	for (int i = 0; i < SMALL_FILES; i++) {
		snprintf(path, sizeof path, "tree/d%d/f%d", i / 100, i % 100);
		if (read_file(path) != SMALL_BYTES) die("short read", path);
	}
	printf("read-1000 %.1f\n", now_ms() - start);

	if (mkdir("small", 0755) != 0) die("mkdir", "small");
	start = now_ms();
	for (int i = 0; i < SMALL_FILES; i++) {
		snprintf(path, sizeof path, "small/f%d", i);
		write_file(path, SMALL_BYTES, SMALL_BYTES, 0);
	}
	printf("create-1000 %.1f\n", now_ms() - start);

	start = now_ms();
	for (int i = 0; i < SMALL_FILES; i++) {
		struct stat st;
		snprintf(path, sizeof path, "small/f%d", i);
		if (stat(path, &st) != 0 || st.st_size != SMALL_BYTES) die("stat", path);
	}
	printf("stat-1000 %.1f\n", now_ms() - start);
	return 0;
}
