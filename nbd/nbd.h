/* vdisk NBD server: internal interfaces of nbd/, one section per file.
 *
 * nbd_proto.c     pure wire helpers (nbd_proto.h)
 * nbd_handshake.c option haggling over an abstract byte stream
 * nbd_conn.c      one connection: handshake, reader, workers, replies
 * nbd_server.c    listening sockets, signals, the export registry
 * nbd_service.c   socket activation, readiness notification, pidfile
 * nbd_transport.c a connection's byte stream: plain or TLS (GnuTLS)
 *
 * cli/cmd_serve.c parses the command line and calls nbd_listener_open(),
 * opens the store, then nbd_serve().
 */
#ifndef VDISK_NBD_H
#define VDISK_NBD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "nbd/nbd_proto.h"

/* "VOL" or "VOL@SNAP" plus the NUL. */
#define NBD_EXPORT_NAME_MAX (2 * 64 + 2)

/* ---- nbd_handshake.c ----------------------------------------------------- */

/* A byte stream: the socket in the server, a buffer in the fuzz target. */
struct nbd_io {
	/* Reads exactly LEN bytes.  Returns 0, or -1 at end of stream or on
	 * error. */
	int (*recv_full)(void *opaque, void *buf, size_t len);
	/* Writes all of IOV.  Returns 0 or -1. */
	int (*send_all)(void *opaque, const struct iovec *iov, int iovcnt);
	void *opaque;
	/* NBD_OPT_STARTTLS, called after its ACK went out: runs the TLS
	 * handshake, after which recv_full and send_all go over TLS.
	 * Returns 0, or -1 with the reason in WHY (the session ends).  NULL:
	 * TLS is off and STARTTLS gets NBD_REP_ERR_UNSUP. */
	int (*starttls)(void *opaque, char *why, size_t whylen);
	/* FORCEDTLS: before STARTTLS every option but STARTTLS and ABORT gets
	 * NBD_REP_ERR_TLS_REQD (EXPORT_NAME ends the session). */
	int tls_required;
};

struct nbd_export_desc {
	char name[NBD_EXPORT_NAME_MAX]; /* canonical name ("" resolved) */
	char description[256];
	uint64_t size;
	int readonly;
	uint32_t preferred_block;
};

struct nbd_list_item {
	char name[NBD_EXPORT_NAME_MAX];
	char description[256];
};

/* How the handshake learns about exports (nbd_server.c implements it over
 * the engine; the fuzz target fakes it).  Errors return an NBD_REP_ERR_*
 * code and write a message for the client into MSG. */
struct nbd_exports_ops {
	/* Lists every export; *ITEMS (malloc'd, caller frees) holds *N. */
	uint32_t (*list)(void *opaque, struct nbd_list_item **items,
			 size_t *n, char *msg, size_t msglen);
	/* Describes NAME without opening it (NBD_OPT_INFO, meta contexts). */
	uint32_t (*info)(void *opaque, const char *name,
			 struct nbd_export_desc *d, char *msg, size_t msglen);
	/* Opens NAME for the transmission phase; *HANDLE is released by the
	 * caller of nbd_handshake() with nbd_server_release(). */
	uint32_t (*open)(void *opaque, const char *name,
			 struct nbd_export_desc *d, void **handle, char *msg,
			 size_t msglen);
	void *opaque;
};

/* What the handshake settled. */
struct nbd_session {
	struct nbdp_xmit x;          /* size, flags, structured, meta */
	struct nbd_export_desc desc; /* the export chosen */
	void *handle;                /* from ops->open, or NULL */
	int no_zeroes;
	unsigned options;            /* options received */
	int tls;                     /* STARTTLS succeeded */
	char why[192];               /* why the handshake ended otherwise */
};

/* Runs the fixed newstyle handshake on IO.  Returns 0 when the client
 * entered the transmission phase (SESSION->handle is set), 1 when it
 * aborted or hung up politely, -1 on a protocol violation or I/O error
 * (SESSION->why says which).  SESSION->handle may be set even on failure;
 * the caller releases it. */
int nbd_handshake(const struct nbd_io *io, const struct nbd_exports_ops *ops,
		  struct nbd_session *session);

