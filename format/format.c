/* Encoders and decoders for every structure vdisk writes (see FORMAT.md).
 * Decoders reject what a reader must reject; they never trust a length. */
#include <string.h>
#include <xxhash.h>

#include "format.h"

_Static_assert(sizeof(FMT_SB_MAGIC) - 1 == 8, "superblock magic is 8 bytes");
_Static_assert(sizeof(FMT_PACK_MAGIC) - 1 == 8, "pack magic is 8 bytes");

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bitwise: it only
 * guards 64-byte headers, so a table would buy nothing. */
uint32_t fmt_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* ---- superblock --------------------------------------------------------- */

void fmt_sb_encode(const struct fmt_superblock *sb, uint8_t out[FMT_SB_SIZE])
{
	memset(out, 0, FMT_SB_SIZE);
	memcpy(out, FMT_SB_MAGIC, 8);
	fmt_put_le32(out + 8, sb->version);
	fmt_put_le32(out + 12, sb->chunk_size);
	memcpy(out + 16, sb->uuid, 16);
	fmt_put_le64(out + 32, sb->created);
	fmt_put_le32(out + 60, fmt_crc32c(0, out, 60));
}

static int chunk_size_valid(uint32_t cs)
{
	return cs >= 4096 && cs <= 1024 * 1024 && (cs & (cs - 1)) == 0;
}

int fmt_sb_decode(const uint8_t in[FMT_SB_SIZE], struct fmt_superblock *sb)
{
	if (memcmp(in, FMT_SB_MAGIC, 8) != 0)
		return FMT_BAD_MAGIC;
	if (fmt_get_le32(in + 60) != fmt_crc32c(0, in, 60))
		return FMT_BAD_CRC;
	sb->version = fmt_get_le32(in + 8);
	sb->chunk_size = fmt_get_le32(in + 12);
	memcpy(sb->uuid, in + 16, 16);
	sb->created = fmt_get_le64(in + 32);
	if (sb->version < FMT_VERSION_MIN || sb->version > FMT_VERSION)
		return FMT_BAD_VERSION;
	if (!chunk_size_valid(sb->chunk_size) || !all_zero(in + 40, 20))
		return FMT_BAD_FIELD;
	return 0;
}

/* ---- pack files --------------------------------------------------------- */

void fmt_pack_header_encode(const struct fmt_pack_header *h,
			    uint8_t out[FMT_PACK_HEADER_SIZE])
{
	memset(out, 0, FMT_PACK_HEADER_SIZE);
	memcpy(out, FMT_PACK_MAGIC, 8);
	fmt_put_le32(out + 8, h->version);
	fmt_put_le32(out + 12, h->pack_id);
	memcpy(out + 16, h->uuid, 16);
	fmt_put_le32(out + 60, fmt_crc32c(0, out, 60));
}

int fmt_pack_header_decode(const uint8_t in[FMT_PACK_HEADER_SIZE],
			   struct fmt_pack_header *h)
{
	if (memcmp(in, FMT_PACK_MAGIC, 8) != 0)
		return FMT_BAD_MAGIC;
	if (fmt_get_le32(in + 60) != fmt_crc32c(0, in, 60))
		return FMT_BAD_CRC;
	h->version = fmt_get_le32(in + 8);
	h->pack_id = fmt_get_le32(in + 12);
	memcpy(h->uuid, in + 16, 16);
	if (h->version != FMT_PACK_VERSION)
		return FMT_BAD_VERSION;
	if (!all_zero(in + 32, 28))
		return FMT_BAD_FIELD;
	return 0;
}

void fmt_record_encode(const struct fmt_record *r,
		       uint8_t out[FMT_REC_HEADER_SIZE])
{
	memset(out, 0, FMT_REC_HEADER_SIZE);
	fmt_put_le32(out, FMT_REC_MAGIC);
	out[4] = r->codec;
	fmt_put_le32(out + 8, r->stored_len);
	fmt_put_le32(out + 12, r->raw_len);
	memcpy(out + 16, r->hash, 32);
}

int fmt_record_decode(const uint8_t in[FMT_REC_HEADER_SIZE],
		      struct fmt_record *r)
{
	if (fmt_get_le32(in) != FMT_REC_MAGIC)
		return FMT_BAD_MAGIC;
	r->codec = in[4];
	r->stored_len = fmt_get_le32(in + 8);
	r->raw_len = fmt_get_le32(in + 12);
	memcpy(r->hash, in + 16, 32);
	if (r->codec > FMT_CODEC_FRAMED || !all_zero(in + 5, 3) ||
	    !chunk_size_valid(r->raw_len) || r->stored_len == 0 ||
	    r->stored_len > r->raw_len +
	    (r->codec == FMT_CODEC_FRAMED ? fmt_frames_slack(r->raw_len) : 0) ||
	    (r->codec == FMT_CODEC_RAW && r->stored_len != r->raw_len))
		return FMT_BAD_FIELD;
	return 0;
}

