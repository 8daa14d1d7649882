/* vdisk NBD server: one client connection.
 *
 * Concurrency contract
 *  - The connection thread (nbd_conn_main) runs the handshake, then starts
 *    NBD_CONN_WORKERS worker threads and waits for them.
 *  - Every worker loops: it takes recv_lock, reads one request (header,
 *    validation in nbd_proto.c, and a WRITE payload), releases recv_lock,
 *    calls the engine (vd_volume_* are thread-safe) and sends the reply.
 *    There is no queue and no hand-off between threads: at queue depth 1
 *    the thread that read a request answers it, and a slow request still
 *    never blocks the others (another worker reads the next one).  This is
 *    nbdkit's model (server/connections.c, protocol.c).  One step further:
 *    a small READ with nothing more from the client waiting is answered
 *    with recv_lock kept (answer_inline), so at queue depth 1 one worker
 *    receives and answers every request and the others sleep.
 *  - Replies are written whole under send_lock, so the chunks of one reply
 *    are never interleaved with another's (the protocol would allow it; we
 *    do not need it).  A worker that finds send_lock taken queues a copy of
 *    a small reply (at most QUEUE_MAX bytes queued) and goes on; the worker
 *    holding the lock sends the queue, several replies per sendmsg, before
 *    it lets go (send_reply says why none is left behind).  A failed send
 *    marks the connection broken and shuts the socket down, which ends the
 *    receiving.
 *  - TLS: GnuTLS allows one thread receiving and one sending at a time on
 *    a session; recv_lock and send_lock give exactly that.
 *  - In-flight bytes (READ and WRITE lengths of requests read and not yet
 *    answered) are bounded by the server's budget, shared by every
 *    connection (nbd_server_charge): the receiving worker waits for room
 *    (unless the request is small), holding recv_lock, before it reads the
 *    next payload, so memory is
 *    bounded however many clients pipeline, and a client that pipelines
 *    too much is slowed down by TCP, not by us.
 *  - Receiving stops at NBD_CMD_DISC, end of stream, a bad magic, a cut-off
 *    payload, a fatal (oversized) WRITE, or nbd_conn_stop() (server
 *    shutdown, which shuts down the read side).  The worker that sees it
 *    marks the connection closing; each other worker finishes the request
 *    it holds, sees closing when it next takes recv_lock, and exits.  Once
 *    they are joined every request read was answered; the export is
 *    released (the last release closes and so flushes the volume), one
 *    line is logged and the connection goes back to the server.
 *  - Request buffers up to POOL_MAX bytes (WRITE payloads, READ data) are
 *    recycled per connection, kept idle while idle and in use stay within
 *    POOL_KEEP, so that freed buffers do not pile up in malloc's
 *    per-thread arenas under load; larger ones are malloc'd (and, with the mmap threshold nbd_serve() sets, handed
 *    back to the kernel when freed).
 *  - No engine read transaction is held across requests: every vd_* call
 *    is self-contained.
 *
 * Error mapping: map_error() is the only place engine codes become NBD
 * errors.
 */
#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/vdisk.h"
#include "nbd/nbd.h"

#define NBD_CONN_WORKERS 4
/* Bookkeeping cost charged to every request, so that a flood of tiny
 * requests is bounded too. */
#define JOB_OVERHEAD 4096u
/* CACHE prefetches at most this much, in pieces of CACHE_PIECE. */
#define CACHE_MAX NBDP_MAX_REQUEST
#define CACHE_PIECE (1024u * 1024)
/* Buffer pool: power-of-two classes from 4 KiB to POOL_MAX. */
#define POOL_MIN_SHIFT 12
#define POOL_CLASSES 11
#define POOL_MAX ((size_t)1 << (POOL_MIN_SHIFT + POOL_CLASSES - 1))
#define POOL_KEEP (4u * 1024 * 1024)
/* Replies up to QUEUE_REPLY_MAX bytes are queued while another worker
 * sends, at most QUEUE_MAX bytes of them; a sendmsg takes up to QUEUE_IOV. */
#define QUEUE_REPLY_MAX (64u * 1024)
#define QUEUE_MAX (1024u * 1024)
#define QUEUE_IOV 64
/* READs up to this many bytes may be answered by their receiver before it
 * hands receiving over (answer_inline). */
#define INLINE_READ_MAX (128u * 1024)
/* A worker takes up to BATCH_MAX READs of up to BATCH_READ_MAX bytes each
 * (never waiting for the in-flight budget: nbd_server_charge) in one turn
 * at receiving, if they are in the read-ahead buffer already. */
#define BATCH_MAX 8
#define BATCH_READ_MAX (64u * 1024)

struct pool_buf {
	struct pool_buf *next;
};