/* ---- nbd_server.c -------------------------------------------------------- */

struct nbd_serve_options {
	const char *socket_path; /* Unix socket, or NULL for TCP */
	const char *listen_addr; /* HOST[:PORT] for TCP, NULL: loopback */
	int readonly;            /* every export read-only */
	char **exports;          /* restrict to these names (may be empty) */
	int nexports;
	const char *pidfile;     /* written once listening, or NULL */
	int tls;                 /* NBD_TLS_OFF, NBD_TLS_ON or NBD_TLS_REQUIRE */
	const char *tls_certificates; /* X.509 directory, or NULL */
	const char *tls_psk;     /* psktool file, or NULL (one of the two) */
	int tls_verify_peer;     /* require a client certificate (X.509) */
	unsigned busy_poll_us;   /* nbd_tp_read_ahead's POLL_MAX_US */
};

/* serve --busy-poll's default, in microseconds. */
#define NBD_BUSY_POLL_DEFAULT 50

#define NBD_TLS_OFF     0
#define NBD_TLS_ON      1 /* SELECTIVETLS: clients may upgrade */
#define NBD_TLS_REQUIRE 2 /* FORCEDTLS: nothing before STARTTLS */

#define NBD_MAX_LISTENERS 4
#define NBD_DEFAULT_PORT "10809"

struct nbd_listener {
	int fds[NBD_MAX_LISTENERS];
	int nfds;
	char *path;    /* Unix socket path once active */
	char *tmppath; /* bound here until activated */
	dev_t dev;     /* the socket file we created */
	ino_t ino;
	char where[160]; /* for logs: "unix:/path" or "tcp:127.0.0.1:10809" */
};

/* Binds and listens (a Unix socket under a temporary name, so that it
 * appears only once it accepts).  Refuses a socket a live server listens
 * on; a stale one is replaced.  Without socket_path and listen_addr,
 * sockets passed by the service manager (nbd_listener_from_env()) are used
 * if there are any.  Returns 0, or -1 with a message in ERR. */
int nbd_listener_open(const struct nbd_serve_options *opts,
		      struct nbd_listener *l, char *err, size_t errlen);

/* Removes the socket file (if still ours) and closes. */
void nbd_listener_close(struct nbd_listener *l);

typedef struct vd_store vd_store;

/* Serves STORE on L until SIGINT or SIGTERM, then stops accepting, lets
 * every connection finish its in-flight requests, releases (flushing)
 * every volume and returns 0; returns 1 on a setup failure (printed).  The
 * caller closes the store. */
int nbd_serve(vd_store *store, struct nbd_listener *l,
	      const struct nbd_serve_options *opts);

struct nbd_server;
struct nbd_conn;
struct vd_volume;

/* Export handles returned by the ops' open. */
struct vd_volume *nbd_server_volume(void *handle);
void nbd_server_release(struct nbd_server *srv, void *handle);
const struct nbd_exports_ops *nbd_server_ops(struct nbd_server *srv);
/* serve --busy-poll, in microseconds. */
unsigned nbd_server_busy_poll_us(const struct nbd_server *srv);
/* The server's TLS credentials (NULL when TLS is off) and mode. */
const struct nbd_tls *nbd_server_tls(struct nbd_server *srv, int *mode);
/* Waits until COST more request bytes fit in the server's in-flight
 * budget, shared by every connection, then charges it and the
 * connection's *MINE; a connection with nothing in flight (*MINE 0) never
 * waits.  Thread-safe; *MINE is only accessed through these two. */
void nbd_server_charge(struct nbd_server *srv, size_t *mine, size_t cost);
void nbd_server_uncharge(struct nbd_server *srv, size_t *mine, size_t cost);
/* Called by a connection as its very last act: unlinks and frees C. */
void nbd_server_conn_done(struct nbd_server *srv, struct nbd_conn *c);

/* Logs one line "vdisk serve: ..." to stderr. */
void nbd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- nbd_service.c ------------------------------------------------------- */

/* Takes the listening sockets passed by systemd socket activation into L
 * (which must be empty).  Returns 1 if it did, 0 if none were passed to
 * this process, -1 with a message in ERR if they are unusable. */