/* ---- frame tables ------------------------------------------------------- */

/* libxxhash's plain XXH3_64bits is its SSE2 build; its _dispatch twin
 * picks AVX2 or AVX-512 at run time, the same hash: 16 KiB frames just
 * read from the page cache hash at 76 GB/s instead of 18 here, which was
 * two fifths of the CPU of a sequential read of raw frames. */
#if defined(__x86_64__) && __has_include(<xxh_x86dispatch.h>)
#define XXH_DISPATCH_DISABLE_REPLACE
#include <xxh_x86dispatch.h>
#define frame_hash XXH3_64bits_dispatch
#else
#define frame_hash XXH3_64bits
#endif

uint64_t fmt_frame_check(const void *stored, size_t len)
{
	return frame_hash(len ? stored : "", len);
}

size_t fmt_frames_encode(const struct fmt_frame_table *t,
			 const uint8_t name[32], uint8_t *out)
{
	const size_t n = fmt_frame_table_size(t->nframes);
	uint8_t *p = out + 8;

	fmt_put_le32(out, t->frame_size);
	fmt_put_le32(out + 4, t->nframes);
	for (uint32_t i = 0; i < t->nframes; i++, p += FMT_FRAME_ENTRY_SIZE) {
		fmt_put_le32(p, t->f[i].stored_len);
		p[4] = t->f[i].kind;
		p[5] = p[6] = p[7] = 0;
		fmt_put_le64(p + 8, t->f[i].check);
	}
	fmt_put_le64(p, XXH3_64bits_withSeed(out, n - 8, fmt_get_le64(name)));
	return n;
}

int fmt_frames_decode(const uint8_t *in, size_t len, uint32_t chunk_size,
		      const uint8_t name[32], struct fmt_frame_table *t)
{
	const uint8_t *p = in + 8;
	size_t n, pos;

	if (len < 8)
		return FMT_BAD_FIELD;
	t->frame_size = fmt_get_le32(in);
	t->nframes = fmt_get_le32(in + 4);
	if (!chunk_size_valid(chunk_size) || t->frame_size < FMT_FRAME_MIN ||
	    t->frame_size > chunk_size || (t->frame_size & (t->frame_size - 1)) ||
	    t->nframes != chunk_size / t->frame_size)
		return FMT_BAD_FIELD;
	n = fmt_frame_table_size(t->nframes);
	if (len < n)
		return FMT_BAD_FIELD;
	if (fmt_get_le64(in + n - 8) !=
	    XXH3_64bits_withSeed(in, n - 8, fmt_get_le64(name)))
		return FMT_BAD_CRC;
	pos = n;
	for (uint32_t i = 0; i < t->nframes; i++, p += FMT_FRAME_ENTRY_SIZE) {
		struct fmt_frame *f = &t->f[i];

		f->stored_len = fmt_get_le32(p);
		f->kind = p[4];
		f->check = fmt_get_le64(p + 8);
		f->offset = (uint32_t)pos;
		if (!all_zero(p + 5, 3) || f->kind > FMT_FRAME_ZERO ||
		    (f->kind == FMT_FRAME_RAW && f->stored_len != t->frame_size) ||
		    (f->kind == FMT_FRAME_ZSTD &&
		     (f->stored_len == 0 || f->stored_len >= t->frame_size)) ||
		    (f->kind == FMT_FRAME_ZERO && f->stored_len != 0) ||
		    f->stored_len > len - pos)
			return FMT_BAD_FIELD;
		pos += f->stored_len;
	}
	return pos == len ? 0 : FMT_BAD_FIELD;
}

/* ---- journal ------------------------------------------------------------ */

void fmt_jnl_header_encode(const struct fmt_jnl_header *h,
			   uint8_t out[FMT_JNL_HEADER_SIZE])
{
	memset(out, 0, FMT_JNL_HEADER_SIZE);
	memcpy(out, FMT_JNL_MAGIC, 8);
	fmt_put_le32(out + 8, h->version);
	memcpy(out + 16, h->uuid, 16);
	fmt_put_le64(out + 32, h->layer);
	fmt_put_le64(out + 40, h->segment);
	fmt_put_le32(out + 60, fmt_crc32c(0, out, 60));
}

