/* Chunks: content hashing, compression, verified loading and reference
 * counts.  This file alone reads and writes DB "chunks".
 *
 * A chunk is named by the SHA-256 of its chunk_size raw bytes.  The "chunks"
 * DB maps the name to its record's location and a reference count: the
 * number of map entries naming it.  A count of 0 marks a dead chunk that gc
 * drops; a write of the same content before that revives it for free.
 * Verified chunks read from the packs go into the clean-chunk cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <zstd.h>
#include <liburing.h>

#include "common/hex.h"
#include "engine/internal.h"

#define ZSTD_LEVEL 1

/* Plaintext bytes per frame of a framed record (smaller chunks are one
 * frame).  Measured on 256 MiB of a Debian 12 system's /usr/bin,
 * /usr/lib/x86_64-linux-gnu and /etc (tar), zstd-1: ratio 2.07 with 4 KiB
 * frames, 2.18 at 8 KiB, 2.27 at 16 KiB, 2.30 at 64 KiB; decoding a frame
 * 4.9, 7.4, 12.1 and 41.7 us.  lz4 decodes 3.5x faster (3.5 us at 16 KiB)
 * but its ratio is 1.72: a quarter more disk and page cache for a few us,
 * so zstd stays the codec. */
#define FRAME_SIZE CACHE_PIECE

/* A bulk load (VD_OPEN_BULK: vdisk import) compresses its frames at a
 * higher level: it has the CPU to spare once sealing runs on every core.
 * On the Debian 12 minbase image (bench part 4, 215 MiB of 64 KiB chunks),
 * CPU for zstd alone: 16 KiB frames at level 1 96.6 MiB in 0.48 s, level 4
 * 94.0 MiB in 0.66 s, level 9 93.1 MiB in 6.9 s; whole 64 KiB frames at
 * level 4 91.6 MiB (qemu-img's qcow2+zstd file: 92.6 MiB).  Imported
 * chunks keep 16 KiB frames all the same: golden images are what clones
 * read at random, and a 4 KiB read of a one-frame chunk would decode
 * 64 KiB to return 4 (the 1.5% of space is the lesser cost). */
#define BULK_LEVEL 4

/* ---- per-thread contexts ------------------------------------------------ */

struct thread_ctx {
	EVP_MD_CTX *md;
	ZSTD_CCtx *cctx;
	ZSTD_DCtx *dctx;
	uint8_t *scratch;  /* a record: header + payload (scratch_for) */
	size_t scratch_size;
	uint8_t *frame;    /* one frame's plaintext, for pieces of a frame */
	size_t frame_size;
	struct fmt_frame_table table;
	/* Batched record reads (chunk_load_many). */
	int ring_state;    /* 0 not tried, 1 ready, -1 unavailable */
	struct io_uring ring;
	uint8_t *recbufs;  /* LOAD_BATCH records */
	size_t recbuf_size;
};

static pthread_key_t ctx_key;
static pthread_once_t ctx_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;

static void thread_ctx_free(void *p)
{
	struct thread_ctx *t = p;

	EVP_MD_CTX_free(t->md);
	ZSTD_freeCCtx(t->cctx);
	ZSTD_freeDCtx(t->dctx);
	free(t->scratch);
	free(t->frame);
	if (t->ring_state == 1)
		io_uring_queue_exit(&t->ring);
	free(t->recbufs);
	free(t);
}