int nbd_listener_from_env(struct nbd_listener *l, char *err, size_t errlen);

/* Sends STATE ("READY=1", ...) to $NOTIFY_SOCKET if set.  Thread-safe. */
void nbd_notify(const char *state);

/* Writes this process's pid to PATH (atomically).  Returns 0 or -1 (and
 * logs why). */
int nbd_pidfile_write(const char *path);
/* Removes PATH if it holds this process's pid. */
void nbd_pidfile_remove(const char *path);

/* ---- nbd_transport.c ----------------------------------------------------- */

/* Server credentials, loaded once from OPTS->tls_certificates or
 * OPTS->tls_psk.  Returns NULL with a message in ERR. */
struct nbd_tls;
struct nbd_tls *nbd_tls_new(const struct nbd_serve_options *opts, char *err,
			    size_t errlen);
void nbd_tls_free(struct nbd_tls *tls);

/* One connection's stream: the socket, and the TLS session once started. */
struct nbd_transport {
	int fd;
	void *tls; /* gnutls_session_t, or NULL: plain */
	/* Plain transmission reads ahead into rbuf (nbd_tp_read_ahead). */
	uint8_t *rbuf;
	size_t rpos, rlen;
	/* Busy polling before a blocking receive (recv_polled), while poll
	 * is set (by the receiver, before each request). */
	long poll_max_ns, poll_ns;
	bool poll;
};

/* Reads exactly LEN bytes: 0, or -1 at end of stream or on error.  One
 * receiver at a time. */
int nbd_tp_recv_full(struct nbd_transport *tp, void *buf, size_t len);
/* From now on, on a plain stream, each recv takes whatever the socket
 * holds (up to a buffer), so that a client's pipelined requests cost one
 * recv, not one each, and polls the socket for up to POLL_MAX_US
 * microseconds (0: never) before it sleeps waiting for the client.  Only
 * once no STARTTLS can follow (transmission). */
void nbd_tp_read_ahead(struct nbd_transport *tp, unsigned poll_max_us);
/* Copies the next LEN bytes into BUF without receiving them, if the
 * read-ahead buffer holds them already (false otherwise, and always with
 * TLS).  The receiver only. */
bool nbd_tp_peek(const struct nbd_transport *tp, void *buf, size_t len);
/* True if more bytes from the client are ready to be received (never
 * blocks).  The receiver only. */
bool nbd_tp_pending(struct nbd_transport *tp);
/* Writes all of IOV (which it modifies): 0 or -1.  One sender at a time. */
int nbd_tp_send_iov(struct nbd_transport *tp, struct iovec *iov, int n);
/* Runs the server side of the TLS handshake on TP's socket: 0, or -1 with
 * the reason in WHY. */
int nbd_tp_starttls(struct nbd_transport *tp, const struct nbd_tls *tls,
		    char *why, size_t whylen);
/* Ends the TLS session (with a close_notify alert if CLEAN); the socket
 * stays open. */
void nbd_tp_close(struct nbd_transport *tp, int clean);

/* ---- nbd_conn.c ---------------------------------------------------------- */

/* Creates the connection for accepted socket FD (owned from now on). */
struct nbd_conn *nbd_conn_new(struct nbd_server *srv, int fd, unsigned id,
			      const char *peer);
/* Thread body: handshake, transmission, log line, nbd_server_conn_done. */
void *nbd_conn_main(void *arg);
/* Stops reading new requests (server shutdown); in-flight ones finish. */
void nbd_conn_stop(struct nbd_conn *c);

/* Links of the server's connection list (owned by nbd_server.c). */
struct nbd_conn_link {
	struct nbd_conn *next;
	struct nbd_conn *prev;
};
struct nbd_conn_link *nbd_conn_link(struct nbd_conn *c);
/* The connection's socket (closed by nbd_server_conn_done()). */
int nbd_conn_fd(const struct nbd_conn *c);
/* Frees C once its thread is done with it (nbd_server_conn_done()). */
void nbd_conn_free(struct nbd_conn *c);

#endif /* VDISK_NBD_H */