int fmt_jnl_header_decode(const uint8_t in[FMT_JNL_HEADER_SIZE],
			  struct fmt_jnl_header *h)
{
	if (memcmp(in, FMT_JNL_MAGIC, 8) != 0)
		return FMT_BAD_MAGIC;
	if (fmt_get_le32(in + 60) != fmt_crc32c(0, in, 60))
		return FMT_BAD_CRC;
	h->version = fmt_get_le32(in + 8);
	memcpy(h->uuid, in + 16, 16);
	h->layer = fmt_get_le64(in + 32);
	h->segment = fmt_get_le64(in + 40);
	if (h->version != FMT_JNL_VERSION)
		return FMT_BAD_VERSION;
	if (!all_zero(in + 12, 4) || !all_zero(in + 48, 12) || h->layer == 0 ||
	    h->segment == 0)
		return FMT_BAD_FIELD;
	return 0;
}

static uint64_t jrec_check(const uint8_t in[FMT_JREC_HEADER_SIZE],
			   const void *data, uint64_t len)
{
	return XXH3_64bits_withSeed(data, data ? (size_t)len : 0,
				    XXH3_64bits(in, 32));
}

void fmt_jrec_encode(struct fmt_jrec *r, const void *data,
		     uint8_t out[FMT_JREC_HEADER_SIZE])
{
	memset(out, 0, FMT_JREC_HEADER_SIZE);
	fmt_put_le32(out, FMT_JREC_MAGIC);
	out[4] = (uint8_t)r->kind;
	out[5] = (uint8_t)(r->kind >> 8);
	fmt_put_le64(out + 8, r->seq);
	fmt_put_le64(out + 16, r->offset);
	fmt_put_le64(out + 24, r->length);
	r->check = jrec_check(out, fmt_jrec_data_len(r->kind, r->length) ? data : NULL,
			      fmt_jrec_data_len(r->kind, r->length));
	fmt_put_le64(out + 32, r->check);
}

int fmt_jrec_decode(const uint8_t in[FMT_JREC_HEADER_SIZE], struct fmt_jrec *r)
{
	if (fmt_get_le32(in) != FMT_JREC_MAGIC)
		return FMT_BAD_MAGIC;
	r->kind = (uint16_t)(in[4] | in[5] << 8);
	r->seq = fmt_get_le64(in + 8);
	r->offset = fmt_get_le64(in + 16);
	r->length = fmt_get_le64(in + 24);
	r->check = fmt_get_le64(in + 32);
	if (r->kind == FMT_JREC_EPOCH)
		return in[6] || in[7] || r->seq == 0 || r->length != 0 ||
		       r->offset == 0 ? FMT_BAD_FIELD : 0;
	if ((r->kind != FMT_JREC_WRITE && r->kind != FMT_JREC_ZERO &&
	     r->kind != FMT_JREC_CHUNK) ||
	    in[6] || in[7] || r->seq == 0 || r->length == 0 ||
	    (r->kind == FMT_JREC_WRITE && r->length > FMT_JREC_DATA_MAX) ||
	    r->offset + r->length < r->offset)
		return FMT_BAD_FIELD;
	return 0;
}

int fmt_jrec_verify(const uint8_t in[FMT_JREC_HEADER_SIZE],
		    const struct fmt_jrec *r, const void *data)
{
	return jrec_check(in, fmt_jrec_data_len(r->kind, r->length) ? data : NULL,
			  fmt_jrec_data_len(r->kind, r->length)) == r->check;
}

uint64_t fmt_jrec_data_len(unsigned kind, uint64_t length)
{
	return kind == FMT_JREC_WRITE ? length
	       : kind == FMT_JREC_CHUNK ? FMT_JCHUNK_SIZE : 0;
}

void fmt_jchunk_encode(const struct fmt_jchunk *c, uint8_t out[FMT_JCHUNK_SIZE])
{
	memset(out, 0, FMT_JCHUNK_SIZE);
	memcpy(out, c->hash, 32);
	fmt_put_le32(out + 32, c->pack_id);
	out[36] = c->codec;
	fmt_put_le64(out + 40, c->offset);
	fmt_put_le32(out + 48, c->stored_len);
}

int fmt_jchunk_decode(const uint8_t in[FMT_JCHUNK_SIZE], struct fmt_jchunk *c)
{
	memcpy(c->hash, in, 32);
	c->pack_id = fmt_get_le32(in + 32);
	c->codec = in[36];
	c->offset = fmt_get_le64(in + 40);
	c->stored_len = fmt_get_le32(in + 48);
	for (int i = 37; i < 40; i++)
		if (in[i])
			return FMT_BAD_FIELD;
	for (int i = 52; i < 56; i++)
		if (in[i])
			return FMT_BAD_FIELD;
	return c->stored_len ? 0 : FMT_BAD_FIELD;
}

