/* vdisk NBD server: service-manager integration, by hand (no libsystemd).
 *
 *  - Socket activation (sd_listen_fds(3)): when LISTEN_PID is this process,
 *    LISTEN_FDS listening sockets start at fd 3, named by the
 *    colon-separated LISTEN_FDNAMES.  They are taken as the listeners and
 *    the variables are removed, so children never see them.  Only
 *    listening stream sockets are accepted (Accept=no in the .socket unit).
 *  - Readiness (sd_notify(3)): "READY=1" once the listeners accept
 *    connections, "STOPPING=1" when a signal starts the shutdown, as
 *    datagrams to the AF_UNIX socket NOTIFY_SOCKET (abstract if it starts
 *    with '@').  No NOTIFY_SOCKET: nothing is sent.
 *  - The pidfile: written (write-temp-then-rename) once listening, removed
 *    on a clean exit only if it still holds our pid.
 *
 * All of this runs on the main thread, before connection threads start or
 * after they are gone, except nbd_notify(), which is thread-safe.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "nbd/nbd.h"

#define SD_LISTEN_FDS_START 3

/* Parses a decimal number that must be all of S; -1 if it is not. */
static long parse_num(const char *s)
{
	char *end;
	long v;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	return errno || *end || v < 0 ? -1 : v;
}

/* Copies the I-th colon-separated name of NAMES (or "" if absent). */
static void nth_name(const char *names, int i, char *out, size_t len)
{
	const char *p = names, *colon;

	out[0] = '\0';
	for (; p && i > 0; i--) {
		p = strchr(p, ':');
		if (p)
			p++;
	}
	if (!p)
		return;
	colon = strchr(p, ':');
	snprintf(out, len, "%.*s", colon ? (int)(colon - p) : (int)strlen(p),
		 p);
}

int nbd_listener_from_env(struct nbd_listener *l, char *err, size_t errlen)
{
	const char *names = getenv("LISTEN_FDNAMES");
	const long pid = parse_num(getenv("LISTEN_PID"));
	const long n = parse_num(getenv("LISTEN_FDS"));
	size_t used = 0;
	int i;

	if (pid != (long)getpid() || n <= 0)
		return 0;
	if (n > NBD_MAX_LISTENERS) {
		snprintf(err, errlen, "socket activation passed %ld sockets; "
			 "at most %d are served", n, NBD_MAX_LISTENERS);
		return -1;
	}
	used = (size_t)snprintf(l->where, sizeof(l->where), "systemd:");
	for (i = 0; i < n; i++) {
		const int fd = SD_LISTEN_FDS_START + i;
		int accepting = 0, type = 0;
		socklen_t sl = sizeof(accepting);
		char name[64];

		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting,
			       &sl) < 0 ||
		    (sl = sizeof(type),
		     getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &sl) < 0) ||
		    !accepting || type != SOCK_STREAM) {
			snprintf(err, errlen, "socket activation: fd %d is not "
				 "a listening stream socket (use Accept=no)",
				 fd);
			return -1;
		}
		if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
			snprintf(err, errlen, "fd %d: %s", fd, strerror(errno));
			return -1;
		}
		l->fds[l->nfds++] = fd;
		nth_name(names, i, name, sizeof(name));
		if (!name[0])
			snprintf(name, sizeof(name), "fd%d", fd);
		if (used < sizeof(l->where))
			used += (size_t)snprintf(l->where + used,
						 sizeof(l->where) - used,
						 "%s%s", i ? "," : "", name);
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return 1;
}

void nbd_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@'))
		return;
	len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		return;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract namespace */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL,
		   (const struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) <
	    0)
		nbd_log("NOTIFY_SOCKET '%s': %s", path, strerror(errno));
	close(fd);
}

int nbd_pidfile_write(const char *path)
{
	char *tmp = NULL, buf[32];
	int fd, n, ok;

	if (asprintf(&tmp, "%s.%ld.tmp", path, (long)getpid()) < 0)
		return -1;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		nbd_log("pidfile '%s': %s", tmp, strerror(errno));
		free(tmp);
		return -1;
	}
	n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	ok = write(fd, buf, (size_t)n) == n;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) < 0) {
		nbd_log("pidfile '%s': %s", path, strerror(errno ? errno : EIO));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

void nbd_pidfile_remove(const char *path)
{
	char buf[32];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	if (strtol(buf, NULL, 10) == (long)getpid())
		unlink(path);
}
