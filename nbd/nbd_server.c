/* vdisk NBD server: listening sockets, signals, connections, exports.
 *
 * Design
 *  - The main thread polls the listening sockets and a self-pipe written by
 *    the SIGINT/SIGTERM handler.  Each accepted socket gets a detached
 *    connection thread (nbd_conn.c), linked into srv->conns.
 *  - Exports are resolved when a client asks (NBD_OPT_INFO/GO/EXPORT_NAME,
 *    meta contexts, LIST), so volumes and snapshots created by other vdisk
 *    commands are served without a restart.  "VOL" is the volume head
 *    (read-write unless --read-only), "VOL@SNAP" a read-only snapshot.
 *    Export names given on the command line restrict the set, and the first
 *    of them is the default export (the empty name).
 *  - The export registry opens each volume once per server and counts the
 *    connections using it; the last one to leave closes it (outside the
 *    registry lock: the close seals what was written), which lets other
 *    processes take it.  INFO and LIST use vd_info_get()
 *    and open nothing.
 *  - Listeners come from --socket, --listen or systemd socket activation
 *    (nbd_service.c), which also sends READY=1 once they accept and
 *    STOPPING=1 at the first signal, and keeps the pidfile.
 *  - Shutdown: the first signal closes the listeners (removing the socket
 *    file), shuts down the read side of every connection, waits for each to
 *    finish its in-flight requests and release its volume (flushing it),
 *    then returns 0.  A second signal exits at once with status 1.
 *
 * Locks: srv->lock guards the connection list and count; srv->reg_lock the
 * registry.  Neither is held while talking to a client.
 *
 * Known limits: a Unix socket is bound under a temporary name and renamed
 * into place once listening; two servers started at the same instant on
 * one path can both pass the "is anyone listening" probe, and the later
 * rename wins.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "engine/vdisk.h"
#include "nbd/nbd.h"

#define MAX_CONNECTIONS 256

struct nbd_export {
	struct nbd_export *next;
	char name[NBD_EXPORT_NAME_MAX];
	vd_volume *vol;
	unsigned refs;
	int readonly;
};

struct nbd_server {
	vd_store *store;
	const struct nbd_serve_options *opts;
	uint32_t chunk_size;
	struct nbd_exports_ops ops;

	pthread_mutex_t lock;
	pthread_cond_t gone; /* a connection finished */
	struct nbd_conn *conns;
	unsigned nconns;

	pthread_mutex_t reg_lock;
	struct nbd_export *exports;

	struct nbd_tls *tls; /* NULL: TLS off */

	pthread_mutex_t budget_lock; /* the in-flight bytes of every connection */
	pthread_cond_t budget_room;
	size_t inflight;
};

/* ---- logging ------------------------------------------------------------- */