/* A request read by a worker. */
struct nbd_job {
	struct nbdp_request req;
	void *buf;   /* WRITE payload */
	size_t cost; /* charged against inflight */
};

/* A copy of a reply waiting for the worker that holds send_lock. */
struct queued_reply {
	struct queued_reply *next;
	size_t len;
	uint8_t data[];
};

struct nbd_conn {
	struct nbd_conn_link link; /* server's list, under its lock */
	struct nbd_server *srv;
	int fd;
	struct nbd_transport tp; /* fd, plain or TLS */
	unsigned id;
	char peer[96];
	struct timespec start;

	struct nbd_session sess;
	vd_volume *vol;
	uint32_t granule; /* the volume's chunk size: READ replies' hole grain */

	pthread_mutex_t send_lock;
	int send_broken;
	pthread_mutex_t queue_lock; /* protects the fields below */
	struct queued_reply *queue, **queue_tail;
	size_t queued_bytes;

	pthread_mutex_t recv_lock; /* held by the worker reading a request */

	size_t inflight; /* under the server's budget (nbd_server_charge) */

	pthread_mutex_t lock; /* protects the fields below */
	int closing;          /* receiving ended: workers exit */
	const char *why;      /* why it ended (the first reason) */
	pthread_t workers[NBD_CONN_WORKERS];
	unsigned nworkers;

	pthread_mutex_t pool_lock;
	struct pool_buf *pool[POOL_CLASSES];
	size_t pool_bytes; /* idle bytes in pool */
	size_t pool_live;  /* bytes of pool classes handed out */

	atomic_int stopping; /* nbd_conn_stop() was called */
	atomic_int running;  /* workers answering requests off recv_lock */
	atomic_ullong requests, errors, bytes_read, bytes_written;
};

/* ---- buffers ------------------------------------------------------------- */

static unsigned pool_class(size_t len)
{
	unsigned k = 0;

	while (k < POOL_CLASSES && ((size_t)1 << (POOL_MIN_SHIFT + k)) < len)
		k++;
	return k;
}

/* A buffer of at least LEN bytes; give it back with buf_put(c, b, LEN). */
static void *buf_get(struct nbd_conn *c, size_t len)
{
	const unsigned k = pool_class(len);
	struct pool_buf *b = NULL;

	if (k == POOL_CLASSES)
		return malloc(len);
	pthread_mutex_lock(&c->pool_lock);
	b = c->pool[k];
	if (b) {
		c->pool[k] = b->next;
		c->pool_bytes -= (size_t)1 << (POOL_MIN_SHIFT + k);
	}
	c->pool_live += (size_t)1 << (POOL_MIN_SHIFT + k);
	pthread_mutex_unlock(&c->pool_lock);
	return b ? (void *)b : malloc((size_t)1 << (POOL_MIN_SHIFT + k));
}

static void buf_put(struct nbd_conn *c, void *buf, size_t len)
{
	const unsigned k = pool_class(len);
	struct pool_buf *b = buf;

	if (!buf)
		return;
	if (k < POOL_CLASSES) {
		const size_t size = (size_t)1 << (POOL_MIN_SHIFT + k);

		pthread_mutex_lock(&c->pool_lock);
		c->pool_live -= size;
		/* Idle and in use together within POOL_KEEP: the workers'
		 * buffers still all come back, and idle ones are not kept on
		 * top of those in use (4 MiB more at 1 MiB requests). */
		if (c->pool_bytes + c->pool_live + size <= POOL_KEEP) {
			b->next = c->pool[k];
			c->pool[k] = b;
			c->pool_bytes += size;
			b = NULL;
		}
		pthread_mutex_unlock(&c->pool_lock);
	}
	free(b);
}

/* ---- the stream (nbd_transport.c) --------------------------------------- */

static int io_recv(void *opaque, void *buf, size_t len)
{
	struct nbd_conn *c = opaque;

	return nbd_tp_recv_full(&c->tp, buf, len);
}

static int io_send(void *opaque, const struct iovec *iov, int n)
{
	struct nbd_conn *c = opaque;
	struct iovec copy[4];

	if (n > 4)
		return -1;
	memcpy(copy, iov, sizeof(*iov) * (size_t)n);
	return nbd_tp_send_iov(&c->tp, copy, n);
}

static int io_starttls(void *opaque, char *why, size_t whylen)
{
	struct nbd_conn *c = opaque;
	int mode;

	return nbd_tp_starttls(&c->tp, nbd_server_tls(c->srv, &mode), why,
			       whylen);
}

/* ---- replies ------------------------------------------------------------- */