/* ---- LMDB keys ---------------------------------------------------------- */

void fmt_map_key(uint8_t out[FMT_MAP_KEY_SIZE], uint64_t layer, uint64_t idx,
		 uint64_t epoch)
{
	fmt_put_be64(out, layer);
	fmt_put_be64(out + 8, idx);
	fmt_put_be64(out + 16, ~epoch);
}

void fmt_map_key_decode(const uint8_t in[FMT_MAP_KEY_SIZE], uint64_t *layer,
			uint64_t *idx, uint64_t *epoch)
{
	*layer = fmt_get_be64(in);
	*idx = fmt_get_be64(in + 8);
	*epoch = ~fmt_get_be64(in + 16);
}

size_t fmt_map_val_encode(const struct fmt_map_val *v,
			  uint8_t out[FMT_MAP_VAL_DATA_SIZE])
{
	out[0] = v->kind;
	if (v->kind != FMT_MAP_DATA)
		return FMT_MAP_VAL_HOLE_SIZE;
	memcpy(out + 1, v->hash, 32);
	return FMT_MAP_VAL_DATA_SIZE;
}

int fmt_map_val_decode(const uint8_t *in, size_t len, struct fmt_map_val *v)
{
	if (len == FMT_MAP_VAL_HOLE_SIZE && in[0] == FMT_MAP_HOLE) {
		v->kind = FMT_MAP_HOLE;
		return 0;
	}
	if (len == FMT_MAP_VAL_DATA_SIZE && in[0] == FMT_MAP_DATA) {
		v->kind = FMT_MAP_DATA;
		memcpy(v->hash, in + 1, 32);
		return 0;
	}
	return FMT_BAD_FIELD;
}

void fmt_epoch_key(uint8_t out[FMT_MAP_KEY_SIZE], uint64_t layer,
		   uint64_t epoch, uint64_t idx)
{
	fmt_put_be64(out, layer);
	fmt_put_be64(out + 8, epoch);
	fmt_put_be64(out + 16, idx);
}

void fmt_epoch_key_decode(const uint8_t in[FMT_MAP_KEY_SIZE], uint64_t *layer,
			  uint64_t *epoch, uint64_t *idx)
{
	*layer = fmt_get_be64(in);
	*epoch = fmt_get_be64(in + 8);
	*idx = fmt_get_be64(in + 16);
}

void fmt_reader_key(uint8_t out[FMT_READER_KEY_SIZE], uint64_t layer,
		    uint64_t epoch)
{
	fmt_put_be64(out, layer);
	fmt_put_be64(out + 8, epoch);
}

void fmt_reader_key_decode(const uint8_t in[FMT_READER_KEY_SIZE],
			   uint64_t *layer, uint64_t *epoch)
{
	*layer = fmt_get_be64(in);
	*epoch = fmt_get_be64(in + 8);
}

void fmt_u64_key(uint8_t out[8], uint64_t v)
{
	fmt_put_be64(out, v);
}

uint64_t fmt_u64_key_decode(const uint8_t in[8])
{
	return fmt_get_be64(in);
}

/* ---- LMDB values -------------------------------------------------------- */

void fmt_chunk_encode(const struct fmt_chunk *c,
		      uint8_t out[FMT_CHUNK_VAL_SIZE])
{
	memset(out, 0, FMT_CHUNK_VAL_SIZE);
	fmt_put_le32(out, c->pack_id);
	fmt_put_le32(out + 4, c->stored_len);
	fmt_put_le64(out + 8, c->offset);
	fmt_put_le64(out + 16, c->refs);
	out[24] = c->codec;
}

int fmt_chunk_decode(const uint8_t *in, size_t len, struct fmt_chunk *c)
{
	if (len != FMT_CHUNK_VAL_SIZE)
		return FMT_BAD_FIELD;
	c->pack_id = fmt_get_le32(in);
	c->stored_len = fmt_get_le32(in + 4);
	c->offset = fmt_get_le64(in + 8);
	c->refs = fmt_get_le64(in + 16);
	c->codec = in[24];
	if (c->codec > FMT_CODEC_FRAMED || c->pack_id == 0 ||
	    c->stored_len == 0 || c->offset < FMT_PACK_HEADER_SIZE ||
	    !all_zero(in + 25, 7))
		return FMT_BAD_FIELD;
	return 0;
}

