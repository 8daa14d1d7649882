/* powercut.so: an LD_PRELOAD shim that keeps, for every file under one
 * directory, a shadow copy holding what a power cut would leave: the file as
 * of its last fsync/fdatasync.  The Makefile builds it as
 * $(BUILD)/tests/powercut.so with the build's flags and sanitizers;
 * tests/unit/test-crash.c runs the engine under it, kills the process and
 * replaces the store by the shadow copies, then checks what survived.
 *
 * Environment:
 *   POWERCUT_DIR     the directory to watch (the store); unset: pass-through
 *   POWERCUT_SHADOW  where the shadow copies live (same relative paths)
 *   POWERCUT_LOG     if set, log renames/unlinks/syncs to stderr
 *
 * What becomes durable, and when:
 *   - fsync(fd), fdatasync(fd) of a regular file under POWERCUT_DIR: the
 *     whole current contents (and size) of that file.  The shadow is
 *     patched in place block by block, so a process killed inside this call
 *     leaves a partly synced file, like a power cut during an fsync.
 *   - write/pwrite/writev/pwritev on a descriptor opened with O_DSYNC or
 *     O_SYNC (LMDB writes its meta pages that way): exactly the bytes
 *     written, at their offset.
 *   - syncfs(fd), sync(): every file under POWERCUT_DIR.
 *   - unlink, rename, link: applied to the shadow at once (metadata is treated as
 *     durable when done; the shadow of a renamed file that was never synced
 *     does not exist, so the target vanishes too).
 *   - Anything else (plain writes, ftruncate, fallocate, directory fsync)
 *     is lost at the power cut.  A file never synced does not exist.
 * Limits: writes through a shared writable mmap and io_uring are not seen
 * (their msync/IORING_OP_FSYNC are not intercepted).
 *
 * powercut_set_paused(1) (found with dlsym) stops all shadowing, so the
 * test can restore the store from the shadow without the shim mirroring
 * the restore. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char dir[PATH_MAX], shadow[PATH_MAX];
static size_t dir_len;
static int active, logging;
static volatile int paused;

static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_syncfs)(int);
static void (*real_sync)(void);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev64)(int, const struct iovec *, int, off_t);
static ssize_t (*real_pwritev2)(int, const struct iovec *, int, off_t, int);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *,
			     unsigned);
static int (*real_link)(const char *, const char *);
static int (*real_linkat)(int, const char *, int, const char *, int);

void powercut_set_paused(int on);
void powercut_set_paused(int on)
{
	paused = on;
}

static void plog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void plog(const char *fmt, ...)
{
	if (!logging)
		return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "powercut[%d]: ", (int)getpid());
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

__attribute__((constructor)) static void init(void)
{
	real_fsync = dlsym(RTLD_NEXT, "fsync");
	real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
	real_syncfs = dlsym(RTLD_NEXT, "syncfs");
	real_sync = dlsym(RTLD_NEXT, "sync");
	real_write = dlsym(RTLD_NEXT, "write");
	real_pwrite = dlsym(RTLD_NEXT, "pwrite");
	real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
	real_writev = dlsym(RTLD_NEXT, "writev");
	real_pwritev = dlsym(RTLD_NEXT, "pwritev");
	real_pwritev64 = dlsym(RTLD_NEXT, "pwritev64");
	real_pwritev2 = dlsym(RTLD_NEXT, "pwritev2");
	real_unlink = dlsym(RTLD_NEXT, "unlink");
	real_unlinkat = dlsym(RTLD_NEXT, "unlinkat");
	real_rename = dlsym(RTLD_NEXT, "rename");
	real_renameat = dlsym(RTLD_NEXT, "renameat");
	real_renameat2 = dlsym(RTLD_NEXT, "renameat2");
	real_link = dlsym(RTLD_NEXT, "link");
	real_linkat = dlsym(RTLD_NEXT, "linkat");

	const char *const d = getenv("POWERCUT_DIR"),
		   *const s = getenv("POWERCUT_SHADOW");
	logging = getenv("POWERCUT_LOG") != NULL;
	if (!d || !s || !*d || !*s)
		return;
	if (!realpath(d, dir)) {
		/* The store may not exist yet: take the path as given. */
		snprintf(dir, sizeof(dir), "%s", d);
	}
	snprintf(shadow, sizeof(shadow), "%s", s);
	dir_len = strlen(dir);
	while (dir_len > 1 && dir[dir_len - 1] == '/')
		dir[--dir_len] = '\0';
	active = 1;
	plog("watching %s, shadow %s", dir, shadow);
}

