/* Corruption tests: damaged stores fail with the corruption code, never
 * return wrong bytes, and never crash.
 *
 * A template store (4 KiB chunks) holds a volume with random, compressible,
 * deduplicated and zero chunks and holes, a snapshot of it, a clone of the
 * snapshot, and later writes to the head and the clone.  Each scenario
 * copies the template, damages it with the store closed, then (in a child
 * process, so that a crash is reported by name) reopens it and checks:
 *  - every read of a damaged chunk fails with VD_ECORRUPT, in every point
 *    (head, snapshot, clone) that shares it, and again on a second read (no
 *    bad bytes cached);
 *  - every other chunk reads back exactly;
 *  - a read spanning a damaged chunk fails; a partial write into one fails
 *    with VD_ECORRUPT; a whole-chunk overwrite repairs the head's view;
 *  - vd_store_check reports problems (count > 0) and names each damaged
 *    chunk (its hash prefix, or the point and chunk index that use it).
 * Damage: bit flips in pack payloads and record headers, a damaged pack
 * header, truncated and deleted pack files, and LMDB values written directly
 * (chunk locations, lengths, codecs, reference counts, malformed values,
 * missing chunk entries, map values naming a wrong or missing hash,
 * malformed map values).  Then superblocks: torn, garbage, truncated,
 * empty, bad CRC, bad field, missing, and a future format version.  Last,
 * the frames of one 64 KiB chunk: a flipped bit in one frame fails reads of
 * that frame only, one in the frame table fails the chunk.
 *
 * Usage: test-corrupt [seed] */
#include <fcntl.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zstd.h>

#include "engine/vdisk.h"
#include "format/format.h"
#include "engine-test.h"
#include "index-test.h"

#define CHUNK   4096u
#define NCHUNK  64u
#define VOLSIZE (NCHUNK * CHUNK)
#define NPOINT  3

static const char *const point_vol[NPOINT] = {"alpha", "alpha", "beta"};
static const char *const point_snap[NPOINT] = {NULL, "s", NULL};
static const char *const point_name[NPOINT] = {"alpha", "alpha@s", "beta"};

static struct et_rng rng;
static char tmp[4096], tmpl[4200], work[4200];
static uint8_t model[NPOINT][VOLSIZE];
static uint8_t hashes[NPOINT][NCHUNK][32];

/* The chunks DB of the template. */
struct chunk_ent {
	uint8_t hash[32];
	struct fmt_chunk c;
};
static struct chunk_ent chunks[4 * NCHUNK];
static int nchunks;

static void hex16(const uint8_t h[32], char out[17])
{
	for (int i = 0; i < 8; i++)
		sprintf(out + 2 * i, "%02x", h[i]);
}

static void problem_cb(void *opaque, const char *what);

/* ---- the template store ------------------------------------------------- */

static void put(vd_volume *v, int point, uint32_t idx, const uint8_t *data)
{
	const int rc = vd_volume_pwrite(v, data, CHUNK, (uint64_t)idx * CHUNK);
	if (rc < 0)
		DIE("write: %s; %s", vd_strerror(rc), vd_last_error());
	memcpy(model[point] + (uint64_t)idx * CHUNK, data, CHUNK);
}

static void compressible(uint8_t *p, uint32_t tag)
{
	for (uint32_t i = 0; i < CHUNK; i += 64)
		snprintf((char *)p + i, 64, "chunk %u line %u: the quick brown fox%*s",
			 tag, i / 64, 20, "");
}

static void make_template(void)
{
	struct vd_store_options o = {.chunk_size = CHUNK, .create = 1};
	vd_store *st;
	vd_volume *v, *c;
	uint8_t b[CHUNK], dup[CHUNK];
	int rc;

	snprintf(tmpl, sizeof(tmpl), "%s/template", tmp);
	if ((rc = vd_store_open(tmpl, &o, &st)) < 0)
		DIE("create: %s; %s", vd_strerror(rc), vd_last_error());
	if ((rc = vd_volume_create(st, "alpha", VOLSIZE)) < 0 ||
	    (rc = vd_volume_open(st, "alpha", NULL, 0, &v)) < 0)
		DIE("volume: %s; %s", vd_strerror(rc), vd_last_error());
	et_fill(&rng, dup, CHUNK);
	for (uint32_t i = 0; i < 48; i++) {
		if (i < 30)
			et_fill(&rng, b, CHUNK);           /* raw */
		else if (i < 40)
			compressible(b, i);                /* zstd */
		else if (i < 44)
			memcpy(b, dup, CHUNK);             /* deduplicated */
		else
			memset(b, 0, CHUNK);               /* written zeroes */
		put(v, 0, i, b);
	}
	/* 48..63 stay holes. */
	if ((rc = vd_volume_flush(v)) < 0 ||
	    (rc = vd_snapshot_create(st, "alpha", "s")) < 0 ||
	    (rc = vd_clone_create(st, "alpha", "s", "beta")) < 0)
		DIE("snapshot/clone: %s; %s", vd_strerror(rc), vd_last_error());
	memcpy(model[1], model[0], VOLSIZE);
	memcpy(model[2], model[0], VOLSIZE);
	/* The head moves on: chunks 0..3 and 30 differ from the snapshot. */
	for (uint32_t i = 0; i < 4; i++) {
		et_fill(&rng, b, CHUNK);
		put(v, 0, i, b);
	}
	compressible(b, 1000);
	put(v, 0, 30, b);
	if ((rc = vd_volume_close(v)) < 0)
		DIE("close: %s", vd_strerror(rc));
	/* So does the clone: chunk 10 and 50. */
	if ((rc = vd_volume_open(st, "beta", NULL, 0, &c)) < 0)
		DIE("open clone: %s; %s", vd_strerror(rc), vd_last_error());
	et_fill(&rng, b, CHUNK);
	put(c, 2, 10, b);
	et_fill(&rng, b, CHUNK);
	put(c, 2, 50, b);
	if ((rc = vd_volume_close(c)) < 0)
		DIE("close: %s", vd_strerror(rc));
	rc = vd_store_check(st, NULL, problem_cb, NULL);
	if (rc != 0)
		DIE("the template store is not clean: %d", rc);
	vd_store_close(st);

	for (int p = 0; p < NPOINT; p++)
		for (uint32_t i = 0; i < NCHUNK; i++)
			et_sha256(model[p] + (uint64_t)i * CHUNK, CHUNK, hashes[p][i]);
}