/* Caller holds send_lock. */
static void send_locked(struct nbd_conn *c, struct iovec *iov, int n)
{
	if (!c->send_broken && nbd_tp_send_iov(&c->tp, iov, n) < 0) {
		c->send_broken = 1;
		shutdown(c->fd, SHUT_RDWR);
	}
}

/* Takes the queued replies; caller holds send_lock. */
static struct queued_reply *take_queue(struct nbd_conn *c)
{
	struct queued_reply *q;

	pthread_mutex_lock(&c->queue_lock);
	q = c->queue;
	c->queue = NULL;
	c->queue_tail = &c->queue;
	c->queued_bytes = 0;
	pthread_mutex_unlock(&c->queue_lock);
	return q;
}

/* Sends the queued replies, several per sendmsg; caller holds send_lock. */
static void drain_locked(struct nbd_conn *c)
{
	struct iovec iov[QUEUE_IOV];
	struct queued_reply *q, *sent;
	int n;

	while ((q = take_queue(c))) {
		while (q) {
			sent = q;
			for (n = 0; q && n < QUEUE_IOV; q = q->next)
				iov[n++] = (struct iovec){ q->data, q->len };
			send_locked(c, iov, n);
			while (sent != q) {
				struct queued_reply *next = sent->next;

				free(sent);
				sent = next;
			}
		}
	}
}

/* Releases send_lock, then drains whatever was queued meanwhile (if no
 * other worker took the lock to do it). */
static void send_unlock(struct nbd_conn *c)
{
	int more;

	for (;;) {
		pthread_mutex_unlock(&c->send_lock);
		pthread_mutex_lock(&c->queue_lock);
		more = c->queue != NULL;
		pthread_mutex_unlock(&c->queue_lock);
		if (!more || pthread_mutex_trylock(&c->send_lock) != 0)
			return;
		drain_locked(c);
	}
}

/* Queues a copy of a small reply for the worker holding send_lock; false
 * if it is too large or the queue is full (then the caller waits). */