void fmt_layer_encode(const struct fmt_layer *l,
		      uint8_t out[FMT_LAYER_VAL_SIZE])
{
	fmt_put_le64(out, l->parent);
	fmt_put_le64(out + 8, l->parent_epoch);
	fmt_put_le64(out + 16, l->epoch);
	fmt_put_le64(out + 24, l->created);
}

int fmt_layer_decode(const uint8_t *in, size_t len, struct fmt_layer *l)
{
	if (len != FMT_LAYER_VAL_SIZE)
		return FMT_BAD_FIELD;
	l->parent = fmt_get_le64(in);
	l->parent_epoch = fmt_get_le64(in + 8);
	l->epoch = fmt_get_le64(in + 16);
	l->created = fmt_get_le64(in + 24);
	if (l->epoch == 0 || l->epoch == FMT_EPOCH_HEAD ||
	    (l->parent == 0 && l->parent_epoch != 0))
		return FMT_BAD_FIELD;
	return 0;
}

/* A NUL-padded name field of 64 bytes; an all-NUL field is "". */
static int name_field_decode(const uint8_t *in, char out[65])
{
	size_t n = 0;
	while (n < 64 && in[n])
		n++;
	if (!all_zero(in + n, 64 - n))
		return -1;
	memcpy(out, in, n);
	out[n] = '\0';
	return 0;
}

void fmt_volume_encode(const struct fmt_volume *v,
		       uint8_t out[FMT_VOLUME_VAL_SIZE])
{
	memset(out, 0, FMT_VOLUME_VAL_SIZE);
	fmt_put_le64(out, v->size);
	fmt_put_le64(out + 8, v->layer);
	fmt_put_le64(out + 16, v->created);
	memcpy(out + 32, v->origin_vol, strnlen(v->origin_vol, 64));
	memcpy(out + 96, v->origin_snap, strnlen(v->origin_snap, 64));
}

int fmt_volume_decode(const uint8_t *in, size_t len, struct fmt_volume *v)
{
	if (len != FMT_VOLUME_VAL_SIZE)
		return FMT_BAD_FIELD;
	v->size = fmt_get_le64(in);
	v->layer = fmt_get_le64(in + 8);
	v->created = fmt_get_le64(in + 16);
	if (!all_zero(in + 24, 8) || name_field_decode(in + 32, v->origin_vol) ||
	    name_field_decode(in + 96, v->origin_snap) || v->layer == 0 ||
	    v->size == 0 || (v->origin_vol[0] == '\0') != (v->origin_snap[0] == '\0'))
		return FMT_BAD_FIELD;
	return 0;
}

void fmt_snapshot_encode(const struct fmt_snapshot *s,
			 uint8_t out[FMT_SNAP_VAL_SIZE])
{
	fmt_put_le64(out, s->layer);
	fmt_put_le64(out + 8, s->epoch);
	fmt_put_le64(out + 16, s->size);
	fmt_put_le64(out + 24, s->created);
}

int fmt_snapshot_decode(const uint8_t *in, size_t len, struct fmt_snapshot *s)
{
	if (len != FMT_SNAP_VAL_SIZE)
		return FMT_BAD_FIELD;
	s->layer = fmt_get_le64(in);
	s->epoch = fmt_get_le64(in + 8);
	s->size = fmt_get_le64(in + 16);
	s->created = fmt_get_le64(in + 24);
	if (s->layer == 0 || s->epoch == 0 || s->epoch == FMT_EPOCH_HEAD ||
	    s->size == 0)
		return FMT_BAD_FIELD;
	return 0;
}

size_t fmt_snap_key(uint8_t out[130], const char *vol, const char *snap)
{
	const size_t vl = strnlen(vol, 64), sl = strnlen(snap, 64);

	memcpy(out, vol, vl);
	out[vl] = '\0';
	memcpy(out + vl + 1, snap, sl);
	return vl + 1 + sl;
}

int fmt_snap_key_decode(const uint8_t *in, size_t len, char vol[65],
			char snap[65])
{
	const uint8_t *nul = memchr(in, '\0', len);
	const size_t vl = nul ? (size_t)(nul - in) : len, sl = len - vl - 1;

	if (!nul || vl == 0 || vl > 64 || sl == 0 || sl > 64 ||
	    memchr(nul + 1, '\0', sl))
		return FMT_BAD_FIELD;
	memcpy(vol, in, vl);
	vol[vl] = '\0';
	memcpy(snap, nul + 1, sl);
	snap[sl] = '\0';
	return 0;
}
