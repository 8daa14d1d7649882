/* Process locks: one flock()ed file per point in STORE/locks/.
 *
 *   locks/VOL.lock       the head: exclusive for its writer process, shared
 *                        while another command snapshots it
 *   locks/VOL@SNAP.lock  a snapshot: shared by readers, exclusive to remove
 *
 * A writer records "PID\nHOLDER\n" in its lock file, so others can name
 * who holds a volume and ask it (control.c) for snapshots.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "common/io.h"
#include "engine/internal.h"

void lock_name(char out[LOCK_NAME_MAX], const char *vol, const char *snap)
{
	snprintf(out, LOCK_NAME_MAX, "%s%s%s", vol, snap && *snap ? "@" : "",
		 snap ? snap : "");
}

static int lock_path(vd_store *s, const char *name, char *out, size_t len)
{
	const int n = snprintf(out, len, "locks/%s.lock", name);
	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

static void read_holder(int fd, int *pid, char *holder, size_t holder_len)
{
	char buf[128] = "";
	const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	char *nl;

	*pid = 0;
	if (holder_len)
		holder[0] = '\0';
	if (n <= 0)
		return;
	buf[n] = '\0';
	*pid = atoi(buf);
	nl = strchr(buf, '\n');
	if (nl && holder_len) {
		char *end = strchr(nl + 1, '\n');
		if (end)
			*end = '\0';
		snprintf(holder, holder_len, "%s", nl + 1);
	}
}

int lock_acquire(vd_store *s, const char *name, bool exclusive,
		 bool write_holder)
{
	char path[160];
	int fd;

	if (lock_path(s, name, path, sizeof path) < 0)
		return SET_ERROR(-ENAMETOOLONG, "lock %s", name);
	fd = openat(s->st_dirfd, path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return SET_ERROR(-errno, "lock %s: %s", path, strerror(errno));
	if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
		const int e = errno;
		int pid;
		char holder[64];

		read_holder(fd, &pid, holder, sizeof holder);
		close(fd);
		if (e != EWOULDBLOCK)
			return SET_ERROR(-e, "lock %s: %s", path, strerror(e));
		if (pid == getpid())
			return SET_ERROR(VD_EBUSY, "'%s' is open in this process", name);
		if (pid > 0 && kill(pid, 0) == 0 && !exclusive)
			return SET_ERROR(VD_EBUSY,
					 "'%s' is held for writing by %s (pid %d)",
					 name, holder[0] ? holder : "?", pid);
		if (pid > 0 && kill(pid, 0) == 0)
			return SET_ERROR(VD_EBUSY, "'%s' is in use by %s (pid %d)",
					 name, holder[0] ? holder : "?", pid);
		return SET_ERROR(VD_EBUSY, "'%s' is in use by another process",
				 name);
	}
	if (write_holder) {
		const int r = lock_write_holder(s, fd);
		if (r < 0) {
			close(fd);
			return SET_ERROR(r, "lock %s: %s", path, strerror(-r));
		}
	}
	return fd;
}

int lock_write_holder(vd_store *s, int fd)
{
	char buf[128];
	const int n = snprintf(buf, sizeof buf, "%d\n%s\n", (int)getpid(),
			       s->st_holder);
	if (ftruncate(fd, 0) < 0)
		return -errno;
	return pwrite_full(fd, buf, (size_t)n, 0);
}

void lock_release(int fd)
{
	if (fd >= 0)
		close(fd); /* drops the flock */
}

int lock_holder(vd_store *s, const char *name, int *pid, char *holder,
		size_t holder_len)
{
	char path[160];
	int fd, held = 0;

	*pid = 0;
	if (holder_len)
		holder[0] = '\0';
	if (lock_path(s, name, path, sizeof path) < 0)
		return 0;
	fd = openat(s->st_dirfd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		read_holder(fd, pid, holder, holder_len);
		held = 1;
	}
	close(fd);
	return held;
}

void lock_unlink(vd_store *s, const char *name)
{
	char path[160];

	if (lock_path(s, name, path, sizeof path) == 0)
		unlinkat(s->st_dirfd, path, 0);
}
