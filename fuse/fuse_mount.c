/* The mount-table side of `vdisk mount` and `vdisk umount`.
 *
 * A vdisk mount is found in /proc/self/mountinfo by its mount point and
 * its type, "fuse.vdisk" (subtype vdisk; the source is "vdisk:VOL[@SNAP]").
 * Its serving process is named by a state file keyed by the FUSE
 * connection's device number (mountinfo's MAJOR:MINOR), written once the
 * mount is live: RUNDIR/mount-MAJOR:MINOR holding the pid.  A server
 * killed with -9 leaves its state file behind; the next umount or mount on
 * that point removes it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fuse/vdfuse.h"

int vdfuse_abspath(const char *dir, char *out, size_t outlen)
{
	char cwd[PATH_MAX], buf[PATH_MAX * 2];
	char *parts[PATH_MAX / 2];
	int n = 0;
	size_t used = 0;

	if (!*dir)
		return -ENOENT;
	if (dir[0] == '/') {
		snprintf(buf, sizeof(buf), "%s", dir);
	} else {
		if (!getcwd(cwd, sizeof(cwd)))
			return -errno;
		snprintf(buf, sizeof(buf), "%s/%s", cwd, dir);
	}
	/* Drop "", "." and resolve ".." lexically. */
	for (char *save, *p = strtok_r(buf, "/", &save); p;
	     p = strtok_r(NULL, "/", &save)) {
		if (strcmp(p, ".") == 0)
			continue;
		if (strcmp(p, "..") == 0) {
			if (n)
				n--;
			continue;
		}
		parts[n++] = p;
	}
	if (outlen < 2)
		return -ENAMETOOLONG;
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		const size_t l = strlen(parts[i]);

		if (used + 1 + l + 1 > outlen)
			return -ENAMETOOLONG;
		out[used++] = '/';
		memcpy(out + used, parts[i], l + 1);
		used += l;
	}
	if (!n)
		strcpy(out, "/");
	/* Symbolic links in the parent are resolved, as the kernel's
	 * mountinfo shows the real path. */
	if (n) {
		char parent[PATH_MAX], real[PATH_MAX];
		char *slash = strrchr(out, '/');
		char last[NAME_MAX + 1];

		snprintf(last, sizeof(last), "%s", slash + 1);
		if (slash == out)
			strcpy(parent, "/");
		else
			snprintf(parent, sizeof(parent), "%.*s",
				 (int)(slash - out), out);
		if (realpath(parent, real)) {
			if (snprintf(out, outlen, "%s/%s",
				     strcmp(real, "/") ? real : "", last) >=
			    (int)outlen)
				return -ENAMETOOLONG;
		}
	}
	return 0;
}

/* Undoes mountinfo's octal escapes (\040 for a space) in place. */
static void unescape(char *s)
{
	char *w = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*w++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 +
				      (s[3] - '0'));
			s += 3;
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
}

int vdfuse_mount_find(const char *absdir, struct vdfuse_mnt *out)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;
	int found = 0;

	if (!f)
		return -errno;
	while (getline(&line, &cap, f) > 0) {
		char *field[12], *save, *p;
		int n = 0, sep = -1;

		for (p = strtok_r(line, " \n", &save); p && n < 12;
		     p = strtok_r(NULL, " \n", &save)) {
			if (sep < 0 && strcmp(p, "-") == 0)
				sep = n;
			field[n++] = p;
		}
		if (n < 5 || sep < 0 || sep + 2 >= n)
			continue;
		unescape(field[4]);
		if (strcmp(field[4], absdir))
			continue;
		/* The last line for a point is the topmost mount. */
		found = 1;
		memset(out, 0, sizeof(*out));
		if (sscanf(field[2], "%u:%u", &out->major, &out->minor) != 2)
			out->major = out->minor = 0;
		snprintf(out->fstype, sizeof(out->fstype), "%s",
			 field[sep + 1]);
		unescape(field[sep + 2]);
		snprintf(out->source, sizeof(out->source), "%s",
			 field[sep + 2]);
	}
	free(line);
	fclose(f);
	return found;
}

static void rundir(char *out, size_t len)
{
	const char *x = getenv("XDG_RUNTIME_DIR");

	if (geteuid() == 0 || !x || !*x)
		snprintf(out, len, geteuid() == 0 ? "/run/vdisk" :
			 "/tmp/vdisk-%u", (unsigned)geteuid());
	else
		snprintf(out, len, "%s/vdisk", x);
}

static void state_path(unsigned major, unsigned minor, char *out, size_t len)
{
	char dir[PATH_MAX - 64];

	rundir(dir, sizeof(dir));
	snprintf(out, len, "%s/mount-%u:%u", dir, major, minor);
}