static bool queue_reply(struct nbd_conn *c, const struct iovec *iov, int n)
{
	struct queued_reply *q;
	size_t len = 0, at = 0;
	int i;

	for (i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (len > QUEUE_REPLY_MAX)
		return false;
	pthread_mutex_lock(&c->queue_lock);
	if (c->queued_bytes + len > QUEUE_MAX) {
		pthread_mutex_unlock(&c->queue_lock);
		return false;
	}
	c->queued_bytes += len;
	pthread_mutex_unlock(&c->queue_lock);
	q = malloc(sizeof(*q) + len);
	if (!q) {
		pthread_mutex_lock(&c->queue_lock);
		c->queued_bytes -= len;
		pthread_mutex_unlock(&c->queue_lock);
		return false;
	}
	for (i = 0; i < n; i++) {
		memcpy(q->data + at, iov[i].iov_base, iov[i].iov_len);
		at += iov[i].iov_len;
	}
	q->len = len;
	q->next = NULL;
	pthread_mutex_lock(&c->queue_lock);
	*c->queue_tail = q;
	c->queue_tail = &q->next;
	pthread_mutex_unlock(&c->queue_lock);
	return true;
}

/* Set while a worker runs the requests of a batch before its last. */
static __thread bool defer_replies;

/* Sends one whole reply.  If another worker is sending, a small reply is
 * queued for it instead of waiting: it goes out with the next sendmsg of
 * that worker, which drains the queue before and after it releases the
 * lock, so every reply queued is sent before its worker could exit. */
static void send_reply(struct nbd_conn *c, struct iovec *iov, int n)
{
	/* A batch's replies but its last wait in the queue: the last one's
	 * send takes them all (run_batch). */
	if (defer_replies && queue_reply(c, iov, n))
		return;
	if (pthread_mutex_trylock(&c->send_lock) != 0) {
		if (queue_reply(c, iov, n)) {
			/* The sender may have released the lock meanwhile. */
			if (pthread_mutex_trylock(&c->send_lock) == 0) {
				drain_locked(c);
				send_unlock(c);
			}
			return;
		}
		pthread_mutex_lock(&c->send_lock);
	}
	drain_locked(c); /* the replies queued first go first */
	send_locked(c, iov, n);
	send_unlock(c);
}

static void reply_ok(struct nbd_conn *c, const struct nbdp_request *r)
{
	uint8_t hdr[NBDP_SIMPLE_REPLY_SIZE];
	struct iovec iov = { hdr, sizeof(hdr) };

	nbdp_simple_reply_encode(hdr, 0, r->handle);
	send_reply(c, &iov, 1);
}

static void reply_error(struct nbd_conn *c, const struct nbdp_request *r,
			uint32_t err, const char *msg)
{
	uint8_t hdr[NBDP_CHUNK_HDR_SIZE], payload[6 + 200];
	struct iovec iov[2];

	atomic_fetch_add(&c->errors, 1);
	if (!c->sess.x.structured) {
		nbdp_simple_reply_encode(hdr, err, r->handle);
		iov[0] = (struct iovec){ hdr, NBDP_SIMPLE_REPLY_SIZE };
		send_reply(c, iov, 1);
		return;
	}
	iov[1].iov_base = payload;
	iov[1].iov_len = nbdp_error_payload(payload, sizeof(payload), err, msg);
	nbdp_chunk_encode(hdr, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
			  r->handle, (uint32_t)iov[1].iov_len);
	iov[0] = (struct iovec){ hdr, sizeof(hdr) };
	send_reply(c, iov, 2);
}

/* The one place engine status codes become NBD errors: vd_errno() gives
 * the errno, and this picks the NBD error for it.  The one engine code NBD
 * treats its own way is VD_ERANGE on a write, which the NBD spec answers
 * with ENOSPC (vd_errno says EINVAL, and leaves writes to the front end).
 * Corruption and unexpected failures are logged; the client sees EIO. */
static uint32_t map_error(struct nbd_conn *c, const struct nbdp_request *r,
			  int rc)
{
	const int is_write = r->type == NBD_CMD_WRITE ||
			     r->type == NBD_CMD_TRIM ||
			     r->type == NBD_CMD_WRITE_ZEROES;
	char name[16];

	if (rc == VD_ERANGE && is_write)
		return NBD_ENOSPC;
	switch (vd_errno(rc)) {
	case EROFS:
	case EPERM:
	case EACCES:
		return NBD_EPERM;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return NBD_ENOSPC;
	case ENOMEM:
		return NBD_ENOMEM;
	case EINVAL:
		return NBD_EINVAL;
	case EOVERFLOW:
		return NBD_EOVERFLOW;
	case ENOTSUP: /* == EOPNOTSUPP on Linux */
		return NBD_ENOTSUP;
	case ESHUTDOWN:
		return NBD_ESHUTDOWN;
	default: /* EIO (corruption among them) and the rest */
		nbd_log("[%u] export '%s': %s at offset %llu length %u: %s",
			c->id, c->sess.desc.name, nbdp_cmd_name(r->type, name),
			(unsigned long long)r->offset, r->length,
			vd_last_error()[0] ? vd_last_error() : vd_strerror(rc));
		return NBD_EIO;
	}
}

static void reply_status(struct nbd_conn *c, const struct nbdp_request *r,
			 int rc)
{
	if (rc < 0)
		reply_error(c, r, map_error(c, r, rc), vd_strerror(rc));
	else
		reply_ok(c, r);
}

/* ---- commands ------------------------------------------------------------ */

/* A run of a structured READ reply: data, or zeroes sent as a hole. */
struct run {
	uint64_t off;
	uint32_t len;
	int hole;
};

static int all_zero(const uint8_t *p, size_t len)
{
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* Splits the LEN bytes read at OFF into BUF into runs of data and of
 * zeroes, at the volume's chunk boundaries, into RUNS (room for
 * LEN / chunk + 2); returns how many.  The engine stores no zero chunks,
 * so these are its holes (and a read of zeroes anywhere may be answered
 * as a hole), found without a second walk of the map. */
static size_t split_runs(const struct nbd_conn *c, const uint8_t *buf,
			 uint64_t off, uint32_t len, struct run *runs)
{
	const uint64_t g = c->granule;
	uint64_t pos = off;
	size_t n = 0;

	while (pos < off + len) {
		const uint64_t edge = (pos / g + 1) * g;
		const uint64_t stop = edge < off + len ? edge : off + len;
		const int hole = all_zero(buf + (pos - off), stop - pos);

		if (n && runs[n - 1].hole == hole)
			runs[n - 1].len += (uint32_t)(stop - pos);
		else
			runs[n++] = (struct run){ pos, (uint32_t)(stop - pos), hole };
		pos = stop;
	}
	return n;
}

/* READ with structured replies: data chunks for data, hole chunks for
 * zeroes (one data chunk with DF).  Nothing is sent until the read
 * succeeded, so an error is a single error chunk. */
static void do_read_structured(struct nbd_conn *c, const struct nbdp_request *r,
			       uint8_t *buf)
{
	enum { FEW = 4 };
	struct run few_runs[FEW], *runs = few_runs;
	struct iovec few_iov[2 * FEW], *iov = few_iov;
	uint8_t few_hdrs[FEW][NBDP_CHUNK_HDR_SIZE + 12];
	uint8_t (*hdrs)[NBDP_CHUNK_HDR_SIZE + 12] = few_hdrs;
	const size_t most = r->length / c->granule + 2;
	size_t i, nruns;
	int rc, n = 0;

	rc = vd_volume_pread(c->vol, buf, r->length, r->offset);
	if (rc < 0) {
		reply_status(c, r, rc);
		return;
	}
	if (most > FEW) {
		runs = malloc(most * sizeof(*runs));
		iov = malloc(most * 2 * sizeof(*iov));
		hdrs = malloc(most * sizeof(*hdrs));
		if (!runs || !iov || !hdrs) {
			reply_error(c, r, NBD_ENOMEM, "out of memory");
			goto out;
		}
	}
	if (r->flags & NBD_CMD_FLAG_DF) {
		runs[0] = (struct run){ r->offset, r->length, 0 };
		nruns = 1;
	} else {
		nruns = split_runs(c, buf, r->offset, r->length, runs);
	}
	for (i = 0; i < nruns; i++) {
		const struct run *run = &runs[i];
		const uint16_t flags = i + 1 == nruns ? NBD_REPLY_FLAG_DONE : 0;
		uint8_t *h = hdrs[i];

		nbdp_put64(h + NBDP_CHUNK_HDR_SIZE, run->off);
		if (run->hole) {
			nbdp_chunk_encode(h, flags, NBD_REPLY_TYPE_OFFSET_HOLE,
					  r->handle, 12);
			nbdp_put32(h + NBDP_CHUNK_HDR_SIZE + 8, run->len);
			iov[n++] = (struct iovec){ h, NBDP_CHUNK_HDR_SIZE + 12 };
		} else {
			nbdp_chunk_encode(h, flags, NBD_REPLY_TYPE_OFFSET_DATA,
					  r->handle, 8 + run->len);
			iov[n++] = (struct iovec){ h, NBDP_CHUNK_HDR_SIZE + 8 };
			iov[n++] = (struct iovec){ buf + (run->off - r->offset),
						   run->len };
		}
	}
	send_reply(c, iov, n);
	atomic_fetch_add(&c->bytes_read, r->length);
out:
	if (runs != few_runs) {
		free(hdrs);
		free(iov);
		free(runs);
	}
}

static void do_read(struct nbd_conn *c, const struct nbdp_request *r)
{
	uint8_t hdr[NBDP_SIMPLE_REPLY_SIZE];
	struct iovec iov[2];
	uint8_t *buf;
	int rc;

	buf = buf_get(c, r->length);
	if (!buf) {
		reply_error(c, r, NBD_ENOMEM, "out of memory");
		return;
	}
	if (c->sess.x.structured) {
		do_read_structured(c, r, buf);
		buf_put(c, buf, r->length);
		return;
	}
	rc = vd_volume_pread(c->vol, buf, r->length, r->offset);
	if (rc < 0) {
		reply_status(c, r, rc);
	} else {
		nbdp_simple_reply_encode(hdr, 0, r->handle);
		iov[0] = (struct iovec){ hdr, sizeof(hdr) };
		iov[1] = (struct iovec){ buf, r->length };
		send_reply(c, iov, 2);
		atomic_fetch_add(&c->bytes_read, r->length);
	}
	buf_put(c, buf, r->length);
}

static int bs_add(void *opaque, uint64_t off, uint64_t len, unsigned type)
{
	(void)off;
	return nbdp_bs_add(opaque, len,
			   type == VD_EXTENT_HOLE ?
				   NBD_STATE_HOLE | NBD_STATE_ZERO : 0);
}

static void do_block_status(struct nbd_conn *c, const struct nbdp_request *r)
{
	const uint32_t max = r->flags & NBD_CMD_FLAG_REQ_ONE ? 1 :
							     NBDP_MAX_EXTENTS;
	uint8_t hdr[NBDP_CHUNK_HDR_SIZE];
	struct iovec iov[2];
	struct nbdp_bs bs;
	uint8_t *buf;
	int rc;

	buf = malloc(4 + 8 * (size_t)max);
	if (!buf) {
		reply_error(c, r, NBD_ENOMEM, "out of memory");
		return;
	}
	nbdp_bs_init(&bs, buf, max, NBDP_META_ALLOCATION_ID, r->length);
	rc = vd_volume_extents(c->vol, r->offset, r->length, bs_add, &bs);
	if (rc < 0) {
		reply_status(c, r, rc);
	} else if (bs.count == 0) {
		nbd_log("[%u] vd_volume_extents reported nothing at %llu+%u",
			c->id, (unsigned long long)r->offset, r->length);
		reply_error(c, r, NBD_EIO, "no extents");
	} else {
		nbdp_chunk_encode(hdr, NBD_REPLY_FLAG_DONE,
				  NBD_REPLY_TYPE_BLOCK_STATUS, r->handle,
				  (uint32_t)nbdp_bs_size(&bs));
		iov[0] = (struct iovec){ hdr, sizeof(hdr) };
		iov[1] = (struct iovec){ buf, nbdp_bs_size(&bs) };
		send_reply(c, iov, 2);
	}
	free(buf);
}

static int do_cache(struct nbd_conn *c, const struct nbdp_request *r)
{
	const uint64_t len = r->length < CACHE_MAX ? r->length : CACHE_MAX;
	uint64_t done;
	uint8_t *buf;
	int rc = 0;

	buf = malloc(CACHE_PIECE);
	if (!buf)
		return -ENOMEM;
	for (done = 0; done < len && rc >= 0; done += CACHE_PIECE) {
		const uint64_t n = len - done < CACHE_PIECE ? len - done :
							      CACHE_PIECE;

		rc = vd_volume_pread(c->vol, buf, n, r->offset + done);
	}
	free(buf);
	return rc;
}

/* Runs one validated request and sends its reply. */
static void execute(struct nbd_conn *c, struct nbd_job *job)
{
	const struct nbdp_request *r = &job->req;
	const int fua = r->flags & NBD_CMD_FLAG_FUA;
	int rc = 0;

	switch (r->type) {
	case NBD_CMD_READ:
		do_read(c, r);
		return;
	case NBD_CMD_BLOCK_STATUS:
		do_block_status(c, r);
		return;
	case NBD_CMD_WRITE:
		rc = vd_volume_pwrite(c->vol, job->buf, r->length, r->offset);
		if (rc >= 0)
			atomic_fetch_add(&c->bytes_written, r->length);
		break;
	case NBD_CMD_TRIM:
	case NBD_CMD_WRITE_ZEROES:
		/* The engine never stores zero chunks: with or without
		 * NO_HOLE the range becomes a hole that reads as zeroes, and
		 * it is always fast, so FAST_ZERO succeeds too. */
		rc = vd_volume_zero(c->vol, r->offset, r->length);
		break;
	case NBD_CMD_FLUSH:
		rc = vd_volume_flush(c->vol);
		break;
	case NBD_CMD_CACHE:
		rc = do_cache(c, r);
		break;
	}
	if (rc >= 0 && fua && r->type != NBD_CMD_FLUSH &&
	    r->type != NBD_CMD_CACHE)
		rc = vd_volume_flush(c->vol);
	reply_status(c, r, rc);
}

/* ---- workers ------------------------------------------------------------- */

static const char *check_message(uint32_t err)
{
	switch (err) {
	case NBD_EPERM:
		return "export is read-only";
	case NBD_ENOSPC:
		return "write beyond the end of the export";
	default:
		return "invalid request (command, flags, offset or length)";
	}
}

static void charge(struct nbd_conn *c, size_t cost)
{
	nbd_server_charge(c->srv, &c->inflight, cost);
}

static void uncharge(struct nbd_conn *c, size_t cost)
{
	nbd_server_uncharge(c->srv, &c->inflight, cost);
}

/* Reads one request into JOB; caller holds recv_lock.  Returns why
 * receiving ends, or NULL with *GOT set if JOB is to be executed (clear:
 * an invalid request, answered already). */
static const char *receive(struct nbd_conn *c, struct nbd_job *job, int *got)
{
	uint8_t hdr[NBDP_REQUEST_SIZE];
	struct nbdp_request *req = &job->req;
	uint32_t payload, err;

	*got = 0;
	if (nbd_tp_recv_full(&c->tp, hdr, sizeof(hdr))) {
		int broken;

		pthread_mutex_lock(&c->send_lock);
		broken = c->send_broken;
		pthread_mutex_unlock(&c->send_lock);
		return broken ? "send failed" : "client hung up";
	}
	if (nbdp_request_decode(hdr, req))
		return "bad request magic";
	atomic_fetch_add(&c->requests, 1);
	if (req->type == NBD_CMD_DISC)
		return "client disconnected";
	if (nbdp_request_fatal(req)) {
		reply_error(c, req, NBD_EINVAL, "request too large");
		return "oversized WRITE";
	}
	payload = nbdp_request_payload(req);
	job->cost = JOB_OVERHEAD + payload;
	if (req->type == NBD_CMD_READ && req->length <= NBDP_MAX_REQUEST)
		job->cost += req->length;
	charge(c, job->cost);
	job->buf = NULL;
	if (payload && !(job->buf = buf_get(c, payload))) {
		uncharge(c, job->cost);
		return "out of memory";
	}
	if (payload && nbd_tp_recv_full(&c->tp, job->buf, payload)) {
		buf_put(c, job->buf, payload);
		uncharge(c, job->cost);
		return "client hung up mid-payload";
	}
	err = nbdp_request_check(req, &c->sess.x);
	if (err) {
		reply_error(c, req, err, check_message(err));
		buf_put(c, job->buf, payload);
		uncharge(c, job->cost);
		return NULL;
	}
	*got = 1;
	return NULL;
}

/* True if the worker that read JOB may answer it before it lets another
 * worker receive: a small READ (no long wait on it) with nothing more from
 * the client yet.  Keeping recv_lock then saves, per request, waking a
 * worker to receive and putting this one to sleep on recv_lock: at queue
 * depth 1, three context switches of the four each request cost (a
 * request arriving meanwhile waits for one small read, not for a long
 * one).  Anything else, or a client with more requests on the way, is
 * handed over as before. */
static bool answer_inline(struct nbd_conn *c, const struct nbd_job *job)
{
	return job->req.type == NBD_CMD_READ &&
	       job->req.length <= INLINE_READ_MAX && !nbd_tp_pending(&c->tp);
}

static bool batchable(const struct nbdp_request *r)
{
	return r->type == NBD_CMD_READ && r->length <= BATCH_READ_MAX;
}

/* True if the next request is a batchable READ whose header the
 * read-ahead buffer holds already (receiving it never blocks). */
static bool next_batchable(struct nbd_conn *c)
{
	uint8_t hdr[NBDP_REQUEST_SIZE];
	struct nbdp_request r;

	return nbd_tp_peek(&c->tp, hdr, sizeof(hdr)) &&
	       nbdp_request_decode(hdr, &r) == 0 && batchable(&r);
}

static void finish(struct nbd_conn *c, struct nbd_job *job)
{
	execute(c, job);
	buf_put(c, job->buf, nbdp_request_payload(&job->req));
	uncharge(c, job->cost);
}

/* Marks receiving ended, for WHY. */
static void set_closing(struct nbd_conn *c, const char *why)
{
	pthread_mutex_lock(&c->lock);
	c->closing = 1;
	c->why = why;
	pthread_mutex_unlock(&c->lock);
}

/* Runs the N requests of JOBS and sends their replies: those before the
 * last wait in the reply queue, and go with the last one's send, several
 * per sendmsg. */
static void run_batch(struct nbd_conn *c, struct nbd_job *jobs, int n)
{
	for (int i = 0; i < n; i++) {
		defer_replies = i + 1 < n;
		finish(c, &jobs[i]);
	}
	defer_replies = false;
}

/* Each turn at recv_lock reads one request, or a batch of small READs
 * already received (at a deep queue: one wake-up of the next receiver
 * and one sendmsg per batch, not per request), and answers it after
 * letting go of recv_lock, unless answer_inline(). */
static void *worker_main(void *arg)
{
	struct nbd_conn *c = arg;
	struct nbd_job jobs[BATCH_MAX];
	const char *why = NULL;
	int got, n, closing;

	pthread_setname_np(pthread_self(), "nbd-worker");

	pthread_mutex_lock(&c->recv_lock);
	for (;;) {
		pthread_mutex_lock(&c->lock);
		/* Requests read ahead are dropped once the server stops. */
		closing = c->closing || atomic_load(&c->stopping);
		pthread_mutex_unlock(&c->lock);
		if (closing)
			break;
		/* Poll for the next request only while no other worker is
		 * answering one: at queue depth 1 a WRITE is answered off
		 * recv_lock, and a receiver spinning beside it takes the CPU
		 * it needs (measured: 15% fewer QD1 writes). */
		c->tp.poll = atomic_load(&c->running) == 0;
		if ((why = receive(c, &jobs[0], &got))) {
			set_closing(c, why);
			break;
		}
		if (!got)
			continue;
		if (answer_inline(c, &jobs[0])) {
			finish(c, &jobs[0]); /* still the receiver */
			continue;
		}
		n = 1;
		while (batchable(&jobs[0].req) && n < BATCH_MAX && next_batchable(c)) {
			if ((why = receive(c, &jobs[n], &got))) {
				set_closing(c, why); /* the batch is answered */
				break;
			}
			n += got;
		}
		atomic_fetch_add(&c->running, 1);
		pthread_mutex_unlock(&c->recv_lock);
		run_batch(c, jobs, n);
		atomic_fetch_sub(&c->running, 1);
		pthread_mutex_lock(&c->recv_lock);
	}
	pthread_mutex_unlock(&c->recv_lock);
	return NULL;
}

static const char *transmission(struct nbd_conn *c)
{
	unsigned i;

	c->vol = nbd_server_volume(c->sess.handle);
	c->granule = vd_volume_chunk_size(c->vol);
	nbd_tp_read_ahead(&c->tp, nbd_server_busy_poll_us(c->srv));
	for (i = 0; i < NBD_CONN_WORKERS; i++) {
		if (pthread_create(&c->workers[i], NULL, worker_main, c))
			break;
		c->nworkers++;
	}
	if (c->nworkers == 0)
		return "cannot start worker threads";
	/* Each worker answers the request it read before it exits. */
	for (i = 0; i < c->nworkers; i++)
		pthread_join(c->workers[i], NULL);
	return atomic_load(&c->stopping) ? "server shutting down" : c->why;
}

/* ---- lifetime ------------------------------------------------------------ */

struct nbd_conn *nbd_conn_new(struct nbd_server *srv, int fd, unsigned id,
			      const char *peer)
{
	struct nbd_conn *c = calloc(1, sizeof(*c));
	pthread_mutexattr_t attr;

	if (!c)
		return NULL;
	c->srv = srv;
	c->fd = fd;
	c->tp.fd = fd;
	c->id = id;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	clock_gettime(CLOCK_MONOTONIC, &c->start);
	/* Both are held briefly (one request read, one reply written) by one
	 * of a few busy workers: spinning a little before sleeping saves the
	 * futex sleep and wake-up that would otherwise follow most requests
	 * at a deep queue. */
	pthread_mutexattr_init(&attr);
	pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ADAPTIVE_NP);
	pthread_mutex_init(&c->send_lock, &attr);
	pthread_mutex_init(&c->recv_lock, &attr);
	pthread_mutexattr_destroy(&attr);
	pthread_mutex_init(&c->queue_lock, NULL);
	c->queue_tail = &c->queue;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->pool_lock, NULL);
	return c;
}