void nbd_log(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	memcpy(buf, "vdisk serve: ", 13);
	va_start(ap, fmt);
	n = vsnprintf(buf + 13, sizeof(buf) - 14, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	n += 13;
	if ((size_t)n > sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	/* One write, so lines from different threads never mix. */
	if (write(STDERR_FILENO, buf, (size_t)n) < 0) {
		/* nowhere to report it */
	}
}

/* ---- exports ------------------------------------------------------------- */

struct point {
	char vol[VD_NAME_MAX + 1];
	char snap[VD_NAME_MAX + 1]; /* "" for the head */
	char name[NBD_EXPORT_NAME_MAX];
};

static int is_listed(const struct nbd_serve_options *o, const char *name)
{
	int i;

	for (i = 0; i < o->nexports; i++)
		if (!strcmp(o->exports[i], name))
			return 1;
	return 0;
}

/* Turns a client's export name into a point, or an error for the client. */
static uint32_t resolve(struct nbd_server *srv, const char *name,
			struct point *p, char *msg, size_t msglen)
{
	struct vd_point vp;
	char why[VD_POINT_WHY_MAX];

	memset(p, 0, sizeof(*p));
	if (!*name) {
		if (srv->opts->nexports == 0) {
			snprintf(msg, msglen,
				 "no default export: name a volume or "
				 "VOL@SNAP (nbdinfo --list shows them)");
			return NBD_REP_ERR_UNKNOWN;
		}
		name = srv->opts->exports[0];
	}
	if (vd_point_parse(name, &vp, why, sizeof(why)) < 0) {
		snprintf(msg, msglen, "no export named '%.200s' (%s)", name, why);
		return NBD_REP_ERR_UNKNOWN;
	}
	if (srv->opts->nexports && !is_listed(srv->opts, name)) {
		snprintf(msg, msglen, "no export named '%.200s'", name);
		return NBD_REP_ERR_UNKNOWN;
	}
	memcpy(p->vol, vp.vol, sizeof(p->vol));
	memcpy(p->snap, vp.snap, sizeof(p->snap));
	snprintf(p->name, sizeof(p->name), "%s", name);
	return 0;
}

static void describe(const struct vd_info *in, char *buf, size_t len)
{
	if (in->snap[0])
		snprintf(buf, len, "vdisk snapshot %s@%s (read-only)", in->vol,
			 in->snap);
	else if (in->origin_vol[0])
		snprintf(buf, len, "vdisk volume %s, clone of %s@%s", in->vol,
			 in->origin_vol, in->origin_snap);
	else
		snprintf(buf, len, "vdisk volume %s", in->vol);
}

static uint32_t engine_failure(int rc, const struct point *p, char *msg,
			       size_t msglen)
{
	if (rc == VD_ENOVOL || rc == VD_ENOSNAP || rc == VD_ENAME)
		snprintf(msg, msglen, "no export named '%s'", p->name);
	else
		snprintf(msg, msglen, "export '%s': %s", p->name,
			 vd_last_error()[0] ? vd_last_error() : vd_strerror(rc));
	return NBD_REP_ERR_UNKNOWN;
}

static struct nbd_export *registry_find(struct nbd_server *srv,
					const char *name)
{
	struct nbd_export *e;

	for (e = srv->exports; e; e = e->next)
		if (!strcmp(e->name, name))
			return e;
	return NULL;
}

static uint32_t ops_info(void *opaque, const char *name,
			 struct nbd_export_desc *d, char *msg, size_t msglen)
{
	struct nbd_server *srv = opaque;
	struct vd_info info;
	struct point p;
	uint32_t err;
	int rc;

	memset(d, 0, sizeof(*d));
	err = resolve(srv, name, &p, msg, msglen);
	if (err)
		return err;
	rc = vd_info_get(srv->store, p.vol, p.snap[0] ? p.snap : NULL, 0,
			 &info);
	if (rc < 0)
		return engine_failure(rc, &p, msg, msglen);
	snprintf(d->name, sizeof(d->name), "%s", p.name);
	describe(&info, d->description, sizeof(d->description));
	d->size = info.size;
	d->readonly = p.snap[0] || srv->opts->readonly;
	d->preferred_block = srv->chunk_size;
	return 0;
}

static uint32_t ops_open(void *opaque, const char *name,
			 struct nbd_export_desc *d, void **handle, char *msg,
			 size_t msglen)
{
	struct nbd_server *srv = opaque;
	struct nbd_export *e;
	struct vd_info info;
	struct point p;
	vd_volume *v;
	uint32_t err;
	unsigned flags;
	int rc;

	memset(d, 0, sizeof(*d));
	*handle = NULL;
	err = resolve(srv, name, &p, msg, msglen);
	if (err)
		return err;

	pthread_mutex_lock(&srv->reg_lock);
	e = registry_find(srv, p.name);
	if (!e) {
		flags = srv->opts->readonly ? VD_OPEN_RDONLY : 0;
		rc = vd_volume_open(srv->store, p.vol,
				    p.snap[0] ? p.snap : NULL, flags, &v);
		if (rc < 0) {
			err = engine_failure(rc, &p, msg, msglen);
			pthread_mutex_unlock(&srv->reg_lock);
			return err;
		}
		e = calloc(1, sizeof(*e));
		if (!e) {
			vd_volume_close(v);
			pthread_mutex_unlock(&srv->reg_lock);
			snprintf(msg, msglen, "out of memory");
			return NBD_REP_ERR_UNKNOWN;
		}
		memcpy(e->name, p.name, sizeof(e->name));
		e->vol = v;
		e->readonly = vd_volume_is_readonly(v) || p.snap[0] ||
			      srv->opts->readonly;
		e->next = srv->exports;
		srv->exports = e;
	}
	e->refs++;
	pthread_mutex_unlock(&srv->reg_lock);

	snprintf(d->name, sizeof(d->name), "%s", p.name);
	d->size = vd_volume_size(e->vol);
	d->readonly = e->readonly;
	d->preferred_block = vd_volume_chunk_size(e->vol);
	if (vd_info_get(srv->store, p.vol, p.snap[0] ? p.snap : NULL, 0,
			&info) == 0)
		describe(&info, d->description, sizeof(d->description));
	*handle = e;
	return 0;
}

struct list_ctx {
	struct nbd_server *srv;
	struct nbd_list_item *items;
	size_t n, cap;
};

static int list_add(void *opaque, const struct vd_info *info)
{
	struct list_ctx *lc = opaque;
	struct nbd_list_item *it;
	char name[NBD_EXPORT_NAME_MAX];

	if (info->snap[0])
		snprintf(name, sizeof(name), "%s@%s", info->vol, info->snap);
	else
		snprintf(name, sizeof(name), "%s", info->vol);
	if (lc->srv->opts->nexports && !is_listed(lc->srv->opts, name))
		return 0;
	if (lc->n == lc->cap) {
		const size_t cap = lc->cap ? 2 * lc->cap : 16;

		it = realloc(lc->items, cap * sizeof(*it));
		if (!it)
			return -ENOMEM;
		lc->items = it;
		lc->cap = cap;
	}
	it = &lc->items[lc->n++];
	memcpy(it->name, name, sizeof(it->name));
	describe(info, it->description, sizeof(it->description));
	return 0;
}

static uint32_t ops_list(void *opaque, struct nbd_list_item **items,
			 size_t *n, char *msg, size_t msglen)
{
	struct list_ctx lc = { .srv = opaque };
	int rc;

	/* Collect first: no engine walk stays open while we talk. */
	rc = vd_list(lc.srv->store, 0, list_add, &lc);
	if (rc < 0) {
		free(lc.items);
		snprintf(msg, msglen, "cannot list exports: %s",
			 vd_strerror(rc));
		return NBD_REP_ERR_PLATFORM;
	}
	*items = lc.items;
	*n = lc.n;
	return 0;
}

unsigned nbd_server_busy_poll_us(const struct nbd_server *srv)
{
	return srv->opts->busy_poll_us;
}

struct vd_volume *nbd_server_volume(void *handle)
{
	return ((struct nbd_export *)handle)->vol;
}

void nbd_server_release(struct nbd_server *srv, void *handle)
{
	struct nbd_export *e = handle, **pp;
	int rc;

	pthread_mutex_lock(&srv->reg_lock);
	if (--e->refs > 0) {
		pthread_mutex_unlock(&srv->reg_lock);
		return;
	}
	for (pp = &srv->exports; *pp != e; pp = &(*pp)->next)
		;
	*pp = e->next;
	pthread_mutex_unlock(&srv->reg_lock);
	/* Closed outside the lock: the close seals what the export wrote,
	 * which can take seconds, and must not hold up other connections.
	 * A new connection to the same name meanwhile opens the volume again
	 * and shares the engine's handle, still open until this close ends. */
	rc = vd_volume_close(e->vol);
	if (rc < 0)
		nbd_log("export '%s': sealing on close failed: %s", e->name,
			vd_strerror(rc));
	free(e);
}

/* ---- in-flight budget ---------------------------------------------------- */

/* Request bytes in flight (READ and WRITE lengths of requests read and not
 * yet answered, plus a bookkeeping cost each) over every connection
 * together: a bound per connection let N clients hold N times it.  16 MiB
 * is 16 requests of 1 MiB: more buffered gains no throughput.  A
 * connection that has nothing in flight never waits, so a client that
 * holds the budget (one that stops reading its replies) slows the others
 * to one request at a time and never stops them: the total can exceed the
 * budget by one request per other connection.  Requests of at most
 * NBD_SERVER_SMALL bytes never wait either (they are counted), so small
 * reads overtake a slow large one as they did with a budget per
 * connection; a connection's workers hold at most a few of them. */
#define NBD_SERVER_INFLIGHT (16u * 1024 * 1024)
#define NBD_SERVER_SMALL (128u * 1024)

void nbd_server_charge(struct nbd_server *srv, size_t *mine, size_t cost)
{
	pthread_mutex_lock(&srv->budget_lock);
	while (*mine && cost > NBD_SERVER_SMALL &&
	       srv->inflight + cost > NBD_SERVER_INFLIGHT)
		pthread_cond_wait(&srv->budget_room, &srv->budget_lock);
	*mine += cost;
	srv->inflight += cost;
	pthread_mutex_unlock(&srv->budget_lock);
}

void nbd_server_uncharge(struct nbd_server *srv, size_t *mine, size_t cost)
{
	pthread_mutex_lock(&srv->budget_lock);
	*mine -= cost;
	srv->inflight -= cost;
	/* At most one waiter per connection (the one receiving); any of
	 * them may fit now. */
	pthread_cond_broadcast(&srv->budget_room);
	pthread_mutex_unlock(&srv->budget_lock);
}

const struct nbd_tls *nbd_server_tls(struct nbd_server *srv, int *mode)
{
	*mode = srv->opts->tls;
	return srv->tls;
}

const struct nbd_exports_ops *nbd_server_ops(struct nbd_server *srv)
{
	return &srv->ops;
}

/* ---- listening sockets --------------------------------------------------- */

static int listener_fail(struct nbd_listener *l, char *err, size_t errlen,
			 const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int listener_fail(struct nbd_listener *l, char *err, size_t errlen,
			 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	nbd_listener_close(l);
	return -1;
}

static int open_unix(const char *path, struct nbd_listener *l, char *err,
		     size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *bind_path;
	struct stat st;
	mode_t old;
	char *tmp = NULL;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return listener_fail(l, err, errlen,
				     "socket path '%s' is too long (at most "
				     "%zu bytes)", path, sizeof(sa.sun_path) - 1);
	l->path = strdup(path);
	if (!l->path)
		return listener_fail(l, err, errlen, "out of memory");
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return listener_fail(l, err, errlen,
					     "'%s' exists and is not a socket",
					     path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return listener_fail(l, err, errlen, "socket: %s",
					     strerror(errno));
		strcpy(sa.sun_path, path);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(fd);
			return listener_fail(l, err, errlen,
					     "a server is already listening on "
					     "'%s'", path);
		}
		if (errno != ECONNREFUSED) {
			const int e = errno;

			close(fd);
			return listener_fail(l, err, errlen, "'%s': %s", path,
					     strerror(e));
		}
		close(fd);
		/* Stale: a killed server's.  Replaced below. */
	} else if (errno != ENOENT) {
		return listener_fail(l, err, errlen, "'%s': %s", path,
				     strerror(errno));
	}

	if (asprintf(&tmp, "%s.%ld.tmp", path, (long)getpid()) < 0)
		return listener_fail(l, err, errlen, "out of memory");
	if (strlen(tmp) >= sizeof(sa.sun_path)) {
		/* No room for a temporary name: bind in place. */
		free(tmp);
		tmp = NULL;
		unlink(path);
	} else {
		unlink(tmp);
	}
	l->tmppath = tmp;
	bind_path = tmp ? tmp : path;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return listener_fail(l, err, errlen, "socket: %s",
				     strerror(errno));
	l->fds[l->nfds++] = fd;
	memset(sa.sun_path, 0, sizeof(sa.sun_path));
	strcpy(sa.sun_path, bind_path);
	old = umask(0177); /* created mode 0600 */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		const int e = errno;

		umask(old);
		if (!tmp) {
			/* Never unlink someone else's file on failure. */
			free(l->path);
			l->path = NULL;
		}
		return listener_fail(l, err, errlen, "bind '%s': %s",
				     bind_path, strerror(e));
	}
	umask(old);
	if (listen(fd, SOMAXCONN) < 0)
		return listener_fail(l, err, errlen, "listen '%s': %s",
				     bind_path, strerror(errno));
	if (!tmp && stat(path, &st) == 0) {
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	snprintf(l->where, sizeof(l->where), "unix:%s", path);
	return 0;
}

/* Splits "HOST[:PORT]", "[V6]:PORT", ":PORT" or "PORT". */
static int split_hostport(const char *s, char *host, size_t hostlen,
			  char *port, size_t portlen)
{
	const char *colon;

	snprintf(port, portlen, "%s", NBD_DEFAULT_PORT);
	host[0] = '\0';
	if (!s || !*s)
		return 0;
	if (strspn(s, "0123456789") == strlen(s)) {
		snprintf(port, portlen, "%s", s);
		return 0;
	}
	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (!end || (end[1] && end[1] != ':'))
			return -1;
		snprintf(host, hostlen, "%.*s", (int)(end - s - 1), s + 1);
		if (end[1] == ':')
			snprintf(port, portlen, "%s", end + 2);
		return 0;
	}
	colon = strrchr(s, ':');
	if (colon && strchr(s, ':') == colon) {
		snprintf(host, hostlen, "%.*s", (int)(colon - s), s);
		snprintf(port, portlen, "%s", colon + 1);
	} else {
		snprintf(host, hostlen, "%s", s); /* bare IPv6 or a name */
	}
	return 0;
}

static int open_tcp(const char *addr, struct nbd_listener *l, char *err,
		    size_t errlen)
{
	struct addrinfo hints, *res = NULL, *ai;
	char host[256], port[32];
	int fd, one = 1, rc, last_errno = 0;

	if (split_hostport(addr, host, sizeof(host), port, sizeof(port)) ||
	    !port[0] || strspn(port, "0123456789") != strlen(port))
		return listener_fail(l, err, errlen,
				     "invalid address '%s' (HOST[:PORT])",
				     addr);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV; /* no host: loopback addresses */
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc)
		return listener_fail(l, err, errlen, "'%s': %s", addr,
				     gai_strerror(rc));
	for (ai = res; ai && l->nfds < NBD_MAX_LISTENERS; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one,
				   sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 ||
		    listen(fd, SOMAXCONN) < 0) {
			last_errno = errno;
			close(fd);
			continue;
		}
		l->fds[l->nfds++] = fd;
	}
	freeaddrinfo(res);
	if (l->nfds == 0)
		return listener_fail(l, err, errlen, "cannot listen on %s:%s: %s",
				     host[0] ? host : "localhost", port,
				     strerror(last_errno));
	snprintf(l->where, sizeof(l->where), "tcp:%.100s:%.16s",
		 host[0] ? host : "localhost", port);
	return 0;
}