/* If PATH is under the watched directory, the shadow path; else NULL. */
static const char *shadow_of(const char *path, char out[PATH_MAX])
{
	if (strncmp(path, dir, dir_len) != 0 ||
	    (path[dir_len] != '/' && path[dir_len] != '\0'))
		return NULL;
	snprintf(out, PATH_MAX, "%s%s", shadow, path + dir_len);
	return out;
}

static int fd_path(int fd, char out[PATH_MAX])
{
	char link[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	const ssize_t n = readlink(link, out, PATH_MAX - 1);
	if (n <= 0)
		return -1;
	out[n] = '\0';
	return 0;
}

/* Absolute path of PATH relative to DIRFD, resolving the parent directory
 * (which must exist) but not the last component. */
static int abs_path(int dirfd, const char *path, char out[PATH_MAX])
{
	char base[PATH_MAX], parent[PATH_MAX], tmp[PATH_MAX];
	const char *name;

	if (path[0] == '/') {
		snprintf(tmp, sizeof(tmp), "%s", path);
	} else {
		if (dirfd == AT_FDCWD) {
			if (!getcwd(base, sizeof(base)))
				return -1;
		} else if (fd_path(dirfd, base) < 0) {
			return -1;
		}
		if ((size_t)snprintf(tmp, sizeof(tmp), "%s/%s", base, path) >=
		    sizeof(tmp))
			return -1; /* too long: not shadowed */
	}
	char *const slash = strrchr(tmp, '/');
	if (!slash)
		return -1;
	name = slash + 1;
	if (slash == tmp) {
		snprintf(out, PATH_MAX, "/%s", name);
		return 0;
	}
	*slash = '\0';
	if (!realpath(tmp, parent))
		return -1;
	if ((size_t)snprintf(out, PATH_MAX, "%s/%s", parent, name) >= PATH_MAX)
		return -1;
	return 0;
}

static void mkdirs_for(const char *path)
{
	char p[PATH_MAX];
	snprintf(p, sizeof(p), "%s", path);
	for (char *s = p + 1; *s; s++) {
		if (*s == '/') {
			*s = '\0';
			mkdir(p, 0755);
			*s = '/';
		}
	}
}

static int full_pwrite(int fd, const void *buf, size_t len, off_t off)
{
	const char *p = buf;
	while (len) {
		const ssize_t n = real_pwrite(fd, p, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n, len -= (size_t)n, off += n;
	}
	return 0;
}

static ssize_t full_pread(int fd, void *buf, size_t len, off_t off)
{
	size_t got = 0;
	while (got < len) {
		const ssize_t n = pread(fd, (char *)buf + got, len - got,
					off + (off_t)got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* fsync of a directory makes its entries durable: the subdirectories
 * appear in the shadow (files appear when their data is synced). */
static void sync_dir(const char *path, const char *sp)
{
	char sub[PATH_MAX], ssub[PATH_MAX];
	struct dirent *e;

	mkdirs_for(sp);
	mkdir(sp, 0755);
	DIR *const d = opendir(path);
	if (!d)
		return;
	while ((e = readdir(d))) {
		if (e->d_type != DT_DIR || !strcmp(e->d_name, ".") ||
		    !strcmp(e->d_name, ".."))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		if (shadow_of(sub, ssub))
			mkdir(ssub, 0755);
	}
	closedir(d);
	plog("sync directory %s", path + dir_len);
}

/* Makes the shadow of PATH equal to PATH's current contents, patching
 * only the blocks that differ.  Caller holds the lock. */
static void sync_file(const char *path)
{
	char sp[PATH_MAX];
	static char a[1 << 16], b[1 << 16];
	struct stat st;

	if (!shadow_of(path, sp))
		return;
	const int src = open(path, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		return;
	if (fstat(src, &st) < 0 || !S_ISREG(st.st_mode)) {
		if (S_ISDIR(st.st_mode))
			sync_dir(path, sp);
		close(src);
		return;
	}
	mkdirs_for(sp);
	const int dst = open(sp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (dst < 0) {
		close(src);
		return;
	}
	off_t off = 0;
	size_t patched = 0;
	for (;;) {
		const ssize_t n = full_pread(src, a, sizeof(a), off);
		if (n <= 0)
			break;
		const ssize_t m = full_pread(dst, b, (size_t)n, off);
		if (m != n || memcmp(a, b, (size_t)n) != 0) {
			full_pwrite(dst, a, (size_t)n, off);
			patched += (size_t)n;
		}
		off += n;
	}
	if (ftruncate(dst, off) < 0)
		plog("ftruncate %s: %s", sp, strerror(errno));
	plog("sync %s: %lld bytes, %zu patched", path + dir_len,
	     (long long)off, patched);
	close(dst);
	close(src);
}

static void sync_fd(int fd)
{
	char p[PATH_MAX];
	if (!active || paused || fd_path(fd, p) < 0)
		return;
	pthread_mutex_lock(&lock);
	sync_file(p);
	pthread_mutex_unlock(&lock);
}

static void sync_tree(const char *path)
{
	DIR *const d = opendir(path);
	struct dirent *e;
	char p[PATH_MAX];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		if (e->d_type == DT_DIR)
			sync_tree(p);
		else
			sync_file(p);
	}
	closedir(d);
}

static void sync_all(void)
{
	if (!active || paused)
		return;
	pthread_mutex_lock(&lock);
	sync_tree(dir);
	pthread_mutex_unlock(&lock);
}

/* After a write of LEN bytes at OFF to an O_DSYNC/O_SYNC descriptor: those
 * bytes are durable. */
static void dsync_range(int fd, const struct iovec *iov, int iovcnt, off_t off,
			ssize_t len)
{
	char p[PATH_MAX], sp[PATH_MAX];

	if (!active || paused || len <= 0)
		return;
	const int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || !(fl & O_DSYNC))
		return;
	if (fd_path(fd, p) < 0 || !shadow_of(p, sp))
		return;
	pthread_mutex_lock(&lock);
	mkdirs_for(sp);
	const int dst = open(sp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (dst >= 0) {
		for (int i = 0; i < iovcnt && len > 0; i++) {
			const size_t n = iov[i].iov_len < (size_t)len
						 ? iov[i].iov_len
						 : (size_t)len;
			full_pwrite(dst, iov[i].iov_base, n, off);
			off += (off_t)n;
			len -= (ssize_t)n;
		}
		close(dst);
		plog("dsync write %s", p + dir_len);
	}
	pthread_mutex_unlock(&lock);
}

/* ---- interposed functions ----------------------------------------------- */

int fsync(int fd)
{
	const int rc = real_fsync(fd);
	if (rc == 0)
		sync_fd(fd);
	return rc;
}

int fdatasync(int fd)
{
	const int rc = real_fdatasync(fd);
	if (rc == 0)
		sync_fd(fd);
	return rc;
}

int syncfs(int fd)
{
	const int rc = real_syncfs(fd);
	if (rc == 0)
		sync_all();
	return rc;
}

void sync(void)
{
	real_sync();
	sync_all();
}

ssize_t write(int fd, const void *buf, size_t len)
{
	const ssize_t n = real_write(fd, buf, len);
	if (n > 0 && active && !paused) {
		const off_t end = lseek(fd, 0, SEEK_CUR);
		if (end >= n) {
			const struct iovec v = {(void *)buf, (size_t)n};
			dsync_range(fd, &v, 1, end - n, n);
		}
	}
	return n;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
	const ssize_t n = real_pwrite(fd, buf, len, off);
	const struct iovec v = {(void *)buf, len};
	dsync_range(fd, &v, 1, off, n);
	return n;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
	const ssize_t n = real_pwrite64(fd, buf, len, off);
	const struct iovec v = {(void *)buf, len};
	dsync_range(fd, &v, 1, off, n);
	return n;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	const ssize_t n = real_writev(fd, iov, iovcnt);
	if (n > 0 && active && !paused) {
		const off_t end = lseek(fd, 0, SEEK_CUR);
		if (end >= n)
			dsync_range(fd, iov, iovcnt, end - n, n);
	}
	return n;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	const ssize_t n = real_pwritev(fd, iov, iovcnt, off);
	dsync_range(fd, iov, iovcnt, off, n);
	return n;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	const ssize_t n = real_pwritev64(fd, iov, iovcnt, off);
	dsync_range(fd, iov, iovcnt, off, n);
	return n;
}

ssize_t pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off,
		 int flags)
{
	const ssize_t n = real_pwritev2(fd, iov, iovcnt, off, flags);
	if (off != -1)
		dsync_range(fd, iov, iovcnt, off, n);
	/* RWF_DSYNC/RWF_SYNC make this one write durable. */
#ifdef RWF_DSYNC
	if (n > 0 && (flags & (RWF_DSYNC | RWF_SYNC)) && off != -1 && active &&
	    !paused) {
		char p[PATH_MAX], sp[PATH_MAX];
		if (fd_path(fd, p) == 0 && shadow_of(p, sp))
			sync_fd(fd);
	}
#endif
	return n;
}

static void unlinked(int dirfd, const char *path, char resolved[PATH_MAX])
{
	char sp[PATH_MAX];
	(void)dirfd;
	if (!shadow_of(resolved, sp))
		return;
	pthread_mutex_lock(&lock);
	if (remove(sp) == 0)
		plog("unlink %s (from the shadow too)", resolved + dir_len);
	else
		plog("unlink %s (never synced)", resolved + dir_len);
	pthread_mutex_unlock(&lock);
	(void)path;
}

int unlink(const char *path)
{
	char r[PATH_MAX];
	const int ok = active && !paused && abs_path(AT_FDCWD, path, r) == 0;
	const int rc = real_unlink(path);
	if (rc == 0 && ok)
		unlinked(AT_FDCWD, path, r);
	return rc;
}

int unlinkat(int dirfd, const char *path, int flags)
{
	char r[PATH_MAX];
	const int ok = active && !paused && abs_path(dirfd, path, r) == 0;
	const int rc = real_unlinkat(dirfd, path, flags);
	if (rc == 0 && ok)
		unlinked(dirfd, path, r);
	return rc;
}

static void renamed(const char *from, const char *to)
{
	char sf[PATH_MAX], st[PATH_MAX];
	const int in_from = shadow_of(from, sf) != NULL,
		  in_to = shadow_of(to, st) != NULL;
	if (!in_from && !in_to)
		return;
	pthread_mutex_lock(&lock);
	if (in_from && in_to) {
		if (real_rename(sf, st) == 0) {
			plog("rename %s -> %s", from + dir_len, to + dir_len);
		} else {
			/* The source was never synced: its name now points
			 * at lost data. */
			remove(st);
			plog("rename %s -> %s (source never synced: target lost)",
			     from + dir_len, to + dir_len);
		}
	} else if (in_from) {
		remove(sf);
	} else {
		remove(st);
	}
	pthread_mutex_unlock(&lock);
}

int rename(const char *from, const char *to)
{
	char a[PATH_MAX], b[PATH_MAX];
	const int ok = active && !paused && abs_path(AT_FDCWD, from, a) == 0 &&
		       abs_path(AT_FDCWD, to, b) == 0;
	const int rc = real_rename(from, to);
	if (rc == 0 && ok)
		renamed(a, b);
	return rc;
}

int renameat(int fd1, const char *from, int fd2, const char *to)
{
	char a[PATH_MAX], b[PATH_MAX];
	const int ok = active && !paused && abs_path(fd1, from, a) == 0 &&
		       abs_path(fd2, to, b) == 0;
	const int rc = real_renameat(fd1, from, fd2, to);
	if (rc == 0 && ok)
		renamed(a, b);
	return rc;
}

int renameat2(int fd1, const char *from, int fd2, const char *to,
	      unsigned flags)
{
	char a[PATH_MAX], b[PATH_MAX];
	const int ok = active && !paused && abs_path(fd1, from, a) == 0 &&
		       abs_path(fd2, to, b) == 0;
	const int rc = real_renameat2(fd1, from, fd2, to, flags);
	if (rc == 0 && ok)
		renamed(a, b);
	return rc;
}

/* A new name for a file: the shadow gets the same link, so later syncs of
 * either name update both. */
static void linked(const char *from, const char *to)
{
	char sf[PATH_MAX], st[PATH_MAX];
	if (!shadow_of(to, st))
		return;
	pthread_mutex_lock(&lock);
	if (shadow_of(from, sf) && real_link(sf, st) == 0)
		plog("link %s -> %s", from + dir_len, to + dir_len);
	else
		plog("link %s -> %s (source never synced: target lost)",
		     from, to + dir_len);
	pthread_mutex_unlock(&lock);
}

int link(const char *from, const char *to)
{
	char a[PATH_MAX], b[PATH_MAX];
	const int ok = active && !paused && abs_path(AT_FDCWD, from, a) == 0 &&
		       abs_path(AT_FDCWD, to, b) == 0;
	const int rc = real_link(from, to);
	if (rc == 0 && ok)
		linked(a, b);
	return rc;
}

int linkat(int fd1, const char *from, int fd2, const char *to, int flags)
{
	char a[PATH_MAX], b[PATH_MAX];
	const int ok = active && !paused && !(flags & AT_EMPTY_PATH) &&
		       abs_path(fd1, from, a) == 0 && abs_path(fd2, to, b) == 0;
	const int rc = real_linkat(fd1, from, fd2, to, flags);
	if (rc == 0 && ok)
		linked(a, b);
	return rc;
}
