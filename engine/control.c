/* The control socket: how another process snapshots a volume we hold.
 *
 * A process that opens a volume head for writing listens on an abstract
 * Unix socket named "vdisk-<store uuid>-<pid>" (no file to clean up; it
 * vanishes with the process).  The protocol is one line each way:
 *   request:  "SNAPSHOT <vol> <snap>\n"  or  "SETTLE <vol> <snap>\n"
 *   reply:    "<status> <message>\n"   status is 0 or a vdisk/errno code
 * Only the holder's own user and root may ask (SO_PEERCRED).
 * SNAPSHOT: the holder takes the snapshot with writes held back for an
 * instant, so it holds every write acknowledged before the request
 * arrived.  SETTLE: the holder seals what it still holds of snapshot
 * VOL@SNAP's epoch, so that the index shows it whole (before another
 * process reads, clones or removes it).
 * What the holder does is the handler passed to control_start (volume.c);
 * this file is only the transport.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/io.h"
#include "engine/internal.h"

#define REQUEST_MAX 256
#define REPLY_TIMEOUT_MS (120 * 1000)

static socklen_t control_addr(const vd_store *s, int pid, struct sockaddr_un *a)
{
	int n;

	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	n = snprintf(a->sun_path + 1, sizeof a->sun_path - 1, "vdisk-");
	for (int i = 0; i < 16; i++)
		n += snprintf(a->sun_path + 1 + n, sizeof a->sun_path - 1 - n,
			      "%02x", s->st_uuid[i]);
	n += snprintf(a->sun_path + 1 + n, sizeof a->sun_path - 1 - n, "-%d", pid);
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

static void serve_one(vd_store *s, int fd)
{
	char req[REQUEST_MAX + 1], vol[VD_NAME_MAX + 1], snap[VD_NAME_MAX + 1];
	char reply[600];
	struct pollfd p = { .fd = fd, .events = POLLIN };
	struct ucred peer;
	socklen_t plen = sizeof peer;
	size_t got = 0;
	int r = -EINVAL;

	/* An abstract socket has no file permissions: only our own user (or
	 * root) may ask, as only they could open the store's lock files. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &plen) < 0 ||
	    (peer.uid != geteuid() && peer.uid != 0)) {
		static const char no[] = "-13 not allowed\n";
		(void)write_full(fd, no, sizeof no - 1);
		return;
	}
	/* Read one line, with a deadline, from a client we trust little. */
	while (got < REQUEST_MAX && poll(&p, 1, 5000) == 1) {
		const ssize_t n = read(fd, req + got, REQUEST_MAX - got);
		if (n <= 0)
			break;
		got += n;
		if (memchr(req, '\n', got))
			break;
	}
	req[got] = '\0';
	if (sscanf(req, "SNAPSHOT %64s %64s", vol, snap) == 2 &&
	    vd_name_valid(vol) && vd_name_valid(snap)) {
		err_begin("vd_snapshot_create");
		r = err_end(s->st_ctl_snapshot(s, vol, snap));
	} else if (sscanf(req, "SETTLE %64s %64s", vol, snap) == 2 &&
		   vd_name_valid(vol) && vd_name_valid(snap)) {
		err_begin("snapshot_settle");
		r = err_end(s->st_ctl_settle(s, vol, snap));
	} else {
		SET_ERROR(r, "malformed control request");
	}
	/* The requester names the call itself: send the message alone. */
	snprintf(reply, sizeof reply, "%d %s\n", r, r ? err_detail() : "ok");
	(void)write_full(fd, reply, strlen(reply)); /* gone: nothing to tell */
}

static void *control_main(void *arg)
{
	vd_store *s = arg;

	pthread_setname_np(pthread_self(), "vd-control");

	for (;;) {
		const int fd = accept4(s->st_ctl_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break; /* shut down */
		}
		serve_one(s, fd);
		close(fd);
	}
	return NULL;
}

int control_start(vd_store *s, control_snapshot_fn fn,
		  control_snapshot_fn settle)
{
	struct sockaddr_un a;
	socklen_t len;
	int fd, r;

	pthread_mutex_lock(&s->st_ctl_lock);
	if (s->st_ctl_started) {
		pthread_mutex_unlock(&s->st_ctl_lock);
		return 0;
	}
	len = control_addr(s, getpid(), &a);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, len) < 0 ||
	    listen(fd, 16) < 0) {
		r = SET_ERROR(-errno, "control socket: %s", strerror(errno));
		if (fd >= 0)
			close(fd);
		pthread_mutex_unlock(&s->st_ctl_lock);
		return r;
	}
	s->st_ctl_fd = fd;
	s->st_ctl_snapshot = fn;
	s->st_ctl_settle = settle;
	r = -pthread_create(&s->st_ctl_thread, NULL, control_main, s);
	if (r < 0) {
		close(fd);
		s->st_ctl_fd = -1;
	} else {
		s->st_ctl_started = true;
	}
	pthread_mutex_unlock(&s->st_ctl_lock);
	return r;
}

void control_stop(vd_store *s)
{
	if (!s->st_ctl_started)
		return;
	shutdown(s->st_ctl_fd, SHUT_RDWR); /* wakes accept() */
	pthread_join(s->st_ctl_thread, NULL);
	close(s->st_ctl_fd);
	s->st_ctl_fd = -1;
	s->st_ctl_started = false;
}

/* Sends "VERB VOL SNAP" to PID and returns its answer. */
static int control_request(vd_store *s, int pid, const char *verb,
			   const char *vol, const char *snap)
{
	struct sockaddr_un a;
	const socklen_t len = control_addr(s, pid, &a);
	char req[REQUEST_MAX], reply[600];
	struct pollfd p;
	size_t got = 0;
	int fd, status, off = 0;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return SET_ERROR(-errno, "control socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&a, len) < 0) {
		close(fd);
		return SET_ERROR(VD_EBUSY, "'%s' is held by pid %d, which does not "
				 "answer snapshot requests", vol, pid);
	}
	snprintf(req, sizeof req, "%s %s %s\n", verb, vol, snap);
	if (write_full(fd, req, strlen(req)) < 0) {
		close(fd);
		return SET_ERROR(-EIO, "control request to pid %d failed", pid);
	}
	p.fd = fd;
	p.events = POLLIN;
	while (got < sizeof reply - 1 && poll(&p, 1, REPLY_TIMEOUT_MS) == 1) {
		const ssize_t n = read(fd, reply + got, sizeof reply - 1 - got);
		if (n <= 0)
			break;
		got += n;
		if (memchr(reply, '\n', got))
			break;
	}
	close(fd);
	reply[got] = '\0';
	if (sscanf(reply, "%d %n", &status, &off) != 1)
		return SET_ERROR(-EIO, "no answer from pid %d holding '%s'", pid, vol);
	if (status == 0)
		return 0;
	if (status > 0)
		status = -EIO; /* not a code we send */
	reply[strcspn(reply, "\n")] = '\0';
	return SET_ERROR(status, "%s (via pid %d)", reply + off, pid);
}

int control_request_snapshot(vd_store *s, int pid, const char *vol,
			     const char *snap)
{
	return control_request(s, pid, "SNAPSHOT", vol, snap);
}

int control_request_settle(vd_store *s, int pid, const char *vol,
			   const char *snap)
{
	return control_request(s, pid, "SETTLE", vol, snap);
}
