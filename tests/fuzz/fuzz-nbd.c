/* libFuzzer target: the NBD handshake and request parser of vdisk serve.
 *
 * The input is everything a client sends on one connection.  It drives
 * nbd_handshake() (nbd/nbd_handshake.c) over an in-memory stream with a
 * fake export table, then, if the client entered transmission, runs every
 * following request header through the same decode/validate code the
 * server's reader uses (nbd/nbd_proto.c), skipping WRITE payloads, and
 * builds block-status replies for accepted BLOCK_STATUS requests.  It
 * aborts if a request the validator accepted could reach the engine out of
 * range, over the size cap, with a bad command, or as a write to a
 * read-only export, or if a reply builder breaks the protocol's rules.
 *
 * Build:  make -f nbd/nbd.mk fuzz-nbd  (or the top Makefile's fuzz-nbd
 * target once nbd/nbd.mk is included); run: build/fuzz/fuzz-nbd
 * tests/fuzz/corpus.  make check replays the corpus through
 * tests/unit/test-nbd-replay.c, which #includes this file.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nbd/nbd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fz_stream {
	const uint8_t *p;
	size_t n;
	size_t sent; /* bytes the server sent */
};

static int fz_recv(void *opaque, void *buf, size_t len)
{
	struct fz_stream *s = opaque;

	if (len > s->n) {
		s->p += s->n;
		s->n = 0;
		return -1;
	}
	memcpy(buf, s->p, len);
	s->p += len;
	s->n -= len;
	return 0;
}

static int fz_send(void *opaque, const struct iovec *iov, int n)
{
	struct fz_stream *s = opaque;
	int i;

	if (n < 1)
		abort();
	for (i = 0; i < n; i++) {
		/* Touch every byte, so ASan sees any overread. */
		const volatile uint8_t *b = iov[i].iov_base;
		size_t j;
		uint8_t x = 0;

		for (j = 0; j < iov[i].iov_len; j++)
			x ^= b[j];
		(void)x;
		s->sent += iov[i].iov_len;
	}
	return 0;
}

/* Fake exports: "disk" (1 MiB, writable, the default), "disk@snap"
 * (read-only), "huge" (2^63 - 1 bytes, to probe offset overflow). */
static const struct {
	const char *name;
	uint64_t size;
	int readonly;
} fz_exports[] = {
	{ "disk", 1u << 20, 0 },
	{ "disk@snap", 1u << 20, 1 },
	{ "huge", INT64_MAX, 0 },
};
#define FZ_NEXPORTS (sizeof(fz_exports) / sizeof(fz_exports[0]))

static int fz_handle;

static uint32_t fz_info(void *opaque, const char *name,
			struct nbd_export_desc *d, char *msg, size_t msglen)
{
	size_t i;

	memset(d, 0, sizeof(*d));
	if (!*name)
		name = "disk";
	for (i = 0; i < FZ_NEXPORTS; i++) {
		if (strcmp(name, fz_exports[i].name))
			continue;
		strcpy(d->name, fz_exports[i].name);
		strcpy(d->description, "fuzz export");
		d->size = fz_exports[i].size;
		d->readonly = fz_exports[i].readonly;
		d->preferred_block = 65536;
		return 0;
	}
	snprintf(msg, msglen, "no export named '%.100s'", name);
	return NBD_REP_ERR_UNKNOWN;
}

static uint32_t fz_open(void *opaque, const char *name,
			struct nbd_export_desc *d, void **handle, char *msg,
			size_t msglen)
{
	const uint32_t err = fz_info(opaque, name, d, msg, msglen);

	*handle = err ? NULL : &fz_handle;
	return err;
}

static uint32_t fz_list(void *opaque, struct nbd_list_item **items,
			size_t *n, char *msg, size_t msglen)
{
	size_t i;

	*items = calloc(FZ_NEXPORTS, sizeof(**items));
	if (!*items) {
		snprintf(msg, msglen, "out of memory");
		return NBD_REP_ERR_PLATFORM;
	}
	for (i = 0; i < FZ_NEXPORTS; i++)
		strcpy((*items)[i].name, fz_exports[i].name);
	*n = FZ_NEXPORTS;
	return 0;
}