int vdfuse_state_write(const char *absdir, pid_t pid)
{
	struct vdfuse_mnt m;
	char dir[PATH_MAX - 64], path[PATH_MAX], tmp[PATH_MAX + 8];
	FILE *f;
	int rc = vdfuse_mount_find(absdir, &m);

	if (rc <= 0)
		return rc < 0 ? rc : -ENOENT;
	rundir(dir, sizeof(dir));
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	state_path(m.major, m.minor, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "%ld\n%s\n", (long)pid, absdir);
	if (fclose(f) != 0 || rename(tmp, path) < 0) {
		rc = -errno;
		unlink(tmp);
		return rc;
	}
	return 0;
}

void vdfuse_state_remove(unsigned major, unsigned minor)
{
	char path[PATH_MAX];

	state_path(major, minor, path, sizeof(path));
	unlink(path);
}

static pid_t state_pid(const struct vdfuse_mnt *m)
{
	char path[PATH_MAX];
	long pid = 0;
	FILE *f;

	state_path(m->major, m->minor, path, sizeof(path));
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (fscanf(f, "%ld", &pid) != 1 || pid <= 0)
		pid = 0;
	fclose(f);
	return (pid_t)pid;
}

/* Unmounts ABSDIR: umount2 where we may (root), else fusermount3. */
static int do_unmount(const char *absdir, int lazy)
{
	pid_t pid;
	int st;

	if (umount2(absdir, lazy ? MNT_DETACH : 0) == 0)
		return 0;
	if (errno != EPERM)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", lazy ? "-uzq" : "-uq",
		       "--", absdir, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EBUSY;
}

int vdfuse_clear_stale(const char *absdir)
{
	struct vdfuse_mnt m;
	struct stat st;
	int rc = vdfuse_mount_find(absdir, &m);

	if (rc <= 0 || strcmp(m.fstype, VDFUSE_FSTYPE))
		return rc;
	if (stat(absdir, &st) == 0 || errno != ENOTCONN)
		return 0;
	rc = do_unmount(absdir, 1);
	if (rc < 0)
		return rc;
	vdfuse_state_remove(m.major, m.minor);
	return 1;
}

/* A zombie has exited: its new parent (init, or a subreaper) may take a
 * while to reap it. */
static int process_alive(pid_t pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	size_t n;

	if (pid <= 0 || (kill(pid, 0) < 0 && errno != EPERM))
		return 0;
	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	f = fopen(path, "re");
	if (!f)
		return 1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	p = strrchr(buf, ')'); /* the state follows the command's name */
	return !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

int vdfuse_umount(const char *absdir, char *why, size_t whylen)
{
	struct vdfuse_mnt m;
	char disk[PATH_MAX + 8];
	struct stat st;
	pid_t pid;
	int rc, fd, stale;

	rc = vdfuse_mount_find(absdir, &m);
	if (rc < 0) {
		snprintf(why, whylen, "/proc/self/mountinfo: %s",
			 strerror(-rc));
		return -1;
	}
	if (rc == 0) {
		snprintf(why, whylen, "'%s' is not a mount point", absdir);
		return -1;
	}
	if (strcmp(m.fstype, VDFUSE_FSTYPE)) {
		snprintf(why, whylen, "'%s' is not a vdisk mount (it is %s, "
			 "from %s)", absdir, m.fstype, m.source);
		return -1;
	}
	pid = state_pid(&m);
	stale = stat(absdir, &st) < 0 && errno == ENOTCONN;
	if (!stale) {
		/* Make every acknowledged write durable before the unmount
		 * (the server also seals at exit). */
		snprintf(disk, sizeof(disk), "%s/disk", absdir);
		fd = open(disk, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			if (fsync(fd) < 0 && errno != EROFS) {
				snprintf(why, whylen, "flush of '%s': %s", disk,
					 strerror(errno));
				close(fd);
				return -1;
			}
			close(fd);
		}
	}
	rc = do_unmount(absdir, stale);
	if (rc < 0) {
		snprintf(why, whylen, "cannot unmount '%s': %s", absdir,
			 rc == -EBUSY ? "it is busy (a file is open in it?)" :
			 strerror(-rc));
		return -1;
	}
	/* The server exits once it has sealed and closed the volume; wait for
	 * that, so the volume is free when we return. */
	for (int i = 0; process_alive(pid); i++) {
		const struct timespec ms10 = { 0, 10 * 1000 * 1000 };

		if (i == 12000) {
			snprintf(why, whylen, "unmounted, but its server (pid "
				 "%ld) has not exited after 120 s", (long)pid);
			return -1;
		}
		nanosleep(&ms10, NULL);
	}
	vdfuse_state_remove(m.major, m.minor);
	return 0;
}