int nbd_listener_open(const struct nbd_serve_options *opts,
		      struct nbd_listener *l, char *err, size_t errlen)
{
	int i;

	memset(l, 0, sizeof(*l));
	for (i = 0; i < NBD_MAX_LISTENERS; i++)
		l->fds[i] = -1;
	if (!opts->socket_path && !opts->listen_addr) {
		i = nbd_listener_from_env(l, err, errlen);
		if (i != 0)
			return i < 0 ? -1 : 0;
	}
	if (opts->socket_path)
		return open_unix(opts->socket_path, l, err, errlen);
	return open_tcp(opts->listen_addr, l, err, errlen);
}

/* Moves a Unix socket from its temporary name into place. */
static int listener_activate(struct nbd_listener *l)
{
	struct stat st;

	if (!l->tmppath)
		return 0;
	if (rename(l->tmppath, l->path) < 0) {
		nbd_log("rename '%s' to '%s': %s", l->tmppath, l->path,
			strerror(errno));
		return -1;
	}
	free(l->tmppath);
	l->tmppath = NULL;
	if (stat(l->path, &st) == 0) {
		l->dev = st.st_dev;
		l->ino = st.st_ino;
	}
	return 0;
}

void nbd_listener_close(struct nbd_listener *l)
{
	struct stat st;
	int i;

	for (i = 0; i < l->nfds; i++)
		if (l->fds[i] >= 0)
			close(l->fds[i]);
	l->nfds = 0;
	if (l->tmppath) {
		unlink(l->tmppath);
	} else if (l->path && l->ino && stat(l->path, &st) == 0 &&
		   st.st_dev == l->dev && st.st_ino == l->ino) {
		unlink(l->path);
	}
	free(l->tmppath);
	free(l->path);
	l->tmppath = NULL;
	l->path = NULL;
}

