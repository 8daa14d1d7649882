/* vdisk NBD server: a connection's byte stream, plain or TLS (GnuTLS).
 *
 * Every read and write of a connection, handshake and transmission alike,
 * goes through nbd_tp_recv_full() and nbd_tp_send_iov(); after
 * nbd_tp_starttls() they use gnutls_record_recv/send on the same socket
 * (GnuTLS reads whole records, its own read-ahead).  A plain stream reads
 * ahead in transmission (nbd_tp_read_ahead).
 *
 * Credentials (struct nbd_tls) are loaded once per server and shared
 * read-only by every connection's session:
 *  - X.509: DIR/server-cert.pem and DIR/server-key.pem, plus DIR/ca-cert.pem
 *    (and DIR/ca-crl.pem) when present, to verify client certificates with
 *    verify_peer, as qemu-nbd and nbdkit lay them out;
 *  - PSK: a psktool(1) file of "username:hexkey" lines.
 *
 * Threads: during the handshake only the connection thread uses the
 * stream.  In transmission one worker at a time receives (under the
 * connection's recv lock) and one at a time sends (under its send lock),
 * which GnuTLS allows for one session.  Known limit: a TLS 1.3 KeyUpdate from the
 * client is answered from the receiving thread, racing a send; the clients
 * we serve (qemu, libnbd) do not send it.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/gnutls.h>

#include "nbd/nbd.h"

struct nbd_tls {
	gnutls_certificate_credentials_t x509;
	gnutls_psk_server_credentials_t psk;
	gnutls_priority_t prio;
	int verify_peer;
};

/* ---- credentials ----------------------------------------------------------- */

static int file_exists(const char *dir, const char *name, char *path,
		       size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	return access(path, R_OK) == 0;
}

