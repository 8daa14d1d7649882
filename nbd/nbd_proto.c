/* vdisk NBD server: pure protocol helpers (see nbd_proto.h).
 *
 * No I/O, no engine calls, no global state: everything a hostile client can
 * reach before the engine is touched is decided here, so the fuzz target
 * (tests/fuzz/fuzz-nbd.c) exercises exactly the server's checks.
 */
#include <stdio.h>
#include <string.h>

#include "nbd/nbd_proto.h"

/* ---- byte order ---------------------------------------------------------- */

uint16_t nbdp_get16(const uint8_t *p)
{
	return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

uint32_t nbdp_get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

uint64_t nbdp_get64(const uint8_t *p)
{
	return (uint64_t)nbdp_get32(p) << 32 | nbdp_get32(p + 4);
}

void nbdp_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

void nbdp_put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void nbdp_put64(uint8_t *p, uint64_t v)
{
	nbdp_put32(p, (uint32_t)(v >> 32));
	nbdp_put32(p + 4, (uint32_t)v);
}

/* ---- handshake ----------------------------------------------------------- */

int nbdp_option_decode(const uint8_t in[NBDP_OPTION_HDR_SIZE],
		       struct nbdp_option *o)
{
	if (nbdp_get64(in) != NBD_IHAVEOPT)
		return -1;
	o->opt = nbdp_get32(in + 8);
	o->len = nbdp_get32(in + 12);
	return 0;
}

void nbdp_optrep_encode(uint8_t out[NBDP_OPTREP_HDR_SIZE], uint32_t opt,
			uint32_t type, uint32_t len)
{
	nbdp_put64(out, NBD_REP_MAGIC);
	nbdp_put32(out + 8, opt);
	nbdp_put32(out + 12, type);
	nbdp_put32(out + 16, len);
}

/* Copies a protocol string of LEN bytes into OUT (NUL-terminated).
 * Returns 0, or -1 if it is too long or holds a NUL. */
static int copy_string(char *out, const uint8_t *in, uint32_t len)
{
	if (len > NBDP_MAX_STRING || memchr(in, 0, len))
		return -1;
	memcpy(out, in, len);
	out[len] = '\0';
	return 0;
}

uint32_t nbdp_info_req_parse(const uint8_t *data, uint32_t len,
			     struct nbdp_info_req *out)
{
	uint32_t namelen, n, i;

	memset(out, 0, sizeof(*out));
	if (len < 6)
		return NBD_REP_ERR_INVALID;
	namelen = nbdp_get32(data);
	if (namelen > len - 6)
		return NBD_REP_ERR_INVALID;
	if (copy_string(out->name, data + 4, namelen))
		return NBD_REP_ERR_INVALID;
	n = nbdp_get16(data + 4 + namelen);
	if ((uint64_t)len != 6ull + namelen + 2ull * n)
		return NBD_REP_ERR_INVALID;
	for (i = 0; i < n; i++) {
		if (out->ninfos < NBDP_MAX_INFO_REQS)
			out->infos[out->ninfos++] =
				nbdp_get16(data + 6 + namelen + 2 * i);
	}
	return 0;
}

uint32_t nbdp_meta_req_parse(const uint8_t *data, uint32_t len, int is_list,
			     struct nbdp_meta_req *out)
{
	uint32_t namelen, pos, i, qlen;

	memset(out, 0, sizeof(*out));
	if (len < 8)
		return NBD_REP_ERR_INVALID;
	namelen = nbdp_get32(data);
	if (namelen > len - 8)
		return NBD_REP_ERR_INVALID;
	if (copy_string(out->name, data + 4, namelen))
		return NBD_REP_ERR_INVALID;
	pos = 4 + namelen;
	out->nqueries = nbdp_get32(data + pos);
	pos += 4;
	/* Each query needs at least 4 bytes: this bounds the loop by LEN. */
	if (out->nqueries > (len - pos) / 4)
		return NBD_REP_ERR_INVALID;
	for (i = 0; i < out->nqueries; i++) {
		if (len - pos < 4)
			return NBD_REP_ERR_INVALID;
		qlen = nbdp_get32(data + pos);
		pos += 4;
		if (qlen > len - pos || qlen > NBDP_MAX_STRING ||
		    memchr(data + pos, 0, qlen))
			return NBD_REP_ERR_INVALID;
		if (qlen == strlen(NBDP_META_ALLOCATION) &&
		    !memcmp(data + pos, NBDP_META_ALLOCATION, qlen))
			out->want_allocation = 1;
		/* LIST with a bare namespace lists all of its contexts. */
		if (is_list && qlen == 5 && !memcmp(data + pos, "base:", 5))
			out->want_allocation = 1;
		pos += qlen;
	}
	if (pos != len)
		return NBD_REP_ERR_INVALID;
	if (is_list && out->nqueries == 0)
		out->want_allocation = 1;
	return 0;
}

uint16_t nbdp_export_flags(int readonly, int structured)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
		     NBD_FLAG_SEND_FUA | NBD_FLAG_CAN_MULTI_CONN |
		     NBD_FLAG_SEND_CACHE;

	if (readonly)
		f |= NBD_FLAG_READ_ONLY;
	else
		f |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
		     NBD_FLAG_SEND_FAST_ZERO;
	if (structured)
		f |= NBD_FLAG_SEND_DF;
	return f;
}

/* ---- requests ------------------------------------------------------------ */

int nbdp_request_decode(const uint8_t in[NBDP_REQUEST_SIZE],
			struct nbdp_request *r)
{
	if (nbdp_get32(in) != NBD_REQUEST_MAGIC)
		return -1;
	r->flags = nbdp_get16(in + 4);
	r->type = nbdp_get16(in + 6);
	r->handle = nbdp_get64(in + 8);
	r->offset = nbdp_get64(in + 16);
	r->length = nbdp_get32(in + 24);
	return 0;
}