/* ---- signals ------------------------------------------------------------- */

static int sig_pipe[2] = { -1, -1 };

static void on_signal(int sig)
{
	const unsigned char b = (unsigned char)sig;
	const int saved = errno;

	if (write(sig_pipe[1], &b, 1) < 0) {
		/* the pipe is full: a signal is already pending */
	}
	errno = saved;
}

static int signals_install(void)
{
	struct sigaction sa;

	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	return 0;
}

/* Returns the signal number pending on the pipe, or 0. */
static int signal_pending(void)
{
	unsigned char b;

	return read(sig_pipe[0], &b, 1) == 1 ? b : 0;
}

/* ---- connections --------------------------------------------------------- */

static void peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0 ||
	    ss.ss_family == AF_UNIX) {
		snprintf(buf, len, "unix");
		return;
	}
	if (getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv,
			sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV))
		snprintf(buf, len, "tcp");
	else
		snprintf(buf, len, "%.64s:%.16s", host, serv);
}

static void accept_one(struct nbd_server *srv, int lfd, unsigned *next_id)
{
	pthread_attr_t attr;
	struct nbd_conn *c;
	pthread_t t;
	char peer[96];
	int fd, one = 1;

	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE || errno == ENOMEM) {
			nbd_log("accept: %s", strerror(errno));
			usleep(100 * 1000);
		}
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	peer_name(fd, peer, sizeof(peer));
	pthread_mutex_lock(&srv->lock);
	if (srv->nconns >= MAX_CONNECTIONS) {
		pthread_mutex_unlock(&srv->lock);
		nbd_log("%s: refused: %d connections already", peer,
			MAX_CONNECTIONS);
		close(fd);
		return;
	}
	c = nbd_conn_new(srv, fd, ++*next_id, peer);
	if (!c) {
		pthread_mutex_unlock(&srv->lock);
		close(fd);
		return;
	}
	nbd_conn_link(c)->next = srv->conns;
	nbd_conn_link(c)->prev = NULL;
	if (srv->conns)
		nbd_conn_link(srv->conns)->prev = c;
	srv->conns = c;
	srv->nconns++;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &attr, nbd_conn_main, c)) {
		srv->conns = nbd_conn_link(c)->next;
		if (srv->conns)
			nbd_conn_link(srv->conns)->prev = NULL;
		srv->nconns--;
		nbd_conn_free(c);
		nbd_log("%s: refused: cannot start a thread", peer);
	}
	pthread_attr_destroy(&attr);
	pthread_mutex_unlock(&srv->lock);
}