static void load_chunks(void)
{
	struct et_idx x;
	MDB_cursor *cur;
	MDB_val k, v;

	et_idx_open(tmpl, &x);
	nchunks = 0;
	if (mdb_cursor_open(x.txn, x.chunks, &cur))
		DIE("cursor");
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size != 32 || nchunks >= (int)(sizeof(chunks) / sizeof(chunks[0])) ||
		    fmt_chunk_decode(v.mv_data, v.mv_size, &chunks[nchunks].c))
			DIE("template chunks DB: unexpected entry");
		memcpy(chunks[nchunks].hash, k.mv_data, 32);
		nchunks++;
	}
	mdb_cursor_close(cur);
	et_idx_close(&x, 0);
	int framed = 0;
	for (int i = 0; i < nchunks; i++)
		framed += chunks[i].c.codec == FMT_CODEC_FRAMED;
	printf("template: %d chunks (%d framed)\n", nchunks, framed);
	CHECK(nchunks > 0 && framed == nchunks, "expected framed records only");
}

static const struct chunk_ent *find_chunk(const uint8_t hash[32])
{
	for (int i = 0; i < nchunks; i++)
		if (!memcmp(chunks[i].hash, hash, 32))
			return &chunks[i];
	return NULL;
}

/* A stored chunk used by the head at IDX (which must be stored). */
static const struct chunk_ent *head_chunk(uint32_t idx)
{
	const struct chunk_ent *const e = find_chunk(hashes[0][idx]);
	if (!e)
		DIE("chunk %u of the head is not stored", idx);
	return e;
}

/* The newest map entry of the head's layer for IDX: key and value. */
static void head_map_key(struct et_idx *x, const char *vol, uint32_t idx,
			 uint8_t key[FMT_MAP_KEY_SIZE])
{
	MDB_val k = {strlen(vol), (void *)vol}, v;
	struct fmt_volume fv;
	MDB_cursor *cur;

	if (mdb_get(x->txn, x->volumes, &k, &v) ||
	    fmt_volume_decode(v.mv_data, v.mv_size, &fv))
		DIE("volume record of %s", vol);
	fmt_map_key(key, fv.layer, idx, FMT_EPOCH_HEAD);
	k.mv_data = key;
	k.mv_size = FMT_MAP_KEY_SIZE;
	if (mdb_cursor_open(x->txn, x->map, &cur) ||
	    mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE))
		DIE("map entry of %s chunk %u", vol, idx);
	uint64_t l, i, e;
	fmt_map_key_decode(k.mv_data, &l, &i, &e);
	if (l != fv.layer || i != idx)
		DIE("no map entry for %s chunk %u in its own layer", vol, idx);
	memcpy(key, k.mv_data, FMT_MAP_KEY_SIZE);
	mdb_cursor_close(cur);
}

/* ---- scenarios ---------------------------------------------------------- */

/* What a scenario damaged. */
struct expect {
	uint8_t bad_hash[4 * NCHUNK][32]; /* every use of these is damaged */
	int nbad;
	int bad_entry[NPOINT][NCHUNK];   /* these (point, idx) are damaged */
	int unknown[NPOINT][NCHUNK];     /* any result (data swapped) */
	int reads_ok;                    /* damage invisible to reads */
};

static void bad_hash(struct expect *e, const uint8_t h[32])
{
	memcpy(e->bad_hash[e->nbad++], h, 32);
}

static int is_bad(const struct expect *e, int p, uint32_t i)
{
	if (e->bad_entry[p][i])
		return 1;
	for (int k = 0; k < e->nbad; k++)
		if (!memcmp(e->bad_hash[k], hashes[p][i], 32) &&
		    find_chunk(hashes[p][i]))
			return 1;
	return 0;
}

static void pack_path(const char *store, uint32_t id, char *out, size_t n)
{
	snprintf(out, n, "%s/data/%08x.pack", store, id);
}

static void patch_file(const char *path, uint64_t off, uint8_t xor_mask)
{
	const int fd = open(path, O_RDWR);
	uint8_t b;
	if (fd < 0 || pread(fd, &b, 1, (off_t)off) != 1)
		DIE("%s: %s", path, strerror(errno));
	b ^= xor_mask;
	if (pwrite(fd, &b, 1, (off_t)off) != 1)
		DIE("%s: %s", path, strerror(errno));
	close(fd);
}

/* True if flipping MASK at byte POS of a zstd payload changes what it
 * decodes to.  Some bits of a frame (window size, padding) do not: such a
 * record still holds the right bytes, so a reader rightly returns them. */
static bool flip_changes_content(const char *path, const struct fmt_chunk *c,
				 uint32_t pos, uint8_t mask)
{
	static uint8_t payload[CHUNK], before[CHUNK], after[CHUNK];
	const int fd = open(path, O_RDONLY);
	size_t a, b;

	if (fd < 0 || pread(fd, payload, c->stored_len,
			    (off_t)(c->offset + FMT_REC_HEADER_SIZE)) !=
		      (ssize_t)c->stored_len)
		DIE("%s: %s", path, strerror(errno));
	close(fd);
	a = ZSTD_decompress(before, sizeof before, payload, c->stored_len);
	payload[pos] ^= mask;
	b = ZSTD_decompress(after, sizeof after, payload, c->stored_len);
	return ZSTD_isError(b) || a != b || memcmp(before, after, a) != 0;
}

static void flip_payload(struct expect *e, uint32_t idx)
{
	const struct chunk_ent *const c = head_chunk(idx);
	char path[4300];
	uint32_t pos;
	uint8_t mask;

	pack_path(work, c->c.pack_id, path, sizeof(path));
	do {
		pos = (uint32_t)et_below(&rng, c->c.stored_len);
		mask = (uint8_t)(1u << et_below(&rng, 8));
	} while (c->c.codec == FMT_CODEC_ZSTD &&
		 !flip_changes_content(path, &c->c, pos, mask));
	patch_file(path, c->c.offset + FMT_REC_HEADER_SIZE + pos, mask);
	bad_hash(e, c->hash);
}

static void sc_payload_raw(struct expect *e)
{
	flip_payload(e, (uint32_t)et_range(&rng, 4, 29));
}

static void sc_payload_zstd(struct expect *e)
{
	flip_payload(e, (uint32_t)et_range(&rng, 31, 39));
}

static void sc_payload_dedup(struct expect *e)
{
	flip_payload(e, 41); /* shared by chunks 40..43 of all three points */
}

static void sc_payload_two(struct expect *e)
{
	flip_payload(e, 0);  /* head only */
	flip_payload(e, 35); /* all points */
}