uint32_t nbdp_request_payload(const struct nbdp_request *r)
{
	return r->type == NBD_CMD_WRITE ? r->length : 0;
}

int nbdp_request_fatal(const struct nbdp_request *r)
{
	return r->type == NBD_CMD_WRITE && r->length > NBDP_MAX_REQUEST;
}

uint32_t nbdp_request_check(const struct nbdp_request *r,
			    const struct nbdp_xmit *x)
{
	const int readonly = !!(x->eflags & NBD_FLAG_READ_ONLY);
	uint16_t allowed = NBD_CMD_FLAG_FUA;
	int is_write = 0;

	switch (r->type) {
	case NBD_CMD_READ:
		if (x->structured)
			allowed |= NBD_CMD_FLAG_DF;
		break;
	case NBD_CMD_WRITE:
	case NBD_CMD_TRIM:
		is_write = 1;
		break;
	case NBD_CMD_WRITE_ZEROES:
		is_write = 1;
		allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
		break;
	case NBD_CMD_BLOCK_STATUS:
		allowed |= NBD_CMD_FLAG_REQ_ONE;
		break;
	case NBD_CMD_FLUSH:
	case NBD_CMD_CACHE:
	case NBD_CMD_DISC:
		break;
	default:
		return NBD_EINVAL;
	}
	if (r->flags & ~allowed)
		return NBD_EINVAL;
	if (r->type == NBD_CMD_DISC)
		return 0;
	if (is_write && readonly)
		return NBD_EPERM;
	if (r->type == NBD_CMD_FLUSH)
		return r->offset || r->length ? NBD_EINVAL : 0;
	if (r->type == NBD_CMD_BLOCK_STATUS && !x->meta_alloc)
		return NBD_EINVAL;
	if (r->length == 0)
		return NBD_EINVAL;
	if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) &&
	    r->length > NBDP_MAX_REQUEST)
		return NBD_EINVAL;
	if (r->offset > x->size || r->length > x->size - r->offset)
		return is_write ? NBD_ENOSPC : NBD_EINVAL;
	return 0;
}

const char *nbdp_cmd_name(uint16_t type, char buf[16])
{
	static const char *const names[] = {
		"READ", "WRITE", "DISC", "FLUSH", "TRIM", "CACHE",
		"WRITE_ZEROES", "BLOCK_STATUS",
	};

	if (type < sizeof(names) / sizeof(names[0]))
		return names[type];
	snprintf(buf, 16, "CMD#%u", (unsigned)type);
	return buf;
}

/* ---- replies ------------------------------------------------------------- */

void nbdp_simple_reply_encode(uint8_t out[NBDP_SIMPLE_REPLY_SIZE],
			      uint32_t error, uint64_t handle)
{
	nbdp_put32(out, NBD_SIMPLE_REPLY_MAGIC);
	nbdp_put32(out + 4, error);
	nbdp_put64(out + 8, handle);
}

void nbdp_chunk_encode(uint8_t out[NBDP_CHUNK_HDR_SIZE], uint16_t flags,
		       uint16_t type, uint64_t handle, uint32_t len)
{
	nbdp_put32(out, NBD_STRUCT_REPLY_MAGIC);
	nbdp_put16(out + 4, flags);
	nbdp_put16(out + 6, type);
	nbdp_put64(out + 8, handle);
	nbdp_put32(out + 16, len);
}

size_t nbdp_error_payload(uint8_t *out, size_t outlen, uint32_t error,
			  const char *msg)
{
	size_t n = msg ? strlen(msg) : 0;

	if (outlen < 6)
		return 0;
	if (n > outlen - 6)
		n = outlen - 6;
	if (n > 0xffff)
		n = 0xffff;
	nbdp_put32(out, error);
	nbdp_put16(out + 4, (uint16_t)n);
	if (n)
		memcpy(out + 6, msg, n);
	return 6 + n;
}

void nbdp_bs_init(struct nbdp_bs *bs, uint8_t *buf, uint32_t max,
		  uint32_t context_id, uint64_t limit)
{
	bs->buf = buf;
	bs->max = max ? max : 1;
	bs->count = 0;
	bs->covered = 0;
	bs->limit = limit;
	nbdp_put32(buf, context_id);
}

int nbdp_bs_add(struct nbdp_bs *bs, uint64_t len, uint32_t flags)
{
	uint8_t *last;

	if (len > bs->limit - bs->covered)
		len = bs->limit - bs->covered;
	if (len == 0)
		return 1;
	if (bs->count) {
		last = bs->buf + 4 + 8 * (bs->count - 1);
		if (nbdp_get32(last + 4) == flags &&
		    nbdp_get32(last) + len <= UINT32_MAX) {
			nbdp_put32(last, (uint32_t)(nbdp_get32(last) + len));
			bs->covered += len;
			return bs->covered == bs->limit;
		}
	}
	if (bs->count == bs->max)
		return 1;
	/* A descriptor length is 32 bits: split anything longer. */
	while (len > 0 && bs->count < bs->max) {
		const uint32_t piece = len > 0xfffff000u ? 0xfffff000u :
							   (uint32_t)len;

		last = bs->buf + 4 + 8 * bs->count++;
		nbdp_put32(last, piece);
		nbdp_put32(last + 4, flags);
		bs->covered += piece;
		len -= piece;
	}
	return bs->covered == bs->limit || bs->count == bs->max;
}

size_t nbdp_bs_size(const struct nbdp_bs *bs)
{
	return 4 + 8 * (size_t)bs->count;
}