static void ctx_init_once(void)
{
	pthread_key_create(&ctx_key, thread_ctx_free);
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

static struct thread_ctx *thread_ctx(void)
{
	struct thread_ctx *t;

	pthread_once(&ctx_once, ctx_init_once);
	t = pthread_getspecific(ctx_key);
	if (t)
		return t;
	t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->md = EVP_MD_CTX_new();
	t->cctx = ZSTD_createCCtx();
	t->dctx = ZSTD_createDCtx();
	if (!t->md || !t->cctx || !t->dctx || !sha256_md) {
		thread_ctx_free(t);
		return NULL;
	}
	pthread_setspecific(ctx_key, t);
	return t;
}

/* T's scratch, grown to one record of S's chunks: every thread that reads
 * keeps one, and VD_CHUNK_MAX each was 7 MiB of the NBD server's heap with
 * 64 KiB chunks. */
static uint8_t *scratch_for(struct thread_ctx *t, const vd_store *s)
{
	const size_t need = FMT_REC_HEADER_SIZE + s->st_chunk_size +
			    fmt_frames_slack(s->st_chunk_size);

	if (t->scratch_size < need) {
		free(t->scratch);
		t->scratch_size = 0;
		if (!(t->scratch = malloc(need)))
			return NULL;
		t->scratch_size = need;
	}
	return t->scratch;
}

void chunk_thread_release(void)
{
	struct thread_ctx *t;

	pthread_once(&ctx_once, ctx_init_once);
	if ((t = pthread_getspecific(ctx_key))) {
		pthread_setspecific(ctx_key, NULL);
		thread_ctx_free(t);
	}
}

void chunk_hash(const void *data, size_t len, uint8_t out[32])
{
	struct thread_ctx *t = thread_ctx();
	unsigned int n = 32;

	/* Without a context (out of memory) fall back to the one-shot call. */
	if (!t || !EVP_DigestInit_ex(t->md, sha256_md, NULL) ||
	    !EVP_DigestUpdate(t->md, data, len) ||
	    !EVP_DigestFinal_ex(t->md, out, &n))
		EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

bool chunk_is_zero(const void *data, size_t len)
{
	const uint8_t *p = data;

	/* Any alignment (frames sit anywhere in a buffer): zero if the first
	 * byte is and every byte equals the next. */
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

size_t chunk_record_max(const vd_store *s)
{
	return FMT_REC_HEADER_SIZE + s->st_chunk_size +
	       fmt_frames_slack(s->st_chunk_size);
}

/* log2(X) for X >= 1, to 2^-12 (no libm): the exponent, then the
 * mantissa's bits by repeated squaring. */
static double log2_u32(uint32_t x)
{
	const int e = 31 - __builtin_clz(x);
	double m = (double)x / (double)(1u << e), r = e, bit = 0.5;

	for (int i = 0; i < 12; i++, bit /= 2) {
		m *= m;
		if (m >= 2) {
			m /= 2;
			r += bit;
		}
	}
	return r;
}

/* True if frame SRC of FS bytes is not worth a zstd attempt: the order-0
 * entropy of 8 samples of 512 bytes spread over it is at least 7.3 bits
 * a byte, so entropy coding alone would save little, and only long
 * repeats could reach the 1/8 a frame must save to be kept compressed.
 * zstd gives up quickly on uniformly random bytes, but on data just below
 * (fio's buffers, 7.5-7.8 bits, 11% saved, so stored raw anyway) it ran
 * at 200 MB/s: two thirds of a sequential write's CPU.  Measured on 16
 * KiB frames at zstd -1: fio's data, every frame skipped; a tar of the
 * Debian minbase rootfs, 20% of the frames skipped and 0.34% more bytes
 * stored (the whole frame as the sample: 7.5 bits, 0.13%, at 4 times the
 * cost).  The samples cost about 1/30 of the attempts they save. */
enum { SAMPLES = 8, SAMPLE = 512 };
static float clogc[SAMPLES * SAMPLE + 1];  /* C * log2(C) */
static pthread_once_t clogc_once = PTHREAD_ONCE_INIT;

static void clogc_init(void)
{
	for (uint32_t c = 1; c <= SAMPLES * SAMPLE; c++)
		clogc[c] = (float)(c * log2_u32(c));
}

static bool frame_incompressible(const uint8_t *src, uint32_t fs)
{
	uint32_t h[4][256] = { { 0 } };
	float sum = 0;

	if (fs < SAMPLES * SAMPLE)
		return false;
	pthread_once(&clogc_once, clogc_init);
	for (uint32_t k = 0; k < SAMPLES; k++) {
		const uint8_t *p = src + (size_t)k * (fs / SAMPLES);
		for (uint32_t i = 0; i < SAMPLE; i += 4) {
			h[0][p[i]]++;
			h[1][p[i + 1]]++;
			h[2][p[i + 2]]++;
			h[3][p[i + 3]]++;
		}
	}
	for (int b = 0; b < 256; b++) {
		sum += clogc[h[0][b] + h[1][b] + h[2][b] + h[3][b]];
	}
	/* H = log2(n) - sum / n, n = 4096 samples */
	return 12.0f - sum / (SAMPLES * SAMPLE) >= 7.3f;
}

/* A framed payload of frames of FMT_FRAME_MIN bytes, each raw or zero:
 * for a chunk none of whose frames compress.  A 4 KiB read of it then
 * reads and checks 4 KiB, not the 16 KiB frame around it (three quarters
 * of what a random read of such data read and hashed was thrown away). */
static uint32_t store_small_frames(struct thread_ctx *t, const uint8_t *chunk,
				   uint32_t cs, const uint8_t hash[32],
				   uint8_t *out)
{
	struct fmt_frame_table *tab = &t->table;
	const uint32_t fs = FMT_FRAME_MIN;
	size_t pos;

	tab->frame_size = fs;
	tab->nframes = cs / fs;
	pos = fmt_frame_table_size(tab->nframes);
	for (uint32_t i = 0; i < tab->nframes; i++) {
		struct fmt_frame *f = &tab->f[i];
		const uint8_t *src = chunk + (size_t)i * fs;
		const bool zero = chunk_is_zero(src, fs);

		f->kind = zero ? FMT_FRAME_ZERO : FMT_FRAME_RAW;
		f->stored_len = zero ? 0 : fs;
		if (!zero)
			memcpy(out + pos, src, fs);
		f->check = fmt_frame_check(out + pos, f->stored_len);
		pos += f->stored_len;
	}
	fmt_frames_encode(tab, hash, out);
	return (uint32_t)pos;
}

/* True if no FS-byte frame of CHUNK is worth a zstd attempt at LEVEL (each
 * zero, or incompressible by its samples). */
static bool frames_all_raw(const uint8_t *chunk, uint32_t cs, uint32_t fs,
			   int level)
{
	for (uint32_t i = 0; i < cs / fs; i++) {
		const uint8_t *src = chunk + (size_t)i * fs;

		if (!chunk_is_zero(src, fs) &&
		    !(level == ZSTD_LEVEL && frame_incompressible(src, fs)))
			return false;
	}
	return true;
}

/* A framed payload of FS-byte frames at zstd LEVEL: each frame compressed
 * alone, kept raw unless that saves 1/8 of it (ZFS's rule: a frame that
 * barely compresses costs a decode on every read for little space), and
 * not stored at all if it is zero.  A chunk with no frame compressed is
 * stored in frames of FMT_FRAME_MIN bytes instead (store_small_frames). */
static uint32_t compress_framed(struct thread_ctx *t, const uint8_t *chunk,
				uint32_t cs, uint32_t fs, int level,
				const uint8_t hash[32], uint8_t *out)
{
	struct fmt_frame_table *tab = &t->table;
	bool compressed = false;
	size_t pos;

	if (fs > FMT_FRAME_MIN && frames_all_raw(chunk, cs, fs, level))
		return store_small_frames(t, chunk, cs, hash, out);

	tab->frame_size = fs;
	tab->nframes = cs / fs;
	pos = fmt_frame_table_size(tab->nframes);
	for (uint32_t i = 0; i < tab->nframes; i++) {
		struct fmt_frame *f = &tab->f[i];
		const uint8_t *src = chunk + (size_t)i * fs;
		size_t n = 0;

		if (chunk_is_zero(src, fs)) {
			f->kind = FMT_FRAME_ZERO;
		} else if (level == ZSTD_LEVEL && frame_incompressible(src, fs)) {
			memcpy(out + pos, src, fs);
			n = fs;
			f->kind = FMT_FRAME_RAW;
		} else {
			n = ZSTD_compressCCtx(t->cctx, out + pos, fs - fs / 8, src,
					      fs, level);
			f->kind = FMT_FRAME_ZSTD;
			if (ZSTD_isError(n)) {
				memcpy(out + pos, src, fs);
				n = fs;
				f->kind = FMT_FRAME_RAW;
			}
		}
		compressed |= f->kind == FMT_FRAME_ZSTD;
		f->stored_len = (uint32_t)n;
		f->check = fmt_frame_check(out + pos, n);
		pos += n;
	}
	if (!compressed && fs > FMT_FRAME_MIN)
		return store_small_frames(t, chunk, cs, hash, out);
	fmt_frames_encode(tab, hash, out);
	return (uint32_t)pos;
}

int chunk_compress(vd_store *s, const void *chunk, const uint8_t hash[32],
		   void *out, uint8_t *codec, uint32_t *stored_len)
{
	return chunk_compress_as(s, chunk, hash, false, out, codec, stored_len);
}

int chunk_compress_as(vd_store *s, const void *chunk, const uint8_t hash[32],
		      bool bulk, void *out, uint8_t *codec, uint32_t *stored_len)
{
	struct thread_ctx *t = thread_ctx();
	const size_t len = s->st_chunk_size;
	size_t n;

	if (!t)
		return -ENOMEM;
	/* Until the store is version 3 its readers may not know frames. */
	if (__atomic_load_n(&s->st_version, __ATOMIC_ACQUIRE) >= 3) {
		*codec = FMT_CODEC_FRAMED;
		*stored_len = compress_framed(t, chunk, (uint32_t)len,
					      MIN(FRAME_SIZE, (uint32_t)len),
					      bulk ? BULK_LEVEL : ZSTD_LEVEL,
					      hash, out);
		return 0;
	}
	/* Kept raw unless compression saves at least 1/32 of the chunk. */
	n = ZSTD_compressCCtx(t->cctx, out, len - len / 32, chunk, len,
			      ZSTD_LEVEL);
	if (ZSTD_isError(n)) {
		memcpy(out, chunk, len);
		*codec = FMT_CODEC_RAW;
		*stored_len = (uint32_t)len;
	} else {
		*codec = FMT_CODEC_ZSTD;
		*stored_len = (uint32_t)n;
	}
	return 0;
}

/* ---- the chunks DB ------------------------------------------------------ */

/* The first 8 bytes of a name in hex: enough to tell chunks apart in
 * messages. */
static void hex8(const uint8_t hash[32], char out[17])
{
	hex_encode(hash, 8, out);
}

int chunk_get(vd_store *s, MDB_txn *txn, const uint8_t hash[32],
	      struct fmt_chunk *c)
{
	MDB_val k = { 32, (void *)hash }, v;
	char hx[17];
	const int rc = mdb_get(txn, s->st_chunks, &k, &v);

	hex8(hash, hx);
	if (rc == MDB_NOTFOUND)
		return SET_ERROR(VD_ECORRUPT, "chunk %s is referenced but not "
				 "in the index", hx);
	if (rc)
		return err_mdb(rc, "chunk index");
	if (fmt_chunk_decode(v.mv_data, v.mv_size, c) != 0)
		return SET_ERROR(VD_ECORRUPT, "chunk %s: malformed index value", hx);
	return 0;
}

static int chunk_put(vd_store *s, MDB_txn *txn, const uint8_t hash[32],
		     const struct fmt_chunk *c)
{
	uint8_t buf[FMT_CHUNK_VAL_SIZE];
	MDB_val k = { 32, (void *)hash }, v = { sizeof buf, buf };
	int rc;

	fmt_chunk_encode(c, buf);
	rc = mdb_put(txn, s->st_chunks, &k, &v, 0);
	return rc ? err_mdb(rc, "chunk index") : 0;
}

static uint64_t disk_bytes(const struct fmt_chunk *c)
{
	return FMT_REC_HEADER_SIZE + (uint64_t)c->stored_len;
}

/* Adds a reference to stored chunk C, reviving it if it was dead (a write
 * of the same content before gc dropped it). */
static int ref_stored(vd_store *s, struct wtxn *w, const uint8_t hash[32],
		      struct fmt_chunk *c)
{
	if (c->refs == 0) {
		w->d.dead_chunks--;
		w->d.dead_bytes -= disk_bytes(c);
		w->d.chunks++;
		w->d.stored += disk_bytes(c);
	}
	c->refs++;
	w->d.refs++;
	return chunk_put(s, w->txn, hash, c);
}

/* Adds a reference to HASH if the index names it: 1 if it did, 0 if HASH
 * is new, or < 0. */
static int ref_if_stored(vd_store *s, struct wtxn *w, const uint8_t hash[32])
{
	MDB_val k = { 32, (void *)hash }, v;
	struct fmt_chunk c;
	char hx[17];
	int rc, r;

	rc = mdb_get(w->txn, s->st_chunks, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return err_mdb(rc, "chunk index");
	if (fmt_chunk_decode(v.mv_data, v.mv_size, &c) != 0) {
		hex8(hash, hx);
		return SET_ERROR(VD_ECORRUPT, "chunk %s: malformed index value", hx);
	}
	r = ref_stored(s, w, hash, &c);
	return r < 0 ? r : 1;
}

int chunk_ref(vd_store *s, struct wtxn *w, const uint8_t hash[32],
	      const void *raw, const void *payload, uint8_t codec,
	      uint32_t stored_len)
{
	struct fmt_chunk c;
	struct fmt_record rec;
	int r;

	if ((r = ref_if_stored(s, w, hash)) != 0)
		return r < 0 ? r : 0;

	/* New content: store it. */
	if (!payload) {
		struct thread_ctx *t = thread_ctx();
		uint8_t *scratch = t ? scratch_for(t, s) : NULL;

		if (!scratch)
			return -ENOMEM;
		r = chunk_compress(s, raw, hash, scratch + FMT_REC_HEADER_SIZE,
				   &codec, &stored_len);
		if (r < 0)
			return r;
		payload = scratch + FMT_REC_HEADER_SIZE;
	}
	memset(&c, 0, sizeof c);
	/* A writer pack is opened only when something is appended. */
	if ((r = pack_reserve(s, w->txn, FMT_REC_HEADER_SIZE + (uint64_t)stored_len)) < 0)
		return r;
	rec.codec = codec;
	rec.stored_len = stored_len;
	rec.raw_len = s->st_chunk_size;
	memcpy(rec.hash, hash, 32);
	r = pack_append(s, &rec, payload, &c.pack_id, &c.offset);
	if (r < 0)
		return r;
	c.stored_len = stored_len;
	c.codec = codec;
	c.refs = 1;
	w->d.chunks++;
	w->d.refs++;
	w->d.stored += disk_bytes(&c);
	return chunk_put(s, w->txn, hash, &c);
}

int chunk_append(vd_store *s, struct chunk_write *cw, size_t n)
{
	struct fmt_record *recs = malloc(n * sizeof *recs);
	const void **payloads = malloc(n * sizeof *payloads);
	uint64_t *offs = malloc(n * sizeof *offs), need = 0;
	uint32_t id;
	int r = 0;

	if (!recs || !payloads || !offs) {
		r = SET_ERROR(-ENOMEM, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		recs[i] = (struct fmt_record){ .codec = cw[i].codec,
					       .stored_len = cw[i].stored_len,
					       .raw_len = s->st_chunk_size };
		memcpy(recs[i].hash, cw[i].hash, 32);
		payloads[i] = cw[i].payload;
		need += FMT_REC_HEADER_SIZE + (uint64_t)cw[i].stored_len;
	}
	/* A new pack file takes an id this handle drew from the index
	 * before, or draws some in a transaction of its own. */
	if (!pack_room(s, need) && (r = pack_reserve(s, NULL, need)) != 0) {
		struct wtxn w;
		if (r != -EAGAIN)
			goto out;
		if ((r = wtxn_begin(s, &w)) < 0)
			goto out;
		if ((r = pack_reserve(s, w.txn, need)) < 0) {
			wtxn_abort(&w);
			goto out;
		}
		if ((r = wtxn_commit(s, &w)) < 0)
			goto out;
	}
	if ((r = pack_appendv(s, recs, payloads, n, &id, offs)) < 0)
		goto out;
	__atomic_add_fetch(&s->st_unindexed, need, __ATOMIC_RELAXED);
	for (size_t i = 0; i < n; i++)
		cw[i].at = (struct fmt_chunk){ .pack_id = id, .offset = offs[i],
					       .stored_len = cw[i].stored_len,
					       .codec = cw[i].codec };
out:
	free(recs);
	free(payloads);
	free(offs);
	return r;
}

uint64_t chunk_unindexed(vd_store *s)
{
	return __atomic_load_n(&s->st_unindexed, __ATOMIC_RELAXED);
}

void chunk_unindexed_drop(vd_store *s, const struct fmt_chunk *at)
{
	const uint64_t b = disk_bytes(at);
	uint64_t cur = chunk_unindexed(s);

	/* Never below zero, whatever the order of drops and appends. */
	while (!__atomic_compare_exchange_n(&s->st_unindexed, &cur,
					    cur > b ? cur - b : 0, false,
					    __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

int chunk_ref_at(vd_store *s, struct wtxn *w, const uint8_t hash[32],
		 const struct fmt_chunk *at)
{
	struct fmt_chunk c;
	int r;

	/* Named now, or its copy is dead space from here on. */
	chunk_unindexed_drop(s, at);
	/* Stored already: the record at AT stays dead space. */
	if ((r = ref_if_stored(s, w, hash)) != 0)
		return r < 0 ? r : 0;
	c = *at;
	c.refs = 1;
	w->d.chunks++;
	w->d.refs++;
	w->d.stored += disk_bytes(&c);
	return chunk_put(s, w->txn, hash, &c);
}

int chunk_ref_existing(vd_store *s, struct wtxn *w, const uint8_t hash[32])
{
	struct fmt_chunk c;
	const int r = chunk_get(s, w->txn, hash, &c);

	return r < 0 ? r : ref_stored(s, w, hash, &c);
}

int chunk_unref(vd_store *s, struct wtxn *w, const uint8_t hash[32])
{
	struct fmt_chunk c;
	const int r = chunk_get(s, w->txn, hash, &c);

	if (r < 0)
		return r;
	if (c.refs == 0) {
		char hx[17];
		hex8(hash, hx);
		return SET_ERROR(VD_ECORRUPT, "chunk %s: reference count underflow", hx);
	}
	if (--c.refs == 0) {
		w->d.chunks--;
		w->d.stored -= disk_bytes(&c);
		w->d.dead_chunks++;
		w->d.dead_bytes += disk_bytes(&c);
	}
	w->d.refs--;
	return chunk_put(s, w->txn, hash, &c);
}

bool chunk_exists(vd_store *s, MDB_txn *txn, const uint8_t hash[32])
{
	MDB_val k = { 32, (void *)hash }, v;

	return mdb_get(txn, s->st_chunks, &k, &v) == 0;
}

/* ---- verified loading --------------------------------------------------- */

static int bad_record(const uint8_t hash[32], const struct fmt_chunk *c,
		      const char *what)
{
	char hx[17];

	hex8(hash, hx);
	return SET_ERROR(VD_ECORRUPT, "chunk %s: %s (pack %08x offset %llu)", hx,
			 what, c->pack_id, (unsigned long long)c->offset);
}

/* Checks the stored bytes SRC of frame I of table TAB against its
 * checksum. */
static int frame_check(const uint8_t hash[32], const struct fmt_chunk *c,
		       const struct fmt_frame_table *tab, uint32_t i,
		       const uint8_t *src)
{
	char what[64];

	if (fmt_frame_check(src, tab->f[i].stored_len) == tab->f[i].check)
		return 0;
	snprintf(what, sizeof what, "frame %u of %u fails its checksum", i,
		 tab->nframes);
	return bad_record(hash, c, what);
}

/* Decodes checked frame I (its stored bytes SRC) into OUT (frame_size
 * bytes; OUT may be SRC for a raw frame). */
static int frame_decode(struct thread_ctx *t, const uint8_t hash[32],
			const struct fmt_chunk *c, const struct fmt_frame_table *tab,
			uint32_t i, const uint8_t *src, uint8_t *out)
{
	char what[64];
	size_t n;

	switch (tab->f[i].kind) {
	case FMT_FRAME_ZERO:
		memset(out, 0, tab->frame_size);
		return 0;
	case FMT_FRAME_RAW:
		if (out != src)
			memcpy(out, src, tab->frame_size);
		return 0;
	}
	n = ZSTD_decompressDCtx(t->dctx, out, tab->frame_size, src,
				tab->f[i].stored_len);
	if (ZSTD_isError(n) || n != tab->frame_size) {
		snprintf(what, sizeof what, "frame %u of %u does not decompress", i,
			 tab->nframes);
		return bad_record(hash, c, what);
	}
	return 0;
}

/* Decodes bytes [OFF, OFF + LEN) of the chunk from framed PAYLOAD, whose
 * table is decoded in T->table, into DST (LEN bytes), checking only the
 * frames they touch (RAW_IN_DST: the raw frames they cover whole were
 * read into DST, and are checked there).  With CACHE, each zstd frame
 * decoded goes into the cache as a piece, and each raw frame only while
 * the cache has room: the page cache holds it already, and a miss that
 * copies it in and evicts another costs more than the hits it buys once
 * the working set outgrows the cache.  Random 4 KiB reads of 256 MiB of
 * raw frames, CPU per read: cache 16 MiB, raw frames cached 4.7 us, not
 * cached 3.8 us; cache 1 GiB, 0.9 us and 3.8 us.  Zero frames are a
 * memset. */
static int frames_decode(vd_store *s, struct thread_ctx *t,
			 const uint8_t hash[32], const struct fmt_chunk *c,
			 const uint8_t *payload, uint8_t *dst, size_t off,
			 size_t len, bool cache, bool raw_in_dst)
{
	const struct fmt_frame_table *tab = &t->table;
	const uint32_t fs = tab->frame_size;
	int r;

	cache = cache && fs == cache_piece(s->st_cache);
	for (uint32_t i = (uint32_t)(off / fs); (size_t)i * fs < off + len; i++) {
		const struct fmt_frame *f = &tab->f[i];
		const size_t fofs = (size_t)i * fs;
		const size_t from = MAX(off, fofs), to = MIN(off + len, fofs + fs);
		const bool in_dst = raw_in_dst && f->kind == FMT_FRAME_RAW &&
				    from == fofs && to == fofs + fs;
		const uint8_t *src = in_dst ? dst + (fofs - off)
					    : payload + f->offset;
		const bool keep = cache && (f->kind == FMT_FRAME_ZSTD ||
				(f->kind == FMT_FRAME_RAW &&
				 cache_has_room(s->st_cache, hash, fs)));
		uint8_t *piece;

		if ((r = frame_check(hash, c, tab, i, src)) < 0)
			return r;
		if (from == fofs && to == fofs + fs) {
			r = frame_decode(t, hash, c, tab, i, src, dst + (fofs - off));
			if (r == 0 && keep &&
			    (piece = cache_piece_get(s->st_cache))) {
				memcpy(piece, dst + (fofs - off), fs);
				cache_insert_piece(s->st_cache, hash, i, piece);
			}
		} else if (f->kind == FMT_FRAME_RAW && !keep) {
			memcpy(dst + (from - off), src + (from - fofs), to - from);
		} else if (f->kind == FMT_FRAME_ZERO) {
			memset(dst + (from - off), 0, to - from);
		} else if (keep) {
			/* A part of a frame: decode the frame into the piece
			 * the cache will keep, copy the part out. */
			if (!(piece = cache_piece_get(s->st_cache)))
				return -ENOMEM;
			r = frame_decode(t, hash, c, tab, i, src, piece);
			if (r == 0) {
				memcpy(dst + (from - off), piece + (from - fofs),
				       to - from);
				cache_insert_piece(s->st_cache, hash, i, piece);
			} else {
				cache_piece_put(s->st_cache, piece);
			}
		} else {
			/* A part of a frame: decode it aside. */
			if (t->frame_size < fs) {
				uint8_t *p = realloc(t->frame, fs);
				if (!p)
					return -ENOMEM;
				t->frame = p;
				t->frame_size = fs;
			}
			r = frame_decode(t, hash, c, tab, i, src, t->frame);
			if (r == 0)
				memcpy(dst + (from - off), t->frame + (from - fofs),
				       to - from);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* Checks record RECBUF (as read from C's location) against C and HASH and
 * decodes bytes [OFF, OFF + LEN) of the chunk into DST (LEN bytes).  A
 * framed record is verified frame by frame (checksums over the stored
 * bytes), and its full name only if FULL_HASH (`vdisk check`, compaction;
 * a whole chunk); with TABLE_READY its table is in the thread's context
 * already.  The older single records decode whole (a whole chunk only)
 * and are always checked against their name, their only check.  CACHE:
 * the frames decoded for a part of the chunk go into the cache as
 * pieces. */
static int record_decode(vd_store *s, const uint8_t hash[32],
			 const struct fmt_chunk *c, const uint8_t *recbuf,
			 uint8_t *dst, size_t off, size_t len, bool full_hash,
			 bool cache, bool table_ready)
{
	struct thread_ctx *t = thread_ctx();
	const uint8_t *payload = recbuf + FMT_REC_HEADER_SIZE;
	struct fmt_record rec;
	uint8_t got[32];
	int r;

	if (!t)
		return -ENOMEM;
	if (fmt_record_decode(recbuf, &rec) != 0 ||
	    memcmp(rec.hash, hash, 32) != 0 || rec.codec != c->codec ||
	    rec.stored_len != c->stored_len || rec.raw_len != s->st_chunk_size)
		return bad_record(hash, c, "bad record header");
	if (rec.codec == FMT_CODEC_FRAMED) {
		if (!table_ready &&
		    fmt_frames_decode(payload, rec.stored_len, s->st_chunk_size,
				      hash, &t->table) != 0)
			return bad_record(hash, c, "damaged frame table");
		/* A whole chunk goes into the cache whole (the caller). */
		r = frames_decode(s, t, hash, c, payload, dst, off, len,
				  cache && !full_hash &&
				  !(off == 0 && len == s->st_chunk_size), false);
		if (r < 0 || !full_hash)
			return r;
	} else if (rec.codec == FMT_CODEC_ZSTD) {
		const size_t n = ZSTD_decompressDCtx(t->dctx, dst, s->st_chunk_size,
						     payload, rec.stored_len);
		if (ZSTD_isError(n) || n != s->st_chunk_size)
			return bad_record(hash, c, "does not decompress");
	} else {
		memcpy(dst, payload, s->st_chunk_size);
	}
	chunk_hash(dst, s->st_chunk_size, got);
	if (memcmp(got, hash, 32) != 0)
		return bad_record(hash, c, "content does not match its hash");
	return 0;
}

static int stored_len_check(vd_store *s, const uint8_t hash[32],
			    const struct fmt_chunk *c)
{
	char hx[17];

	if (FMT_REC_HEADER_SIZE + (size_t)c->stored_len <= chunk_record_max(s) &&
	    (c->codec == FMT_CODEC_FRAMED || c->stored_len <= s->st_chunk_size))
		return 0;
	hex8(hash, hx);
	return SET_ERROR(VD_ECORRUPT, "chunk %s: stored length %u exceeds the "
			 "chunk size", hx, c->stored_len);
}

/* Prefixes a read error with the chunk's name. */
static int read_failed(const uint8_t hash[32], int r)
{
	char why[256]; /* the message is rewritten in the same buffer */
	char hx[17];

	if (r == -ENOENT)
		return -ENOENT;
	snprintf(why, sizeof why, "%s", err_detail());
	hex8(hash, hx);
	return SET_ERROR(r, "chunk %s: %s", hx, why);
}

/* ---- where framed chunks are -------------------------------------------- */

/* The locations and frame tables of framed chunks read lately, per store:
 * a read of part of one reads its frames alone then, with no chunks-DB
 * look-up and no read of its table.  A record never changes in place
 * (pack ids are never reused), so an entry stays right until its pack file
 * is removed; a read that finds the file gone, or a frame failing its
 * check, drops the entry and goes the long way.  Only verified tables go
 * in.  Slots are seqlocked (readers never wait), direct-mapped by name,
 * each as long as the store's chunks need (its frames); chunks whose
 * frames do not fit are not kept (more than 8 frames of 16 KiB, or 16
 * of 4 KiB: chunks past 128 KiB, or 4 KiB-framed ones past 64 KiB).  LOC_SLOTS covers 4 GiB of 64 KiB chunks (12 MiB of
 * slots, touched as they fill); the slots take at most
 * an eighth of the chunk cache's bound, and come off it (store.c), so
 * that a small --cache keeps the process small too (16 MiB: 2 MiB of
 * slots).  With 8192 slots a
 * random read of a 1 GiB volume found its chunk remembered half the time
 * (16384 chunks), and each other miss cost a chunks-DB look-up and two
 * preads, a third of the server's CPU at QD32. */
#define LOC_SLOTS 65536u
#define LOC_SLOTS_MIN 1024u
#define LOC_WORDS 16u  /* words for frames per slot, at most */
#define LOC_FRAMES 16u /* frames per slot, at most: a zero mask's bits */
#define LOC_HEAD 7 /* words before the frames' */
#define LOC_COMPACT (1u << 15)

/* A slot: SEQ (odd while written), then words: name (4), pack_id << 32 |
 * stored_len, offset, frame_size << 32 | zero mask << 16 | LOC_COMPACT |
 * nframes, then per frame kind << 32 | stored_len, check; or, with
 * LOC_COMPACT (no zstd frame: each raw or, its bit in the mask set, zero),
 * only each frame's check.  So 64 KiB chunks of 4 KiB frames take the 16
 * words that 4 frames of 16 KiB do, and a slot stays 192 bytes: with two
 * words a frame (320 bytes) the default cache's eighth held half the
 * slots. */
struct chunk_locs {
	size_t stride; /* words per slot, SEQ's included */
	size_t mask;   /* slots - 1 (a power of two) */
	uint64_t words[];
};

void chunk_locs_free(vd_store *s)
{
	free(s->st_locs);
	s->st_locs = NULL;
}

/* Words for frames a slot of S has: two per frame of FRAME_SIZE, one per
 * frame of FMT_FRAME_MIN (store_small_frames). */
static uint32_t loc_words(const vd_store *s)
{
	return MIN(LOC_WORDS, MAX(2u, s->st_chunk_size / FMT_FRAME_MIN));
}

/* True if TAB goes into a slot compact (LOC_COMPACT). */
static bool loc_compact(const struct fmt_frame_table *tab)
{
	if (tab->nframes > LOC_FRAMES)
		return false;
	for (uint32_t i = 0; i < tab->nframes; i++)
		if (tab->f[i].kind == FMT_FRAME_ZSTD)
			return false;
	return true;
}

static size_t loc_stride(const vd_store *s)
{
	return 1 + LOC_HEAD + (size_t)loc_words(s);
}

static size_t loc_slots(const vd_store *s)
{
	size_t n = LOC_SLOTS;

	while (n > LOC_SLOTS_MIN && n * loc_stride(s) * 8 > s->st_cache_bytes / 8)
		n /= 2;
	return n;
}

size_t chunk_locs_bytes(const vd_store *s)
{
	return sizeof(struct chunk_locs) + loc_slots(s) * loc_stride(s) * 8;
}

/* HASH's slot: SEQ at [0], the words after it. */
static uint64_t *loc_slot(vd_store *s, const uint8_t hash[32])
{
	struct chunk_locs *l = __atomic_load_n(&s->st_locs, __ATOMIC_ACQUIRE);
	uint64_t h;

	if (!l) {
		const size_t stride = loc_stride(s), n = loc_slots(s);
		struct chunk_locs *fresh;

		if (!(fresh = calloc(1, chunk_locs_bytes(s))))
			return NULL;
		fresh->stride = stride;
		fresh->mask = n - 1;
		if (__atomic_compare_exchange_n(&s->st_locs, &l, fresh, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			l = fresh;
		else
			free(fresh); /* another thread won; L is its */
	}
	memcpy(&h, hash + 16, 8);
	return &l->words[(h & l->mask) * l->stride];
}

/* Frame I of a table from the words W of a slot (its head at W). */
static void loc_frame(const uint64_t *w, uint32_t i, struct fmt_frame *f)
{
	const uint32_t fs = (uint32_t)(w[6] >> 32);

	if (!((uint32_t)w[6] & LOC_COMPACT)) {
		f->kind = (uint8_t)(w[LOC_HEAD + 2 * i] >> 32);
		f->stored_len = (uint32_t)w[LOC_HEAD + 2 * i];
		f->check = w[LOC_HEAD + 1 + 2 * i];
	} else if ((w[6] >> (16 + i)) & 1) {
		f->kind = FMT_FRAME_ZERO;
		f->stored_len = 0;
		f->check = w[LOC_HEAD + i];
	} else {
		f->kind = FMT_FRAME_RAW;
		f->stored_len = fs;
		f->check = w[LOC_HEAD + i];
	}
}

/* C and TAB of framed chunk HASH, if remembered. */
static bool loc_get(vd_store *s, const uint8_t hash[32], struct fmt_chunk *c,
		    struct fmt_frame_table *tab)
{
	const uint64_t *sl = loc_slot(s, hash);
	uint64_t w[LOC_HEAD + LOC_WORDS];
	uint32_t pos, n, words;
	uint64_t q;

	if (!sl)
		return false;
	q = __atomic_load_n(&sl[0], __ATOMIC_ACQUIRE);
	if (q & 1)
		return false;
	/* Acquire loads, SEQ read again after them (as layer.c's slots). */
	for (uint32_t i = 0; i < LOC_HEAD; i++)
		w[i] = __atomic_load_n(&sl[1 + i], __ATOMIC_ACQUIRE);
	n = (uint32_t)w[6] & (LOC_COMPACT - 1);
	words = (uint32_t)w[6] & LOC_COMPACT ? n : 2 * n;
	if (memcmp(w, hash, 32) != 0 || n == 0 || n > LOC_FRAMES ||
	    words > loc_words(s))
		return false;
	for (uint32_t i = LOC_HEAD; i < LOC_HEAD + words; i++)
		w[i] = __atomic_load_n(&sl[1 + i], __ATOMIC_ACQUIRE);
	if (__atomic_load_n(&sl[0], __ATOMIC_RELAXED) != q)
		return false;
	*c = (struct fmt_chunk){ .pack_id = (uint32_t)(w[4] >> 32),
				 .stored_len = (uint32_t)w[4], .offset = w[5],
				 .codec = FMT_CODEC_FRAMED };
	tab->frame_size = (uint32_t)(w[6] >> 32);
	tab->nframes = n;
	pos = (uint32_t)fmt_frame_table_size(tab->nframes);
	for (uint32_t i = 0; i < tab->nframes; i++) {
		loc_frame(w, i, &tab->f[i]);
		tab->f[i].offset = pos;
		pos += tab->f[i].stored_len;
	}
	/* What loc_put() stored, or nothing to divide by zero with. */
	return tab->frame_size != 0 &&
	       (uint64_t)tab->frame_size * tab->nframes == s->st_chunk_size &&
	       pos == c->stored_len;
}

/* The words of TAB for a slot into W (from W[6]); how many after the
 * head, or UINT32_MAX if it does not fit in a slot of S. */
static uint32_t loc_encode(const vd_store *s, const struct fmt_frame_table *tab,
			   uint64_t *w)
{
	const bool compact = loc_compact(tab);
	const uint32_t words = compact ? tab->nframes : 2 * tab->nframes;

	if (tab->nframes > LOC_FRAMES || words > loc_words(s))
		return UINT32_MAX;
	w[6] = (uint64_t)tab->frame_size << 32 | tab->nframes |
	       (compact ? LOC_COMPACT : 0);
	for (uint32_t i = 0; i < tab->nframes; i++) {
		const struct fmt_frame *f = &tab->f[i];

		if (!compact) {
			w[LOC_HEAD + 2 * i] = (uint64_t)f->kind << 32 | f->stored_len;
			w[LOC_HEAD + 1 + 2 * i] = f->check;
			continue;
		}
		if (f->kind == FMT_FRAME_ZERO)
			w[6] |= 1ull << (16 + i);
		w[LOC_HEAD + i] = f->check;
	}
	return words;
}

/* Remembers verified C and TAB of chunk HASH (TAB NULL: forgets it). */
static void loc_put(vd_store *s, const uint8_t hash[32],
		    const struct fmt_chunk *c, const struct fmt_frame_table *tab)
{
	uint64_t *sl = loc_slot(s, hash);
	uint64_t w[LOC_HEAD + LOC_WORDS];
	uint32_t words = 0;
	uint64_t q;

	if (!sl)
		return;
	memset(w, 0, sizeof w);
	if (tab && (words = loc_encode(s, tab, w)) == UINT32_MAX)
		return;
	q = __atomic_load_n(&sl[0], __ATOMIC_RELAXED);
	if ((q & 1) || !__atomic_compare_exchange_n(&sl[0], &q, q + 1, false,
						    __ATOMIC_ACQUIRE,
						    __ATOMIC_RELAXED))
		return; /* being written: let it be */
	if (tab) {
		memcpy(w, hash, 32);
		w[4] = (uint64_t)c->pack_id << 32 | c->stored_len;
		w[5] = c->offset;
	}
	/* Release stores: they stay after the odd SEQ. */
	for (uint32_t i = 0; i < LOC_HEAD + words; i++)
		__atomic_store_n(&sl[1 + i], w[i], __ATOMIC_RELEASE);
	__atomic_store_n(&sl[0], q + 2, __ATOMIC_RELEASE);
}

/* For a read of part of cache piece P of remembered chunk HASH that the
 * cache is to keep, when the piece's frames are all raw: the frames read
 * straight into a cache piece (one pread: they are back to back), checked
 * there, the part copied out (one copy of the frame fewer than through
 * the record scratch).  1 if it was not done (no piece, or a frame that is
 * not raw): the caller reads it the usual way. */
static int load_raw_piece(vd_store *s, const struct fmt_frame_table *tab,
			  const uint8_t hash[32], const struct fmt_chunk *c,
			  uint32_t p, uint8_t *dst, size_t off, size_t len)
{
	const uint32_t psize = cache_piece(s->st_cache);
	const uint32_t per = psize / tab->frame_size, i0 = p * per;
	uint8_t *piece;
	int r = 0;

	for (uint32_t i = i0; i < i0 + per; i++)
		if (tab->f[i].kind != FMT_FRAME_RAW)
			return 1;
	if (!(piece = cache_piece_get(s->st_cache)))
		return 1;
	r = pack_readv(s, c->pack_id, c->offset + FMT_REC_HEADER_SIZE +
		       tab->f[i0].offset,
		       (struct iovec[1]){ { piece, psize } }, 1, true);
	for (uint32_t i = i0; i < i0 + per && r == 0; i++)
		r = frame_check(hash, c, tab, i,
				piece + (size_t)(i - i0) * tab->frame_size);
	if (r < 0) {
		cache_piece_put(s->st_cache, piece);
		return r;
	}
	memcpy(dst, piece + (off - (size_t)p * psize), len);
	cache_insert_piece(s->st_cache, hash, p, piece);
	return 0;
}

/* True if a read of [OFF, OFF + LEN) of remembered chunk HASH goes
 * through load_raw_piece(): it lies in one cache piece, the cache has
 * room (frames_decode), and frames are no larger than pieces (a whole
 * frame of a piece's size goes straight into DST instead). */
static bool via_piece(vd_store *s, const struct fmt_frame_table *tab,
		      const uint8_t hash[32], size_t off, size_t len)
{
	const uint32_t psize = cache_piece(s->st_cache);

	return off / psize == (off + len - 1) / psize &&
	       tab->frame_size <= psize &&
	       (tab->frame_size < psize || len < psize) &&
	       cache_has_room(s->st_cache, hash, psize);
}

/* Bytes [OFF, OFF + LEN) of remembered chunk HASH into DST: its frames
 * read into SCRATCH at their places in the record, checked, decoded.
 * -ENOENT or VD_ECORRUPT: the caller forgets the entry, takes the long
 * way. */
static int load_remembered(vd_store *s, struct thread_ctx *t,
			   const uint8_t hash[32], const struct fmt_chunk *c,
			   uint8_t *scratch, uint8_t *dst, size_t off,
			   size_t len, bool cache)
{
	const struct fmt_frame_table *tab = &t->table;
	const uint32_t fs = tab->frame_size;
	const uint32_t first = (uint32_t)(off / fs);
	const uint32_t last = (uint32_t)((off + len - 1) / fs);
	uint8_t *payload = scratch + FMT_REC_HEADER_SIZE;
	struct iovec iov[LOC_FRAMES];
	int n = 0, r;

	/* The usual random read: part of one piece of raw frames, which the
	 * cache keeps while it has room (frames_decode). */
	if (cache && via_piece(s, tab, hash, off, len) &&
	    (r = load_raw_piece(s, tab, hash, c,
				(uint32_t)(off / cache_piece(s->st_cache)),
				dst, off, len)) <= 0)
		return r;

	/* The frames are back to back: one preadv, each raw frame the read
	 * covers whole straight into DST, the others into SCRATCH. */
	for (uint32_t i = first; i <= last; i++) {
		const struct fmt_frame *f = &tab->f[i];
		const size_t fofs = (size_t)i * fs;
		uint8_t *to = payload + f->offset;

		if (f->stored_len == 0)
			continue;
		if (f->kind == FMT_FRAME_RAW && fofs >= off &&
		    fofs + fs <= off + len)
			to = dst + (fofs - off);
		iov[n++] = (struct iovec){ to, f->stored_len };
	}
	if (n > 0 &&
	    (r = pack_readv(s, c->pack_id, c->offset + FMT_REC_HEADER_SIZE +
			    tab->f[first].offset, iov, n, true)) < 0)
		return r;
	return frames_decode(s, t, hash, c, payload, dst, off, len, cache, true);
}

/* Reads C's record into SCRATCH. */
static int record_read(vd_store *s, const uint8_t hash[32],
		       const struct fmt_chunk *c, uint8_t *scratch)
{
	int r;

	if ((r = stored_len_check(s, hash, c)) < 0)
		return r;
	r = pack_read(s, c->pack_id, c->offset, c->stored_len, scratch);
	return r < 0 ? read_failed(hash, r) : 0;
}

/* For a read of [OFF, OFF + LEN) of framed record C: reads into SCRATCH
 * the record header and frame table, then only the frames holding those
 * bytes, at their places in the record (a 4 KiB read of a 1 MiB chunk
 * reads one frame, not the record).  The rest of SCRATCH is left as it
 * was; record_decode() touches only what was read.  Returns 1 with the
 * table decoded into T->table; a table that does not decode makes it
 * read the whole record (0), for record_decode() to report. */
static int record_read_frames(vd_store *s, struct thread_ctx *t,
			      const uint8_t hash[32], const struct fmt_chunk *c,
			      uint8_t *scratch, size_t off, size_t len)
{
	const size_t cs = s->st_chunk_size;
	const size_t fs = MIN((size_t)FRAME_SIZE, cs);
	/* A read within the first frame gets it with the table, one pread:
	 * it ends within the table's slack plus one frame (a stored frame is
	 * at most a frame long). */
	const size_t want = fmt_frames_slack((uint32_t)cs) +
			    ((off + len - 1) / fs == 0 ? fs : 0);
	const size_t head = MIN((size_t)c->stored_len, want);
	const struct fmt_frame_table *tab = &t->table;
	size_t from, to;
	int r;

	if ((r = stored_len_check(s, hash, c)) < 0)
		return r;
	r = pack_read_random(s, c->pack_id, c->offset, FMT_REC_HEADER_SIZE + head,
			     scratch);
	if (r < 0 ||
	    fmt_frames_decode(scratch + FMT_REC_HEADER_SIZE, c->stored_len,
			      (uint32_t)cs, hash, &t->table) != 0)
		return record_read(s, hash, c, scratch);
	from = tab->f[off / tab->frame_size].offset;
	to = tab->f[(off + len - 1) / tab->frame_size].offset +
	     tab->f[(off + len - 1) / tab->frame_size].stored_len;
	if (to <= head)
		return 1;
	from = MAX(from, head);
	r = pack_read_random(s, c->pack_id, c->offset + FMT_REC_HEADER_SIZE + from,
			     to - from, scratch + FMT_REC_HEADER_SIZE + from);
	return r < 0 ? record_read(s, hash, c, scratch) : 1;
}

/* A whole framed record whose frames are all raw (its stored length says
 * so, for frames of FRAME_SIZE or FMT_FRAME_MIN): one preadv puts its
 * header and table in SCRATCH and its frames straight into DST, checked
 * there, with no copy.  1 if done; 0 if the record is not such a one (or
 * will not decode: the caller reads it the plain way and reports); < 0 on
 * a read error. */
static int load_raw_whole(vd_store *s, struct thread_ctx *t,
			  const uint8_t hash[32], const struct fmt_chunk *c,
			  uint8_t *scratch, uint8_t *dst)
{
	const uint32_t cs = s->st_chunk_size;
	uint32_t fs = MIN(FRAME_SIZE, cs);
	const uint8_t *table = scratch + FMT_REC_HEADER_SIZE;
	struct fmt_record rec;
	size_t tsize;
	int r;

	if (c->stored_len != fmt_frame_table_size(cs / fs) + cs)
		fs = FMT_FRAME_MIN;
	tsize = fmt_frame_table_size(cs / fs);
	if (c->stored_len != tsize + cs)
		return 0;
	r = pack_readv(s, c->pack_id, c->offset,
		       (struct iovec[2]){ { scratch, FMT_REC_HEADER_SIZE + tsize },
					  { dst, cs } }, 2, false);
	if (r < 0)
		return read_failed(hash, r);
	/* A table of other frames would run past what was read. */
	if (fmt_get_le32(table) != fs || fmt_record_decode(scratch, &rec) != 0 ||
	    memcmp(rec.hash, hash, 32) != 0 || rec.codec != c->codec ||
	    rec.stored_len != c->stored_len || rec.raw_len != cs ||
	    fmt_frames_decode(table, c->stored_len, cs, hash, &t->table) != 0)
		return 0;
	for (uint32_t i = 0; i < t->table.nframes; i++)
		if (t->table.f[i].kind != FMT_FRAME_RAW)
			return 0;
	for (uint32_t i = 0; i < t->table.nframes; i++)
		if ((r = frame_check(hash, c, &t->table, i,
				     dst + (size_t)i * fs)) < 0)
			return r;
	return 1;
}

int chunk_verify(vd_store *s, const uint8_t hash[32], const struct fmt_chunk *c,
		 uint8_t *scratch, uint8_t *out)
{
	const int r = record_read(s, hash, c, scratch);

	return r < 0 ? r : record_decode(s, hash, c, scratch, out, 0,
					 s->st_chunk_size, true, false, false);
}

int chunk_decode_at(vd_store *s, const uint8_t hash[32],
		    const struct fmt_chunk *c, uint8_t *scratch, uint8_t *out)
{
	const int r = record_read(s, hash, c, scratch);

	return r < 0 ? r : record_decode(s, hash, c, scratch, out, 0,
					 s->st_chunk_size, false, false, false);
}

static void cache_copy_in(vd_store *s, const uint8_t hash[32], const void *data)
{
	cache_insert_copy(s->st_cache, hash, data);
}

/* What the clean-chunk cache holds: whole decoded chunks, put there by
 * reads that decoded a whole chunk (whole-chunk reads, and every read of
 * an unframed record), and the zstd frames a read of part of a framed
 * record decoded, as pieces (cache.c).  Measured on 192 MiB of 64 KiB
 * chunks (part 3's "fresh" volume), store reopened, page cache warm,
 * random 4 KiB reads, CPU per read on the 2-core machine, first 8192
 * reads / the next 200000:
 *   cache 256 MiB: frames, nothing cached 9-11 / 9-10 us; whole chunks
 *     decoded and cached 18 / 1.2 us; frames cached as pieces 14-17 /
 *     2.2 us (first touches of fresh cache memory cost the warm-up);
 *   cache 32 MiB: 11 / 10 us; 24 / 16 us; 12 / 11.8 us.
 * Before frames every miss cost 38-52 us.  (Reading only the frames a
 * read needs, record_read_frames(), then took the 32 MiB case to 9 / 6.4
 * us, and 1 MiB chunks from 770-845 us before frames to 12.5-15.5.)
 * Pieces keep what a cache is for
 * (a hot working set reads at memory speed) without the whole-chunk
 * decode per miss that a working set larger than the cache pays. */
static bool whole(vd_store *s, size_t off, size_t len)
{
	return off == 0 && len == s->st_chunk_size;
}

/* Verifies and decodes record RECBUF of C for a read of [OFF, OFF + LEN)
 * into DST (LEN bytes), caching what CACHE says (load()). */
static int record_finish(vd_store *s, const uint8_t hash[32],
			 const struct fmt_chunk *c, const uint8_t *recbuf,
			 uint8_t *dst, size_t off, size_t len, bool cache,
			 bool table_ready)
{
	uint8_t *buf;
	int r;

	if (c->codec == FMT_CODEC_FRAMED || whole(s, off, len)) {
		r = record_decode(s, hash, c, recbuf, dst, off, len, false, cache,
				  table_ready);
		if (r == 0 && cache && whole(s, off, len))
			cache_copy_in(s, hash, dst);
		return r;
	}
	/* An unframed record decodes whole: into a buffer the cache keeps. */
	if (!(buf = cache_buf_get(s->st_cache)))
		return -ENOMEM;
	r = record_decode(s, hash, c, recbuf, buf, 0, s->st_chunk_size, false,
			  false, false);
	if (r == 0)
		memcpy(dst, buf + off, len);
	if (r == 0 && cache)
		cache_insert(s->st_cache, hash, buf);
	else
		cache_buf_put(s->st_cache, buf);
	return r;
}

/* Loads bytes [OFF, OFF + LEN) of chunk HASH into DST (LEN bytes); CACHE:
 * what it decodes goes into the cache.  Sequential scans (struct
 * chunk_req's scan) cache nothing: a chunk a scan read whole is rarely
 * read again soon, and copying it in cost a memcpy and, past the buffer
 * pool, fresh memory (page faults) per chunk, and evicted the random
 * working set (bench/nbd, seqr with --cache 1G: 0.4x the default). */
static int load(vd_store *s, MDB_txn *txn, const uint8_t hash[32],
		uint8_t *dst, size_t off, size_t len, bool cache)
{
	struct thread_ctx *t;
	uint8_t *scratch;
	struct fmt_chunk c;
	int r = 0;

	if (!(t = thread_ctx()) || !(scratch = scratch_for(t, s)))
		return -ENOMEM;
	if (!whole(s, off, len) && loc_get(s, hash, &c, &t->table)) {
		r = load_remembered(s, t, hash, &c, scratch, dst, off, len, cache);
		if (r != -ENOENT && r != VD_ECORRUPT)
			return r;
		loc_put(s, hash, &c, NULL); /* moved, or damaged: the long way */
	}
	if ((r = chunk_get(s, txn, hash, &c)) < 0)
		return r;
	if (c.codec == FMT_CODEC_FRAMED && !whole(s, off, len)) {
		if ((r = record_read_frames(s, t, hash, &c, scratch, off,
					    len)) < 0 ||
		    (r = record_finish(s, hash, &c, scratch, dst, off, len,
				       cache, r == 1)) < 0)
			return r;
		loc_put(s, hash, &c, &t->table); /* verified: remember it */
		return 0;
	}
	/* Raw frames enter the cache only while it has room (frames_decode). */
	if (c.codec == FMT_CODEC_FRAMED &&
	    (r = load_raw_whole(s, t, hash, &c, scratch, dst)) != 0) {
		if (r == 1 && cache &&
		    cache_has_room(s->st_cache, hash, s->st_chunk_size))
			cache_copy_in(s, hash, dst);
		return r < 0 ? r : 0;
	}
	if ((r = record_read(s, hash, &c, scratch)) < 0)
		return r;
	return record_finish(s, hash, &c, scratch, dst, off, len, cache,
			     false);
}

int chunk_load(vd_store *s, MDB_txn *txn, const uint8_t hash[32], void *out,
	       size_t off, size_t len)
{
	uint8_t *dst = (uint8_t *)out + off;

	if (cache_read(s->st_cache, hash, dst, off, len))
		return 0;
	return load(s, txn, hash, dst, off, len, true);
}

int chunk_load_remembered(vd_store *s, const uint8_t hash[32], void *dst,
			  size_t off, size_t len, bool cache)
{
	struct thread_ctx *t;
	uint8_t *scratch;
	struct fmt_chunk c;
	int r;

	if (len == 0 || whole(s, off, len) || !(t = thread_ctx()) ||
	    !(scratch = scratch_for(t, s)) || !loc_get(s, hash, &c, &t->table))
		return 1;
	r = load_remembered(s, t, hash, &c, scratch, dst, off, len, cache);
	if (r != -ENOENT && r != VD_ECORRUPT)
		return r;
	loc_put(s, hash, &c, NULL); /* moved, or damaged: the long way */
	return 1;
}

/* Batched loads (VDISK_IO=uring): the records of whole-chunk cache misses
 * are read with one io_uring submission; parts of framed records are read
 * frame by frame with pread, as without it.  bench/bench-io.c measured 16
 * records at once at 1.5x the rate of 16 preads with the page cache warm,
 * 2.2x with it dropped, and a single read gaining nothing; but whole
 * engine reads, where decompressing and hashing dominate, showed no gain
 * (bench part 5: 0.80-0.91 of pread on 256 KiB reads), so plain pread is
 * the default. */
#define LOAD_BATCH 16

static bool ring_ready(struct thread_ctx *t, size_t recsize)
{
	if (t->ring_state == 0)
		t->ring_state = io_uring_queue_init(LOAD_BATCH, &t->ring, 0) == 0 ? 1 : -1;
	if (t->ring_state < 0)
		return false;
	if (t->recbuf_size < recsize) {
		uint8_t *p = realloc(t->recbufs, LOAD_BATCH * recsize);
		if (!p)
			return false;
		t->recbufs = p;
		t->recbuf_size = recsize;
	}
	return true;
}

static int load_batches(vd_store *s, MDB_txn *txn, struct thread_ctx *t,
			struct chunk_req *reqs, size_t n);

/* A scan's batch asks for its records at once, one request per run of
 * records that follow each other in a pack, so the disk reads them
 * together rather than one pread at a time.  Leaving the runs to the
 * kernel's readahead cost more: the NBD workers' scans share each pack's
 * descriptor, and so its readahead state (cold 2 GiB sequential read over
 * NBD, QD 8, caches dropped, three rounds each: 716/296/307 MB/s at
 * 0.9-2.4 CPU s, asking for the runs 875/642/954 MB/s at 0.8-0.9 CPU s);
 * with the page cache warm, asking costs ~0.05 CPU s per GiB.
 * A cold 1 MiB scan of a 20-deep clone (a third of its chunks written by
 * the levels) read at half a fresh volume's rate, of a head with 200
 * snapshots (chunks in 200 seals' order) a quarter, before scattered
 * records were asked for at once. */
static void prefetch_runs(vd_store *s, MDB_txn *txn,
			  const struct chunk_req *reqs, size_t n)
{
	uint32_t pack = UINT32_MAX;
	uint64_t start = 0, end = 0;

	for (size_t i = 0; i < n; i++) {
		struct fmt_chunk c;
		uint64_t len;

		if (!reqs[i].scan || chunk_get(s, txn, reqs[i].hash, &c) < 0)
			continue;
		len = FMT_REC_HEADER_SIZE + (uint64_t)c.stored_len;
		if (c.pack_id != pack || c.offset != end) {
			if (pack != UINT32_MAX)
				pack_prefetch(s, pack, start, end - start);
			pack = c.pack_id;
			start = c.offset;
		}
		end = c.offset + len;
	}
	if (pack != UINT32_MAX)
		pack_prefetch(s, pack, start, end - start);
}

int chunk_load_many(vd_store *s, MDB_txn *txn, struct chunk_req *reqs,
		    size_t n)
{
	const size_t recsize = chunk_record_max(s);
	struct thread_ctx *t = thread_ctx();
	int r;

	if (!t)
		return -ENOMEM;
	if (n < 2 || !s->st_uring || !ring_ready(t, recsize)) {
		if (n >= 2)
			prefetch_runs(s, txn, reqs, n);
		for (size_t i = 0; i < n; i++)
			reqs[i].r = load(s, txn, reqs[i].hash, reqs[i].out,
					 reqs[i].off, reqs[i].len, !reqs[i].scan);
		return 0;
	}
	pack_read_begin(s);  /* the descriptors stay open until the end */
	r = load_batches(s, txn, t, reqs, n);
	pack_read_end(s);
	return r;
}

static int load_batches(vd_store *s, MDB_txn *txn, struct thread_ctx *t,
			struct chunk_req *reqs, size_t n)
{
	const size_t recsize = chunk_record_max(s);
	struct fmt_chunk loc[LOAD_BATCH];
	size_t pending[LOAD_BATCH];
	int fds[LOAD_BATCH];

	for (size_t first = 0; first < n; first += LOAD_BATCH) {
		const size_t end = MIN(n, first + LOAD_BATCH);
		size_t np = 0;

		for (size_t i = first; i < end; i++) {
			struct chunk_req *q = &reqs[i];
			struct io_uring_sqe *sqe;
			int fd;

			if (cache_read(s->st_cache, q->hash, q->out, q->off, q->len)) {
				q->r = 0;
				continue;
			}
			if ((q->r = chunk_get(s, txn, q->hash, &loc[np])) < 0 ||
			    (q->r = stored_len_check(s, q->hash, &loc[np])) < 0)
				continue;
			/* Part of a framed record: read only its frames, the
			 * plain way (a whole record read for 4 KiB cost more
			 * than the batching saved). */
			if (loc[np].codec == FMT_CODEC_FRAMED &&
			    !whole(s, q->off, q->len)) {
				q->r = load(s, txn, q->hash, q->out, q->off, q->len,
					    !q->scan);
				continue;
			}
			if ((fd = pack_fd_get(s, loc[np].pack_id)) < 0) {
				q->r = fd; /* -ENOENT: gc moved it; the caller retries */
				continue;
			}
			sqe = io_uring_get_sqe(&t->ring);
			io_uring_prep_read(sqe, fd, t->recbufs + np * recsize,
					   FMT_REC_HEADER_SIZE + loc[np].stored_len,
					   loc[np].offset);
			sqe->user_data = np;
			fds[np] = fd;
			pending[np++] = i;
		}
		if (np == 0)
			continue;
		if (io_uring_submit_and_wait(&t->ring, (unsigned)np) < 0) {
			/* Could not submit: do it the plain way. */
			io_uring_queue_exit(&t->ring);
			t->ring_state = -1;
			for (size_t j = 0; j < np; j++)
				reqs[pending[j]].r = load(s, txn, reqs[pending[j]].hash,
							  reqs[pending[j]].out,
							  reqs[pending[j]].off,
							  reqs[pending[j]].len,
							  !reqs[pending[j]].scan);
			continue;
		}
		for (size_t j = 0; j < np; j++) {
			struct io_uring_cqe *cqe;
			size_t k;
			struct chunk_req *q;

			if (io_uring_wait_cqe(&t->ring, &cqe) < 0)
				return -EIO;
			k = (size_t)cqe->user_data;
			q = &reqs[pending[k]];
			if (!pack_fd_valid(s, loc[k].pack_id, fds[k]))
				q->r = -ENOENT; /* removed meanwhile: retry */
			else if (cqe->res < 0)
				q->r = SET_ERROR(cqe->res, "pack %08x: read: %s",
						 loc[k].pack_id, strerror(-cqe->res));
			else if ((size_t)cqe->res != FMT_REC_HEADER_SIZE + loc[k].stored_len)
				q->r = SET_ERROR(VD_ECORRUPT, "pack %08x: record at %llu "
						 "is cut short (file truncated?)",
						 loc[k].pack_id,
						 (unsigned long long)loc[k].offset);
			else
				q->r = 1; /* read; decoded below */
			io_uring_cqe_seen(&t->ring, cqe);
		}
		/* Decode and verify after every completion is reaped. */
		for (size_t k = 0; k < np; k++) {
			struct chunk_req *q = &reqs[pending[k]];

			if (q->r == 1)
				q->r = record_finish(s, q->hash, &loc[k],
						     t->recbufs + k * recsize, q->out,
						     q->off, q->len, !q->scan, false);
		}
	}
	return 0;
}

/* ---- scans, for check and gc -------------------------------------------- */

int chunk_scan(vd_store *s, MDB_txn *txn, chunk_scan_fn fn, void *opaque,
	       uint64_t *n)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, r = 0;

	if (n) {
		MDB_stat st;
		if ((rc = mdb_stat(txn, s->st_chunks, &st)))
			return err_mdb(rc, "chunk index");
		*n = st.ms_entries;
	}
	if ((rc = mdb_cursor_open(txn, s->st_chunks, &cur)))
		return err_mdb(rc, "chunk index");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && r == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		struct fmt_chunk c;
		const bool ok = k.mv_size == 32 &&
				fmt_chunk_decode(v.mv_data, v.mv_size, &c) == 0;
		r = fn(opaque, k.mv_data, k.mv_size, ok ? &c : NULL);
	}
	mdb_cursor_close(cur);
	if (r == 0 && rc != MDB_NOTFOUND)
		r = err_mdb(rc, "chunk index");
	return r;
}

int chunk_drop_dead(vd_store *s, struct wtxn *w, chunk_scan_fn live,
		    void *opaque, uint64_t *freed)
{
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, r = 0;

	if ((rc = mdb_cursor_open(w->txn, s->st_chunks, &cur)))
		return err_mdb(rc, "chunk index");
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && r == 0;) {
		struct fmt_chunk c;
		uint8_t key[32];

		if (k.mv_size != 32 || fmt_chunk_decode(v.mv_data, v.mv_size, &c)) {
			/* check reports it; gc leaves it alone */
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue;
		}
		if (c.refs) {
			r = live(opaque, k.mv_data, 32, &c);
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue;
		}
		w->d.dead_chunks--;
		w->d.dead_bytes -= FMT_REC_HEADER_SIZE + (int64_t)c.stored_len;
		(*freed)++;
		memcpy(key, k.mv_data, 32);
		if ((rc = mdb_cursor_del(cur, 0)))
			break;
		/* Seek again rather than trust the cursor after a delete. */
		k.mv_data = key;
		k.mv_size = 32;
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	}
	mdb_cursor_close(cur);
	if (r == 0 && rc != MDB_NOTFOUND)
		r = err_mdb(rc, "chunk index");
	return r;
}

int chunk_move(vd_store *s, struct wtxn *w, const uint8_t hash[32],
	       struct fmt_chunk *c, uint8_t *scratch, uint8_t *raw)
{
	struct fmt_chunk cur;
	struct fmt_record rec;
	int r;

	/* C is what a scan saw; the reference count may have changed since
	 * (seals commit meanwhile): move what the index says now. */
	if ((r = chunk_get(s, w->txn, hash, &cur)) < 0)
		return r == VD_ECORRUPT ? 1 : r;
	if (cur.pack_id != c->pack_id || cur.offset != c->offset)
		return 0; /* no longer in that pack */
	/* What is copied is the stored record, so its stored bytes are what
	 * must be intact: a framed record's frame checks say so, as for a
	 * read; its name is recomputed by check.  (The SHA-256 of every moved
	 * chunk was a third of the compactor's CPU under random overwrites,
	 * and the seals wait for the compactor there.) */
	if (chunk_decode_at(s, hash, &cur, scratch, raw) < 0)
		return 1;
	fmt_record_decode(scratch, &rec);
	if ((r = pack_append(s, &rec, scratch + FMT_REC_HEADER_SIZE, &cur.pack_id,
			     &cur.offset)) < 0)
		return r;
	*c = cur;
	return chunk_put(s, w->txn, hash, &cur);
}

int chunk_evacuate(vd_store *s, struct wtxn *w, const uint8_t hash[32],
		   uint32_t pack_id, uint64_t offset, uint8_t *scratch,
		   uint8_t *raw, uint64_t *moved)
{
	MDB_val k = { 32, (void *)hash }, v;
	struct fmt_chunk c;
	int rc, r;

	rc = mdb_get(w->txn, s->st_chunks, &k, &v);
	if (rc == MDB_NOTFOUND)
		return CHUNK_GONE;
	if (rc)
		return err_mdb(rc, "chunk index");
	if (fmt_chunk_decode(v.mv_data, v.mv_size, &c) != 0 ||
	    c.pack_id != pack_id || c.offset != offset)
		return CHUNK_GONE; /* moved, or damaged: check reports it */
	if (c.refs == 0) {
		w->d.dead_chunks--;
		w->d.dead_bytes -= disk_bytes(&c);
		rc = mdb_del(w->txn, s->st_chunks, &k, NULL);
		return rc ? err_mdb(rc, "chunk index") : CHUNK_DROPPED;
	}
	r = chunk_move(s, w, hash, &c, scratch, raw);
	if (r == 0)
		*moved += disk_bytes(&c);
	return r < 0 ? r : r == 1 ? CHUNK_KEPT : CHUNK_MOVED;
}