static void rec_header(struct expect *e, uint32_t idx, unsigned byte)
{
	const struct chunk_ent *const c = head_chunk(idx);
	char path[4300];
	pack_path(work, c->c.pack_id, path, sizeof(path));
	patch_file(path, c->c.offset + byte, (uint8_t)(1u << et_below(&rng, 8)));
	bad_hash(e, c->hash);
}

static void sc_rec_magic(struct expect *e)
{
	rec_header(e, 7, (unsigned)et_below(&rng, 4));
}

static void sc_rec_codec(struct expect *e)
{
	rec_header(e, 33, 4);
}

static void sc_rec_len(struct expect *e)
{
	rec_header(e, 8, 8 + (unsigned)et_below(&rng, 4));
}

static void sc_rec_rawlen(struct expect *e)
{
	rec_header(e, 9, 12 + (unsigned)et_below(&rng, 4));
}

static void sc_rec_hash(struct expect *e)
{
	rec_header(e, 11, 16 + (unsigned)et_below(&rng, 32));
}

/* Every stored chunk in pack ID whose record reaches past SIZE. */
static void truncate_pack(struct expect *e, uint32_t id, uint64_t size)
{
	char path[4300];
	pack_path(work, id, path, sizeof(path));
	if (truncate(path, (off_t)size) < 0)
		DIE("truncate %s: %s", path, strerror(errno));
	for (int i = 0; i < nchunks; i++)
		if (chunks[i].c.pack_id == id &&
		    chunks[i].c.offset + FMT_REC_HEADER_SIZE + chunks[i].c.stored_len > size)
			bad_hash(e, chunks[i].hash);
}

static uint32_t last_pack(uint64_t *end)
{
	uint32_t id = 0;
	*end = 0;
	for (int i = 0; i < nchunks; i++)
		if (chunks[i].c.pack_id > id)
			id = chunks[i].c.pack_id;
	for (int i = 0; i < nchunks; i++) {
		const uint64_t x = chunks[i].c.offset + FMT_REC_HEADER_SIZE + chunks[i].c.stored_len;
		if (chunks[i].c.pack_id == id && x > *end)
			*end = x;
	}
	return id;
}

static void sc_truncate_tail(struct expect *e)
{
	uint64_t end;
	const uint32_t id = last_pack(&end);
	/* Cut into the middle of the last few records. */
	truncate_pack(e, id, end - et_range(&rng, 1, 3 * CHUNK));
}

static void sc_truncate_header(struct expect *e)
{
	uint64_t end;
	truncate_pack(e, last_pack(&end), FMT_PACK_HEADER_SIZE);
}

static void sc_truncate_empty(struct expect *e)
{
	uint64_t end;
	truncate_pack(e, last_pack(&end), 0);
}

static void sc_delete_pack(struct expect *e)
{
	char path[4300];
	uint64_t end;
	const uint32_t id = last_pack(&end);
	pack_path(work, id, path, sizeof(path));
	if (unlink(path) < 0)
		DIE("unlink %s: %s", path, strerror(errno));
	for (int i = 0; i < nchunks; i++)
		if (chunks[i].c.pack_id == id)
			bad_hash(e, chunks[i].hash);
}

static void sc_pack_header(struct expect *e)
{
	char path[4300];
	uint64_t end;
	const uint32_t id = last_pack(&end);
	pack_path(work, id, path, sizeof(path));
	patch_file(path, et_below(&rng, FMT_PACK_HEADER_SIZE), 0x10);
	for (int i = 0; i < nchunks; i++)
		if (chunks[i].c.pack_id == id)
			bad_hash(e, chunks[i].hash);
}

/* Rewrites the chunks-DB value of the head's chunk IDX through MUT. */
static void chunk_value(struct expect *e, uint32_t idx,
			void (*mut)(struct fmt_chunk *c, uint8_t *raw, size_t *len),
			int damaged)
{
	const struct chunk_ent *const c = head_chunk(idx);
	struct et_idx x;
	uint8_t raw[64];
	size_t len = FMT_CHUNK_VAL_SIZE;
	struct fmt_chunk fc = c->c;

	et_idx_open(work, &x);
	fmt_chunk_encode(&fc, raw);
	mut(&fc, raw, &len);
	MDB_val k = {32, (void *)c->hash}, v = {len, raw};
	if (mdb_put(x.txn, x.chunks, &k, &v, 0))
		DIE("mdb_put");
	et_idx_close(&x, 1);
	if (damaged)
		bad_hash(e, c->hash);
}

static void mut_offset_other(struct fmt_chunk *c, uint8_t *raw, size_t *len)
{
	/* Point at another chunk's record: a valid record, wrong content. */
	const struct chunk_ent *const o = head_chunk(20);
	c->offset = o->c.offset;
	c->stored_len = o->c.stored_len;
	c->codec = o->c.codec;
	c->pack_id = o->c.pack_id;
	fmt_chunk_encode(c, raw);
	(void)len;
}

static void mut_offset_shift(struct fmt_chunk *c, uint8_t *raw, size_t *len)
{
	c->offset += et_range(&rng, 1, 100);
	fmt_chunk_encode(c, raw);
	(void)len;
}

static void mut_offset_eof(struct fmt_chunk *c, uint8_t *raw, size_t *len)
{
	c->offset = 1ull << 40;
	fmt_chunk_encode(c, raw);
	(void)len;
}

static void mut_pack_id(struct fmt_chunk *c, uint8_t *raw, size_t *len)
{
	c->pack_id = 0x7777;
	fmt_chunk_encode(c, raw);
	(void)len;
}

static void mut_stored_len(struct fmt_chunk *c, uint8_t *raw, size_t *len)
{
	c->stored_len = et_chance(&rng, 50) ? c->stored_len - 1 : c->stored_len + 1;
	fmt_chunk_encode(c, raw);
	(void)len;
}

static void mut_stored_huge(struct fmt_chunk *c, uint8_t *raw, size_t *len)
{
	c->stored_len = 0x7fffffff;
	fmt_chunk_encode(c, raw);
	(void)len;
}

static void mut_codec(struct fmt_chunk *c, uint8_t *raw, size_t *len)
{
	c->codec ^= 1;
	fmt_chunk_encode(c, raw);
	(void)len;
}

static void mut_short(struct fmt_chunk *c, uint8_t *raw, size_t *len)
{
	(void)c;
	(void)raw;
	*len = 31;
}

static void mut_reserved(struct fmt_chunk *c, uint8_t *raw, size_t *len)
{
	(void)c;
	(void)len;
	raw[30] = 1;
}