void nbd_server_conn_done(struct nbd_server *srv, struct nbd_conn *c)
{
	struct nbd_conn_link *l = nbd_conn_link(c);

	pthread_mutex_lock(&srv->lock);
	if (l->prev)
		nbd_conn_link(l->prev)->next = l->next;
	else
		srv->conns = l->next;
	if (l->next)
		nbd_conn_link(l->next)->prev = l->prev;
	nbd_conn_free(c);
	srv->nconns--;
	pthread_cond_broadcast(&srv->gone);
	pthread_mutex_unlock(&srv->lock);
}

/* ---- main loop ----------------------------------------------------------- */

static void drain(struct nbd_server *srv)
{
	struct nbd_conn *c;
	struct timespec ts;
	int sig;

	pthread_mutex_lock(&srv->lock);
	for (c = srv->conns; c; c = nbd_conn_link(c)->next)
		nbd_conn_stop(c);
	if (srv->nconns)
		nbd_log("waiting for %u connection(s) to finish", srv->nconns);
	while (srv->nconns) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 200 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&srv->gone, &srv->lock, &ts);
		sig = signal_pending();
		if (sig) {
			nbd_log("signal %d again: exiting without waiting",
				sig);
			_exit(1);
		}
	}
	pthread_mutex_unlock(&srv->lock);
}