struct nbd_conn_link *nbd_conn_link(struct nbd_conn *c)
{
	return &c->link;
}

void nbd_conn_stop(struct nbd_conn *c)
{
	atomic_store(&c->stopping, 1);
	shutdown(c->fd, SHUT_RD);
}

static double elapsed(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) +
	       (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

void *nbd_conn_main(void *arg)
{
	struct nbd_conn *c = arg;
	const struct nbd_exports_ops *ops = nbd_server_ops(c->srv);
	int tls_mode;
	const struct nbd_tls *tls = nbd_server_tls(c->srv, &tls_mode);
	const struct nbd_io io = {
		.recv_full = io_recv,
		.send_all = io_send,
		.opaque = c,
		.starttls = tls ? io_starttls : NULL,
		.tls_required = tls && tls_mode == NBD_TLS_REQUIRE,
	};
	const char *why;
	int rc;

	pthread_setname_np(pthread_self(), "nbd-conn");

	rc = nbd_handshake(&io, ops, &c->sess);
	if (rc == 0) {
		why = transmission(c);
		nbd_log("[%u] %s: export '%s' (%s%s%s%s), %llu requests, "
			"%llu bytes read, %llu written, %llu errors, %.2f s: %s",
			c->id, c->peer, c->sess.desc.name,
			c->sess.desc.readonly ? "ro" : "rw",
			c->sess.tls ? ", tls" : "",
			c->sess.x.structured ? ", structured" : "",
			c->sess.x.meta_alloc ? ", base:allocation" : "",
			(unsigned long long)c->requests,
			(unsigned long long)c->bytes_read,
			(unsigned long long)c->bytes_written,
			(unsigned long long)c->errors, elapsed(&c->start), why);
	} else {
		nbd_log("[%u] %s: no transmission after %u options: %s",
			c->id, c->peer, c->sess.options, c->sess.why);
	}
	if (c->sess.handle)
		nbd_server_release(c->srv, c->sess.handle);
	nbd_server_conn_done(c->srv, c);
	/* Hand the freed request buffers of this client back to the kernel. */
	malloc_trim(0);
	return NULL;
}

int nbd_conn_fd(const struct nbd_conn *c)
{
	return c->fd;
}

void nbd_conn_free(struct nbd_conn *c)
{
	struct pool_buf *b;
	unsigned k;

	if (!c)
		return;
	nbd_tp_close(&c->tp, !c->send_broken);
	close(c->fd);
	while (c->queue) { /* none: every worker drained before it exited */
		struct queued_reply *q = c->queue;

		c->queue = q->next;
		free(q);
	}
	for (k = 0; k < POOL_CLASSES; k++) {
		while ((b = c->pool[k])) {
			c->pool[k] = b->next;
			free(b);
		}
	}
	pthread_mutex_destroy(&c->pool_lock);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->recv_lock);
	pthread_mutex_destroy(&c->queue_lock);
	pthread_mutex_destroy(&c->send_lock);
	free(c);
}