static void mut_refs(struct fmt_chunk *c, uint8_t *raw, size_t *len)
{
	c->refs += 1;
	fmt_chunk_encode(c, raw);
	(void)len;
}

static void sc_chunk_offset_other(struct expect *e) { chunk_value(e, 5, mut_offset_other, 1); }
static void sc_chunk_offset_shift(struct expect *e) { chunk_value(e, 6, mut_offset_shift, 1); }
static void sc_chunk_offset_eof(struct expect *e) { chunk_value(e, 12, mut_offset_eof, 1); }
static void sc_chunk_pack_id(struct expect *e) { chunk_value(e, 13, mut_pack_id, 1); }
static void sc_chunk_stored_len(struct expect *e) { chunk_value(e, 34, mut_stored_len, 1); }
static void sc_chunk_stored_huge(struct expect *e) { chunk_value(e, 14, mut_stored_huge, 1); }
static void sc_chunk_codec(struct expect *e) { chunk_value(e, 36, mut_codec, 1); }
static void sc_chunk_codec_raw(struct expect *e) { chunk_value(e, 15, mut_codec, 1); }
static void sc_chunk_short(struct expect *e) { chunk_value(e, 16, mut_short, 1); }
static void sc_chunk_reserved(struct expect *e) { chunk_value(e, 42, mut_reserved, 1); }

static void sc_chunk_refs(struct expect *e)
{
	chunk_value(e, 17, mut_refs, 0);
	e->reads_ok = 1;
}

static void sc_chunk_missing(struct expect *e)
{
	const struct chunk_ent *const c = head_chunk(18);
	struct et_idx x;
	et_idx_open(work, &x);
	MDB_val k = {32, (void *)c->hash};
	if (mdb_del(x.txn, x.chunks, &k, NULL))
		DIE("mdb_del");
	et_idx_close(&x, 1);
	bad_hash(e, c->hash);
}

/* Rewrites the head's (VOL's) own map entry for IDX. */
static void map_value(struct expect *e, int point, uint32_t idx,
		      const uint8_t *val, size_t len)
{
	struct et_idx x;
	uint8_t key[FMT_MAP_KEY_SIZE];

	et_idx_open(work, &x);
	head_map_key(&x, point_vol[point], idx, key);
	MDB_val k = {FMT_MAP_KEY_SIZE, key}, v = {len, (void *)val};
	if (mdb_put(x.txn, x.map, &k, &v, 0))
		DIE("mdb_put map");
	et_idx_close(&x, 1);
	e->bad_entry[point][idx] = 1;
}

static void sc_map_missing_hash(struct expect *e)
{
	uint8_t v[FMT_MAP_VAL_DATA_SIZE];
	v[0] = FMT_MAP_DATA;
	et_fill(&rng, v + 1, 32);
	map_value(e, 0, 2, v, sizeof(v)); /* written after the snapshot */
}

static void sc_map_flipped_hash(struct expect *e)
{
	uint8_t v[FMT_MAP_VAL_DATA_SIZE];
	v[0] = FMT_MAP_DATA;
	memcpy(v + 1, hashes[2][10], 32);
	v[1 + et_below(&rng, 32)] ^= 1;
	map_value(e, 2, 10, v, sizeof(v)); /* the clone's own chunk */
}

static void sc_map_other_hash(struct expect *e)
{
	/* Names another stored chunk: reads cannot tell, check must
	 * (reference counts no longer match). */
	uint8_t v[FMT_MAP_VAL_DATA_SIZE];
	v[0] = FMT_MAP_DATA;
	memcpy(v + 1, hashes[0][25], 32);
	map_value(e, 0, 1, v, sizeof(v));
	e->bad_entry[0][1] = 0;
	e->unknown[0][1] = 1;
	e->reads_ok = 1;
}

static void sc_map_bad_kind(struct expect *e)
{
	uint8_t v[FMT_MAP_VAL_DATA_SIZE];
	v[0] = 7;
	memcpy(v + 1, hashes[0][3], 32);
	map_value(e, 0, 3, v, sizeof(v));
}

static void sc_map_bad_len(struct expect *e)
{
	uint8_t v[FMT_MAP_VAL_DATA_SIZE];
	v[0] = FMT_MAP_DATA;
	memcpy(v + 1, hashes[0][30], 32);
	map_value(e, 0, 30, v, 20);
}

static void sc_map_hole_len(struct expect *e)
{
	const uint8_t v[4] = {FMT_MAP_HOLE, 0, 0, 0};
	map_value(e, 2, 50, v, sizeof(v));
}

struct scenario {
	const char *name;
	void (*fn)(struct expect *);
};

static const struct scenario scenarios[] = {
	{"pack: payload bit flip (raw chunk)", sc_payload_raw},
	{"pack: payload bit flip (zstd chunk)", sc_payload_zstd},
	{"pack: payload bit flip (deduplicated chunk)", sc_payload_dedup},
	{"pack: payload bit flips in two chunks", sc_payload_two},
	{"pack: record header magic", sc_rec_magic},
	{"pack: record header codec", sc_rec_codec},
	{"pack: record header stored_len", sc_rec_len},
	{"pack: record header raw_len", sc_rec_rawlen},
	{"pack: record header hash", sc_rec_hash},
	{"pack: truncated in the last records", sc_truncate_tail},
	{"pack: truncated to its header", sc_truncate_header},
	{"pack: truncated to nothing", sc_truncate_empty},
	{"pack: deleted", sc_delete_pack},
	{"pack: damaged file header", sc_pack_header},
	{"index: chunk location names another record", sc_chunk_offset_other},
	{"index: chunk offset shifted", sc_chunk_offset_shift},
	{"index: chunk offset past the end of the file", sc_chunk_offset_eof},
	{"index: chunk in a missing pack", sc_chunk_pack_id},
	{"index: chunk stored_len off by one", sc_chunk_stored_len},
	{"index: chunk stored_len huge", sc_chunk_stored_huge},
	{"index: chunk codec flipped (zstd chunk)", sc_chunk_codec},
	{"index: chunk codec flipped (raw chunk)", sc_chunk_codec_raw},
	{"index: chunk value of 31 bytes", sc_chunk_short},
	{"index: chunk value reserved byte set", sc_chunk_reserved},
	{"index: chunk reference count off", sc_chunk_refs},
	{"index: chunk entry deleted", sc_chunk_missing},
	{"index: map names a hash that is not stored", sc_map_missing_hash},
	{"index: map hash with a flipped bit (clone)", sc_map_flipped_hash},
	{"index: map names another stored chunk", sc_map_other_hash},
	{"index: map value of unknown kind", sc_map_bad_kind},
	{"index: map value of 20 bytes", sc_map_bad_len},
	{"index: hole map value of 4 bytes (clone)", sc_map_hole_len},
};