/* Block status for an accepted request over a fake map that alternates
 * 64 KiB of data and 64 KiB of hole. */
static void fz_block_status(const struct nbdp_request *r)
{
	const uint32_t max = r->flags & NBD_CMD_FLAG_REQ_ONE ? 1 : 64;
	uint8_t buf[4 + 8 * 64];
	struct nbdp_bs bs;
	uint64_t off = r->offset, end = r->offset + r->length, sum = 0;
	uint32_t i;

	nbdp_bs_init(&bs, buf, max, NBDP_META_ALLOCATION_ID, r->length);
	while (off < end) {
		const uint64_t next = (off | 0xffff) + 1;
		const uint64_t len = (next < end ? next : end) - off;
		const uint32_t flags = (off >> 16) & 1 ?
					       NBD_STATE_HOLE | NBD_STATE_ZERO :
					       0;

		if (nbdp_bs_add(&bs, len, flags))
			break;
		off += len;
	}
	if (bs.count == 0 || bs.count > max || bs.covered > r->length ||
	    nbdp_bs_size(&bs) != 4 + 8 * (size_t)bs.count)
		abort();
	for (i = 0; i < bs.count; i++) {
		const uint32_t len = nbdp_get32(buf + 4 + 8 * i);

		if (len == 0)
			abort();
		sum += len;
	}
	if (sum != bs.covered)
		abort();
}

static void fz_transmission(struct fz_stream *s, const struct nbd_session *ss)
{
	uint8_t hdr[NBDP_REQUEST_SIZE], err_payload[64];
	struct nbdp_request r;
	uint32_t err, payload;

	while (fz_recv(s, hdr, sizeof(hdr)) == 0) {
		if (nbdp_request_decode(hdr, &r))
			return;
		if (r.type == NBD_CMD_DISC || nbdp_request_fatal(&r))
			return;
		payload = nbdp_request_payload(&r);
		if (payload > s->n)
			return; /* cut off mid-payload */
		s->p += payload;
		s->n -= payload;
		err = nbdp_request_check(&r, &ss->x);
		if (err) {
			if (err != NBD_EINVAL && err != NBD_ENOSPC &&
			    err != NBD_EPERM)
				abort();
			if (nbdp_error_payload(err_payload, sizeof(err_payload),
					       err, "x") != 7)
				abort();
			continue;
		}
		/* Accepted: it would reach the engine.  Check the promises. */
		if (r.type > NBD_CMD_BLOCK_STATUS)
			abort();
		if (r.type != NBD_CMD_FLUSH &&
		    (r.length == 0 || r.offset > ss->x.size ||
		     r.length > ss->x.size - r.offset))
			abort();
		if ((r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE) &&
		    r.length > NBDP_MAX_REQUEST)
			abort();
		if ((ss->x.eflags & NBD_FLAG_READ_ONLY) &&
		    (r.type == NBD_CMD_WRITE || r.type == NBD_CMD_TRIM ||
		     r.type == NBD_CMD_WRITE_ZEROES))
			abort();
		if (r.type == NBD_CMD_BLOCK_STATUS) {
			if (!ss->x.meta_alloc || !ss->x.structured)
				abort();
			fz_block_status(&r);
		}
		if ((r.flags & NBD_CMD_FLAG_DF) && !ss->x.structured)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_stream s = { .p = data, .n = size };
	const struct nbd_io io = { .recv_full = fz_recv, .send_all = fz_send,
				   .opaque = &s };
	const struct nbd_exports_ops ops = { fz_list, fz_info, fz_open, NULL };
	struct nbd_session *ss;
	int rc;

	ss = malloc(sizeof(*ss));
	if (!ss)
		return 0;
	rc = nbd_handshake(&io, &ops, ss);
	if (rc == 0) {
		if (ss->handle != &fz_handle || ss->x.size != ss->desc.size ||
		    !(ss->x.eflags & NBD_FLAG_HAS_FLAGS) ||
		    (ss->x.meta_alloc && !ss->x.structured))
			abort();
		fz_transmission(&s, ss);
	} else if (rc != 1 && rc != -1) {
		abort();
	}
	free(ss);
	return 0;
}