static int load_x509(struct nbd_tls *t, const char *dir, char *err,
		     size_t errlen)
{
	char cert[4096], key[4096], ca[4096], crl[4096];
	int r;

	if (!file_exists(dir, "server-cert.pem", cert, sizeof(cert)) ||
	    !file_exists(dir, "server-key.pem", key, sizeof(key))) {
		snprintf(err, errlen, "--tls-certificates '%s': needs "
			 "server-cert.pem and server-key.pem", dir);
		return -1;
	}
	if ((r = gnutls_certificate_allocate_credentials(&t->x509)) < 0 ||
	    (r = gnutls_certificate_set_x509_key_file(t->x509, cert, key,
						      GNUTLS_X509_FMT_PEM)) < 0) {
		snprintf(err, errlen, "--tls-certificates '%s': %s", dir,
			 gnutls_strerror(r));
		return -1;
	}
	if (file_exists(dir, "ca-cert.pem", ca, sizeof(ca))) {
		r = gnutls_certificate_set_x509_trust_file(t->x509, ca,
							   GNUTLS_X509_FMT_PEM);
		if (r < 0) {
			snprintf(err, errlen, "'%s': %s", ca, gnutls_strerror(r));
			return -1;
		}
	} else if (t->verify_peer) {
		snprintf(err, errlen, "--tls-verify-peer needs '%s'", ca);
		return -1;
	}
	if (file_exists(dir, "ca-crl.pem", crl, sizeof(crl))) {
		r = gnutls_certificate_set_x509_crl_file(t->x509, crl,
							 GNUTLS_X509_FMT_PEM);
		if (r < 0) {
			snprintf(err, errlen, "'%s': %s", crl,
				 gnutls_strerror(r));
			return -1;
		}
	}
	gnutls_certificate_set_known_dh_params(t->x509, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

static int load_psk(struct nbd_tls *t, const char *file, char *err,
		    size_t errlen)
{
	int r;

	if (access(file, R_OK) < 0) {
		snprintf(err, errlen, "--tls-psk '%s': %s", file,
			 strerror(errno));
		return -1;
	}
	if ((r = gnutls_psk_allocate_server_credentials(&t->psk)) < 0 ||
	    (r = gnutls_psk_set_server_credentials_file(t->psk, file)) < 0) {
		snprintf(err, errlen, "--tls-psk '%s': %s", file,
			 gnutls_strerror(r));
		return -1;
	}
	gnutls_psk_set_server_known_dh_params(t->psk, GNUTLS_SEC_PARAM_MEDIUM);
	return 0;
}

struct nbd_tls *nbd_tls_new(const struct nbd_serve_options *o, char *err,
			    size_t errlen)
{
	struct nbd_tls *t = calloc(1, sizeof(*t));
	const char *prio = o->tls_psk ? "NORMAL:+ECDHE-PSK:+DHE-PSK:+PSK"
				      : "NORMAL";
	int r;

	if (!t) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	t->verify_peer = o->tls_verify_peer;
	if (o->tls_certificates ? load_x509(t, o->tls_certificates, err, errlen)
				: load_psk(t, o->tls_psk, err, errlen))
		goto fail;
	r = gnutls_priority_init(&t->prio, prio, NULL);
	if (r < 0) {
		snprintf(err, errlen, "TLS priority '%s': %s", prio,
			 gnutls_strerror(r));
		goto fail;
	}
	return t;
fail:
	nbd_tls_free(t);
	return NULL;
}

void nbd_tls_free(struct nbd_tls *t)
{
	if (!t)
		return;
	if (t->prio)
		gnutls_priority_deinit(t->prio);
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	if (t->psk)
		gnutls_psk_free_server_credentials(t->psk);
	free(t);
}

/* ---- the stream ------------------------------------------------------------ */

/* Read-ahead buffer: room for a few dozen request headers, or a 4 KiB
 * WRITE and its neighbours; larger payloads bypass it. */
#define RBUF_SIZE (16u * 1024)
/* The smallest busy-polling window (recv_polled). */
#define POLL_START_NS 10000L

void nbd_tp_read_ahead(struct nbd_transport *tp, unsigned poll_max_us)
{
	if (!tp->tls && !tp->rbuf)
		tp->rbuf = malloc(RBUF_SIZE); /* NULL: reads as before */
	tp->poll_max_ns = tp->rbuf ? (long)poll_max_us * 1000 : 0;
	tp->poll_ns = tp->poll_max_ns < POLL_START_NS ? tp->poll_max_ns
						       : POLL_START_NS;
}

/* Busy polling.  A client at queue depth 1 sends its next request a few
 * microseconds after our reply; a receiver that sleeps meanwhile must be
 * woken for it, and on a virtual machine waking a halted vCPU is most of
 * the request's latency (measured on 2 vCPUs: 16k 4 KiB reads a second
 * sleeping, 35k polling up to 50 us).  So, like QEMU's iothreads
 * (poll-max-ns) and KVM's halt polling, the receiver polls the socket for
 * a window before it sleeps, and adapts the window to the client: it
 * doubles (up to the maximum) when the request came within the maximum
 * after a poll gave up, and halves (to none below POLL_START_NS) when the
 * client stayed quiet longer, so an idle or slow client costs no spinning.
 * At most one connection per CPU beyond the first polls at a time, so
 * that polling never takes the clients' last CPU. */
static atomic_int pollers;
static atomic_int poll_slots = -1;

static bool take_poll_slot(void)
{
	int slots = atomic_load(&poll_slots), n;

	if (slots < 0) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);

		slots = cpus > 1 ? (int)(cpus - 1) : 0;
		atomic_store(&poll_slots, slots);
	}
	n = atomic_fetch_add(&pollers, 1);
	if (n < slots)
		return true;
	atomic_fetch_sub(&pollers, 1);
	return false;
}

static long ns_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000000000L + t.tv_nsec - t0->tv_nsec;
}