/* ---- checking a damaged store ------------------------------------------- */

#define MAXPROB 256
static char problems[MAXPROB][512];
static int nproblems;

static void problem_cb(void *opaque, const char *what)
{
	(void)opaque;
	printf("    check: %s\n", what);
	if (nproblems < MAXPROB)
		snprintf(problems[nproblems++], sizeof(problems[0]), "%s", what);
}

/* Some problem names hash HX (its first 16 hex digits). */
static int named_hash(const char *hx)
{
	for (int i = 0; i < nproblems; i++)
		if (strstr(problems[i], hx))
			return 1;
	return 0;
}

/* Some problem names chunk IDX of volume VOL. */
static int named_entry(uint32_t idx, const char *vol)
{
	char ci[64];
	snprintf(ci, sizeof(ci), "chunk %u", idx);
	for (int i = 0; i < nproblems; i++) {
		const char *p = problems[i];
		while ((p = strstr(p, ci))) {
			p += strlen(ci);
			if (*p < '0' || *p > '9')
				if (strstr(problems[i], vol))
					return 1;
		}
	}
	return 0;
}

static void verify_damaged(const struct scenario *sc, const struct expect *e)
{
	struct vd_store_options o = {.cache_bytes = 1 << 20};
	vd_store *st;
	uint8_t b[3 * CHUNK];
	int rc, nbad = 0;

	rc = vd_store_open(work, &o, &st);
	CHECK(rc == 0, "[%s] vd_store_open: %s; %s", sc->name, vd_strerror(rc),
	      vd_last_error());
	if (rc < 0)
		return;
	for (int p = 0; p < NPOINT; p++) {
		vd_volume *v;
		rc = vd_volume_open(st, point_vol[p], point_snap[p], 0, &v);
		CHECK(rc == 0, "[%s] open %s: %s; %s", sc->name, point_name[p],
		      vd_strerror(rc), vd_last_error());
		if (rc < 0)
			continue;
		for (int pass = 0; pass < 2; pass++)
			for (uint32_t i = 0; i < NCHUNK; i++) {
				memset(b, 0xee, CHUNK);
				rc = vd_volume_pread(v, b, CHUNK, (uint64_t)i * CHUNK);
				if (e->unknown[p][i])
					continue;
				if (is_bad(e, p, i)) {
					nbad += !pass;
					CHECK(rc == VD_ECORRUPT,
					      "[%s] %s chunk %u is damaged: read "
					      "returned %d (%s), expected VD_ECORRUPT%s",
					      sc->name, point_name[p], i, rc,
					      vd_strerror(rc),
					      rc == 0 && memcmp(b, model[p] + (uint64_t)i * CHUNK, CHUNK)
						      ? " -- AND THE BYTES ARE WRONG" : "");
				} else {
					CHECK(rc == 0 && !memcmp(b, model[p] + (uint64_t)i * CHUNK, CHUNK),
					      "[%s] %s chunk %u is intact: read "
					      "returned %d (%s)%s; %s", sc->name,
					      point_name[p], i, rc, vd_strerror(rc),
					      rc == 0 ? " with wrong bytes" : "",
					      vd_last_error());
				}
				/* Unaligned, smaller reads too. */
				if (!pass && !e->unknown[p][i]) {
					const uint32_t off = (uint32_t)et_below(&rng, CHUNK - 100);
					rc = vd_volume_pread(v, b, 77, (uint64_t)i * CHUNK + off);
					CHECK(is_bad(e, p, i) ? rc == VD_ECORRUPT
							      : rc == 0 && !memcmp(b, model[p] + (uint64_t)i * CHUNK + off, 77),
					      "[%s] %s chunk %u: small read returned %d",
					      sc->name, point_name[p], i, rc);
				}
			}
		/* A read spanning a damaged chunk fails as a whole. */
		for (uint32_t i = 1; i + 1 < NCHUNK; i++)
			if (is_bad(e, p, i) && !e->unknown[p][i - 1] && !e->unknown[p][i + 1]) {
				rc = vd_volume_pread(v, b, 3 * CHUNK - 2, (uint64_t)(i - 1) * CHUNK + 1);
				CHECK(rc == VD_ECORRUPT, "[%s] %s read across damaged "
				      "chunk %u returned %d", sc->name, point_name[p], i, rc);
				break;
			}
		vd_volume_close(v);
	}
	CHECK(e->reads_ok || nbad > 0, "[%s] scenario damaged nothing readable",
	      sc->name);

	/* vd_store_check: problems, naming each damaged chunk. */
	nproblems = 0;
	rc = vd_store_check(st, NULL, problem_cb, NULL);
	CHECK(rc > 0, "[%s] vd_store_check returned %d, expected problems",
	      sc->name, rc);
	CHECK(rc < 0 || rc == nproblems || nproblems == MAXPROB,
	      "[%s] vd_store_check returned %d but reported %d problems",
	      sc->name, rc, nproblems);
	for (int k = 0; k < e->nbad; k++) {
		char hx[17];
		int found = 0;
		hex16(e->bad_hash[k], hx);
		found = named_hash(hx);
		for (int p = 0; p < NPOINT && !found; p++)
			for (uint32_t i = 0; i < NCHUNK && !found; i++)
				if (!memcmp(hashes[p][i], e->bad_hash[k], 32))
					found = named_entry(i, point_vol[p]);
		CHECK(found, "[%s] no vd_store_check problem names damaged chunk "
		      "%s", sc->name, hx);
	}
	for (int p = 0; p < NPOINT; p++)
		for (uint32_t i = 0; i < NCHUNK; i++)
			if (e->bad_entry[p][i])
				CHECK(named_entry(i, point_vol[p]),
				      "[%s] no vd_store_check problem names %s "
				      "chunk %u", sc->name, point_name[p], i);

	/* Writes into damaged chunks of a writable point: partial ones
	 * cannot merge with unreadable data and fail; a whole-chunk overwrite
	 * either repairs the chunk or fails up front, and either way the
	 * volume's other writes still become durable. */
	for (int p = 0; p < NPOINT; p++) {
		vd_volume *v;
		int repaired = -1;
		uint32_t ri = 0;
		uint8_t fresh[CHUNK];
		if (point_snap[p] ||
		    vd_volume_open(st, point_vol[p], NULL, 0, &v) != 0)
			continue;
		for (uint32_t i = 0; i < NCHUNK; i++) {
			if (!is_bad(e, p, i))
				continue;
			memset(b, 0x5a, CHUNK);
			rc = vd_volume_pwrite(v, b, 100, (uint64_t)i * CHUNK + 10);
			CHECK(rc == VD_ECORRUPT, "[%s] %s partial write into "
			      "damaged chunk %u returned %d (%s), expected "
			      "VD_ECORRUPT", sc->name, point_name[p], i, rc,
			      vd_strerror(rc));
			rc = vd_volume_pwrite(v, b, CHUNK, (uint64_t)i * CHUNK);
			CHECK(rc == 0 || rc == VD_ECORRUPT, "[%s] %s whole-chunk "
			      "overwrite of damaged chunk %u returned %d (%s)",
			      sc->name, point_name[p], i, rc, vd_strerror(rc));
			repaired = rc == 0;
			ri = i;
			if (rc == 0) {
				memset(b + CHUNK, 0, CHUNK);
				rc = vd_volume_pread(v, b + CHUNK, CHUNK, (uint64_t)i * CHUNK);
				CHECK(rc == 0 && !memcmp(b, b + CHUNK, CHUNK),
				      "[%s] %s chunk %u after overwrite: %d",
				      sc->name, point_name[p], i, rc);
			}
			break;
		}
		/* An unrelated write to a hole (chunk 60) is flushed. */
		et_fill(&rng, fresh, CHUNK);
		CHECK_RC(vd_volume_pwrite(v, fresh, CHUNK, 60 * CHUNK), 0);
		rc = vd_volume_flush(v);
		CHECK(rc == 0, "[%s] %s: flush after %s returned %d (%s); %s -- "
		      "acknowledged writes cannot become durable",
		      sc->name, point_name[p],
		      repaired == 1 ? "overwriting a damaged chunk whole"
				    : "writing next to damage",
		      rc, vd_strerror(rc), vd_last_error());
		vd_volume_close(v);
		/* Both writes are there after reopening. */
		if (vd_volume_open(st, point_vol[p], NULL, 0, &v) != 0)
			continue;
		rc = vd_volume_pread(v, b, CHUNK, 60 * CHUNK);
		CHECK(rc == 0 && !memcmp(b, fresh, CHUNK),
		      "[%s] %s: flushed write to chunk 60 lost (%d)", sc->name,
		      point_name[p], rc);
		if (repaired == 1) {
			rc = vd_volume_pread(v, b, CHUNK, (uint64_t)ri * CHUNK);
			CHECK(rc == 0 && b[0] == 0x5a && b[CHUNK - 1] == 0x5a,
			      "[%s] %s: flushed overwrite of chunk %u lost (%d)",
			      sc->name, point_name[p], ri, rc);
		}
		vd_volume_close(v);
	}
	vd_store_close(st);
}