int nbd_serve(vd_store *store, struct nbd_listener *l,
	      const struct nbd_serve_options *opts)
{
	struct nbd_server srv;
	struct pollfd pfd[NBD_MAX_LISTENERS + 1];
	struct vd_store_info si;
	struct nbd_export *e;
	unsigned next_id = 0;
	int i, sig = 0;

	memset(&srv, 0, sizeof(srv));
	srv.store = store;
	srv.opts = opts;
	srv.chunk_size = vd_store_info(store, &si) == 0 ? si.chunk_size : 4096;
	srv.ops = (struct nbd_exports_ops){ ops_list, ops_info, ops_open, &srv };
	pthread_mutex_init(&srv.lock, NULL);
	pthread_cond_init(&srv.gone, NULL);
	pthread_mutex_init(&srv.reg_lock, NULL);
	pthread_mutex_init(&srv.budget_lock, NULL);
	pthread_cond_init(&srv.budget_room, NULL);

	/* Request buffers over 4 MiB are mmapped and unmapped when freed,
	 * instead of lingering in malloc arenas (this also stops glibc from
	 * raising the threshold dynamically). */
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	/* One malloc arena for every thread.  glibc gives threads arenas of
	 * their own (up to 8 per core), and what one thread frees stays in
	 * its arena, unused by the others: with the engine's sealer,
	 * compactor and 4 workers per connection, that free memory was a
	 * third of the peak RSS (README "Memory").  Allocation is not where
	 * a request's time goes: the buffers are pooled. */
	mallopt(M_ARENA_MAX, 1);
	if (opts->tls != NBD_TLS_OFF) {
		char err[512];

		srv.tls = nbd_tls_new(opts, err, sizeof(err));
		if (!srv.tls) {
			nbd_log("%s", err);
			return 1;
		}
	}
	if (signals_install() < 0) {
		nbd_log("cannot install signal handlers: %s", strerror(errno));
		nbd_tls_free(srv.tls);
		return 1;
	}
	if (listener_activate(l) < 0) {
		nbd_tls_free(srv.tls);
		return 1;
	}
	nbd_log("listening on %s%s%s", l->where,
		opts->readonly ? " (read-only)" : "",
		opts->tls == NBD_TLS_REQUIRE ? " (TLS required)" :
		opts->tls == NBD_TLS_ON ? " (TLS offered)" : "");
	if (opts->pidfile && nbd_pidfile_write(opts->pidfile) < 0) {
		nbd_tls_free(srv.tls);
		return 1;
	}
	nbd_notify("READY=1");

	for (i = 0; i < l->nfds; i++)
		pfd[i] = (struct pollfd){ .fd = l->fds[i], .events = POLLIN };
	pfd[l->nfds] = (struct pollfd){ .fd = sig_pipe[0], .events = POLLIN };
	while (!sig) {
		if (poll(pfd, (nfds_t)l->nfds + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			nbd_log("poll: %s", strerror(errno));
			break;
		}
		if (pfd[l->nfds].revents)
			sig = signal_pending();
		for (i = 0; i < l->nfds && !sig; i++)
			if (pfd[i].revents & POLLIN)
				accept_one(&srv, l->fds[i], &next_id);
	}
	nbd_notify("STOPPING=1");
	if (sig)
		nbd_log("signal %d: stopping", sig);
	nbd_listener_close(l);
	drain(&srv);

	/* Every connection released its exports; be safe anyway. */
	while ((e = srv.exports)) {
		srv.exports = e->next;
		vd_volume_close(e->vol);
		free(e);
	}
	nbd_tls_free(srv.tls);
	pthread_cond_destroy(&srv.budget_room);
	pthread_mutex_destroy(&srv.budget_lock);
	pthread_mutex_destroy(&srv.reg_lock);
	pthread_cond_destroy(&srv.gone);
	pthread_mutex_destroy(&srv.lock);
	if (opts->pidfile)
		nbd_pidfile_remove(opts->pidfile);
	nbd_log("stopped");
	return 0;
}