/* One recv into the empty read-ahead buffer, polling first. */
static ssize_t recv_polled(struct nbd_transport *tp)
{
	struct timespec t0;
	ssize_t got;
	long gap;

	if (!tp->poll_max_ns || !tp->poll)
		return recv(tp->fd, tp->rbuf, RBUF_SIZE, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (tp->poll_ns && take_poll_slot()) {
		do {
			got = recv(tp->fd, tp->rbuf, RBUF_SIZE, MSG_DONTWAIT);
		} while (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) &&
			 ns_since(&t0) < tp->poll_ns);
		atomic_fetch_sub(&pollers, 1);
		if (got >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			return got; /* the window was right */
	}
	got = recv(tp->fd, tp->rbuf, RBUF_SIZE, 0);
	gap = ns_since(&t0);
	if (gap <= tp->poll_max_ns) { /* a longer window would have caught it */
		tp->poll_ns *= 2;
		if (tp->poll_ns < POLL_START_NS)
			tp->poll_ns = POLL_START_NS;
		if (tp->poll_ns > tp->poll_max_ns)
			tp->poll_ns = tp->poll_max_ns;
	} else if ((tp->poll_ns /= 2) < POLL_START_NS) {
		tp->poll_ns = 0;
	}
	return got;
}

/* nbd_tp_recv_full through the read-ahead buffer. */
static int recv_buffered(struct nbd_transport *tp, char *p, size_t len)
{
	while (len) {
		size_t n;

		if (tp->rpos == tp->rlen) {
			ssize_t got;

			if (len >= RBUF_SIZE) { /* straight into place */
				got = recv(tp->fd, p, len, 0);
				if (got < 0 && errno == EINTR)
					continue;
				if (got <= 0)
					return -1;
				p += got;
				len -= (size_t)got;
				continue;
			}
			got = recv_polled(tp);
			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				return -1;
			tp->rpos = 0;
			tp->rlen = (size_t)got;
		}
		n = tp->rlen - tp->rpos < len ? tp->rlen - tp->rpos : len;
		memcpy(p, tp->rbuf + tp->rpos, n);
		tp->rpos += n;
		p += n;
		len -= n;
	}
	return 0;
}

int nbd_tp_recv_full(struct nbd_transport *tp, void *buf, size_t len)
{
	char *p = buf;

	if (tp->rbuf)
		return recv_buffered(tp, p, len);
	while (len) {
		ssize_t n;

		if (tp->tls) {
			n = gnutls_record_recv(tp->tls, p, len);
			if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN)
				continue;
		} else {
			n = recv(tp->fd, p, len, 0);
			if (n < 0 && errno == EINTR)
				continue;
		}
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

bool nbd_tp_peek(const struct nbd_transport *tp, void *buf, size_t len)
{
	if (!tp->rbuf || tp->rlen - tp->rpos < len)
		return false;
	memcpy(buf, tp->rbuf + tp->rpos, len);
	return true;
}

/* True if the client has sent bytes not yet received: buffered here or
 * in GnuTLS, or waiting in the socket (a plain stream with a read-ahead
 * buffer takes them into it; without one they are peeked).  Never
 * blocks. */
bool nbd_tp_pending(struct nbd_transport *tp)
{
	char byte;
	ssize_t got;

	if (tp->tls && gnutls_record_check_pending(tp->tls) > 0)
		return true;
	if (tp->rbuf && tp->rpos < tp->rlen)
		return true;
	if (tp->rbuf && !tp->tls) {
		do
			got = recv(tp->fd, tp->rbuf, RBUF_SIZE, MSG_DONTWAIT);
		while (got < 0 && errno == EINTR);
		if (got <= 0)
			return false; /* nothing yet, or the end (seen again) */
		tp->rpos = 0;
		tp->rlen = (size_t)got;
		return true;
	}
	do
		got = recv(tp->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	while (got < 0 && errno == EINTR);
	return got > 0;
}

static int tls_send_all(gnutls_session_t s, const char *p, size_t len)
{
	while (len) {
		const ssize_t n = gnutls_record_send(s, p, len);

		if (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Small replies (a header and a short payload) go out as one record. */
#define TLS_CORK_MAX (64u * 1024)

static int tls_send_iov(gnutls_session_t s, const struct iovec *iov, int n)
{
	size_t total = 0;
	int i, cork;

	for (i = 0; i < n; i++)
		total += iov[i].iov_len;
	cork = n > 1 && total <= TLS_CORK_MAX;
	if (cork)
		gnutls_record_cork(s);
	for (i = 0; i < n; i++) {
		if (cork) {
			/* Corked sends only buffer. */
			if (gnutls_record_send(s, iov[i].iov_base,
					       iov[i].iov_len) < 0)
				return -1;
		} else if (tls_send_all(s, iov[i].iov_base, iov[i].iov_len)) {
			return -1;
		}
	}
	if (cork) {
		ssize_t r;

		do
			r = gnutls_record_uncork(s, GNUTLS_RECORD_WAIT);
		while (r == GNUTLS_E_INTERRUPTED || r == GNUTLS_E_AGAIN);
		if (r < 0)
			return -1;
	}
	return 0;
}

int nbd_tp_send_iov(struct nbd_transport *tp, struct iovec *iov, int n)
{
	if (tp->tls)
		return tls_send_iov(tp->tls, iov, n);
	while (n > 0) {
		struct msghdr m;
		ssize_t done;

		if (iov->iov_len == 0) {
			iov++;
			n--;
			continue;
		}
		memset(&m, 0, sizeof(m));
		m.msg_iov = iov;
		m.msg_iovlen = (size_t)(n < IOV_MAX ? n : IOV_MAX);
		done = sendmsg(tp->fd, &m, MSG_NOSIGNAL);
		if (done < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (done > 0) {
			if ((size_t)done >= iov->iov_len) {
				done -= (ssize_t)iov->iov_len;
				iov++;
				n--;
			} else {
				iov->iov_base = (char *)iov->iov_base + done;
				iov->iov_len -= (size_t)done;
				done = 0;
			}
		}
	}
	return 0;
}

int nbd_tp_starttls(struct nbd_transport *tp, const struct nbd_tls *t,
		    char *why, size_t len)
{
	gnutls_session_t s;
	int r;

	r = gnutls_init(&s, GNUTLS_SERVER);
	if (r < 0) {
		snprintf(why, len, "TLS: %s", gnutls_strerror(r));
		return -1;
	}
	r = gnutls_priority_set(s, t->prio);
	if (r >= 0)
		r = t->x509 ? gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE,
						     t->x509)
			    : gnutls_credentials_set(s, GNUTLS_CRD_PSK, t->psk);
	if (r < 0) {
		snprintf(why, len, "TLS: %s", gnutls_strerror(r));
		gnutls_deinit(s);
		return -1;
	}
	if (t->x509 && t->verify_peer) {
		gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
		gnutls_session_set_verify_cert(s, NULL, 0);
	}
	gnutls_transport_set_int(s, tp->fd);
	gnutls_handshake_set_timeout(s, GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
	do
		r = gnutls_handshake(s);
	while (r < 0 && !gnutls_error_is_fatal(r));
	if (r < 0) {
		snprintf(why, len, "TLS handshake failed: %s",
			 gnutls_strerror(r));
		gnutls_deinit(s);
		return -1;
	}
	tp->tls = s;
	return 0;
}

void nbd_tp_close(struct nbd_transport *tp, int clean)
{
	if (tp->tls) {
		if (clean)
			gnutls_bye(tp->tls, GNUTLS_SHUT_WR);
		gnutls_deinit(tp->tls);
		tp->tls = NULL;
	}
	free(tp->rbuf);
	tp->rbuf = NULL;
	tp->rpos = tp->rlen = 0;
}