static int copy_template(void)
{
	char cmd[9000];
	et_rm_rf(work);
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", tmpl, work);
	return system(cmd);
}

static void run_scenario(const struct scenario *sc)
{
	static struct expect e;

	memset(&e, 0, sizeof(e));
	if (copy_template() != 0)
		DIE("copying the template failed");
	sc->fn(&e);
	printf("scenario: %s\n", sc->name);
	fflush(stdout);
	const unsigned long before = et_failures;
	const pid_t pid = fork();
	if (pid == 0) {
		verify_damaged(sc, &e);
		fflush(stdout);
		_exit(et_failures > before ? 1 : 0);
	}
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		DIE("fork/wait: %s", strerror(errno));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "[%s] %s", sc->name,
	      WIFSIGNALED(status) ? "CRASHED (signal)" : "failed (above)");
	if (WIFSIGNALED(status))
		printf("  crashed with signal %d\n", WTERMSIG(status));
}

/* ---- superblocks -------------------------------------------------------- */

static void write_sb(const uint8_t *b, size_t n)
{
	char path[4300];
	snprintf(path, sizeof(path), "%s/" FMT_SB_NAME, work);
	const int fd = open(path, O_WRONLY | O_TRUNC | O_CREAT, 0644);
	if (fd < 0 || write(fd, b, n) != (ssize_t)n)
		DIE("%s: %s", path, strerror(errno));
	close(fd);
}

static void read_sb(uint8_t b[FMT_SB_SIZE])
{
	char path[4300];
	snprintf(path, sizeof(path), "%s/" FMT_SB_NAME, tmpl);
	const int fd = open(path, O_RDONLY);
	if (fd < 0 || read(fd, b, FMT_SB_SIZE) != FMT_SB_SIZE)
		DIE("%s: %s", path, strerror(errno));
	close(fd);
}

static void expect_open(const char *what, int want1, int want2)
{
	const unsigned long before = et_failures;
	const pid_t pid = fork();
	if (pid == 0) {
		vd_store *st = NULL;
		struct vd_store_options o = {0};
		int rc = vd_store_open(work, NULL, &st);
		CHECK(rc == want1 || rc == want2,
		      "[superblock: %s] vd_store_open returned %d (%s), expected "
		      "%s or %s; %s", what, rc, vd_strerror(rc),
		      vd_strerror(want1), vd_strerror(want2), vd_last_error());
		if (rc == 0)
			vd_store_close(st);
		if (want1 == 0) /* intact */
			_exit(et_failures > before ? 1 : 0);
		/* Creating must not overwrite a damaged store either. */
		o.create = 1;
		o.chunk_size = CHUNK;
		rc = vd_store_open(work, &o, &st);
		CHECK(rc < 0, "[superblock: %s] vd_store_open with create "
		      "succeeded over a damaged store", what);
		if (rc == 0)
			vd_store_close(st);
		CHECK(vd_store_init(work, CHUNK) < 0,
		      "[superblock: %s] vd_store_init succeeded over a damaged "
		      "store", what);
		_exit(et_failures > before ? 1 : 0);
	}
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) < 0)
		DIE("fork/wait");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "[superblock: %s] %s",
	      what, WIFSIGNALED(status) ? "CRASHED" : "failed (above)");
	printf("superblock: %s: ok\n", what);
}

