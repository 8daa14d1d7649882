/* vdisk NBD server: the fixed newstyle handshake (option haggling).
 *
 * Runs over an abstract byte stream (struct nbd_io) and learns about
 * exports through struct nbd_exports_ops, so the fuzz target drives this
 * exact code with a buffer and a fake export table.
 *
 * States kept per connection: client flags (NO_ZEROES), whether structured
 * replies were acknowledged, and the base:allocation selection with the
 * export it was made for (a GO naming another export drops it, as the
 * protocol requires).
 *
 * Options served: EXPORT_NAME, ABORT, LIST, INFO, GO (replies
 * NBD_INFO_EXPORT always, NBD_INFO_BLOCK_SIZE always, NAME and DESCRIPTION
 * when asked), STRUCTURED_REPLY, LIST_META_CONTEXT, SET_META_CONTEXT
 * (base:allocation only), and STARTTLS when the stream offers it
 * (io->starttls).  Anything else gets NBD_REP_ERR_UNSUP.  An option longer
 * than NBDP_MAX_OPTION, a bad magic, unknown client flags or end of stream
 * end the handshake.
 *
 * TLS (proto.md "TLS support"): with io->tls_required the server is in
 * FORCEDTLS mode: before STARTTLS every other option but ABORT gets
 * NBD_REP_ERR_TLS_REQD, so nothing (not even the export list) is shown, and
 * EXPORT_NAME ends the session.  Otherwise (SELECTIVETLS) the client may
 * upgrade at any point.  A successful STARTTLS forgets what was negotiated
 * in the clear (structured replies, the meta context selection), so that
 * nothing a man in the middle injected before it survives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/nbd.h"

/* Options one connection may send before we give up on it. */
#define MAX_OPTIONS 10000

struct hs {
	const struct nbd_io *io;
	const struct nbd_exports_ops *ops;
	struct nbd_session *s;
	char meta_export[NBD_EXPORT_NAME_MAX]; /* SET_META_CONTEXT's export */
};

static int send_buf(struct hs *h, const void *a, size_t alen, const void *b,
		    size_t blen)
{
	struct iovec iov[2] = {
		{ .iov_base = (void *)a, .iov_len = alen },
		{ .iov_base = (void *)b, .iov_len = blen },
	};

	return h->io->send_all(h->io->opaque, iov, blen ? 2 : 1);
}

/* Sends one option reply with payload DATA[LEN]. */
static int reply(struct hs *h, uint32_t opt, uint32_t type, const void *data,
		 size_t len)
{
	uint8_t hdr[NBDP_OPTREP_HDR_SIZE];

	nbdp_optrep_encode(hdr, opt, type, (uint32_t)len);
	return send_buf(h, hdr, sizeof(hdr), data, len);
}

static int reply_err(struct hs *h, uint32_t opt, uint32_t type,
		     const char *msg)
{
	return reply(h, opt, type, msg, msg ? strlen(msg) : 0);
}

static int reply_list(struct hs *h, uint32_t opt)
{
	struct nbd_list_item *items = NULL;
	size_t n = 0, i;
	char msg[256] = "";
	uint32_t err;
	int rc = 0;

	err = h->ops->list(h->ops->opaque, &items, &n, msg, sizeof(msg));
	if (err)
		return reply_err(h, opt, err, msg);
	for (i = 0; i < n && rc == 0; i++) {
		const size_t nl = strlen(items[i].name);
		const size_t dl = strlen(items[i].description);
		uint8_t buf[4 + sizeof(items[i].name) +
			    sizeof(items[i].description)];

		nbdp_put32(buf, (uint32_t)nl);
		memcpy(buf + 4, items[i].name, nl);
		memcpy(buf + 4 + nl, items[i].description, dl);
		rc = reply(h, opt, NBD_REP_SERVER, buf, 4 + nl + dl);
	}
	free(items);
	return rc ? rc : reply(h, opt, NBD_REP_ACK, NULL, 0);
}

static int send_info(struct hs *h, uint32_t opt, uint16_t type,
		     const void *data, size_t len)
{
	uint8_t buf[2 + NBDP_MAX_STRING];

	if (len > NBDP_MAX_STRING)
		len = NBDP_MAX_STRING;
	nbdp_put16(buf, type);
	memcpy(buf + 2, data, len);
	return reply(h, opt, NBD_REP_INFO, buf, 2 + len);
}