static void superblocks(void)
{
	uint8_t good[FMT_SB_SIZE], b[FMT_SB_SIZE];
	struct fmt_superblock sb;

	read_sb(good);
	CHECK(fmt_sb_decode(good, &sb) == 0 && sb.chunk_size == CHUNK &&
		      sb.version == FMT_VERSION,
	      "the template's superblock does not decode");

	copy_template();
	expect_open("intact", 0, 0);

	copy_template();
	memcpy(b, good, 32);
	memset(b + 32, 0, 32);
	write_sb(b, sizeof(b));
	expect_open("torn (second half zero)", VD_ECORRUPT, VD_ENOTSTORE);

	copy_template();
	et_fill(&rng, b, sizeof(b));
	write_sb(b, sizeof(b));
	expect_open("garbage", VD_ECORRUPT, VD_ENOTSTORE);

	copy_template();
	write_sb(good, 10);
	expect_open("truncated to 10 bytes", VD_ECORRUPT, VD_ENOTSTORE);

	copy_template();
	write_sb(good, 0);
	expect_open("empty", VD_ECORRUPT, VD_ENOTSTORE);

	copy_template();
	memcpy(b, good, sizeof(b));
	b[33] ^= 4; /* the creation time: only the CRC notices */
	write_sb(b, sizeof(b));
	expect_open("bad CRC", VD_ECORRUPT, VD_ECORRUPT);

	copy_template();
	sb.chunk_size = 3000;
	fmt_sb_encode(&sb, b);
	write_sb(b, sizeof(b));
	expect_open("bad chunk size, valid CRC", VD_ECORRUPT, VD_ECORRUPT);

	copy_template();
	sb.chunk_size = CHUNK;
	fmt_sb_encode(&sb, b);
	b[45] = 1; /* reserved */
	fmt_put_le32(b + 60, fmt_crc32c(0, b, 60));
	write_sb(b, sizeof(b));
	expect_open("reserved byte set, valid CRC", VD_ECORRUPT, VD_ECORRUPT);

	copy_template();
	sb.version = FMT_VERSION + 1;
	fmt_sb_encode(&sb, b);
	write_sb(b, sizeof(b));
	expect_open("future format version", VD_EVERSION, VD_EVERSION);

	copy_template();
	{
		char path[4300];
		snprintf(path, sizeof(path), "%s/" FMT_SB_NAME, work);
		unlink(path);
	}
	expect_open("missing (index present)", VD_ENOTSTORE, VD_ECORRUPT);

	/* An existing, intact store cannot be initialised again. */
	copy_template();
	CHECK_RC(vd_store_init(work, CHUNK), VD_EEXIST);
}

/* ---- the frames of one chunk -------------------------------------------- */

/* A 64 KiB-chunk store holding one chunk of several frames (random, text,
 * zero, random; then one of random frames only, which a whole-chunk read
 * takes straight into the caller's buffer): damage to one frame fails
 * reads of that frame only, in part or whole, damage to the frame table
 * fails every read of the chunk, and check names it. */
#define BIG 65536u

static uint8_t big_data[BIG], big_hash[32];
static struct fmt_chunk big_chunk;
static struct fmt_frame_table big_table;
static char big_tmpl[4200];

static void frames_template(bool all_raw)
{
	struct vd_store_options o = {.chunk_size = BIG, .create = 1};
	struct et_idx x;
	vd_store *st;
	vd_volume *v;
	char path[4400];
	uint8_t *payload;
	int rc, fd;

	snprintf(big_tmpl, sizeof(big_tmpl), "%s/frames%s", tmp,
		 all_raw ? "-raw" : "");
	et_fill(&rng, big_data, all_raw ? BIG : BIG / 4);
	for (uint32_t i = BIG / 4; i < BIG / 2 && !all_raw; i += 64) {
		/* 64-byte text lines, space-padded (compressible frames). */
		char line[96];
		int n = snprintf(line, sizeof(line),
				 "frame text line %u: the quick brown fox", i / 64);

		memset(line + n, ' ', sizeof(line) - (size_t)n);
		memcpy(big_data + i, line, 63);
		big_data[i + 63] = '\0';
	}
	if (!all_raw) {
		memset(big_data + BIG / 2, 0, BIG / 4);
		et_fill(&rng, big_data + 3 * BIG / 4, BIG / 4);
	}
	if ((rc = vd_store_open(big_tmpl, &o, &st)) < 0 ||
	    (rc = vd_volume_create(st, "f", 2 * BIG)) < 0 ||
	    (rc = vd_volume_open(st, "f", NULL, 0, &v)) < 0 ||
	    (rc = vd_volume_pwrite(v, big_data, BIG, 0)) < 0 ||
	    (rc = vd_volume_close(v)) < 0)
		DIE("frames store: %s; %s", vd_strerror(rc), vd_last_error());
	vd_store_close(st);
	/* Intact, reopened (nothing cached): the whole chunk reads back. */
	if ((rc = vd_store_open(big_tmpl, &(struct vd_store_options){0}, &st)) < 0 ||
	    (rc = vd_volume_open(st, "f", NULL, VD_OPEN_RDONLY, &v)) < 0)
		DIE("frames store: reopen: %s; %s", vd_strerror(rc), vd_last_error());
	payload = malloc(BIG);
	CHECK(payload && vd_volume_pread(v, payload, BIG, 0) == 0 &&
	      !memcmp(payload, big_data, BIG), "the intact chunk does not read back");
	free(payload);
	vd_volume_close(v);
	vd_store_close(st);
	et_sha256(big_data, BIG, big_hash);
	et_idx_open(big_tmpl, &x);
	MDB_val k = {32, big_hash}, val;
	if (mdb_get(x.txn, x.chunks, &k, &val) ||
	    fmt_chunk_decode(val.mv_data, val.mv_size, &big_chunk))
		DIE("frames store: the chunk is not in the index");
	et_idx_close(&x, 0);
	CHECK(big_chunk.codec == FMT_CODEC_FRAMED, "the chunk is not framed (codec %u)",
	      big_chunk.codec);
	if (!(payload = malloc(big_chunk.stored_len)))
		DIE("out of memory");
	pack_path(big_tmpl, big_chunk.pack_id, path, sizeof(path));
	if ((fd = open(path, O_RDONLY)) < 0 ||
	    pread(fd, payload, big_chunk.stored_len,
		  (off_t)(big_chunk.offset + FMT_REC_HEADER_SIZE)) != (ssize_t)big_chunk.stored_len)
		DIE("%s: %s", path, strerror(errno));
	close(fd);
	CHECK(fmt_frames_decode(payload, big_chunk.stored_len, BIG, big_hash,
				&big_table) == 0, "the frame table does not decode");
	free(payload);
	CHECK(big_table.nframes >= 4, "one chunk, only %u frame(s)", big_table.nframes);
	for (uint32_t i = 0; i < big_table.nframes && all_raw; i++)
		CHECK(big_table.f[i].kind == FMT_FRAME_RAW, "random frame %u is not "
		      "stored raw", i);
	printf("frames: one %u KiB chunk, %u frames of %u KiB, %u bytes stored\n",
	       BIG / 1024, big_table.nframes, big_table.frame_size / 1024,
	       big_chunk.stored_len);
}

/* Reopens the damaged copy WORK: a read of frame I fails with VD_ECORRUPT
 * iff BAD[I], twice (nothing bad is cached); reads of the others return
 * the right bytes; check names the chunk. */
static void frames_verify(const char *what, const int *bad)
{
	const uint32_t fs = big_table.frame_size;
	struct vd_store_options o = {.cache_bytes = 1 << 20};
	static uint8_t b[BIG], scan[2 * BIG];
	char hx[17];
	vd_store *st;
	vd_volume *v;
	int rc;

	if ((rc = vd_store_open(work, &o, &st)) < 0 ||
	    (rc = vd_volume_open(st, "f", NULL, VD_OPEN_RDONLY, &v)) < 0) {
		CHECK(0, "[%s] open: %s; %s", what, vd_strerror(rc), vd_last_error());
		return;
	}
	for (int pass = 0; pass < 2; pass++)
		for (uint32_t i = 0; i < big_table.nframes; i++) {
			const uint64_t off = (uint64_t)i * fs + et_below(&rng, fs - 4096 + 1);
			rc = vd_volume_pread(v, b, 4096, off);
			if (bad[i])
				CHECK(rc == VD_ECORRUPT, "[%s] read of damaged frame %u "
				      "returned %d (%s)", what, i, rc, vd_strerror(rc));
			else
				CHECK(rc == 0 && !memcmp(b, big_data + off, 4096),
				      "[%s] read of intact frame %u returned %d%s; %s",
				      what, i, rc, rc == 0 ? " with wrong bytes" : "",
				      vd_last_error());
			/* The whole frame, into the caller's buffer. */
			rc = vd_volume_pread(v, b, fs, (uint64_t)i * fs);
			if (bad[i])
				CHECK(rc == VD_ECORRUPT, "[%s] whole read of damaged "
				      "frame %u returned %d (%s)", what, i, rc,
				      vd_strerror(rc));
			else
				CHECK(rc == 0 && !memcmp(b, big_data + (size_t)i * fs, fs),
				      "[%s] whole read of intact frame %u returned "
				      "%d%s; %s", what, i, rc,
				      rc == 0 ? " with wrong bytes" : "", vd_last_error());
			/* Half of frame I, frame I + 1 whole, half of I + 2. */
			if (i + 2 < big_table.nframes) {
				const uint64_t at = (uint64_t)i * fs + fs / 2;
				const bool any = bad[i] || bad[i + 1] || bad[i + 2];

				rc = vd_volume_pread(v, b, 2 * fs, at);
				CHECK(any ? rc == VD_ECORRUPT
					  : rc == 0 && !memcmp(b, big_data + at, 2 * fs),
				      "[%s] read across frames %u-%u returned %d (%s)",
				      what, i, i + 2, rc, vd_strerror(rc));
			}
		}
	for (int pass = 0; pass < 2; pass++) {
		CHECK(vd_volume_pread(v, b, BIG, 0) == VD_ECORRUPT,
		      "[%s] a whole-chunk read of the damaged chunk did not fail",
		      what);
		/* A scan (more than a chunk; the second is a hole). */
		CHECK(vd_volume_pread(v, scan, 2 * BIG, 0) == VD_ECORRUPT,
		      "[%s] a scan over the damaged chunk did not fail", what);
	}
	vd_volume_close(v);
	nproblems = 0;
	rc = vd_store_check(st, NULL, problem_cb, NULL);
	hex16(big_hash, hx);
	CHECK(rc > 0 && named_hash(hx), "[%s] check returned %d and did not name "
	      "chunk %s", what, rc, hx);
	vd_store_close(st);
}

static void frames_copy(void)
{
	char cmd[9000];
	et_rm_rf(work);
	snprintf(cmd, sizeof(cmd), "cp -a '%s' '%s'", big_tmpl, work);
	if (system(cmd) != 0)
		DIE("copying the frames store failed");
}

static void frames(bool all_raw)
{
	int bad[FMT_FRAMES_MAX] = {0};
	char path[4300], what[80];
	uint32_t k;

	frames_template(all_raw);
	pack_path(work, big_chunk.pack_id, path, sizeof(path));
	/* A flipped bit in each frame that has stored bytes, one at a time. */
	for (k = 0; k < big_table.nframes; k++) {
		const struct fmt_frame *f = &big_table.f[k];

		if (f->stored_len == 0)
			continue;
		frames_copy();
		patch_file(path, big_chunk.offset + FMT_REC_HEADER_SIZE + f->offset +
			   et_below(&rng, f->stored_len),
			   (uint8_t)(1u << et_below(&rng, 8)));
		snprintf(what, sizeof(what), "frames: bit flip in frame %u (%s%s)", k,
			 f->kind == FMT_FRAME_RAW ? "raw" : "zstd",
			 all_raw ? ", all frames raw" : "");
		memset(bad, 0, sizeof(bad));
		bad[k] = 1;
		frames_verify(what, bad);
		printf("%s: ok\n", what);
	}
	/* A flipped bit in the frame table: the whole chunk. */
	frames_copy();
	patch_file(path, big_chunk.offset + FMT_REC_HEADER_SIZE +
		   et_below(&rng, fmt_frame_table_size(big_table.nframes)),
		   (uint8_t)(1u << et_below(&rng, 8)));
	for (k = 0; k < big_table.nframes; k++)
		bad[k] = 1;
	snprintf(what, sizeof(what), "frames: bit flip in the frame table%s",
		 all_raw ? " (all frames raw)" : "");
	frames_verify(what, bad);
	printf("%s: ok\n", what);
}

int main(int argc, char **argv)
{
	et_rng_seed(&rng, et_init_seed(argc, argv));
	snprintf(tmp, sizeof(tmp), "%s", et_tmpdir("corrupt"));
	snprintf(work, sizeof(work), "%s/work", tmp);
	make_template();
	load_chunks();
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		run_scenario(&scenarios[i]);
	superblocks();
	frames(false);
	frames(true);
	return et_finish("test-corrupt");
}