/* The transmission flags the export gets on this connection. */
static uint16_t export_flags(struct hs *h, const struct nbd_export_desc *d)
{
	return nbdp_export_flags(d->readonly, h->s->x.structured);
}

/* Enters the transmission phase for the export described by D: settles
 * size, flags and the metadata selection. */
static void enter_transmission(struct hs *h, const struct nbd_export_desc *d)
{
	struct nbd_session *s = h->s;

	s->desc = *d;
	s->x.size = d->size;
	s->x.eflags = export_flags(h, d);
	if (strcmp(h->meta_export, d->name) != 0)
		s->x.meta_alloc = 0;
}

/* NBD_OPT_INFO and NBD_OPT_GO.  Returns 0 to go on haggling, 2 when GO
 * succeeded, -1 on I/O error. */
static int opt_info_go(struct hs *h, uint32_t opt, const uint8_t *data,
		       uint32_t len)
{
	struct nbdp_info_req *req;
	struct nbd_export_desc d;
	char msg[256] = "";
	uint8_t buf[12];
	uint32_t err;
	unsigned i;
	int rc = -1, want_name = 0, want_desc = 0;

	req = malloc(sizeof(*req));
	if (!req)
		return reply_err(h, opt, NBD_REP_ERR_INVALID, "out of memory");
	memset(&d, 0, sizeof(d));
	err = nbdp_info_req_parse(data, len, req);
	if (err) {
		rc = reply_err(h, opt, err, "malformed NBD_OPT_INFO/GO request");
		goto out;
	}
	for (i = 0; i < req->ninfos; i++) {
		want_name |= req->infos[i] == NBD_INFO_NAME;
		want_desc |= req->infos[i] == NBD_INFO_DESCRIPTION;
	}
	if (opt == NBD_OPT_GO) {
		err = h->ops->open(h->ops->opaque, req->name, &d,
				   &h->s->handle, msg, sizeof(msg));
	} else {
		err = h->ops->info(h->ops->opaque, req->name, &d, msg,
				   sizeof(msg));
	}
	if (err) {
		rc = reply_err(h, opt, err, msg);
		goto out;
	}

	nbdp_put16(buf, NBD_INFO_EXPORT);
	nbdp_put64(buf + 2, d.size);
	nbdp_put16(buf + 10, export_flags(h, &d));
	rc = reply(h, opt, NBD_REP_INFO, buf, 12);
	if (rc == 0 && want_name)
		rc = send_info(h, opt, NBD_INFO_NAME, d.name, strlen(d.name));
	if (rc == 0 && want_desc)
		rc = send_info(h, opt, NBD_INFO_DESCRIPTION, d.description,
			       strlen(d.description));
	if (rc == 0) {
		uint8_t bs[12];

		nbdp_put32(bs, 1);
		nbdp_put32(bs + 4, d.preferred_block ? d.preferred_block : 4096);
		nbdp_put32(bs + 8, NBDP_MAX_REQUEST);
		rc = send_info(h, opt, NBD_INFO_BLOCK_SIZE, bs, sizeof(bs));
	}
	if (rc == 0)
		rc = reply(h, opt, NBD_REP_ACK, NULL, 0);
	if (rc == 0 && opt == NBD_OPT_GO) {
		enter_transmission(h, &d);
		rc = 2;
	}
out:
	free(req);
	return rc;
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
static int opt_meta(struct hs *h, uint32_t opt, const uint8_t *data,
		    uint32_t len)
{
	const int is_list = opt == NBD_OPT_LIST_META_CONTEXT;
	struct nbdp_meta_req *req;
	struct nbd_export_desc d;
	char msg[256] = "";
	uint8_t buf[4 + sizeof(NBDP_META_ALLOCATION)];
	uint32_t err;
	int rc;

	if (!h->s->x.structured)
		return reply_err(h, opt, NBD_REP_ERR_INVALID,
				 "negotiate structured replies first");
	req = malloc(sizeof(*req));
	if (!req)
		return reply_err(h, opt, NBD_REP_ERR_INVALID, "out of memory");
	err = nbdp_meta_req_parse(data, len, is_list, req);
	if (err) {
		rc = reply_err(h, opt, err, "malformed meta context request");
		goto out;
	}
	err = h->ops->info(h->ops->opaque, req->name, &d, msg, sizeof(msg));
	if (err) {
		rc = reply_err(h, opt, err, msg);
		goto out;
	}
	if (!is_list) {
		/* SET replaces the whole selection. */
		h->s->x.meta_alloc = req->want_allocation;
		memcpy(h->meta_export, d.name, sizeof(h->meta_export));
	}
	rc = 0;
	if (req->want_allocation) {
		nbdp_put32(buf, is_list ? 0 : NBDP_META_ALLOCATION_ID);
		memcpy(buf + 4, NBDP_META_ALLOCATION,
		       strlen(NBDP_META_ALLOCATION));
		rc = reply(h, opt, NBD_REP_META_CONTEXT, buf,
			   4 + strlen(NBDP_META_ALLOCATION));
	}
	if (rc == 0)
		rc = reply(h, opt, NBD_REP_ACK, NULL, 0);
out:
	free(req);
	return rc;
}

/* NBD_OPT_STARTTLS.  Returns 0 to go on haggling (over TLS when it
 * worked), -1 when the TLS handshake failed or a send did. */
static int opt_starttls(struct hs *h, uint32_t len)
{
	struct nbd_session *s = h->s;

	if (!h->io->starttls)
		return reply_err(h, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP,
				 "TLS is not enabled on this server "
				 "(vdisk serve --tls)");
	if (len)
		return reply_err(h, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
				 "NBD_OPT_STARTTLS takes no data");
	if (s->tls)
		return reply_err(h, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
				 "TLS is already active");
	if (reply(h, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0))
		return -1;
	if (h->io->starttls(h->io->opaque, s->why, sizeof(s->why)))
		return -1;
	s->tls = 1;
	s->x.structured = 0;
	s->x.meta_alloc = 0;
	h->meta_export[0] = '\0';
	return 0;
}

/* NBD_OPT_EXPORT_NAME: no way to report errors but hanging up. */
static int opt_export_name(struct hs *h, const uint8_t *data, uint32_t len)
{
	struct nbd_export_desc d;
	char name[NBDP_MAX_STRING + 1];
	char msg[160] = "";
	uint8_t buf[8 + 2 + 124];
	uint32_t err;

	if (len > NBDP_MAX_STRING || memchr(data, 0, len)) {
		snprintf(h->s->why, sizeof(h->s->why),
			 "NBD_OPT_EXPORT_NAME: malformed name");
		return -1;
	}
	memcpy(name, data, len);
	name[len] = '\0';
	err = h->ops->open(h->ops->opaque, name, &d, &h->s->handle, msg,
			   sizeof(msg));
	if (err) {
		snprintf(h->s->why, sizeof(h->s->why),
			 "NBD_OPT_EXPORT_NAME: %s", msg);
		return -1;
	}
	enter_transmission(h, &d);
	memset(buf, 0, sizeof(buf));
	nbdp_put64(buf, d.size);
	nbdp_put16(buf + 8, h->s->x.eflags);
	if (send_buf(h, buf, h->s->no_zeroes ? 10 : sizeof(buf), NULL, 0)) {
		snprintf(h->s->why, sizeof(h->s->why), "send failed");
		return -1;
	}
	return 2;
}

int nbd_handshake(const struct nbd_io *io, const struct nbd_exports_ops *ops,
		  struct nbd_session *session)
{
	struct hs h = { .io = io, .ops = ops, .s = session };
	struct nbdp_option o;
	uint8_t hello[18], hdr[NBDP_OPTION_HDR_SIZE], cflags[4];
	uint8_t *data;
	uint32_t flags;
	int rc = -1;

	memset(session, 0, sizeof(*session));
	nbdp_put64(hello, NBD_MAGIC);
	nbdp_put64(hello + 8, NBD_IHAVEOPT);
	nbdp_put16(hello + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
	if (send_buf(&h, hello, sizeof(hello), NULL, 0)) {
		snprintf(session->why, sizeof(session->why), "send failed");
		return -1;
	}
	if (io->recv_full(io->opaque, cflags, 4)) {
		snprintf(session->why, sizeof(session->why),
			 "client hung up before the handshake");
		return 1;
	}
	flags = nbdp_get32(cflags);
	if (flags & ~(NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES)) {
		snprintf(session->why, sizeof(session->why),
			 "unknown client flags 0x%x", flags);
		return -1;
	}
	session->no_zeroes = !!(flags & NBD_FLAG_C_NO_ZEROES);

	data = malloc(NBDP_MAX_OPTION);
	if (!data) {
		snprintf(session->why, sizeof(session->why), "out of memory");
		return -1;
	}
	for (;;) {
		rc = -1; /* for every break below that does not set it */
		if (io->recv_full(io->opaque, hdr, sizeof(hdr))) {
			snprintf(session->why, sizeof(session->why),
				 "client hung up during the handshake");
			rc = 1;
			break;
		}
		if (nbdp_option_decode(hdr, &o)) {
			snprintf(session->why, sizeof(session->why),
				 "bad option magic");
			break;
		}
		if (++session->options > MAX_OPTIONS) {
			snprintf(session->why, sizeof(session->why),
				 "too many options");
			break;
		}
		if (o.len > NBDP_MAX_OPTION) {
			snprintf(session->why, sizeof(session->why),
				 "option %u too long (%u bytes)", o.opt,
				 o.len);
			break;
		}
		if (o.len && io->recv_full(io->opaque, data, o.len)) {
			snprintf(session->why, sizeof(session->why),
				 "client hung up mid-option");
			rc = 1;
			break;
		}

		if (io->tls_required && !session->tls &&
		    o.opt != NBD_OPT_STARTTLS && o.opt != NBD_OPT_ABORT) {
			if (o.opt == NBD_OPT_EXPORT_NAME) {
				snprintf(session->why, sizeof(session->why),
					 "NBD_OPT_EXPORT_NAME without TLS "
					 "(TLS is required)");
				break;
			}
			rc = reply_err(&h, o.opt, NBD_REP_ERR_TLS_REQD,
				       "TLS is required: send NBD_OPT_STARTTLS");
			if (rc == 0)
				continue;
			snprintf(session->why, sizeof(session->why),
				 "send failed");
			break;
		}
		switch (o.opt) {
		case NBD_OPT_EXPORT_NAME:
			rc = opt_export_name(&h, data, o.len);
			break;
		case NBD_OPT_ABORT:
			reply(&h, o.opt, NBD_REP_ACK, NULL, 0);
			snprintf(session->why, sizeof(session->why),
				 "client aborted the handshake");
			rc = 1;
			break;
		case NBD_OPT_LIST:
			rc = o.len ? reply_err(&h, o.opt, NBD_REP_ERR_INVALID,
					       "NBD_OPT_LIST takes no data")
				   : reply_list(&h, o.opt);
			break;
		case NBD_OPT_INFO:
		case NBD_OPT_GO:
			rc = opt_info_go(&h, o.opt, data, o.len);
			break;
		case NBD_OPT_STRUCTURED_REPLY:
			if (o.len)
				rc = reply_err(&h, o.opt, NBD_REP_ERR_INVALID,
					       "NBD_OPT_STRUCTURED_REPLY takes "
					       "no data");
			else if (session->x.structured)
				rc = reply_err(&h, o.opt, NBD_REP_ERR_INVALID,
					       "structured replies already "
					       "negotiated");
			else {
				session->x.structured = 1;
				rc = reply(&h, o.opt, NBD_REP_ACK, NULL, 0);
			}
			break;
		case NBD_OPT_LIST_META_CONTEXT:
		case NBD_OPT_SET_META_CONTEXT:
			rc = opt_meta(&h, o.opt, data, o.len);
			break;
		case NBD_OPT_STARTTLS:
			rc = opt_starttls(&h, o.len);
			break;
		default: {
			char msg[64];

			snprintf(msg, sizeof(msg),
				 "option %u is not supported", o.opt);
			rc = reply_err(&h, o.opt, NBD_REP_ERR_UNSUP, msg);
			break;
		}
		}
		if (rc == 0)
			continue;
		if (rc == 2) {
			rc = 0; /* transmission */
		} else if (rc < 0 && !session->why[0]) {
			snprintf(session->why, sizeof(session->why),
				 "send failed");
		}
		break;
	}
	free(data);
	return rc;
}
